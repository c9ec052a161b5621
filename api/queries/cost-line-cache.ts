/**
 * Cost lines (./cost-lines.ts) reused while what they were computed from is unchanged, at two grains:
 *
 * - a whole answer, for the same tenant, range, grouping, filter and price-book version, while the
 *   active parts of the tables it reads, in the months the range touches, are the same ones;
 * - the lines of a range's whole days and weeks (the spans the plan reads from the day and week
 *   rollups), while the active parts of those rollups that hold any bucket of those spans are the same
 *   ones. Live traffic writes calls of the current day, read by minute: parts of other buckets, so a
 *   range that moves by a minute, or a report after an insert, reuses its days and weeks and reads only
 *   its partial days. A late record for a past day, a merge or a TTL deletion that touches those
 *   buckets makes new parts, and the lines are computed again.
 *
 * Lines are sums over the calls they hold, so the lines of the two parts of a plan add up to those of
 * the whole. A part's name is never reused, so a list of names is a version of the rows. The part list
 * is read before the lines: an insert between the two makes the next look-up miss, never a stale hit.
 * At most 64 entries of each kind per ClickHouse client.
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

const CACHE_SIZE = 64;
const caches = new WeakMap<ClickHouseClient, { answers: Map<string, Entry>; spans: Map<string, Entry> }>();

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

/** The active parts of the day and week rollups holding a bucket of some span (min_time, max_time: their buckets' range). */
async function spansWatermark(clickhouse: ClickHouseClient, spans: CostSpan[]): Promise<string> {
  const [row] = await selectRows(
    clickhouse,
    'cost-spans-watermark',
    `SELECT toString(cityHash64(arraySort(groupArray(concat(table, '/', name))))) AS parts FROM system.parts
     WHERE database = currentDatabase() AND table IN {tables:Array(String)} AND active
       AND arrayExists((f, t) -> max_time >= f AND min_time < t, {froms:Array(DateTime('UTC'))}, {tos:Array(DateTime('UTC'))})`,
    { tables: COARSE_ROLLUPS, froms: spans.map((s) => s.fromMs / 1000), tos: spans.map((s) => s.toMs / 1000) },
    watermarkRow,
  );
  return row!.parts;
}

async function reuse(cache: Map<string, Entry>, key: string, watermark: string, compute: () => Promise<CostLine[]>): Promise<CostLine[]> {
  const hit = cache.get(key);
  cache.delete(key);
  const entry = hit?.watermark === watermark ? hit : { watermark, lines: await compute() };
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
    const coarseLines = await reuse(spanCache, JSON.stringify([...question, coarse]), await spansWatermark(clickhouse, coarse), () =>
      computeCostLines(clickhouse, tenant, range, groupBy, filter, book, { ...options, spans: coarse }),
    );
    if (minutes.length === 0) return coarseLines;
    return addLines(book, coarseLines, await computeCostLines(clickhouse, tenant, range, groupBy, filter, book, { ...options, spans: minutes }));
  });
}
