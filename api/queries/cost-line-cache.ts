/**
 * Cost lines (./cost-lines.ts) reused while what they were computed from is unchanged, at two grains:
 *
 * - a whole answer, for the same tenant, range, grouping, filter and price-book version, while the
 *   active parts of the tables it reads, in the months the range touches, are the same ones;
 * - the lines of a range's whole days and weeks (the spans the plan reads from the day and week
 *   rollups), while the active parts of those rollups holding a bucket of those spans are the same
 *   ones, or, when a merge replaced some, while the tenant's calls in those spans of each rollup are as
 *   many as when the lines were computed. Live traffic writes calls of the current day, read by
 *   minute, into other parts: a range that moves by a minute, or a report after an insert, reuses its
 *   days and weeks and reads only its partial days. A late record for a past day or a TTL deletion
 *   there changes the count, and the lines are computed again. (An insert and a deletion of as many
 *   calls in the same spans between two reports would go unseen: deletions are TTL's, of buckets past
 *   the retention.)
 *
 * Lines are sums over the calls they hold, so the lines of the two parts of a plan add up to those of
 * the whole. A part's name is never reused, so a list of names is a version of the rows. The part list
 * and the counts are read before the lines: an insert between the two makes the next look-up miss,
 * never a stale hit. At most 64 entries of each kind per ClickHouse client.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import type { CostSpan } from './cost-plan.ts';
import {
  AGENTLESS_TABLES,
  COARSE_TABLES,
  computeCostLines,
  lineId,
  planFor,
  sortLines,
  type CostDimension,
  type CostFilter,
  type CostLine,
  type CostLineOptions,
  type MsRange,
} from './cost-lines.ts';
import { comparePrecedence, type PriceBook } from './price-book.ts';
import { selectRows } from './select-rows.ts';

interface Entry {
  watermark: string;
  lines: CostLine[];
}

interface SpanEntry extends Entry {
  /** The calls in the spans, per rollup (spansFingerprint). */
  calls: string;
}

const CACHE_SIZE = 64;
const caches = new WeakMap<ClickHouseClient, { answers: Map<string, Entry>; spans: Map<string, SpanEntry> }>();

function monthsOf(range: MsRange): string[] {
  const months: string[] = [];
  const d = new Date(Date.UTC(new Date(range.fromMs).getUTCFullYear(), new Date(range.fromMs).getUTCMonth(), 1));
  while (d.getTime() < range.toMs) {
    months.push(`${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}`);
    d.setUTCMonth(d.getUTCMonth() + 1);
  }
  return months;
}

const COARSE_ROLLUPS = [...Object.values(COARSE_TABLES), ...Object.values(AGENTLESS_TABLES)];
const watermarkRow = z.object({ parts: z.string() });

async function rangeWatermark(clickhouse: ClickHouseClient, range: MsRange): Promise<string> {
  const [row] = await selectRows(
    clickhouse,
    'cost-watermark',
    `SELECT toString(cityHash64(arraySort(groupArray(concat(table, '/', name))))) AS parts FROM system.parts
     WHERE database = currentDatabase() AND table IN {tables:Array(String)} AND active AND partition_id IN {months:Array(String)}`,
    { months: monthsOf(range), tables: ['tool_calls_1m_v1', ...COARSE_ROLLUPS] },
    watermarkRow,
  );
  return row!.parts;
}

/**
 * The active parts of the day (week) rollups holding a bucket of some day (week) span; min_time and
 * max_time are a part's first and last bucket. A week rollup part of the current week's bucket holds
 * today's calls, so it is not compared with the day spans of the same week.
 */
async function spansWatermark(clickhouse: ClickHouseClient, spans: CostSpan[]): Promise<string> {
  const params: Record<string, unknown> = {};
  const levels = (['day', 'week'] as const).map((level) => {
    const mine = spans.filter((s) => s.level === level);
    params[`${level}_tables`] = [COARSE_TABLES[level], AGENTLESS_TABLES[level]];
    params[`${level}_froms`] = mine.map((s) => s.fromMs / 1000);
    params[`${level}_tos`] = mine.map((s) => s.toMs / 1000);
    return `(table IN {${level}_tables:Array(String)} AND arrayExists((f, t) -> max_time >= f AND min_time < t, {${level}_froms:Array(DateTime('UTC'))}, {${level}_tos:Array(DateTime('UTC'))}))`;
  });
  const [row] = await selectRows(
    clickhouse,
    'cost-spans-watermark',
    `SELECT toString(cityHash64(arraySort(groupArray(concat(table, '/', name))))) AS parts FROM system.parts
     WHERE database = currentDatabase() AND active AND (${levels.join(' OR ')})`,
    params,
    watermarkRow,
  );
  return row!.parts;
}

/**
 * The calls of the tenant in the day (week) spans of each day (week) rollup: any insert there adds
 * calls, a TTL deletion removes some, and merges change nothing. Read when the parts have changed:
 * a merge of new parts of the current month into one holding those days changes them.
 */
async function spansFingerprint(clickhouse: ClickHouseClient, tenant: string, spans: CostSpan[]): Promise<string> {
  const params: Record<string, unknown> = { tenant };
  const sums = (['day', 'week'] as const).flatMap((level) => {
    const mine = spans.filter((s) => s.level === level);
    if (mine.length === 0) return [];
    const times = mine.map((s, i) => {
      params[`${level}${i}_from`] = s.fromMs / 1000;
      params[`${level}${i}_to`] = s.toMs / 1000;
      return `(bucket >= {${level}${i}_from:DateTime('UTC')} AND bucket < {${level}${i}_to:DateTime('UTC')})`;
    });
    return [COARSE_TABLES[level], AGENTLESS_TABLES[level]].map((table) => `(SELECT sum(calls) FROM ${table} WHERE tenant = {tenant:String} AND (${times.join(' OR ')}))`);
  });
  const [row] = await selectRows(clickhouse, 'cost-spans-fingerprint', `SELECT toString(tuple(${sums.join(', ')})) AS calls`, params, z.object({ calls: z.string() }));
  return row!.calls;
}

async function reuse(cache: Map<string, Entry>, key: string, watermark: string, compute: () => Promise<CostLine[]>): Promise<CostLine[]> {
  const hit = cache.get(key);
  cache.delete(key);
  const entry = hit?.watermark === watermark ? hit : { watermark, lines: await compute() };
  cache.set(key, entry);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!);
  return entry.lines;
}

/**
 * Lines of whole days and weeks: reused while the parts holding them are the same ones, or, when those
 * changed, while the calls in them are as many (a merge).
 */
async function reuseSpans(
  cache: Map<string, SpanEntry>,
  key: string,
  clickhouse: ClickHouseClient,
  tenant: string,
  spans: CostSpan[],
  compute: () => Promise<CostLine[]>,
): Promise<CostLine[]> {
  const watermark = await spansWatermark(clickhouse, spans);
  const hit = cache.get(key);
  cache.delete(key);
  let entry: SpanEntry;
  if (hit?.watermark === watermark) entry = hit;
  else {
    const calls = await spansFingerprint(clickhouse, tenant, spans);
    entry = hit?.calls === calls ? { ...hit, watermark } : { watermark, calls, lines: await compute() };
  }
  cache.set(key, entry);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!);
  return entry.lines;
}

/** The lines of two parts of a plan as one: sums per line, the rules of both (in precedence order). */
function addLines(book: PriceBook, a: CostLine[], b: CostLine[]): CostLine[] {
  const rank = new Map([...book.prices].sort(comparePrecedence).map((r, i) => [r, i]));
  const byId = new Map(a.map((l) => [lineId(l), l]));
  for (const l of b) {
    const id = lineId(l);
    const other = byId.get(id);
    if (!other) {
      byId.set(id, l);
      continue;
    }
    byId.set(id, {
      ...other,
      calls: other.calls + l.calls,
      durationNs: other.durationNs + l.durationNs,
      pricedAtto: other.pricedAtto + l.pricedAtto,
      reportedAtto: other.reportedAtto + l.reportedAtto,
      unpricedCalls: other.unpricedCalls + l.unpricedCalls,
      rules: [...new Set([...other.rules, ...l.rules])].sort((x, y) => rank.get(x)! - rank.get(y)!),
    });
  }
  return sortLines([...byId.values()]);
}

export async function queryCostLines(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: MsRange,
  groupBy: readonly CostDimension[],
  filter: CostFilter,
  book: PriceBook,
  options: CostLineOptions = {},
): Promise<CostLine[]> {
  let cache = caches.get(clickhouse);
  if (!cache) caches.set(clickhouse, (cache = { answers: new Map(), spans: new Map() }));
  const { spans: spanCache } = cache;
  const question = [tenant, groupBy, filter, book.version, options.byMinute === true, options.sources ?? 'planned'];
  return reuse(cache.answers, JSON.stringify([...question, range]), await rangeWatermark(clickhouse, range), async () => {
    const plan = planFor(book, range, groupBy, options);
    const coarse = plan.filter((s) => s.level !== 'minute');
    const minutes = plan.filter((s) => s.level === 'minute');
    if (coarse.length === 0) return computeCostLines(clickhouse, tenant, range, groupBy, filter, book, options);
    const coarseLines = await reuseSpans(spanCache, JSON.stringify([...question, coarse]), clickhouse, tenant, coarse, () =>
      computeCostLines(clickhouse, tenant, range, groupBy, filter, book, { ...options, spans: coarse }),
    );
    if (minutes.length === 0) return coarseLines;
    return addLines(book, coarseLines, await computeCostLines(clickhouse, tenant, range, groupBy, filter, book, { ...options, spans: minutes }));
  });
}
