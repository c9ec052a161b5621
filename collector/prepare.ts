/**
 * What the collector queues, and how a batch of it becomes Kafka messages: audit records are validated
 * and normalized with the shared model (the full check the call path skipped), spans are already
 * encoded. Used by the sender wherever it runs (in the gateway's thread or in the collector's worker).
 */
import { auditMessageKey, TENANT_HEADER } from '../core/publisher.ts';
import { normalizeAuditRecord, type AuditRecordInput } from '../model/audit-event.ts';
import { newEventId } from '../model/ids.ts';
import { formatIssues } from '../model/issues.ts';
import type { DeliveryCounters } from './sender.ts';
import type { SpoolRecord } from './spool.ts';
import type { Warnings } from './warnings.ts';

/** An encoded `otlp_spans` message waiting in the queue. */
export class SpanMessage {
  constructor(readonly record: SpoolRecord) {}
}

export type QueueItem = AuditRecordInput | SpanMessage;

export interface PrepareOptions {
  tenant: string;
  auditTopic: string;
  warnings: Warnings;
}

export function createPrepare(options: PrepareOptions): (items: QueueItem[], counters: DeliveryCounters) => SpoolRecord[] {
  const { tenant, auditTopic, warnings } = options;
  return (items, counters) => {
    const out: SpoolRecord[] = [];
    for (const item of items) {
      if (item instanceof SpanMessage) {
        out.push(item.record);
        continue;
      }
      // Assigned here rather than in auditFunc: generating a UUIDv7 costs ~1-8 µs (crypto
      // getRandomValues per id), which the gateway's call path should not pay. normalizeAuditRecord
      // would otherwise derive a deterministic id; the spec wants a fresh UUIDv7 from the gateway.
      if (item.event_id === undefined) item.event_id = newEventId();
      const result = normalizeAuditRecord(item, { tenant });
      if (!result.ok) {
        counters.invalid++;
        warnings.warn('invalid', { issues: formatIssues(result.issues), tool: item.tool }, 'invalid audit record dropped');
        continue;
      }
      const event = result.value;
      out.push({
        topic: auditTopic,
        key: auditMessageKey(event),
        value: Buffer.from(JSON.stringify(event)),
        headers: { [TENANT_HEADER]: event.tenant },
      });
    }
    return out;
  };
}
