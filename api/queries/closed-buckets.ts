/**
 * A cache of closed time buckets for the aggregates over callsSource() (rollup-plan.ts). The whole
 * minutes of a range (up to SETTLE_SECONDS ago) are the same for every request until the range moves by
 * a minute, so they are read once, merged to the keys the question groups by, into closed_buckets_v1
 * (sql/0017) under an entry id; every later request reads those rows and the raw calls of the seconds
 * at the range's ends (and of the last SETTLE_SECONDS). A minutes' entry is filled the same way from an
 * entry of the range's whole hours (filled from the rollups, as callsSource() plans them) and the raw
 * calls of its partial hours, so a range that moves every minute does not re-merge the rollups of its
 * days. A range that ended more than SETTLE_SECONDS ago is held whole, to the nanosecond, in place of
 * its minutes: nothing is left at its ends to read raw. The question's own SQL is unchanged: it runs
 * over the cached rows, a guard and the edges.
 *
 * An entry is right while no call inside its span is written after it was filled. The guard, in the
 * same statement, checks the write log (call_writes_v1) for such a write and the entry's row count, and
 * fails the statement with throwIf when either is off; the request is then answered by the coarser entry
 * (or the plan), and the entry refilled by the next one. A span that received a write in the last SETTLE_SECONDS is not
 * cached at all: an insert's rollup rows may become visible a little after its log row, and a write
 * logged before an entry was filled must be in it.
 *
 * A request never waits for a fill it would start: one that finds no entry is answered as if the layer
 * were not there, and the entry is filled in the background for the requests after it (a fill costs more
 * than the answer it replaces: on a range that moves every minute, each first look would otherwise pay
 * it). One that finds the fill already under way waits for it, and reads the entry. A range that moves
 * with the clock has its next minute's entry filled ahead, in the second half of the minute before
 * (fillAhead), so its requests at the turn of a minute neither miss nor wait.
 *
 * Above the entries, the answers (answer()): a question over a range that has ended is answered from
 * the same calls until one is written into the range, so its answer is kept, and given again after one
 * look at the write log (one statement of a few milliseconds instead of the entry, its guard and the
 * question's own work). An open range (one that ends within SETTLE_SECONDS of now, as a dashboard's
 * "last 7 days" does) is computed on every request.
 *
 * One cache per API process (createApi makes it); entries and answers live MAX_AGE_MS, the least
 * recently used are dropped beyond MAX_ENTRIES (each), and answers beyond MAX_ANSWER_BYTES.
 */
import { randomBytes } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { errorCode } from '../../core/clickhouse.ts';
import { formatClickHouse, instantFromEpochNanos } from '../../model/timestamp.ts';
import { callsSource, ceilTo, floorTo, nanosOf, prefixed, sourceParts, unionOf, type EntryRef, type Source, type SourceOptions } from './rollup-plan.ts';
import type { Dimension } from './filter.ts';
import type { TimeRange } from './params.ts';
import { count, selectRows } from './select-rows.ts';

export interface ClosedBuckets {
  /** Runs `query` (which reads `source.sql` with `source.params`) over the calls of `options`. */
  read<T>(clickhouse: ClickHouseClient, tenant: string, options: SourceOptions, query: (source: Source) => Promise<T>): Promise<T>;
  /**
   * Runs `query`, one statement reading several sources at once (their params merged, so they must
   * not clash: callsSource()'s do not, for the same tenant and range), over the calls of each options.
   */
  readAll<T>(clickhouse: ClickHouseClient, tenant: string, options: readonly SourceOptions[], query: (sources: Source[]) => Promise<T>, read?: ReadAllOptions): Promise<T>;
  /**
   * `compute()`'s answer to `question` (everything the answer depends on but the tenant and the range)
   * over `range`. Once the range has ended, the answer is kept and given again while no call inside the
   * range is written after it was computed, which one look at the write log tells per request.
   */
  answer<T>(clickhouse: ClickHouseClient, tenant: string, question: unknown, range: TimeRange, compute: () => Promise<T>): Promise<T>;
  /**
   * The keys of an entry that a source of readAll() holds whole (Source.entry): per value of `by`, the
   * distinct values of `column` other than ''. Read once per entry and then held, so that a question
   * over a range that moves with every request does not group the same tens of thousands of rows again
   * each time. Undefined until they are held: the first call starts their read in the background, and
   * the caller reads the source in its statement meanwhile, as it does for an entry that is not all
   * there or too big to hold (the statement's guard fails on an entry that is not all there).
   */
  keysOf(clickhouse: ClickHouseClient, entry: EntryRef, by: KeyColumn, column: KeyColumn): KeySets | undefined;
}

/** A key column of closed_buckets_v1. */
export type KeyColumn = 'agent' | 'service' | 'tool' | 'account_id';
/** Per value of one key column, the distinct values of another. */
export type KeySets = ReadonlyMap<string, ReadonlySet<string>>;

export interface ReadAllOptions {
  /**
   * Read the raw calls outside the cached spans once: when every source is answered from entries of
   * one layer with the same span, the first source's edges keep the dimensions of every source and the
   * others have none. Each edge read costs the statement about as much as the entry it completes (a few
   * granules of audit_timeline_v1 and the grouping by event id), so a statement over three sources pays
   * it once instead of three times. The query must then take every source's keys from the first
   * source's rows too: those rows have a key other than '' where they are shared edges (or where the
   * first source's own dimensions hold it), e.g. the distinct tools of the tools' source and of the
   * first source's rows with tool != '' together.
   */
  shareEdges?: boolean;
}

/** Every read from the rollups and the raw table, as callsSource() plans it. */
export const NO_CACHE: ClosedBuckets = {
  read: (_clickhouse, tenant, options, query) => query(callsSource(tenant, options)),
  readAll: (_clickhouse, tenant, options, query) => query(apart(options.map((o) => callsSource(tenant, o)))),
  answer: (_clickhouse, _tenant, _question, _range, compute) => compute(),
  keysOf: () => undefined,
};

/** Sources read in one statement, each with parameter names of its own (`s<i>_...`). */
function apart(sources: Source[]): Source[] {
  return sources.length === 1 ? sources : sources.map((source, i) => prefixed(source, `s${i}_`));
}

export interface ClosedBucketOptions {
  maxEntries?: number;
  maxAgeMs?: number;
  settleSeconds?: number;
  now?: () => number;
  /**
   * Runs a fill that outlives the request that started it (the API's: as the same caller, without the
   * request's abort signal). Without it, fills run in the request's own context.
   */
  detach?: <T>(work: () => Promise<T>) => Promise<T>;
  maxAnswerBytes?: number;
  /** Entry rows held as key sets, all together (MAX_KEY_ROWS). */
  maxKeyRows?: number;
  /**
   * The tables are replicated (CLICKHOUSE_CLUSTER): a statement may reach a replica the rows of a fill
   * have not all reached yet, so each one counts its entries' rows again. On one server (or the embedded
   * engine) the count a fill reads after its insert holds for as long as the entry does: no row of an
   * entry is deleted while it is held (MAX_AGE_MS, against the table's TTL of two hours), unless the
   * server restarts and loses parts not yet on disk, which the guard checks instead.
   */
  replicated?: boolean;
}

export interface ClosedBucketCache extends ClosedBuckets {
  /** Entries held, and how requests were answered, for tests and the bench. */
  stats(): { entries: number; hits: number; fills: number; unsettled: number; stale: number; failed: number; answers: number; answerBytes: number; answered: number; staleAnswers: number; keySets: number; keySetRows: number };
  /** Resolves once the fills under way now have ended. */
  settled(): Promise<void>;
}

/** An entry older than this is refilled (closed_buckets_v1 keeps rows two hours). */
export const MAX_AGE_MS = 30 * 60 * 1000;
export const MAX_ENTRIES = 1000;
/** Kept answers, all together, as JSON (an agentActivity of 50 agents is ~20 KB). */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;
/** Entry rows held as key sets (keysOf()), all together: an agent × account entry of 50 agents and 1,000 accounts is ~35,000. */
export const MAX_KEY_ROWS = 500_000;
/** How long after its write a call's hour may still change under an entry (see the header). */
export const SETTLE_SECONDS = 60;
/** ClickHouse's FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: only the guard calls throwIf in these statements. */
const GUARD_FAILED = 395;

/** An ended range's answer, and the server's clock (DateTime64(6) text) before it was computed. */
interface Answer {
  value: unknown;
  since: string;
  createdMs: number;
  /** Its size as JSON, which the cache's bound counts. */
  bytes: number;
}

/** `value`'s size as JSON (UTF-16 units, near enough bytes); undefined when it has none (a BigInt in it). */
function jsonBytes(value: unknown): number | undefined {
  try {
    return JSON.stringify(value)?.length;
  } catch {
    return undefined;
  }
}

interface Entry {
  id: string;
  rows: number;
  /** The server's clock when it was filled, DateTime64(6) text. */
  since: string;
  createdMs: number;
}

const stateRow = z.object({ now: z.string(), recent: count });
const countRow = z.object({ n: count });
const answerRow = z.object({ recent: count });
const nowRow = z.object({ now: z.string() });
const keysRow = z.object({ k: z.string(), keys: z.array(z.string()), n: count });

type Read = ClosedBuckets['read'];
/** A layer's read: `answer` for a request, `fill` for the finer layer's fill (which waits for entries). */
type LayerRead = <T>(
  clickhouse: ClickHouseClient,
  tenant: string,
  options: readonly SourceOptions[],
  query: (sources: Source[]) => Promise<T>,
  mode?: 'answer' | 'fill',
  read?: ReadAllOptions,
) => Promise<T>;

/** An entry a layer found for one of a read's options. */
interface Found {
  key: string;
  entry: Entry;
  options: SourceOptions;
  span: Span;
}

export function createClosedBucketCache(options: ClosedBucketOptions = {}): ClosedBucketCache {
  const maxEntries = options.maxEntries ?? MAX_ENTRIES;
  const maxAgeMs = options.maxAgeMs ?? MAX_AGE_MS;
  const settle = options.settleSeconds ?? SETTLE_SECONDS;
  const now = options.now ?? Date.now;
  const entries = boundedMap<Entry>(maxEntries, 0);
  /** Fills under way: requests for the same span at once share one. */
  const filling = new Map<string, Promise<Entry | undefined>>();
  const counters = { hits: 0, fills: 0, unsettled: 0, stale: 0, failed: 0, answered: 0, staleAnswers: 0 };
  const maxAnswerBytes = options.maxAnswerBytes ?? MAX_ANSWER_BYTES;
  /** Answers over ended ranges (answer()), weighed by their size as JSON; none is kept over a sixteenth of the bound. */
  const answers = boundedMap<Answer>(maxEntries, maxAnswerBytes);
  const maxKeyRows = options.maxKeyRows ?? MAX_KEY_ROWS;
  const detach = options.detach ?? ((work) => work());
  const recount = options.replicated === true;
  /** Key sets of entries (keysOf()), weighed by the entry rows they are read from. */
  const keySets = boundedMap<KeySlot>(Infinity, maxKeyRows);
  /** Key set reads under way. */
  const reading = new Set<Promise<unknown>>();
  /** Per question (an entry's key without its span), the start of the range it was last asked over (fillAhead). */
  const starts = boundedMap<bigint>(maxEntries, Infinity);
  /** Entries fillAhead() has started: each is filled ahead once. */
  const tried = boundedMap<true>(maxEntries, Infinity);
  /** Nothing later than this is cached: calls of the last SETTLE_SECONDS are still arriving. */
  const settledBefore = () => (BigInt(now()) - BigInt(settle) * 1000n) * 1_000_000n;

  /**
   * Fills an entry with the calls of `span`, read through `inner` (the next coarser layer, or the plan);
   * undefined when the span received a write in the last SETTLE_SECONDS.
   */
  async function fill(clickhouse: ClickHouseClient, tenant: string, key: string, options: SourceOptions, span: Span, inner: Read): Promise<Entry | undefined> {
    const step = options.stepSeconds;
    const [state] = await selectRows(
      clickhouse,
      'closedBuckets.state',
      `SELECT toString(now64(6)) AS now, (${recentWrites('now64(6)')}) AS recent`,
      { tenant, ...span.params, cache_settle: settle },
      stateRow,
    );
    if (!state) throw new Error('query closedBuckets.state returned no row');
    if (state.recent > 0) {
      counters.unsettled++;
      return undefined;
    }
    const id = randomBytes(8).readBigUInt64BE().toString();
    const t = step === undefined ? "toDateTime(0, 'UTC')" : "toDateTime(intDiv(toUnixTimestamp(t), {step:UInt32}) * {step:UInt32}, 'UTC')";
    const keys = entryKeys(options.need);
    // Without it the column takes its default, an empty sketch.
    const sketch = options.sketch !== false;
    await inner(clickhouse, tenant, { ...options, range: { from: span.params.cache_from, to: span.params.cache_to } }, (source) => {
      const insert = options.keysOnly
        ? `INSERT INTO closed_buckets_v1 (entry, t, agent, service, tool, account_id, outcome)
SELECT DISTINCT {fill_entry:UInt64}, b, agent, service, tool, account_id, outcome
FROM (SELECT ${t} AS b, ${keys} FROM ${source.sql})`
        : `INSERT INTO closed_buckets_v1 (entry, t, agent, service, tool, account_id, outcome, calls, errors, denials,
    duration_sum_ns, duration_max_ns,${sketch ? ' duration_sketch,' : ''} cost_usd_sum, priced_calls, first_seen, last_seen)
SELECT {fill_entry:UInt64}, b, agent, service, tool, account_id, outcome, sum(calls), sum(errors), sum(denials),
    sum(duration_sum_ns), max(duration_max_ns),${sketch ? ' quantileDDMergeState(0.01, 0.5)(duration_sketch),' : ''} sum(cost_usd_sum),
    sum(priced_calls), min(first_seen), max(last_seen)
FROM (SELECT ${t} AS b, ${keys}, ${METRICS} FROM ${source.sql})
GROUP BY b, agent, service, tool, account_id, outcome`;
      const params = { ...source.params, fill_entry: id, ...(step === undefined ? {} : { step }) };
      return clickhouse.command({ query: insert, query_params: params });
    });
    const [rows] = await selectRows(clickhouse, 'closedBuckets.count', 'SELECT count() AS n FROM closed_buckets_v1 WHERE entry = {cache_entry:UInt64}', { cache_entry: id }, countRow);
    const entry: Entry = { id, rows: rows?.n ?? 0, since: state.now, createdMs: now() };
    entries.set(key, entry, 0);
    counters.fills++;
    return entry;
  }

  /** Starts the fill of `key` unless one is under way; the promise is the entry, or undefined. */
  function startFill(clickhouse: ClickHouseClient, tenant: string, key: string, options: SourceOptions, span: Span, inner: LayerRead) {
    let pending = filling.get(key);
    if (!pending) {
      // The entry is filled through the coarser layer, waiting for that layer's own entry.
      const read: Read = (c, t, o, q) => inner(c, t, [o], ([source]) => q(source!), 'fill');
      pending = fill(clickhouse, tenant, key, options, span, read).finally(() => filling.delete(key));
      filling.set(key, pending);
    }
    return pending;
  }

  /** The entry a fill under way ends with; undefined when there is none or it fails (counted where it started). */
  async function filled(pending: Promise<Entry | undefined>): Promise<Entry | undefined> {
    try {
      return await pending;
    } catch {
      return undefined;
    }
  }

  /** The entry of `key` if it is held and young enough (then most recently used). */
  function held(key: string): Entry | undefined {
    const entry = entries.get(key);
    if (!entry || now() - entry.createdMs <= maxAgeMs) return entry;
    entries.delete(key);
    return undefined;
  }

  /** What an entry's rows depend on but its span, as text. */
  function questionOf(unit: bigint, tenant: string, options: SourceOptions): string {
    return JSON.stringify([String(unit), tenant, options.filter, [...options.need].sort(), options.keysOnly === true, options.sketch ?? true, options.stepSeconds ?? null]);
  }

  /** An entry's key: everything its rows depend on, its question's and its span. */
  function keyOf(question: string, span: Span): string {
    return `${question}${JSON.stringify(span.params)}`;
  }

  /**
   * The entry the requests of the next `unit` will ask for, when it should be filled now: `options`'
   * range is open (it ends after `settled`), this unit is half over, and that entry is neither held,
   * nor being filled, nor tried already. Without it, every unit a dashboard's "last 7 days" finds no
   * entry at the unit's start: the first requests are answered through the coarser layer and the next
   * ones wait for the fill (on the 10M set, 4 clients: ~115 ms and ~300 ms, against ~40 ms), every
   * minute. An open range's span ends a unit before what is settled (spanOf's lag), so the next unit's
   * span ends where this unit's settled time is: all of it can be filled now, and half a unit later
   * than that its late calls have had as long again to arrive (a fill that finds a recent write into
   * its span is not kept; it is not tried again). Its start is this one's a unit later when the range
   * moved since the question was last asked (the usual "last N days"), the same otherwise; a question
   * asked once is not filled ahead.
   */
  function fillAhead(unit: bigint, question: string, options: SourceOptions, key: string, settled: bigint): { key: string; options: SourceOptions; span: Span } | undefined {
    const from = nanosOf(options.range.from);
    const to = nanosOf(options.range.to);
    if (to <= settled) return undefined;
    const last = starts.get(question);
    starts.set(question, from, 1);
    // Asked once: whether its range moves is told by the next request.
    if (last === undefined) return undefined;
    const nowNs = BigInt(now()) * 1_000_000n;
    if (nowNs - floorTo(nowNs, unit) < unit / 2n) return undefined;
    const moved = last !== from;
    const range = { from: moved ? formatClickHouse(instantFromEpochNanos(from + unit)) : options.range.from, to: formatClickHouse(instantFromEpochNanos(to + unit)) };
    const next = { ...options, range };
    const span = spanOf(next, unit, settled + unit, false, unit);
    if (!span || span.to > settled) return undefined;
    const nextKey = keyOf(question, span);
    if (nextKey === key || held(nextKey) || filling.has(nextKey) || tried.peek(nextKey)) return undefined;
    tried.set(nextKey, true, 1);
    return { key: nextKey, options: next, span };
  }

  /**
   * The cache of whole `unit`s of a range, over `inner` for everything it does not hold. A request
   * (`answer`) that finds no entry and no fill of it under way is answered at once, each such source read
   * through `inner`, and the missing entries are filled in the background afterwards, for the requests
   * after it. A request that finds the fill of its entry under way waits for it and reads the entry: the
   * fill is paid for already, and reading the same calls through `inner` beside it would slow both (on
   * the 10M set, a burst of 4 requests over the rollups while the fills ran took up to 1.4 s). A fill of
   * the next finer layer (`fill`) waits for the entries it reads. When the statement finds an entry
   * stale, every entry it read from this layer is dropped and the request answered by `inner` alone.
   * With `exact`, a range all settled is cached as it is (see spanOf). With `ahead` (see fillAhead), an
   * open range's span ends a unit earlier than it could, and the span its next unit's requests will ask
   * for is filled in the second half of this one.
   */
  function layer(unit: bigint, inner: LayerRead, exact = false, ahead = false): LayerRead {
    return async (clickhouse, tenant, list, query, mode = 'answer', read = {}) => {
      const found: Array<Found | undefined> = [];
      const missing: Array<() => Promise<unknown>> = [];
      const settled = settledBefore();
      for (const options of list) {
        const span = spanOf(options, unit, settled, exact, ahead ? unit : 0n);
        if (!span) {
          found.push(undefined);
          continue;
        }
        const question = questionOf(unit, tenant, options);
        const key = keyOf(question, span);
        if (ahead && mode === 'answer') {
          const next = fillAhead(unit, question, options, key, settled);
          if (next) {
            missing.push(async () => {
              const entry = await startFill(clickhouse, tenant, next.key, next.options, next.span, inner);
              // The key sets read for this unit's entry are read for the next one's too.
              const current = held(key);
              if (entry && current) for (const [by, column] of keySetsOf(current.id)) keysOf(clickhouse, { id: entry.id, rows: entry.rows }, by, column);
              return entry;
            });
          }
        }
        let entry = held(key);
        if (entry) counters.hits++;
        else if (mode === 'fill') entry = await startFill(clickhouse, tenant, key, options, span, inner);
        else if (filling.has(key)) {
          entry = await filled(filling.get(key)!);
          if (entry) counters.hits++;
        } else missing.push(() => startFill(clickhouse, tenant, key, options, span, inner));
        found.push(entry && { key, entry, options, span });
      }
      const used = found.filter((f) => f !== undefined);
      const first = used[0]?.span;
      const share = read.shareEdges === true && used.length > 1 && used.length === list.length && used.every((f) => f.span.from === first!.from && f.span.to === first!.to);
      const edges = (i: number): EdgeNeed => (!share ? 'own' : i > 0 ? 'none' : [...new Set(list.flatMap((o) => o.need))]);
      // One guard, in the first source read from an entry, checks every entry the statement reads here.
      const cached = new Map(used.map((f, i) => [f, cachedSource(tenant, f, i === 0 ? used : [], edges(i))]));
      const rest = list.filter((_, i) => !found[i]);
      try {
        return await inner(
          clickhouse,
          tenant,
          rest,
          (sources) => {
            let next = 0;
            return query(found.map((f) => (f ? cached.get(f)! : sources[next++]!)));
          },
          mode,
          read,
        );
      } catch (error) {
        if (errorCode(error) !== GUARD_FAILED || used.length === 0) throw error;
        counters.stale += used.length;
        for (const f of used) {
          entries.delete(f.key);
          forgetKeys(f.entry.id);
        }
        return inner(clickhouse, tenant, list, query, mode, read);
      } finally {
        // After the answer, so that its reads go first; a fill's failure is not this request's error.
        for (const start of missing) {
          void detach(start).catch(() => {
            counters.failed++;
          });
        }
      }
    };
  }

  /**
   * The entry's rows, the guard of `guarded` (none when empty) and the raw calls of the range outside its
   * span: with the entry's own dimensions, with those of `edges`, or none (another source reads them).
   */
  function cachedSource(tenant: string, { entry, options, span }: Found, guarded: readonly Found[], need: EdgeNeed): Source {
    const keysOnly = options.keysOnly === true;
    const edges = sourceParts(tenant, need === 'own' || need === 'none' ? options : { ...options, need }, span);
    const raw = need === 'none' ? undefined : edges.raw;
    const guard = guardOf(guarded, recount);
    return {
      sql: unionOf([cachedRows(keysOnly, guard?.sql), ...(raw === undefined ? [] : [raw])], edges.empty),
      params: { ...edges.params, ...guard?.params, cache_entry: entry.id, cache_settle: settle },
      segments: raw === undefined ? [] : edges.segments,
      // The entry's rows alone; the statement's first source read from an entry guards this one too.
      ...(raw === undefined && guarded.length === 0 && { entry: { id: entry.id, rows: entry.rows } }),
    };
  }

  // Whole minutes over whole hours: a minute's entry is filled from the hours' entry and the raw calls
  // of the partial hours, so a range that moves every minute re-reads at most two hours of raw calls,
  // not the rollups of its days; a request reads one entry and the seconds at the range's ends. A range
  // that has ended (all of it settled: a past week, an incident's hour) is held whole instead, seconds
  // and all, so its requests read one entry and no raw call: reading the edges' few granules costs a
  // statement about as much as the entry and its guard together.
  const read = layer(MINUTE, layer(HOUR, (_c, t, o, q) => q(o.map((options) => callsSource(t, options)))), true, true);

  /**
   * An ended range's answer: given again while the write log has no write into the range since it was
   * computed (less the settling time, as for an entry); otherwise computed, and kept once the range has
   * ended. Requests for the same answer at once each compute it: sharing one computation would tie
   * them to the first request's caller and its cancellation.
   */
  async function answer<T>(clickhouse: ClickHouseClient, tenant: string, question: unknown, range: TimeRange, compute: () => Promise<T>): Promise<T> {
    if (nanosOf(range.to) > settledBefore()) return compute();
    const key = JSON.stringify([tenant, question, range.from, range.to]);
    const kept = answers.peek(key);
    if (kept && now() - kept.createdMs <= maxAgeMs) {
      const params = { tenant, cache_from: range.from, cache_to: range.to, cache_settle: settle, cache_since: kept.since };
      const [state] = await selectRows(clickhouse, 'closedBuckets.answer', `SELECT (${recentWrites('{cache_since:DateTime64(6, \'UTC\')}')}) AS recent`, params, answerRow);
      // Kept in place while the look runs, so that requests beside it find it too; then most recently
      // used, unless another request has replaced it meanwhile.
      if (state?.recent === 0) {
        const current = answers.peek(key);
        if (current === undefined || current === kept) answers.set(key, kept, kept.bytes);
        counters.answered++;
        return kept.value as T;
      }
      answers.delete(key, kept);
      counters.staleAnswers++;
    } else if (kept) answers.delete(key, kept);
    // The server's clock is read by a statement sent just before the computation's first, not awaited
    // first: sibling fields of one request that compute in the same turn still share one statement
    // (the timeseries' metrics). Writes logged up to the settling time before it invalidate the answer,
    // which covers the order the engine runs the two in.
    const [[state], value] = await Promise.all([selectRows(clickhouse, 'closedBuckets.now', 'SELECT toString(now64(6)) AS now', {}, nowRow), compute()]);
    if (!state) throw new Error('query closedBuckets.now returned no row');
    const bytes = jsonBytes(value);
    if (bytes !== undefined && bytes <= maxAnswerBytes / 16) answers.set(key, { value, since: state.now, createdMs: now(), bytes }, bytes);
    return value;
  }

  function keysOf(clickhouse: ClickHouseClient, entry: EntryRef, by: KeyColumn, column: KeyColumn): KeySets | undefined {
    if (entry.rows > maxKeyRows) return undefined;
    const key = `${entry.id}/${by}/${column}`;
    const held = keySets.get(key);
    if (held) return held.sets;
    const slot: KeySlot = {};
    keySets.set(key, slot, entry.rows);
    // Like a fill: after the request's own reads, and not on its time.
    const read = detach(() => readKeys(clickhouse, entry, by, column)).then(
      (sets) => (sets ? (slot.sets = sets) : keySets.delete(key, slot)),
      () => {
        counters.failed++;
        keySets.delete(key, slot);
      },
    );
    reading.add(read);
    void read.finally(() => reading.delete(read));
    return undefined;
  }

  /** The key sets of an entry held or being read, as keysOf()'s `by` and `column`. */
  function keySetsOf(entryId: string): Array<[KeyColumn, KeyColumn]> {
    const prefix = `${entryId}/`;
    return [...keySets.keys()].filter((key) => key.startsWith(prefix)).map((key) => key.slice(prefix.length).split('/') as [KeyColumn, KeyColumn]);
  }

  /** Drops the key sets of an entry found stale: no source will name it again. */
  function forgetKeys(entryId: string): void {
    for (const key of [...keySets.keys()]) if (key.startsWith(`${entryId}/`)) keySets.delete(key);
  }

  return {
    read: (c, t, o, q) => read(c, t, [o], ([source]) => q(source!)),
    readAll: (c, t, o, q, options) => read(c, t, o, (sources) => q(apart(sources)), 'answer', options),
    answer,
    keysOf,
    stats: () => ({ entries: entries.size, ...counters, answers: answers.size, answerBytes: answers.weight, keySets: keySets.size, keySetRows: keySets.weight }),
    settled: async () => {
      // A fill may start another (the coarser layer's): wait until none is under way.
      while (filling.size > 0 || reading.size > 0) await Promise.allSettled([...filling.values(), ...reading]);
    },
  };
}

/** An entry's key sets as keysOf() holds them: `sets` once read. */
interface KeySlot {
  sets?: KeySets;
}

/**
 * A map that keeps its least recently used first and drops them beyond `maxCount` items, or beyond
 * `maxWeight` all together (each item's weight given when it is set).
 */
function boundedMap<V>(maxCount: number, maxWeight: number) {
  const items = new Map<string, { value: V; weight: number }>();
  let weight = 0;
  const map = {
    /** The value, then the most recently used. */
    get(key: string): V | undefined {
      const item = items.get(key);
      if (!item) return undefined;
      items.delete(key);
      items.set(key, item);
      return item.value;
    },
    /** The value, leaving its place. */
    peek: (key: string): V | undefined => items.get(key)?.value,
    set(key: string, value: V, itemWeight: number): void {
      map.delete(key);
      items.set(key, { value, weight: itemWeight });
      weight += itemWeight;
      while (items.size > maxCount || weight > maxWeight) map.delete(items.keys().next().value!);
    },
    /** Drops `key`; with `value`, only while it holds that value. */
    delete(key: string, value?: V): void {
      const item = items.get(key);
      if (!item || (value !== undefined && item.value !== value)) return;
      items.delete(key);
      weight -= item.weight;
    },
    keys: () => items.keys(),
    get size() {
      return items.size;
    },
    get weight() {
      return weight;
    },
  };
  return map;
}

/** A cached source's raw edges: its own, with these dimensions, or none. */
type EdgeNeed = 'own' | 'none' | Dimension[];

interface Span {
  from: bigint;
  to: bigint;
  params: { cache_from: string; cache_to: string };
}

const MINUTE = 60_000_000_000n;
const HOUR = 60n * MINUTE;

/**
 * The whole units inside the range and before `settledBefore`; undefined when there are none. With
 * `exact`, a range that ended before `settledBefore` is its own span, to the nanosecond: no call of it
 * is still arriving, so nothing of it is left to read raw. A range still open (ending after
 * `settledBefore`) has its span end `lag` earlier than its settled units do (see fillAhead).
 */
function spanOf(options: SourceOptions, unit: bigint, settledBefore: bigint, exact: boolean, lag = 0n): Span | undefined {
  const start = nanosOf(options.range.from);
  const end = nanosOf(options.range.to);
  const settled = exact && end <= settledBefore;
  const from = settled ? start : ceilTo(start, unit);
  const to = settled ? end : end < settledBefore ? floorTo(end, unit) : floorTo(settledBefore, unit) - lag;
  if (from >= to) return undefined;
  return { from, to, params: { cache_from: formatClickHouse(instantFromEpochNanos(from)), cache_to: formatClickHouse(instantFromEpochNanos(to)) } };
}

/** An entry's key sets (see keysOf()); undefined when its rows are not all there. */
async function readKeys(clickhouse: ClickHouseClient, entry: EntryRef, by: KeyColumn, column: KeyColumn): Promise<KeySets | undefined> {
  const rows = await selectRows(
    clickhouse,
    'closedBuckets.keys',
    `SELECT ${by} AS k, groupArrayIf(${column}, ${column} != '') AS keys, count() AS n
     FROM closed_buckets_v1 WHERE entry = {cache_entry:UInt64}
     GROUP BY k`,
    { cache_entry: entry.id },
    keysRow,
  );
  if (rows.reduce((n, r) => n + r.n, 0) !== entry.rows) return undefined;
  return new Map(rows.map((r) => [r.k, new Set(r.keys)]));
}

/** Writes of calls inside the cached span logged after `since` less the settling time. */
function recentWrites(since: string): string {
  return `SELECT count() FROM call_writes_v1
        WHERE tenant = {tenant:String} AND ${writtenInto(since, '')}`;
}

/** A write logged after `since` less the settling time, of calls inside the span `cache_from<suffix>`, `cache_to<suffix>`. */
function writtenInto(since: string, suffix: string): string {
  return `written_at > ${since} - toIntervalSecond({cache_settle:UInt32})
          AND earliest < {cache_to${suffix}:DateTime64(9, 'UTC')} AND latest >= {cache_from${suffix}:DateTime64(9, 'UTC')}`;
}

const KEYS = 't, agent, service, tool, account_id, outcome';

/**
 * An entry's keys: the dimensions its question groups by, the others '' (the source's rows may be finer,
 * e.g. tools under a question by service, and a filter is applied before the entry is filled); and no
 * outcome, which no question reads. So an entry holds as few rows as its answer can come from.
 */
function entryKeys(need: readonly Dimension[]): string {
  const keep = (dimension: Dimension, column: string) => (need.includes(dimension) ? column : `'' AS ${column}`);
  return `${keep('agent', 'agent')}, ${keep('service', 'service')}, ${keep('tool', 'tool')}, ${keep('account', 'account_id')}, '' AS outcome`;
}
const METRICS = 'calls, errors, denials, duration_sum_ns, duration_max_ns, duration_sketch, cost_usd_sum, priced_calls, first_seen, last_seen';

/** The entry's rows; with `guard`, only once it holds (see cacheGuard()). */
function cachedRows(keysOnly: boolean, guard?: string): string {
  return `
    SELECT ${KEYS}${keysOnly ? '' : `, ${METRICS}`}
    FROM closed_buckets_v1
    WHERE entry = {cache_entry:UInt64}${guard ? `\n      AND ${guard}` : ''}`;
}

/**
 * The write-log checks of `guarded`'s entries: one per span, since the earliest fill of an entry over it
 * (a write after that is after the others' fills too, less the same settling time). The sources of one
 * statement mostly share their range, so their entries share a span: agentActivity's three, one check.
 */
function writeChecks(guarded: readonly Found[]): Array<{ from: string; to: string; since: string }> {
  const bySpan = new Map<string, { from: string; to: string; since: string }>();
  for (const { entry, span } of guarded) {
    const key = `${span.params.cache_from}/${span.params.cache_to}`;
    const check = bySpan.get(key);
    // DateTime64(6) text, the same width: its order is the time's.
    if (!check) bySpan.set(key, { from: span.params.cache_from, to: span.params.cache_to, since: entry.since });
    else if (entry.since < check.since) check.since = entry.since;
  }
  return [...bySpan.values()];
}

/** The guard of `guarded`'s entries (cacheGuard()) and the parameters it reads; undefined when there are none. */
function guardOf(guarded: readonly Found[], recount: boolean): { sql: string; params: Record<string, string | number> } | undefined {
  if (guarded.length === 0) return undefined;
  const spans = writeChecks(guarded);
  const params: Record<string, string | number> = {};
  spans.forEach((c, i) => Object.assign(params, { [`cache_since_${i}`]: c.since, [`cache_from_${i}`]: c.from, [`cache_to_${i}`]: c.to }));
  if (recount) {
    guarded.forEach((g, i) => (params[`cache_entry_${i}`] = g.entry.id));
    params.cache_rows = guarded.reduce((n, g) => n + g.entry.rows, 0);
  } else {
    // Each span's check holds the earliest fill over it, so the earliest of those is the earliest fill.
    params.cache_filled = spans.reduce((min, c) => (c.since < min ? c.since : min), spans[0]!.since);
  }
  return { sql: cacheGuard(guarded.length, spans.length, recount), params };
}

/**
 * A condition that fails the statement (throwIf) when a call was written into one of `spans` spans
 * (cache_from_<j>, cache_to_<j>) since cache_since_<j> (writeChecks()), or when one of `n` entries
 * (cache_entry_<i>) may not be all there: with `recount`, their rows together are not cache_rows;
 * without, the server started after the earliest of their fills began (cache_filled), so parts it had
 * not yet written to disk may be gone (uptime() is whole seconds: the start it gives is up to a second
 * late, so a second is taken off; a fill done and a server stopped and started again within that second
 * is not seen). A scalar subquery: ClickHouse runs it once, while it analyses the statement, before any
 * row is read, so it fails the statement even when the entry it stands beside has no row left; and it
 * needs no branch of its own beside the entry's, whose columns would have to match the entry's. Without
 * `recount` it is one subquery instead of three, and each costs the engine its fixed share.
 */
export function cacheGuard(n: number, spans: number, recount: boolean): string {
  const writes = Array.from({ length: spans }, (_, i) => `(${writtenInto(`{cache_since_${i}:DateTime64(6, 'UTC')}`, `_${i}`)})`);
  if (!recount) {
    return `(SELECT throwIf(
        count() > 0 OR now64(6) - toIntervalSecond(uptime() + 1) > {cache_filled:DateTime64(6, 'UTC')},
        'closed-bucket cache entry missing or stale')
      FROM call_writes_v1 WHERE tenant = {tenant:String} AND (${writes.join('\n          OR ')})) = 0`;
  }
  const ids = Array.from({ length: n }, (_, i) => `{cache_entry_${i}:UInt64}`);
  return `(SELECT throwIf(
        (SELECT count() FROM closed_buckets_v1 WHERE entry IN (${ids.join(', ')})) != {cache_rows:UInt64}
        OR (SELECT count() FROM call_writes_v1 WHERE tenant = {tenant:String} AND (${writes.join('\n          OR ')})) > 0,
        'closed-bucket cache entry missing or stale')) = 0`;
}
