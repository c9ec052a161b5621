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
                  WHERE active AND database = currentDatabase() AND table IN ('audit_events_v1', 'call_reports_v1')
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

/**
 * How far apart two reports of one call can be stamped: the longest call (LIMITS.maxDurationNs, a
 * week), plus a day for the clocks of whatever stamped them.
 */
export const REPORTS_APART_MAX_DAYS = Math.ceil(LIMITS.maxDurationNs / 86_400e9) + 1;

/** `YYYY-MM-DD HH:MM:SS.fffffffff`, as toAuditRow writes a timestamp. */
const CLICKHOUSE_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{9}$/;

/**
 * `AND timestamp BETWEEN ...`: from the earliest of `rows`' timestamps to the latest, widened by
 * `days` on each side. Empty (no bound) if a timestamp is not in the canonical form, which sorts as
 * text in time order.
 */
export function timeBounds(rows: readonly AuditRow[], days: number): string {
  let min = rows[0]!.timestamp;
  let max = min;
  for (const { timestamp } of rows) {
    if (!CLICKHOUSE_TIME.test(timestamp)) return '';
    if (timestamp < min) min = timestamp;
    else if (timestamp > max) max = timestamp;
  }
  return `AND timestamp BETWEEN toDateTime64('${min}', 9, 'UTC') - INTERVAL ${days} DAY AND toDateTime64('${max}', 9, 'UTC') + INTERVAL ${days} DAY`;
}
