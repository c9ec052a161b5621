/**
 * What the collector queues, and how a batch of it becomes Kafka messages: audit records are validated
 * and normalized with the shared model (the full check the call path skipped: model/audit-fast-path.ts for
 * the common shapes, `normalizeAuditRecord` for the rest), spans are already encoded. Used by the
 * sender wherever it runs (the gateway's thread, the collector's Kafka thread), and by the encoder thread.
 */
import { auditMessageKey, TENANT_HEADER } from '../core/publisher.ts';
import { normalizeAuditRecord, type AuditRecordInput } from '../model/audit-event.ts';
import { createAuditFastPath } from '../model/audit-fast-path.ts';
import { newEventId } from '../model/ids.ts';
import { formatIssues } from '../model/issues.ts';
import type { DeliveryCounters } from './sender.ts';
import type { SpoolRecord } from './spool.ts';
import type { Warnings } from './warnings.ts';

/** A message encoded already, waiting in the queue: a batch of spans, or an audit record the encoder thread validated. */
export class EncodedMessage {
  constructor(readonly record: SpoolRecord) {}
}

export type QueueItem = AuditRecordInput | EncodedMessage;

export interface PrepareOptions {
  tenant: string;
  auditTopic: string;
  warnings: Warnings;
}

export function createPrepare(options: PrepareOptions): (items: QueueItem[], counters: DeliveryCounters) => SpoolRecord[] {
  const { tenant, auditTopic, warnings } = options;
  // Every event of this sender has its tenant (a record naming another one is invalid): one shared,
  // never mutated, headers object.
  const headers = Object.freeze({ [TENANT_HEADER]: tenant });
  const normalizeFast = createAuditFastPath(tenant);
  return (items, counters) => {
    const out: SpoolRecord[] = [];
    for (const item of items) {
      if (item instanceof EncodedMessage) {
        out.push(item.record);
        continue;
      }
      // Assigned here rather than in auditFunc, so the gateway's call path does not pay for it (and
      // before the record can reach the spool, so a replay keeps it). normalizeAuditRecord would
      // otherwise derive a deterministic id; the spec wants a fresh UUIDv7 from the gateway.
      let stamped: string | undefined;
      if (item.event_id === undefined) item.event_id = stamped = newEventId();
      let event = normalizeFast(item, stamped);
      if (event === undefined) {
        const result = normalizeAuditRecord(item, { tenant });
        if (!result.ok) {
          counters.invalid++;
          warnings.warn('invalid', { issues: formatIssues(result.issues), tool: item.tool }, 'invalid audit record dropped');
          continue;
        }
        event = result.value;
      }
      out.push({
        topic: auditTopic,
        key: auditMessageKey(event),
        value: Buffer.from(JSON.stringify(event)),
        headers: event.tenant === tenant ? headers : { [TENANT_HEADER]: event.tenant },
      });
    }
    return out;
  };
}
