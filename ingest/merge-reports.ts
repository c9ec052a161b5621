/**
 * One call, two reports: a gateway's audit record and the server span of the same call (as a
 * tool-call fact, model/tool-call-span.ts). The writer stores the call once, counted once, and the
 * stored row keeps what both reports know, whichever came first: the record's account, scopes, denial,
 * error, agent, sizes and cost; the span's trace and span ids, transport and gateway; each field taken
 * from the other report when the one it comes from left it empty.
 */
import type { AuditRow } from '../model/audit-event.ts';
import { AUDIT_INSERT_COLUMNS } from './audit-insert.ts';

/**
 * The reports of one call share tenant, trace id and tool. When the trace id is the OpenTelemetry
 * trace's own (a span without go-micro's per-call `mcp.trace_id`, or a record whose `trace_id` is its
 * `otel_trace_id`), every call of that trace shares it, so the span id is part of the key. Undefined
 * for a row without a trace id: it pairs with nothing.
 */
export function callKey(r: AuditRow): string | undefined {
  if (r.trace_id === '') return undefined;
  const spanId = r.trace_id === r.otel_trace_id ? r.otel_span_id : '';
  return `${r.tenant}\u0000${r.trace_id}\u0000${r.tool}\u0000${spanId}`;
}

/** Whether `row` holds a span's report: a span fact, or a row a span was merged into. */
function hasSpan(row: AuditRow): boolean {
  return row.source === 'span' || (row.report_id !== undefined && row.report_id !== row.event_id);
}

/**
 * `stored` (what is stored of a call, or stored by this batch) with `report` merged in, under
 * `stored`'s identity (event_id, counted, report_id: the caller sets them); undefined when `report` is
 * of a kind `stored` already holds (a second span of the call, or a second audit record: see the writer).
 */
export function mergeReports(stored: AuditRow, report: AuditRow): AuditRow | undefined {
  if (report.source === 'audit' ? stored.source === 'audit' : hasSpan(stored)) return undefined;
  const [audit, span] = report.source === 'audit' ? [report, stored] : [stored, report];
  const allowed = audit.allowed;
  const error = audit.error || (allowed ? span.error : '');
  // The call's start, where the span is stamped; the day the call is stored on stays, so the row
  // replaces the stored one in the same partition of audit_events_v1 (sql/0001).
  const earlier = audit.timestamp < span.timestamp ? audit.timestamp : span.timestamp;
  return {
    ...stored,
    timestamp: earlier.slice(0, 10) === stored.timestamp.slice(0, 10) ? earlier : stored.timestamp,
    trace_id: audit.trace_id,
    service: audit.service || span.service,
    account_id: audit.account_id || span.account_id,
    scopes_required: audit.scopes_required.length > 0 ? audit.scopes_required : span.scopes_required,
    allowed,
    denied_reason: audit.denied_reason || (allowed ? '' : span.denied_reason),
    // go-micro leaves a denied call's duration out: it never ran.
    duration_ns: audit.duration_ns || (allowed ? span.duration_ns : 0),
    error,
    is_error: error !== '' ? 1 : 0,
    agent: audit.agent || span.agent,
    agent_version: audit.agent_version || span.agent_version,
    session_id: audit.session_id || span.session_id,
    gateway: span.gateway || audit.gateway,
    transport: span.transport || audit.transport,
    otel_trace_id: span.otel_trace_id || audit.otel_trace_id,
    otel_span_id: span.otel_span_id || audit.otel_span_id,
    request_bytes: audit.request_bytes || span.request_bytes,
    response_bytes: audit.response_bytes || span.response_bytes,
    cost_usd: audit.cost_usd ?? span.cost_usd,
    attributes: { ...span.attributes, ...audit.attributes },
    source: 'audit',
  };
}

const IDENTITY = new Set(['event_id', 'counted', 'report_id', 'replaces_at']);
const CONTENT = AUDIT_INSERT_COLUMNS.filter((c) => !IDENTITY.has(c)) as (keyof AuditRow)[];

/** Whether two rows of a call say the same, identity aside. */
export function sameContent(a: AuditRow, b: AuditRow): boolean {
  return CONTENT.every((column) => JSON.stringify(a[column]) === JSON.stringify(b[column]));
}

/** A row of audit_events_v1 as `SELECT ${STORED_ROW_COLUMNS}` returns it in JSONEachRow. */
export interface StoredRowJson {
  [column: string]: unknown;
}

/** The audit_events_v1 columns of an AuditRow, UUIDs as text. */
export const STORED_ROW_COLUMNS = AUDIT_INSERT_COLUMNS.map((c) => (c === 'event_id' || c === 'report_id' ? `toString(${c}) AS ${c}` : c)).join(', ');

/** A stored row back as an AuditRow: 64-bit integers come quoted, booleans as true/false. */
export function auditRowFromStored(r: StoredRowJson): AuditRow {
  const text = (column: string) => String(r[column] ?? '');
  const flag = (column: string): 0 | 1 => (r[column] === true || r[column] === 1 || r[column] === '1' || r[column] === 'true' ? 1 : 0);
  return {
    event_id: text('event_id'),
    tenant: text('tenant'),
    timestamp: text('timestamp'),
    trace_id: text('trace_id'),
    tool: text('tool'),
    service: text('service'),
    account_id: text('account_id'),
    scopes_required: (r['scopes_required'] as string[] | undefined) ?? [],
    allowed: flag('allowed'),
    denied_reason: text('denied_reason'),
    duration_ns: Number(r['duration_ns'] ?? 0),
    error: text('error'),
    is_error: flag('is_error'),
    agent: text('agent'),
    agent_version: text('agent_version'),
    session_id: text('session_id'),
    gateway: text('gateway'),
    transport: text('transport'),
    otel_trace_id: text('otel_trace_id'),
    otel_span_id: text('otel_span_id'),
    request_bytes: Number(r['request_bytes'] ?? 0),
    response_bytes: Number(r['response_bytes'] ?? 0),
    cost_usd: r['cost_usd'] === null || r['cost_usd'] === undefined ? null : Number(r['cost_usd']),
    attributes: (r['attributes'] as Record<string, string> | undefined) ?? {},
    source: text('source') === 'span' ? 'span' : 'audit',
    counted: flag('counted'),
    report_id: text('report_id'),
    replaces_at: text('replaces_at'),
  };
}
