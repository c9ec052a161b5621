/**
 * Kafka message → rows. The audit topic carries one JSON audit record per message (ours, or any
 * producer's in go-micro's shape); the spans topic carries an OTLP ExportTraceServiceRequest, protobuf
 * as the OpenTelemetry Collector's Kafka exporter writes it (`otlp_proto`), or JSON (`otlp_json`).
 * Everything is validated again here with the shared model: a border is a border. Records of the
 * shapes gateways send take the model's fast path (the same checks and output, without zod); anything
 * else, and every invalid record, goes through `normalizeAuditRecord`, which explains what is wrong.
 */
import { normalizeAuditRecord, toAuditRow, type AuditRow, DEFAULT_TENANT } from '../model/audit-event.ts';
import { createAuditFastPath } from '../model/audit-fast-path.ts';
import { formatIssues } from '../model/issues.ts';
import { decodeTraceRequest } from '../model/otlp.ts';
import type { SpanRow } from '../model/span.ts';
import type { TimeWindow } from '../model/time-window.ts';
import { toolCallFromSpan } from '../model/tool-call-span.ts';
import { TENANT_HEADER } from '../core/publisher.ts';
import type { DeadLetter, InboundMessage } from './messages.ts';

/** A row and the message it came from, so a row the database refuses can be dead-lettered whole. */
export interface Sourced<T> {
  row: T;
  message: InboundMessage;
}

export interface DecodedBatch {
  audit: Sourced<AuditRow>[];
  spans: Sourced<SpanRow>[];
  deadLetters: DeadLetter[];
}

export interface Topics {
  audit: string;
  spans: string;
}

/** `timeWindow`: the audit timestamps accepted, as at the receiver; unset: any. */
export function decodeBatch(messages: readonly InboundMessage[], topics: Topics, timeWindow?: TimeWindow): DecodedBatch {
  const out: DecodedBatch = { audit: [], spans: [], deadLetters: [] };
  for (const message of messages) {
    if (message.topic === topics.audit) decodeAudit(message, out, timeWindow);
    else if (message.topic === topics.spans) decodeSpans(message, out);
    else out.deadLetters.push({ message, reason: `unexpected topic ${message.topic}` });
  }
  return out;
}

/** Tenant from the record (or the default), as `normalizeAuditRecord(json)`. */
const normalizeFast = createAuditFastPath();

function decodeAudit(message: InboundMessage, out: DecodedBatch, timeWindow: TimeWindow | undefined): void {
  let json: unknown;
  try {
    json = JSON.parse(message.value.toString('utf8'));
  } catch (error) {
    out.deadLetters.push({ message, reason: `not JSON: ${(error as Error).message}` });
    return;
  }
  let event = normalizeFast(json);
  if (event === undefined) {
    const result = normalizeAuditRecord(json);
    if (!result.ok) {
      out.deadLetters.push({ message, reason: `invalid audit record: ${formatIssues(result.issues)}` });
      return;
    }
    event = result.value;
  }
  const outside = timeWindow?.check(event.timestamp);
  if (outside) out.deadLetters.push({ message, reason: `invalid audit record: ${formatIssues([outside])}` });
  else out.audit.push({ row: toAuditRow(event), message });
}

function decodeSpans(message: InboundMessage, out: DecodedBatch): void {
  const tenant = message.headers[TENANT_HEADER] || DEFAULT_TENANT;
  const encoding = message.headers['content-type'] === 'application/json' ? 'json' : 'protobuf';
  try {
    const { spans, rejected } = decodeTraceRequest(message.value, encoding, tenant);
    for (const row of spans) {
      out.spans.push({ row, message });
      const call = toolCallFromSpan(row);
      if (call) out.audit.push({ row: call, message });
    }
    if (rejected.length > 0) {
      const detail = rejected.slice(0, 5).map((r) => `span ${r.index}: ${formatIssues(r.issues)}`).join('; ');
      out.deadLetters.push({ message, reason: `${rejected.length} invalid span(s), the others were kept: ${detail}` });
    }
  } catch (error) {
    out.deadLetters.push({ message, reason: `not an OTLP ExportTraceServiceRequest: ${(error as Error).message}` });
  }
}
