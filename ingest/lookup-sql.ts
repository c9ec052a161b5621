/**
 * The SQL pieces of the writer's look-ups: id lists as string literals, time bounds, and how many
 * granules a table has (whether a look-up should check the primary key at all).
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { LIMITS, type AuditRow } from '../model/audit-event.ts';

/**
 * Look-ups go in slices of at most this many ids, which bounds their query text (MAX_QUERY_SIZE in
 * core/clickhouse.ts). Slicing began when the lists were `Array(UUID)` parameters, which the embedded
 * engine's analyzer turned from linear to seconds past ~65k elements (30k ids 62 ms, 70k ids 8 s).
 */
const LOOKUP_SLICE = 10_000;

export function* chunks<T>(rows: readonly T[]): Generator<T[]> {
  for (let i = 0; i < rows.length; i += LOOKUP_SLICE) yield rows.slice(i, i + LOOKUP_SLICE);
}

/**
 * Values as one ClickHouse string literal holding their JSON array, for `JSONExtract`. In a ClickHouse
 * string literal a backslash escapes and a quote ends, so both are escaped; JSON has no other way to
 * end the literal.
 */
export function jsonLiteral(values: readonly string[]): string {
  return stringLiteral(JSON.stringify(values));
}

/** A ClickHouse string literal: a backslash escapes and a quote ends, so both are escaped. */
function stringLiteral(text: string): string {
  // Most lists are of UUIDs and hex ids: nothing to escape, and no copy of a large string to make.
  if (!text.includes('\\') && !text.includes("'")) return `'${text}'`;
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * `('a', 'b')`: a short list (the batch's tenants) as literals, which the primary key is checked
 * against whatever the writer's `indexSetting` says about the lists of ids.
 */
export function stringList(values: readonly string[]): string {
  return `(${values.map(stringLiteral).join(', ')})`;
}

/** See the writer's `indexSetting`: with 3 random keys per granule, e^-3 of the granules hold none of them. */
export const KEYS_PER_GRANULE_TO_SCAN = 3;

/** How long a count of the tables' granules is used before it is counted again. */
const GRANULES_COUNTED_FOR_MS = 10_000;

/**
 * The granules (marks) of each table in the current database's active parts (a table with none has no
 * entry), counted again when the count is older than GRANULES_COUNTED_FOR_MS. Undefined if
 * `system.parts` can't be read: then every look-up checks the primary key, as ClickHouse does by default.
 */
export function granuleCounter(clickhouse: ClickHouseClient): () => Promise<Map<string, number> | undefined> {
  let counting: Promise<Map<string, number> | undefined> | undefined;
  let countedAt = -Infinity;
  return () => {
    if (counting === undefined || performance.now() - countedAt > GRANULES_COUNTED_FOR_MS) {
      countedAt = performance.now();
      counting = clickhouse
        .query({
          query: `SELECT table, sum(marks) AS marks FROM system.parts
                  WHERE active AND database = currentDatabase() AND table IN ('audit_events_v1', 'call_reports_v2')
                  GROUP BY table`,
          format: 'JSONEachRow',
        })
        .then((r) => r.json<{ table: string; marks: string | number }>())
        .then((rows) => new Map(rows.map((r) => [r.table, Number(r.marks)])))
        .catch(() => undefined);
    }
    return counting;
  };
}

/** How far apart the clocks that stamp one call's two reports may be: a day. */
const CLOCKS_APART_S = 86_400;

/**
 * `AND timestamp BETWEEN ...` for the look-up of the calls' other reports: the batch's timestamps
 * widened by how far apart two reports of one call can be stamped. The span is stamped at the call's
 * start and the audit record at its end, so a report's other one lies within its duration of it, or,
 * for an allowed call that tells none (0), within the longest a call may last (LIMITS.maxDurationNs);
 * plus a day for the clocks. The batch's longest duration widens the whole window: a live batch reads
 * about two days, not every month its reports could span.
 */
export function callTimeBounds(rows: readonly AuditRow[]): string {
  let longestNs = 0;
  for (const row of rows) longestNs = Math.max(longestNs, row.allowed && row.duration_ns === 0 ? LIMITS.maxDurationNs : row.duration_ns);
  return timeBounds(rows, Math.ceil(longestNs / 1e9) + CLOCKS_APART_S);
}

/** `YYYY-MM-DD HH:MM:SS.fffffffff`, as toAuditRow writes a timestamp. */
const CLICKHOUSE_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{9}$/;

/**
 * `AND timestamp BETWEEN ...`: from the earliest of `rows`' timestamps to the latest, widened by
 * `seconds` on each side. Empty (no bound) if a timestamp is not in the canonical form, which sorts as
 * text in time order.
 */
export function timeBounds(rows: readonly AuditRow[], seconds: number): string {
  let min = rows[0]!.timestamp;
  let max = min;
  for (const { timestamp } of rows) {
    if (!CLICKHOUSE_TIME.test(timestamp)) return '';
    if (timestamp < min) min = timestamp;
    else if (timestamp > max) max = timestamp;
  }
  return `AND timestamp BETWEEN toDateTime64('${min}', 9, 'UTC') - toIntervalSecond(${seconds}) AND toDateTime64('${max}', 9, 'UTC') + toIntervalSecond(${seconds})`;
}
