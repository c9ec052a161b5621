/**
 * Where an aggregate reads its calls from (sql/0008): whole weeks from `calls_1w_v1`, whole days around
 * them from `calls_1d_v1`, whole quarters of a day and hours at the edges from `calls_6h_v1` and
 * `calls_1h_v1`, and what is left at each end from the raw calls in time order, `audit_timeline_v1`
 * (with an account filter, everything from that account's calls in `calls_by_account_v1`), so that a
 * range is exact to the nanosecond while its middle costs a few hundred rows per day or week. Each
 * rollup keeps its calls once per dimension set (`dims`); a question reads the smallest set holding
 * every dimension it groups or filters by, and a level without such a set is skipped (its span read
 * from the next finer one).
 *
 * `callsSource()` returns one subquery whose rows all have the same columns, whatever table they come
 * from: the caller merges them (sum, max, quantilesDDMerge, min, max) grouped as it needs; or, for
 * distinct counts, only their keys.
 */
import { epochNanos, formatClickHouse, instantFromEpochNanos, parseRfc3339 } from '../../model/timestamp.ts';
import { MARKER_SOURCE } from './audit-rows.ts';
import { filterDimensions, filterSql, RAW_OUTCOME, type AggregateFilter, type Dimension } from './filter.ts';
import type { TimeRange } from './params.ts';

const SECOND = 1_000_000_000n;
export const HOUR_SECONDS = 3600;
export const DAY_SECONDS = 86_400;
/** Weeks of the rollups start at multiples of 7 days since 1970-01-01 (a Thursday). */
export const WEEK_SECONDS = 7 * DAY_SECONDS;

/** The dimension sets of sql/0008, cheapest first (rows per day with 50 agents, 200 tools, 1,000 accounts). */
const DIMENSION_SETS: ReadonlyArray<{ id: number; dims: readonly Dimension[]; sketch?: false }> = [
  { id: 1, dims: ['agent'] },
  { id: 2, dims: ['service', 'tool'] },
  { id: 4, dims: ['account'] },
  { id: 3, dims: ['agent', 'service', 'tool'] },
  // Its rows carry no duration sketch (sql/0008): for keys and sums only.
  { id: 5, dims: ['agent', 'account'], sketch: false },
];

interface Level {
  table: string;
  /** Prefix of its time parameters. */
  param: string;
  seconds: number;
  sets: readonly number[];
}

const LEVELS: readonly Level[] = [
  { table: 'calls_1w_v1', param: 'w', seconds: WEEK_SECONDS, sets: [1, 2, 3, 4, 5] },
  { table: 'calls_1d_v1', param: 'd', seconds: DAY_SECONDS, sets: [1, 2, 3, 4, 5] },
  { table: 'calls_6h_v1', param: 's', seconds: 6 * HOUR_SECONDS, sets: [1, 2, 4] },
  { table: 'calls_1h_v1', param: 'h', seconds: HOUR_SECONDS, sets: [1, 2, 4] },
];

export interface Segment {
  /** A rollup table, or undefined for audit_events_v1. */
  level: Level | undefined;
  from: bigint;
  to: bigint;
}

/** The smallest dimension set holding every dimension asked for (and sketches, unless only keys are); undefined when none does. */
export function dimensionSet(need: Iterable<Dimension>, keysOnly = false): number | undefined {
  const wanted = [...need];
  return DIMENSION_SETS.find((s) => (keysOnly || s.sketch !== false) && wanted.every((d) => s.dims.includes(d)))?.id;
}

/**
 * Splits [from, to) (epoch nanoseconds) into segments, each read from the coarsest usable level: whole
 * units of that level in the middle, the rest recursively at finer levels, raw at the last.
 */
export function planSegments(from: bigint, to: bigint, levels: readonly Level[]): Segment[] {
  if (from >= to) return [];
  const [level, ...finer] = levels;
  if (!level) return [{ level: undefined, from, to }];
  const unit = BigInt(level.seconds) * SECOND;
  const start = ceilTo(from, unit);
  const end = floorTo(to, unit);
  if (start >= end) return planSegments(from, to, finer);
  return [...planSegments(from, start, finer), { level, from: start, to: end }, ...planSegments(end, to, finer)];
}

export interface SourceOptions {
  range: TimeRange;
  filter: AggregateFilter;
  /** Dimensions the caller groups by (the filter's are added). */
  need: readonly Dimension[];
  /** Timeseries step in seconds: a level is used only when its unit divides the step. */
  stepSeconds?: number;
  /** Only the keys (t, dimensions, outcome), for distinct counts: no metric is read or computed. */
  keysOnly?: boolean;
  /**
   * false: the question merges no duration sketch, so a cache entry is filled without them (merging the
   * rollups' sketches is most of a fill's work; the entry's are then empty).
   */
  sketch?: false;
}

export interface Source {
  sql: string;
  params: Record<string, string | number>;
  /** Which tables the plan reads, for tests and the bench. */
  segments: Segment[];
  /**
   * Set when `sql` is the rows of one closed-bucket entry and nothing else (closed-buckets.ts): no raw
   * calls beside them and no guard of their own; another source of the same statement guards the entry.
   * A question may then take the entry's keys from ClosedBuckets.keysOf() instead of reading `sql`.
   */
  entry?: EntryRef;
}

/** A closed-bucket entry: its id in closed_buckets_v1 and how many rows it holds. */
export interface EntryRef {
  id: string;
  rows: number;
}

const METRICS = `, calls, errors, denials, duration_sum_ns, duration_max_ns, duration_sketch, cost_usd_sum, priced_calls, first_seen, last_seen`;

const RAW_METRICS = `,
        count()                                       AS calls,
        countIf(is_error)                             AS errors,
        countIf(NOT allowed)                          AS denials,
        sumIf(duration_ns, allowed)                   AS duration_sum_ns,
        maxIf(duration_ns, allowed)                   AS duration_max_ns,
        quantileDDStateIf(0.01, 0.5)(duration_ns, allowed) AS duration_sketch,
        sum(toDecimal128(ifNull(cost_usd, 0), 9))     AS cost_usd_sum,
        countIf(cost_usd IS NOT NULL)                 AS priced_calls,
        min(timestamp)                                AS first_seen,
        max(timestamp)                                AS last_seen`;

const DIMENSION_COLUMNS: ReadonlyArray<[Dimension, string]> = [
  ['agent', 'agent'],
  ['service', 'service'],
  ['tool', 'tool'],
  ['account', 'account_id'],
];

/**
 * The pieces of a calls source: one SELECT per rollup level the plan reads, the SELECT of the raw
 * remainder at the range's edges, and an empty SELECT of the same columns. Each has the columns t (the
 * row's bucket start: a week, day, quarter day or hour, or for raw rows the step's bucket), agent,
 * service, tool, account_id, outcome and (unless keysOnly) the rollups' metrics, limited to the tenant,
 * the range and the filter. Dimensions not asked for are ''.
 */
export interface SourceParts {
  rollups: string[];
  raw: string | undefined;
  empty: string;
  params: Record<string, string | number>;
  segments: Segment[];
}

/** One subquery of every part (see SourceParts). */
export function callsSource(tenant: string, options: SourceOptions): Source {
  const parts = sourceParts(tenant, options);
  return { sql: unionOf([...parts.rollups, ...(parts.raw === undefined ? [] : [parts.raw])], parts.empty), params: parts.params, segments: parts.segments };
}

/**
 * `source` with each of its parameters renamed `<prefix><name>`, so that several sources can be read in
 * one statement: each has its own tenant-free names for its times, dimension set and cache entry.
 */
export function prefixed(source: Source, prefix: string): Source {
  return {
    sql: source.sql.replace(/\{([A-Za-z_][A-Za-z0-9_]*):/g, `{${prefix}$1:`),
    params: Object.fromEntries(Object.entries(source.params).map(([name, value]) => [`${prefix}${name}`, value])),
    segments: source.segments,
    ...(source.entry && { entry: source.entry }),
  };
}

/** `(a UNION ALL b ...)`, or `(empty)` when there is nothing to read. */
export function unionOf(selects: readonly string[], empty: string): string {
  return `(${(selects.length === 0 ? [empty] : selects).join('\n    UNION ALL')}\n)`;
}

/**
 * The parts of the range's plan; with `except`, only the raw reads of the range outside it (its edges:
 * what a cache of the span `except` leaves to read).
 */
export function sourceParts(tenant: string, options: SourceOptions, except?: { from: bigint; to: bigint }): SourceParts {
  const need = new Set<Dimension>([...options.need, ...filterDimensions(options.filter)]);
  // An account's own calls (calls_by_account_v1) are fewer than any rollup's rows for the range.
  const byAccount = options.filter.account !== undefined;
  const set = byAccount ? undefined : dimensionSet(need, options.keysOnly);
  const step = options.stepSeconds;
  const levels = set === undefined || except ? [] : LEVELS.filter((l) => l.sets.includes(set) && (step === undefined || step % l.seconds === 0));
  const from = nanosOf(options.range.from);
  const to = nanosOf(options.range.to);
  const segments = except
    ? [...planSegments(from, except.from < to ? except.from : to, []), ...planSegments(except.to > from ? except.to : from, to, [])]
    : planSegments(from, to, levels);

  const params: Record<string, string | number> = { tenant };
  if (set !== undefined) params.dims = set;
  const selects: string[] = [];
  const rollupFilter = filterSql(options.filter, 'outcome');
  const metrics = options.keysOnly ? '' : METRICS;
  const rawMetrics = options.keysOnly ? '' : RAW_METRICS;
  const rawGroup = options.keysOnly ? '' : '\n    GROUP BY t, agent, service, tool, account_id, outcome';
  Object.assign(params, rollupFilter.params);

  for (const level of levels) {
    const mine = segments.filter((s) => s.level === level);
    if (mine.length === 0) continue;
    const times = mine.map((s, i) => {
      const key = `${level.param}${i}`;
      params[`${key}_from`] = formatClickHouse(instantFromEpochNanos(s.from));
      params[`${key}_to`] = formatClickHouse(instantFromEpochNanos(s.to));
      return `(bucket >= {${key}_from:DateTime64(9, 'UTC')} AND bucket < {${key}_to:DateTime64(9, 'UTC')})`;
    });
    selects.push(`
    SELECT bucket AS t, agent, service, tool, account_id, outcome${metrics}
    FROM ${level.table}
    WHERE tenant = {tenant:String} AND dims = {dims:UInt8}
      AND (${times.join(' OR ')})${rollupFilter.conditions.map((c) => `\n      AND ${c}`).join('')}`);
  }

  let rawSelect: string | undefined;
  const raw = segments.filter((s) => s.level === undefined);
  if (raw.length > 0) {
    const times = raw.map((s, i) => {
      params[`r${i}_from`] = formatClickHouse(instantFromEpochNanos(s.from));
      params[`r${i}_to`] = formatClickHouse(instantFromEpochNanos(s.to));
      return `(timestamp >= {r${i}_from:DateTime64(9, 'UTC')} AND timestamp < {r${i}_to:DateTime64(9, 'UTC')})`;
    });
    const rawFilter = filterSql(options.filter, RAW_OUTCOME);
    if (step !== undefined) params.step = step;
    const t = step === undefined ? "toDateTime(0, 'UTC')" : "toDateTime(intDiv(toUnixTimestamp(timestamp), {step:UInt32}) * {step:UInt32}, 'UTC')";
    const dims = DIMENSION_COLUMNS.map(([d, column]) => (need.has(d) ? column : `'' AS ${column}`));
    // calls_by_account_v1 holds one row per counted call, sorted by account. audit_timeline_v1
    // (sql/0010) holds every row of audit_events_v1, sorted by time: a call reported twice has its
    // counted row (the one the rollups count) and, under the same event_id, its second report
    // (counted = false, sql/0005), which is what the raw table shows of the call. So a call is its
    // counted row in the range, or its second report in its place when that is in the range too.
    // Read by time, a range's edges are a few granules, not every granule of their days in
    // audit_events_v1 (sorted by event id).
    const within = `tenant = {tenant:String}\n      AND (${times.join(' OR ')})`;
    const source = byAccount ? `calls_by_account_v1\n    WHERE ${within}` : callsOnce(within, raw.reduce((n, s) => n + (s.to - s.from), 0n));
    rawSelect = `
    SELECT ${t} AS t, ${dims.join(', ')}, ${RAW_OUTCOME} AS outcome${rawMetrics}
    FROM ${source}${rawFilter.conditions.map((c) => `\n      AND ${c}`).join('')}${rawGroup}`;
  }

  // An empty range still needs a source with the right columns: the raw table, matching nothing.
  const empty = `
    SELECT toDateTime(0, 'UTC') AS t, agent, service, tool, account_id, ${RAW_OUTCOME} AS outcome${rawMetrics}
    FROM audit_events_v1
    WHERE 0${rawGroup}`;
  return { rollups: selects, raw: rawSelect, empty, params, segments };
}

/**
 * Raw spans up to this long are read in one pass (see callsOnce): the seconds around a minutes' cache
 * entry (closed-buckets.ts), under a minute at its start and under three at its end (the partial
 * minute, the last SETTLE_SECONDS and the minute an open range's entry lags by), so up to four minutes
 * together.
 */
const ONE_PASS_NS = 4n * 60n * SECOND;

/**
 * Each call of audit_timeline_v1 within `span` once, as `FROM ... WHERE ...` to which conditions can be
 * appended. Over a few minutes at most, one pass grouped by event_id (the second report's values where
 * there is one, argMin by counted; a call without a counted row in the span is none): 10 ms on the 10M
 * set where the set lookups below take 15. Over longer spans the lookups (sets of the rare second
 * reports) cost less than grouping every row: an hour 17 ms where grouping takes 38.
 */
function callsOnce(span: string, spanNs: bigint): string {
  // Of the rows, not the markers of replaced rows (sql/0024), which only the audit log reads.
  const within = `${span}\n      AND source != '${MARKER_SOURCE}'`;
  if (spanNs <= ONE_PASS_NS) {
    return `(
        SELECT r.1 AS timestamp, r.2 AS agent, r.3 AS service, r.4 AS tool, r.5 AS account_id, r.6 AS allowed,
            r.7 AS is_error, r.8 AS duration_ns, r.9 AS cost_usd
        FROM (
            SELECT argMin((timestamp, agent, service, tool, account_id, allowed, is_error, duration_ns, cost_usd), counted) AS r
            FROM audit_timeline_v1
            WHERE ${within}
            GROUP BY event_id
            HAVING max(counted)
        )
    )
    WHERE 1`;
  }
  const replaced = `SELECT event_id FROM audit_timeline_v1 WHERE ${within} AND NOT counted`;
  return `audit_timeline_v1\n    WHERE ${within}
      AND (counted AND event_id NOT IN (${replaced})
        OR NOT counted AND event_id IN (SELECT event_id FROM audit_timeline_v1 WHERE ${within} AND counted AND event_id IN (${replaced})))`;
}

/** ClickHouse DateTime64(9) text (as parseTimeRange makes it) → epoch nanoseconds. */
export function nanosOf(text: string): bigint {
  const instant = parseRfc3339(`${text.replace(' ', 'T')}Z`);
  if (!instant) throw new Error(`not a ClickHouse time: ${JSON.stringify(text)}`);
  return epochNanos(instant);
}

export function floorTo(ns: bigint, unit: bigint): bigint {
  const r = ns % unit;
  return r < 0n ? ns - r - unit : ns - r;
}

export function ceilTo(ns: bigint, unit: bigint): bigint {
  const f = floorTo(ns, unit);
  return f === ns ? ns : f + unit;
}
