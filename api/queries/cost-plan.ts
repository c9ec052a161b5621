/**
 * Where a cost report reads each part of its range from (sql/0019, sql/0020). Prices are applied at read
 * time, per minute: a minute's calls are priced by the rules and mappings in force at that minute. A
 * coarser rollup row (a day or a week of one service, tool, account and agent) can be priced the same
 * way only if the book does not change inside its bucket: then every minute of it is priced by the same
 * rule and mapped to the same cost centre, and the sum of their costs is the bucket's calls and
 * duration priced once. So the range is split into whole weeks and whole days in which no rule or
 * mapping of the tenant starts or ends (a change exactly at a bucket's start is fine), and the rest: the
 * days with a change inside ("gaps", e.g. a price effective from 14:30 UTC) and the range's partial
 * days at its ends, read minute by minute from tool_calls_1m_v1 as before.
 */
import type { PriceBook } from './price-book.ts';

export const MINUTE_MS = 60_000;
export const DAY_MS = 86_400_000;
/** Weeks start at multiples of 7 days since 1970-01-01 (a Thursday), as the other weekly rollups do. */
export const WEEK_MS = 7 * DAY_MS;

export type CostLevel = 'week' | 'day' | 'minute';

/** [fromMs, toMs) read from one level. */
export interface CostSpan {
  level: CostLevel;
  fromMs: number;
  toMs: number;
}

export interface PlanOptions {
  /** The coarse levels that may be read; none: every minute from the minute rollup. */
  levels: ReadonlySet<Exclude<CostLevel, 'minute'>>;
  /** A report grouped by month: a week across the start of a month is read as days. */
  byMonth?: boolean;
}

/** Every instant at which some price rule or cost-centre mapping of the book starts or ends, ascending. */
export function changePoints(book: PriceBook): number[] {
  const points = new Set<number>();
  for (const v of [...book.prices, ...book.costCentres]) {
    points.add(v.from);
    if (Number.isFinite(v.until)) points.add(v.until);
  }
  return [...points].sort((a, b) => a - b);
}

/** Whether some point p has from < p < to (points ascending). */
function changesInside(points: readonly number[], from: number, to: number): boolean {
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid]! <= from) lo = mid + 1;
    else hi = mid;
  }
  return lo < points.length && points[lo]! < to;
}

const monthOf = (ms: number) => {
  const d = new Date(ms);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
};

/**
 * Splits [range.fromMs, range.toMs) (whole minutes) into spans, each to be priced from one level;
 * adjacent spans of one level are merged. The spans cover the range exactly, in order.
 */
export function planCostSources(book: PriceBook, range: { fromMs: number; toMs: number }, options: PlanOptions): CostSpan[] {
  const spans: CostSpan[] = [];
  const push = (level: CostLevel, fromMs: number, toMs: number) => {
    if (fromMs >= toMs) return;
    const last = spans.at(-1);
    if (last?.level === level && last.toMs === fromMs) last.toMs = toMs;
    else spans.push({ level, fromMs, toMs });
  };
  const firstDay = Math.ceil(range.fromMs / DAY_MS) * DAY_MS;
  const lastDay = Math.floor(range.toMs / DAY_MS) * DAY_MS;
  if (options.levels.size === 0 || firstDay >= lastDay) {
    push('minute', range.fromMs, range.toMs);
    return spans;
  }
  const points = changePoints(book);
  push('minute', range.fromMs, firstDay);
  for (let day = firstDay; day < lastDay; ) {
    const weekEnd = day + WEEK_MS;
    if (
      options.levels.has('week') &&
      day % WEEK_MS === 0 &&
      weekEnd <= lastDay &&
      !changesInside(points, day, weekEnd) &&
      !(options.byMonth && monthOf(day) !== monthOf(weekEnd - 1))
    ) {
      push('week', day, weekEnd);
      day = weekEnd;
      continue;
    }
    push(options.levels.has('day') && !changesInside(points, day, day + DAY_MS) ? 'day' : 'minute', day, day + DAY_MS);
    day += DAY_MS;
  }
  push('minute', lastDay, range.toMs);
  return spans;
}
