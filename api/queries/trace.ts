/**
 * One trace by either of its ids: the gateway's (go-micro `mcp.trace_id`: the audit record's trace_id,
 * a UUID or any string) or OpenTelemetry's (32 hex digits). Answers the calls (audit events) that
 * carry the id, in time order, and the span tree of every OpenTelemetry trace among them.
 *
 * The calls' keys come from audit_lookup_v1 by primary key (tenant, kind, id), their rows from
 * audit_timeline_v1 by theirs, in one statement; the spans from spans_v1 by its primary key (tenant, trace_id), on the
 * days of the calls. A span delivered twice is listed once (LIMIT 1 BY, not FINAL, which would read
 * every partition of the tenant's spans).
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { otelTraceIdOf } from './audit-params.ts';
import { formatClickHouse, parseRfc3339 } from '../../model/timestamp.ts';
import { EVENT_COLUMNS, eventRow, keyOfRow, replacedAmong, toEntry, type AuditLogEntry, type EventRow } from './audit-rows.ts';
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

// The calls' rows by their keys, in one statement: the keys (by audit_lookup_v1's primary key) are a
// set the timeline's primary key is searched with.
const CALLS_SQL = `
SELECT ${EVENT_COLUMNS}
FROM audit_timeline_v1
WHERE tenant = {tenant:String}
  AND (timestamp, event_id) IN (
    SELECT timestamp, event_id
    FROM audit_lookup_v1
    WHERE tenant = {tenant:String}
      AND ((kind = 'trace' AND key = {id:String}) OR (kind = 'otel_trace' AND key = {otelTraceId:String}))
    ORDER BY timestamp ASC, event_id ASC
    LIMIT {limit:UInt32})
ORDER BY timestamp ASC, event_id ASC
LIMIT 1 BY timestamp, event_id`;

const REPLACEMENTS_SQL = `
SELECT ${EVENT_COLUMNS}
FROM audit_events_v1
WHERE tenant = {tenant:String}
  AND event_id IN {ids:Array(UUID)}
  AND NOT counted`;

function spansSql(window: boolean): string {
  return `
SELECT
    trace_id,
    span_id,
    parent_span_id,
    name,
    kind,
    service,
    start_time,
    duration_ns,
    status_code,
    status_message,
    attributes,
    events
FROM spans_v1
WHERE tenant = {tenant:String}
  AND trace_id IN {traceIds:Array(String)}${
    window
      ? `
  AND start_time >= {from:DateTime64(9, 'UTC')}
  AND start_time <= {to:DateTime64(9, 'UTC')}`
      : ''
  }
ORDER BY start_time ASC, span_id ASC
LIMIT 1 BY trace_id, span_id
LIMIT {limit:UInt32}`;
}

/** ClickHouse DateTime64(9) text `days` days later (or earlier), clamped to what the type holds. */
function shiftDays(text: string, days: number): string {
  const instant = parseRfc3339(`${text.replace(' ', 'T')}Z`)!;
  const epochMs = Math.min(Math.max(instant.epochMs + days * 86_400_000, 0), Date.UTC(2262, 3, 11));
  return formatClickHouse({ epochMs, subMsNanos: instant.subMsNanos });
}

const attributeMap = z.record(z.string(), z.string());

const spanRow = z.object({
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

/** Null when the tenant has neither a call nor a span with that id. */
export async function queryTrace(tenant: string, clickhouse: ClickHouseClient, id: string): Promise<Trace | null> {
  const otelTraceId = otelTraceIdOf(id);
  const rows = await selectRows(clickhouse, 'traceCalls', CALLS_SQL, { tenant, id, otelTraceId: otelTraceId ?? '', limit: MAX_TRACE_CALLS + 1 }, eventRow);
  const found = rows.slice(0, MAX_TRACE_CALLS);
  // A span fact replaced by its audit record (sql/0005) is shown as that record, which may carry
  // neither this id nor a time near the span's: it is read by its event_id. The span's OpenTelemetry
  // trace is the call's all the same.
  const replaced = await replacedAmong(clickhouse, tenant, found.map(keyOfRow).filter((k) => k.spanFact).map((k) => k.eventId));
  const missing = [...replaced].filter((id) => !found.some((r) => r.event_id === id && !r.counted));
  const replacements = missing.length === 0 ? [] : await selectRows(clickhouse, 'traceReplacements', REPLACEMENTS_SQL, { tenant, ids: missing }, eventRow);
  const byId = new Map<string, EventRow>();
  for (const r of [...found, ...replacements]) {
    if (!byId.has(r.event_id) && !(keyOfRow(r).spanFact && replaced.has(r.event_id))) byId.set(r.event_id, r);
  }
  const calls = [...byId.values()].sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0)).map(toEntry);

  const otelTraceIds = [...new Set([...(otelTraceId ? [otelTraceId] : []), ...found.flatMap((r) => (r.otel_trace_id ? [r.otel_trace_id] : []))])].sort();
  // A trace's spans start within a day of its calls: only those days are read.
  const times = found.map((r) => r.timestamp).sort();
  const window = times.length === 0 ? {} : { from: shiftDays(times[0]!, -1), to: shiftDays(times[times.length - 1]!, 1) };
  const spans =
    otelTraceIds.length === 0
      ? []
      : await selectRows(clickhouse, 'traceSpans', spansSql(times.length > 0), { tenant, traceIds: otelTraceIds, limit: MAX_TRACE_SPANS + 1, ...window }, spanRow);
  if (calls.length === 0 && spans.length === 0) return null;
  return {
    id,
    calls,
    otelTraceIds: [...new Set([...calls.flatMap((c) => (c.otelTraceId ? [c.otelTraceId] : [])), ...spans.map((s) => s.trace_id)])].sort(),
    spans: spanTree(spans.slice(0, MAX_TRACE_SPANS).map(toSpan)),
    truncated: rows.length > MAX_TRACE_CALLS || spans.length > MAX_TRACE_SPANS,
  };
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
