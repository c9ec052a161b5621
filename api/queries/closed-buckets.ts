/**
 * A cache of closed time buckets for the aggregates over callsSource() (rollup-plan.ts). A range's whole
 * hours are the same for every request until the range crosses an hour (a dashboard refreshing "the last
 * 7 days" asks the same hours for an hour), so they are read once, as callsSource() plans them, merged
 * to the keys the question groups by, into closed_buckets_v1 (sql/0017) under an entry id; every later
 * request reads those few hundred rows and the raw calls of the partial hours at the range's ends. The
 * question's own SQL is unchanged: it runs over the cached rows, a guard and the edges.
 *
 * An entry is right while no call inside its hours is written after it was filled. The guard, in the
 * same statement, checks the write log (call_writes_v1) for such a write and the entry's row count, and
 * fails the statement with throwIf when either is off; the request is then answered without the cache
 * and the entry refilled by the next one. Hours that received a write in the last SETTLE_SECONDS are not
 * cached at all: an insert's rollup rows may become visible a little after its log row, and a write
 * logged before an entry was filled must be in it.
 *
 * One cache per API process (createApi makes it); entries live MAX_AGE_MS, the least recently used
 * are dropped beyond MAX_ENTRIES.
 */
import { randomBytes } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { errorCode } from '../../core/clickhouse.ts';
import { formatClickHouse, instantFromEpochNanos } from '../../model/timestamp.ts';
import { callsSource, ceilTo, floorTo, nanosOf, sourceParts, unionOf, type Source, type SourceOptions } from './rollup-plan.ts';
import { count, selectRows } from './select-rows.ts';

export interface ClosedBuckets {
  /** Runs `query` (which reads `source.sql` with `source.params`) over the calls of `options`. */
  read<T>(clickhouse: ClickHouseClient, tenant: string, options: SourceOptions, query: (source: Source) => Promise<T>): Promise<T>;
}

/** Every read from the rollups and the raw table, as callsSource() plans it. */
export const NO_CACHE: ClosedBuckets = {
  read: (_clickhouse, tenant, options, query) => query(callsSource(tenant, options)),
};

export interface ClosedBucketOptions {
  maxEntries?: number;
  maxAgeMs?: number;
  settleSeconds?: number;
  now?: () => number;
}

export interface ClosedBucketCache extends ClosedBuckets {
  /** Entries held, and how requests were answered, for tests and the bench. */
  stats(): { entries: number; hits: number; fills: number; unsettled: number; stale: number };
}

/** An entry older than this is refilled (closed_buckets_v1 keeps rows two hours). */
export const MAX_AGE_MS = 30 * 60 * 1000;
export const MAX_ENTRIES = 1000;
/** How long after its write a call's hour may still change under an entry (see the header). */
export const SETTLE_SECONDS = 60;
/** ClickHouse's FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: only the guard calls throwIf in these statements. */
const GUARD_FAILED = 395;

interface Entry {
  id: string;
  rows: number;
  /** The server's clock when it was filled, DateTime64(6) text. */
  since: string;
  createdMs: number;
}

const stateRow = z.object({ now: z.string(), recent: count });
const countRow = z.object({ n: count });

export function createClosedBucketCache(options: ClosedBucketOptions = {}): ClosedBucketCache {
  const maxEntries = options.maxEntries ?? MAX_ENTRIES;
  const maxAgeMs = options.maxAgeMs ?? MAX_AGE_MS;
  const settle = options.settleSeconds ?? SETTLE_SECONDS;
  const now = options.now ?? Date.now;
  const entries = new Map<string, Entry>();
  /** Fills under way: requests for the same hours at once share one. */
  const filling = new Map<string, Promise<Entry | undefined>>();
  const counters = { hits: 0, fills: 0, unsettled: 0, stale: 0 };

  async function fill(clickhouse: ClickHouseClient, tenant: string, key: string, options: SourceOptions, hours: Hours) {
    const step = options.stepSeconds;
    const interior = callsSource(tenant, { ...options, range: { from: hours.params.cache_from, to: hours.params.cache_to } });
    const params = { ...interior.params, ...hours.params, cache_settle: settle, ...(step === undefined ? {} : { step }) };
    const [state] = await selectRows(
      clickhouse,
      'closedBuckets.state',
      `SELECT toString(now64(6)) AS now, (${recentWrites('now64(6)')}) AS recent`,
      params,
      stateRow,
    );
    if (!state) throw new Error('query closedBuckets.state returned no row');
    if (state.recent > 0) {
      counters.unsettled++;
      return undefined;
    }
    const id = randomBytes(8).readBigUInt64BE().toString();
    const t = step === undefined ? "toDateTime(0, 'UTC')" : "toDateTime(intDiv(toUnixTimestamp(t), {step:UInt32}) * {step:UInt32}, 'UTC')";
    const insert = options.keysOnly
      ? `INSERT INTO closed_buckets_v1 (entry, t, agent, service, tool, account_id, outcome)
SELECT DISTINCT {cache_entry:UInt64}, b, agent, service, tool, account_id, outcome
FROM (SELECT ${t} AS b, * FROM ${interior.sql})`
      : `INSERT INTO closed_buckets_v1 (entry, t, agent, service, tool, account_id, outcome, calls, errors, denials,
    duration_sum_ns, duration_max_ns, duration_sketch, cost_usd_sum, priced_calls, first_seen, last_seen)
SELECT {cache_entry:UInt64}, b, agent, service, tool, account_id, outcome, sum(calls), sum(errors), sum(denials),
    sum(duration_sum_ns), max(duration_max_ns), quantileDDMergeState(0.01, 0.5)(duration_sketch), sum(cost_usd_sum),
    sum(priced_calls), min(first_seen), max(last_seen)
FROM (SELECT ${t} AS b, * FROM ${interior.sql})
GROUP BY b, agent, service, tool, account_id, outcome`;
    await clickhouse.command({ query: insert, query_params: { ...params, cache_entry: id } });
    const [rows] = await selectRows(clickhouse, 'closedBuckets.count', 'SELECT count() AS n FROM closed_buckets_v1 WHERE entry = {cache_entry:UInt64}', { cache_entry: id }, countRow);
    const entry: Entry = { id, rows: rows?.n ?? 0, since: state.now, createdMs: now() };
    entries.set(key, entry);
    while (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    counters.fills++;
    return entry;
  }

  return {
    async read(clickhouse, tenant, options, query) {
      const hours = wholeHours(options);
      if (!hours) return query(callsSource(tenant, options));
      const keysOnly = options.keysOnly === true;
      const key = JSON.stringify([tenant, options.filter, [...options.need].sort(), keysOnly, options.stepSeconds ?? null, hours.params]);
      let entry = entries.get(key);
      if (entry && now() - entry.createdMs > maxAgeMs) {
        entries.delete(key);
        entry = undefined;
      }
      if (entry) {
        // Most recently used last.
        entries.delete(key);
        entries.set(key, entry);
        counters.hits++;
      } else {
        let pending = filling.get(key);
        const mine = !pending;
        if (!pending) {
          pending = fill(clickhouse, tenant, key, options, hours).finally(() => filling.delete(key));
          filling.set(key, pending);
        }
        // Another request's failed fill (its timeout, its client gone) is not this one's error.
        entry = await pending.catch((error: unknown) => {
          if (mine) throw error;
          return undefined;
        });
        if (!entry) return query(callsSource(tenant, options));
      }
      const edges = sourceParts(tenant, options, hours);
      const source: Source = {
        sql: unionOf([cachedRows(keysOnly), guard(keysOnly), ...(edges.raw === undefined ? [] : [edges.raw])], edges.empty),
        params: { ...edges.params, ...hours.params, cache_entry: entry.id, cache_rows: entry.rows, cache_since: entry.since, cache_settle: settle },
        segments: edges.segments,
      };
      try {
        return await query(source);
      } catch (error) {
        if (errorCode(error) !== GUARD_FAILED) throw error;
        counters.stale++;
        entries.delete(key);
        return query(callsSource(tenant, options));
      }
    },
    stats: () => ({ entries: entries.size, ...counters }),
  };
}

interface Hours {
  from: bigint;
  to: bigint;
  params: { cache_from: string; cache_to: string };
}

const HOUR = 3_600_000_000_000n;

/** The whole hours inside the range; undefined when there are none. */
function wholeHours(options: SourceOptions): Hours | undefined {
  const from = ceilTo(nanosOf(options.range.from), HOUR);
  const to = floorTo(nanosOf(options.range.to), HOUR);
  if (from >= to) return undefined;
  return { from, to, params: { cache_from: formatClickHouse(instantFromEpochNanos(from)), cache_to: formatClickHouse(instantFromEpochNanos(to)) } };
}

function recentWrites(since: string): string {
  return `SELECT count() FROM call_writes_v1
        WHERE tenant = {tenant:String} AND written_at > ${since} - toIntervalSecond({cache_settle:UInt32})
          AND earliest < {cache_to:DateTime64(9, 'UTC')} AND latest >= {cache_from:DateTime64(9, 'UTC')}`;
}

const KEYS = 't, agent, service, tool, account_id, outcome';
const METRICS = 'calls, errors, denials, duration_sum_ns, duration_max_ns, duration_sketch, cost_usd_sum, priced_calls, first_seen, last_seen';

function cachedRows(keysOnly: boolean): string {
  return `
    SELECT ${KEYS}${keysOnly ? '' : `, ${METRICS}`}
    FROM closed_buckets_v1
    WHERE entry = {cache_entry:UInt64}`;
}

/**
 * No row, or the statement fails (throwIf) when the entry is not all there or a call was written into
 * its hours since it was filled. system.one has one row, so the condition is always evaluated.
 */
function guard(keysOnly: boolean): string {
  const keys = `toDateTime(0, 'UTC') AS t, '' AS agent, '' AS service, '' AS tool, '' AS account_id, '' AS outcome`;
  const metrics = `, toUInt64(0) AS calls, toUInt64(0) AS errors, toUInt64(0) AS denials, toUInt64(0) AS duration_sum_ns,
        toUInt64(0) AS duration_max_ns, initializeAggregation('quantileDDState(0.01, 0.5)', toUInt64(0)) AS duration_sketch,
        toDecimal128(0, 9) AS cost_usd_sum, toUInt64(0) AS priced_calls, toDateTime64(0, 9, 'UTC') AS first_seen,
        toDateTime64(0, 9, 'UTC') AS last_seen`;
  return `
    SELECT ${keys}${keysOnly ? '' : metrics}
    FROM system.one
    WHERE throwIf(
        (SELECT count() FROM closed_buckets_v1 WHERE entry = {cache_entry:UInt64}) != {cache_rows:UInt64}
        OR (${recentWrites("{cache_since:DateTime64(6, 'UTC')}")}) > 0,
        'closed-bucket cache entry missing or stale')`;
}
