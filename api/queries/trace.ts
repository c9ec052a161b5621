/** The spans of one trace, in start order. Reads `spans_v1 FINAL` so that a span delivered twice is listed once. */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { isoFromClickHouse, msFromNs } from './params.ts';
import { count, selectRows } from './select-rows.ts';

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
  spanId: string;
  /** Null for a root span. */
  parentSpanId: string | null;
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
  traceId: string;
  spans: Span[];
}

const SQL = `
SELECT
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
FROM spans_v1 FINAL
WHERE tenant = {tenant:String}
  AND trace_id = {traceId:String}
ORDER BY start_time ASC, span_id ASC`;

const attributeMap = z.record(z.string(), z.string());

const row = z.object({
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

/** Null when the tenant has no span of that trace. */
export async function queryTrace(clickhouse: ClickHouseClient, tenant: string, traceId: string): Promise<Trace | null> {
  const rows = await selectRows(clickhouse, 'trace', SQL, { tenant, traceId }, row);
  if (rows.length === 0) return null;
  return {
    traceId,
    spans: rows.map((r) => ({
      spanId: r.span_id,
      parentSpanId: r.parent_span_id || null,
      name: r.name,
      kind: r.kind,
      service: r.service,
      startTime: isoFromClickHouse(r.start_time),
      durationMs: msFromNs(r.duration_ns) ?? 0,
      statusCode: r.status_code,
      statusMessage: r.status_message || null,
      attributes: toAttributes(r.attributes),
      events: r.events.map((e) => ({ time: isoFromClickHouse(e.time), name: e.name, attributes: toAttributes(e.attributes) })),
    })),
  };
}

function toAttributes(map: Record<string, string>): Attribute[] {
  return Object.entries(map)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => ({ key, value }));
}
