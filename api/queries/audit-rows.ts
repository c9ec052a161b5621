/**
 * What every raw-record question shares: an audit event's columns and their mapping, which rows to
 * show, and paging.
 *
 * Nothing here reads FINAL. The writer never stores an event_id twice, except for a call reported both
 * ways in two batches (its span and its audit record, in either order): the second report is merged
 * into the first and stored under the first's event_id with `counted = false` (sql/0005), stamped at
 * the call's start, which may be earlier than the first row; FINAL would show only that row. So a row
 * is shown unless it is `counted` and its event_id has such a replacement. Rows are read from
 * audit_timeline_v1 (sql/0010), sorted by time, where the replaced row has a marker at its key
 * (sql/0024: source 'replaced'), or the merged row itself when it has that key; a read of the rows
 * around a key tells from them (shownInKeyOrder), one that may not see them looks the replacement up
 * (`replaced` in audit_lookup_v1, visible).
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { microsFromDecimal, money, type Money } from '../money.ts';
import { isoFromClickHouse, msFromNs } from './params.ts';
import { count, selectRows } from './select-rows.ts';

export type Outcome = 'OK' | 'ERROR' | 'DENIED';

export interface AuditLogEntry {
  eventId: string;
  /** RFC 3339, UTC, nanosecond precision. */
  timestamp: string;
  /** The gateway's trace id (go-micro `trace_id`). */
  traceId: string;
  agent: string;
  agentVersion: string;
  sessionId: string;
  /** Null for an anonymous call. */
  accountId: string | null;
  gateway: string;
  transport: string;
  service: string;
  tool: string;
  scopesRequired: string[];
  allowed: boolean;
  outcome: Outcome;
  deniedReason: string | null;
  durationMs: number;
  error: string | null;
  otelTraceId: string | null;
  otelSpanId: string | null;
  requestBytes: number;
  responseBytes: number;
  /** Null when the price is not known. */
  costUsd: Money | null;
  /** `audit` (the gateway's audit record) or `span` (derived from an `mcp.tool.call` span). */
  source: string;
  attributes: Array<{ key: string; value: string }>;
}

/** A row's place in time order: (timestamp as ClickHouse text, event_id). */
export interface EventKey {
  timestamp: string;
  eventId: string;
}

/**
 * The fields of audit_timeline_v1's `entry` JSON array, in its order (sql/0022 writes it): a row's
 * columns beside its key. calls_by_id_v1's `call` (sql/0018) is the key's event_id, source and counted,
 * then these.
 */
export const ENTRY_FIELDS = [
  'trace_id', 'otel_trace_id', 'otel_span_id', 'session_id', 'account_id', 'agent', 'agent_version', 'gateway', 'transport', 'service',
  'tool', 'scopes_required', 'allowed', 'is_error', 'denied_reason', 'error', 'duration_ns', 'request_bytes', 'response_bytes', 'cost_usd',
  'attributes',
] as const;

/**
 * What a read of audit_timeline_v1 selects: the row's key, what tells a span fact, and the rest as one
 * JSON column (a read costs a stream per column, sql/0022).
 */
export const EVENT_COLUMNS = 'event_id, timestamp, source, counted, entry';

/** A JSON array of `fields`, as an object with those names. */
export function jsonFields<F extends readonly string[]>(fields: F) {
  return z.string().transform((text, ctx) => {
    try {
      const values: unknown = JSON.parse(text);
      if (Array.isArray(values) && values.length === fields.length) return Object.fromEntries(fields.map((f, i) => [f, values[i]]));
    } catch {
      // reported below
    }
    ctx.addIssue({ code: 'custom', message: `not a JSON array of ${fields.length} fields` });
    return z.NEVER;
  });
}

/** An audit event's fields as stored. */
export const eventFields = z.object({
  event_id: z.string(),
  timestamp: z.string(),
  trace_id: z.string(),
  agent: z.string(),
  agent_version: z.string(),
  session_id: z.string(),
  account_id: z.string(),
  gateway: z.string(),
  transport: z.string(),
  service: z.string(),
  tool: z.string(),
  scopes_required: z.array(z.string()),
  allowed: z.boolean(),
  is_error: z.boolean(),
  denied_reason: z.string(),
  duration_ns: count,
  error: z.string(),
  otel_trace_id: z.string(),
  otel_span_id: z.string(),
  request_bytes: count,
  response_bytes: count,
  cost_usd: z.string().nullable(),
  source: z.string(),
  counted: z.boolean(),
  attributes: z.record(z.string(), z.string()),
});
export type EventRow = z.output<typeof eventFields>;

/** A row of audit_timeline_v1 as EVENT_COLUMNS reads it. */
export const eventRow = z
  .object({ event_id: z.string(), timestamp: z.string(), source: z.string(), counted: z.boolean(), entry: jsonFields(ENTRY_FIELDS) })
  .transform(({ entry, ...key }) => ({ ...entry, ...key }) as z.input<typeof eventFields>)
  .pipe(eventFields);

export function outcomeOf(r: { allowed: boolean; is_error: boolean }): Outcome {
  return !r.allowed ? 'DENIED' : r.is_error ? 'ERROR' : 'OK';
}

export function toEntry(r: EventRow): AuditLogEntry {
  return {
    eventId: r.event_id,
    timestamp: isoFromClickHouse(r.timestamp),
    traceId: r.trace_id,
    agent: r.agent,
    agentVersion: r.agent_version,
    sessionId: r.session_id,
    accountId: r.account_id || null,
    gateway: r.gateway,
    transport: r.transport,
    service: r.service,
    tool: r.tool,
    scopesRequired: r.scopes_required,
    allowed: r.allowed,
    outcome: outcomeOf(r),
    deniedReason: r.denied_reason || null,
    durationMs: msFromNs(r.duration_ns) ?? 0,
    error: r.error || null,
    otelTraceId: r.otel_trace_id || null,
    otelSpanId: r.otel_span_id || null,
    requestBytes: r.request_bytes,
    responseBytes: r.response_bytes,
    costUsd: r.cost_usd == null ? null : money(microsFromDecimal(r.cost_usd)),
    source: r.source,
    attributes: Object.entries(r.attributes)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, value]) => ({ key, value })),
  };
}

/** A row's key as a look-up by id gives it: `replaceable` when it is a call's first row (`counted`), which a merged row could replace. */
export interface KeyRow extends EventKey {
  replaceable: boolean;
}

/** Of the event ids `ids`, those with a 'replaced' key: see replacedAmong. */
const REPLACED_SQL = `SELECT DISTINCT key FROM audit_lookup_v1
WHERE tenant = {tenant:String} AND kind = 'replaced' AND key IN {ids:Array(String)}
SETTINGS max_threads = 1`;

/** Of `ids`, those whose call's first row was replaced by the merge of both its reports (sql/0005). */
export async function replacedAmong(clickhouse: ClickHouseClient, tenant: string, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await selectRows(clickhouse, 'replacedEvents', REPLACED_SQL, { tenant, ids: distinct(ids) }, z.object({ key: z.string() }));
  return new Set(rows.map((r) => r.key));
}

/**
 * Of `items` (in order), those to show: without repeats of a key and without first rows replaced by
 * the merge of their call's two reports. Looks replacements up only when there are first rows among them.
 */
export async function visible<T>(clickhouse: ClickHouseClient, tenant: string, items: readonly T[], keyOf: (item: T) => KeyRow): Promise<T[]> {
  const replaced = await replacedAmong(clickhouse, tenant, items.map(keyOf).filter((k) => k.replaceable).map((k) => k.eventId));
  const seen = new Set<string>();
  return items.filter((item) => {
    const k = keyOf(item);
    const id = `${k.timestamp}/${k.eventId}`;
    if (seen.has(id) || (k.replaceable && replaced.has(k.eventId))) return false;
    seen.add(id);
    return true;
  });
}

/** The source of audit_timeline_v1's marker rows (sql/0024), which no read shows. */
export const MARKER_SOURCE = 'replaced';

/**
 * Of `rows`, read from audit_timeline_v1 in key order with every row of each key they reach (markers
 * included, the rows not `counted` of a key before the rest: ORDER BY ..., counted ASC), those to show:
 * not a marker, not a repeat of a key, not a `counted` row after a row of its key that is not (a marker,
 * or the merged row stamped at the same key) — and the order keeps that true across reads: a read that
 * ends on such a row goes on strictly after its key.
 */
export function shownInKeyOrder(rows: readonly EventRow[]): EventRow[] {
  const seen = new Set<string>();
  let replacedKey: string | undefined;
  return rows.filter((row) => {
    const key = `${row.timestamp}/${row.event_id}`;
    if (!row.counted) replacedKey = key;
    else if (key === replacedKey) return false;
    if (row.source === MARKER_SOURCE || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function keyOfRow(r: EventRow): KeyRow {
  return { timestamp: r.timestamp, eventId: r.event_id, replaceable: r.counted };
}

export interface Page<T> {
  items: Array<{ key: EventKey; node: T }>;
  hasNextPage: boolean;
}

/** Most rows one read asks for: a read asks for the rows still missing, doubled each round. */
const MAX_READ = 16_384;

/**
 * A page of a list: `read` gives the list's items in its order, after a key (or from the start); of
 * them, the first `first` to show (`show` tells which of a read's items), and whether one more follows.
 * Items a replacement hides (or a repeat) are skipped, and the read goes on after them. The first read
 * asks for the page's size (and one more) divided by `shownShare`, the share of the items read that a
 * page is expected to show; `rowsRead` and `rowsShown` count what this page read and showed.
 */
export async function pageOf<T>(
  read: (after: EventKey | undefined, limit: number) => Promise<T[]>,
  keyOf: (item: T) => KeyRow,
  show: (items: T[]) => T[] | Promise<T[]>,
  first: number,
  after: EventKey | undefined,
  shownShare = 1,
): Promise<{ items: T[]; hasNextPage: boolean; rowsRead: number; rowsShown: number }> {
  const shown: T[] = [];
  let from = after;
  let rowsRead = 0;
  for (let round = 0; shown.length <= first; round++) {
    const missing = first + 1 - shown.length;
    const limit = Math.min(MAX_READ, round === 0 ? Math.ceil(missing / shownShare) : missing * 2 ** round);
    const items = await read(from, limit);
    rowsRead += items.length;
    shown.push(...(await show(items)));
    if (items.length < limit) break;
    from = keyOf(items[items.length - 1]!);
  }
  return { items: shown.slice(0, first), hasNextPage: shown.length > first, rowsRead, rowsShown: shown.length };
}

function distinct(values: readonly string[]): string[] {
  return [...new Set(values)];
}
