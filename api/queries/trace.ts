/**
 * One trace by either of its ids: the gateway's (go-micro `mcp.trace_id`: the audit record's trace_id,
 * a UUID or any string) or OpenTelemetry's (32 hex digits). Answers the calls (audit events) that
 * carry the id, in time order, and the span tree of every OpenTelemetry trace among them.
 *
 * Two point reads (sql/0018): the calls from calls_by_id_v1 by its primary key (tenant, id), the spans
 * from trace_spans_v1 by its (tenant, trace_id), whatever day they started on (spans that arrive after
 * their calls, or start days away, are found). By an OpenTelemetry id both are one statement; by a
 * gateway trace id the spans' read follows the calls', which tell their OpenTelemetry ids. Each runs on
 * one thread: a read of a granule or two per part gains nothing from more, and the API's statements run
 * one at a time on a shared machine.
 *
 * A call reported twice, its span first and its audit record second, is stored twice under one
 * event_id (sql/0005): the span fact (`counted`) and the merged row that replaces it (not `counted`).
 * The merged row carries the span fact's ids (the same gateway trace id, which is what pairs them, and
 * the span's OpenTelemetry trace id), so a look-up that finds one finds both, and of one event_id the
 * row not `counted` is shown. A span delivered twice is listed once.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { otelTraceIdOf } from './audit-params.ts';
import { ENTRY_FIELDS, eventFields, jsonFields, toEntry, type AuditLogEntry, type EventRow } from './audit-rows.ts';
import { isoFromClickHouse, msFromNs } from './params.ts';
import { count, selectRows } from './select-rows.ts';

/** Most calls and spans one trace answers; a trace with more says `truncated`. */
export const MAX_TRACE_CALLS = 1000;
export const MAX_TRACE_SPANS = 10_000;

export interface Attribute {
  key: string;
  value: string;
}

export interface SpanEvent {
  time: string;
  name: string;
  attributes: Attribute[];
}

export interface Span {
  traceId: string;
  spanId: string;
  /** Null for a root span. */
  parentSpanId: string | null;
  /** 0 for a root (or a span whose parent was not received), its parent's depth + 1 otherwise. */
  depth: number;
  name: string;
  kind: string;
  service: string;
  /** RFC 3339, UTC, nanosecond precision. */
  startTime: string;
  durationMs: number;
  statusCode: string;
  statusMessage: string | null;
  attributes: Attribute[];
  events: SpanEvent[];
}

export interface Trace {
  /** The id asked for. */
  id: string;
  calls: AuditLogEntry[];
  /** The OpenTelemetry trace ids of the calls and spans listed. */
  otelTraceIds: string[];
  /** Depth first, each span's children in start order. */
  spans: Span[];
  truncated: boolean;
}

/**
 * The fields of calls_by_id_v1's `call` and trace_spans_v1's `span` JSON arrays, in their order
 * (sql/0018 writes them; a row's other fields are its columns).
 */
const CALL_FIELDS = ['event_id', 'source', 'counted', ...ENTRY_FIELDS] as const;
const SPAN_FIELDS = ['parent_span_id', 'name', 'kind', 'service', 'duration_ns', 'status_code', 'status_message', 'attributes', 'events'] as const;

// Point reads by primary key, (tenant, id) and (tenant, trace_id), with no order and no other condition
// in the statement: what a read of a row or two costs the engine is mostly planning, and on the 10M-event
// set the calls' condition on both kinds and the order cost 1.4 of its 5.4 ms, the spans' order and
// LIMIT BY 0.5 of 3.3. queryTrace keeps each call row of the kind its id was asked as, and orders the
// calls and spans itself. A read that reaches its limit is read again in order (readPoint), so what a
// truncated trace keeps is its earliest.

// The rows under the id asked for and its OpenTelemetry form: up to two per call (its first report and
// the row that replaced it), so twice the calls asked for. Exported for the API bench's engine floor.
export function callsSql(ordered: boolean): string {
  return `
SELECT id, kind, timestamp, call
FROM calls_by_id_v1
WHERE tenant = {tenant:String}
  AND id IN {ids:Array(String)}${ordered ? '\nORDER BY timestamp ASC' : ''}
LIMIT {limit:UInt32}
SETTINGS max_threads = 1`;
}

export function spansSql(ordered: boolean): string {
  return `
SELECT trace_id, span_id, start_time, span
FROM trace_spans_v1
WHERE tenant = {tenant:String}
  AND trace_id IN {traceIds:Array(String)}${ordered ? '\nORDER BY start_time ASC, span_id ASC\nLIMIT 1 BY trace_id, span_id' : ''}
LIMIT {limit:UInt32}
SETTINGS max_threads = 1`;
}

// An OpenTelemetry id's calls and spans in one statement: the same two point reads, each with its own
// limit, as one UNION ALL. They do not depend on each other, and one statement pays the engine's fixed
// cost once and takes one connection (the API bench's floor table shows both forms). Each row says
// which read it is (`what`), its key, its second key (a call's kind, a span's id), its time and its JSON.
export function callsAndSpansSql(): string {
  return `
SELECT 'call' AS what, id AS key, toString(kind) AS sub, timestamp AS time, call AS body
FROM calls_by_id_v1
WHERE tenant = {tenant:String}
  AND id IN {ids:Array(String)}
LIMIT {callLimit:UInt32}
UNION ALL
SELECT 'span' AS what, trace_id AS key, span_id AS sub, start_time AS time, span AS body
FROM trace_spans_v1
WHERE tenant = {tenant:String}
  AND trace_id IN {traceIds:Array(String)}
LIMIT {spanLimit:UInt32}
SETTINGS max_threads = 1`;
}

// A call row: its key, and the call with the key's id put back where the row leaves it out, checked as
// any event row.
const callKind = z.enum(['trace', 'otel_trace']);
const callRow = z
  .object({ id: z.string(), kind: callKind, timestamp: z.string(), call: jsonFields(CALL_FIELDS) })
  .transform(({ id, kind, timestamp, call }) => ({
    id,
    kind,
    row: { ...call, timestamp, trace_id: kind === 'trace' ? id : call.trace_id, otel_trace_id: kind === 'otel_trace' ? id : call.otel_trace_id } as z.input<typeof eventFields>,
  }))
  .pipe(z.object({ id: z.string(), kind: callKind, row: eventFields }));

const attributeMap = z.record(z.string(), z.string());

const spanFields = z.object({
  trace_id: z.string(),
  span_id: z.string(),
  parent_span_id: z.string(),
  name: z.string(),
  kind: z.string(),
  service: z.string(),
  start_time: z.string(),
  duration_ns: count,
  status_code: z.string(),
  status_message: z.string(),
  attributes: attributeMap,
  events: z.array(z.object({ time: z.string(), name: z.string(), attributes: attributeMap })),
});

const spanRow = z
  .object({ trace_id: z.string(), span_id: z.string(), start_time: z.string(), span: jsonFields(SPAN_FIELDS) })
  .transform(({ span, ...key }) => ({ ...span, ...key }) as z.input<typeof spanFields>)
  .pipe(spanFields);

// A row of callsAndSpansSql: a call row or a span row, as the reads of each alone give them.
const part = { key: z.string(), sub: z.string(), time: z.string(), body: z.string() };
const callOrSpanRow = z.union([
  z
    .object({ what: z.literal('call'), ...part })
    .transform((r) => ({ id: r.key, kind: r.sub, timestamp: r.time, call: r.body }))
    .pipe(callRow)
    .transform((call) => ({ call })),
  z
    .object({ what: z.literal('span'), ...part })
    .transform((r) => ({ trace_id: r.key, span_id: r.sub, start_time: r.time, span: r.body }))
    .pipe(spanRow)
    .transform((span) => ({ span })),
]);

/** Of `rows` (in time order), one per event_id: the row that replaced the call's first report when there is one. */
function oneRowPerCall(rows: readonly EventRow[]): EventRow[] {
  const byId = new Map<string, EventRow>();
  for (const row of rows) {
    const kept = byId.get(row.event_id);
    if (!kept || (kept.counted && !row.counted)) byId.set(row.event_id, row);
  }
  return [...byId.values()].sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : a.event_id < b.event_id ? -1 : a.event_id > b.event_id ? 1 : 0));
}

/** What a read of at most `limit` rows gave, or, when it reached the limit, the same read in order (`ordered`) and `full`. */
async function completed<T>(rows: T[], limit: number, ordered: () => Promise<T[]>): Promise<{ rows: T[]; full: boolean }> {
  return rows.length < limit ? { rows, full: false } : { rows: await ordered(), full: true };
}

/** The rows `read` gives, at most `limit`: unordered first, and again in order when that reaches the limit. */
async function readPoint<T>(read: (ordered: boolean) => Promise<T[]>, limit: number): Promise<{ rows: T[]; full: boolean }> {
  return completed(await read(false), limit, () => read(true));
}

// What one read asks for: one row more than a trace answers, so that a read that reaches it is known to
// have more; the calls up to two rows each (see callsSql). Exported for the API bench's engine floor.
export const CALL_LIMIT = 2 * (MAX_TRACE_CALLS + 1);
export const SPAN_LIMIT = MAX_TRACE_SPANS + 1;

/** The read of the calls under `ids` (at most CALL_LIMIT rows), unordered or in order. */
function callsReader(clickhouse: ClickHouseClient, tenant: string, ids: string[]) {
  return (ordered: boolean) => selectRows(clickhouse, 'traceCalls', callsSql(ordered), { tenant, ids, limit: CALL_LIMIT }, callRow);
}

/** The read of the spans of `traceIds` (at most SPAN_LIMIT rows), unordered or in order. */
function spansReader(clickhouse: ClickHouseClient, tenant: string, traceIds: string[]) {
  return (ordered: boolean) => selectRows(clickhouse, 'traceSpans', spansSql(ordered), { tenant, traceIds, limit: SPAN_LIMIT }, spanRow);
}

/**
 * The calls under `ids` and the spans of `traceId`, as readPoint reads each: one statement for both,
 * and a read that reaches its limit is read again alone, in order.
 */
async function readCallsAndSpans(clickhouse: ClickHouseClient, tenant: string, ids: string[], traceId: string) {
  const rows = await selectRows(clickhouse, 'traceCallsAndSpans', callsAndSpansSql(), { tenant, ids, traceIds: [traceId], callLimit: CALL_LIMIT, spanLimit: SPAN_LIMIT }, callOrSpanRow);
  const calls = rows.flatMap((r) => ('call' in r ? [r.call] : []));
  const spans = rows.flatMap((r) => ('span' in r ? [r.span] : []));
  return Promise.all([
    completed(calls, CALL_LIMIT, () => callsReader(clickhouse, tenant, ids)(true)),
    completed(spans, SPAN_LIMIT, () => spansReader(clickhouse, tenant, [traceId])(true)),
  ]);
}

/** Null when the tenant has neither a call nor a span with that id. */
export async function queryTrace(tenant: string, clickhouse: ClickHouseClient, id: string): Promise<Trace | null> {
  const otelTraceId = otelTraceIdOf(id);
  const readSpans = async (traceIds: string[]) =>
    traceIds.length === 0 ? { rows: [], full: false } : readPoint(spansReader(clickhouse, tenant, traceIds), SPAN_LIMIT);
  // An OpenTelemetry id's spans are read with its calls, in one statement. Spans of other OpenTelemetry
  // traces among the calls (a gateway trace id's, or a call that carries another) are read once the
  // calls tell them.
  const ids = [...new Set([id, otelTraceId ?? id])];
  const [read, asked] = otelTraceId
    ? await readCallsAndSpans(clickhouse, tenant, ids, otelTraceId)
    : [await readPoint(callsReader(clickhouse, tenant, ids), CALL_LIMIT), { rows: [], full: false }];
  // The id as a gateway trace id, and its OpenTelemetry form as an OpenTelemetry trace id.
  const rows = read.rows.filter((r) => r.id === (r.kind === 'trace' ? id : otelTraceId)).map((r) => r.row);
  const found = oneRowPerCall(rows);
  const calls = found.slice(0, MAX_TRACE_CALLS).map(toEntry);
  const traceIds = [...new Set([...(otelTraceId ? [otelTraceId] : []), ...calls.flatMap((c) => (c.otelTraceId ? [c.otelTraceId] : []))])].sort();
  const more = await readSpans(traceIds.filter((t) => t !== otelTraceId));
  const spans = oneRowPerSpan([...asked.rows, ...more.rows]);
  if (calls.length === 0 && spans.length === 0) return null;
  return {
    id,
    calls,
    otelTraceIds: [...new Set([...calls.flatMap((c) => (c.otelTraceId ? [c.otelTraceId] : [])), ...spans.map((s) => s.trace_id)])].sort(),
    spans: spanTree(spans.slice(0, MAX_TRACE_SPANS).map(toSpan)),
    truncated: found.length > MAX_TRACE_CALLS || read.full || asked.full || more.full || spans.length > MAX_TRACE_SPANS,
  };
}

/** Spans in start order (then by span id), a span delivered twice once. */
function oneRowPerSpan<T extends { trace_id: string; span_id: string; start_time: string }>(spans: T[]): T[] {
  const key = (s: T) => `${s.start_time}/${s.span_id}`;
  const seen = new Set<string>();
  return spans
    .sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))
    .filter((s) => {
      const id = `${s.trace_id}/${s.span_id}`;
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
}

function toSpan(r: z.output<typeof spanRow>): Span {
  return {
    traceId: r.trace_id,
    spanId: r.span_id,
    parentSpanId: r.parent_span_id || null,
    depth: 0,
    name: r.name,
    kind: r.kind,
    service: r.service,
    startTime: isoFromClickHouse(r.start_time),
    durationMs: msFromNs(r.duration_ns) ?? 0,
    statusCode: r.status_code,
    statusMessage: r.status_message || null,
    attributes: toAttributes(r.attributes),
    events: r.events.map((e) => ({ time: isoFromClickHouse(e.time), name: e.name, attributes: toAttributes(e.attributes) })),
  };
}

/**
 * `spans` (in start order) depth first: roots in start order, each followed by its subtree. Spans in
 * a parent cycle (no root above them) follow at depth 0, so none is lost.
 */
function spanTree(spans: Span[]): Span[] {
  const id = (traceId: string, spanId: string) => `${traceId}/${spanId}`;
  const known = new Set(spans.map((s) => id(s.traceId, s.spanId)));
  const children = new Map<string, Span[]>();
  const roots: Span[] = [];
  for (const span of spans) {
    const parent = span.parentSpanId && id(span.traceId, span.parentSpanId);
    if (parent && known.has(parent)) children.set(parent, [...(children.get(parent) ?? []), span]);
    else roots.push(span);
  }
  const out: Span[] = [];
  const stack = roots.reverse().map((span) => ({ span, depth: 0 }));
  while (stack.length > 0) {
    const { span, depth } = stack.pop()!;
    out.push({ ...span, depth });
    const below = children.get(id(span.traceId, span.spanId)) ?? [];
    for (let i = below.length - 1; i >= 0; i--) stack.push({ span: below[i]!, depth: depth + 1 });
  }
  const placed = new Set(out.map((s) => id(s.traceId, s.spanId)));
  return [...out, ...spans.filter((s) => !placed.has(id(s.traceId, s.spanId)))];
}

function toAttributes(map: Record<string, string>): Attribute[] {
  return Object.entries(map)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => ({ key, value }));
}
