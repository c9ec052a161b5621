/**
 * A cost report: the priced lines of a range (./cost-lines.ts), each rounded once, half-even to the cent,
 * and a total that is exactly the sum of the lines as printed. Amounts are integer micro-units
 * (api/money.ts), multiples of 10,000 after rounding.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { loadPriceBook, type PriceBook, type PriceVersion } from './price-book.ts';
import { queryCostLines } from './cost-line-cache.ts';
import type { CostDimension, CostFilter, CostLine, MsRange } from './cost-lines.ts';

const ATTO_PER_CENT = 10_000_000_000_000_000n;
const MICROS_PER_CENT = 10_000n;

/** 10^-18 USD → micro-units, rounded half-even to the cent. */
export function centsFromAtto(atto: bigint): bigint {
  const negative = atto < 0n;
  const abs = negative ? -atto : atto;
  let cents = abs / ATTO_PER_CENT;
  const rest = abs % ATTO_PER_CENT;
  if (rest * 2n > ATTO_PER_CENT || (rest * 2n === ATTO_PER_CENT && cents % 2n === 1n)) cents += 1n;
  const micros = cents * MICROS_PER_CENT;
  return negative ? -micros : micros;
}

export interface ReportLine {
  key: Partial<Record<CostDimension, string>>;
  calls: bigint;
  durationNs: bigint;
  /** Micro-units, rounded to the cent. */
  priced: bigint;
  reported: bigint;
  total: bigint;
  unpricedCalls: bigint;
  rules: PriceVersion[];
}

export interface ReportTotal {
  calls: bigint;
  durationNs: bigint;
  priced: bigint;
  reported: bigint;
  total: bigint;
  unpricedCalls: bigint;
}

export interface CostReport {
  lines: ReportLine[];
  total: ReportTotal;
  priceBookVersion: string;
}

export function roundLine(line: CostLine): ReportLine {
  const priced = centsFromAtto(line.pricedAtto);
  const reported = centsFromAtto(line.reportedAtto);
  return { key: line.key, calls: line.calls, durationNs: line.durationNs, priced, reported, total: priced + reported, unpricedCalls: line.unpricedCalls, rules: line.rules };
}

export function sumLines(lines: Array<Omit<ReportTotal, never>>): ReportTotal {
  const total: ReportTotal = { calls: 0n, durationNs: 0n, priced: 0n, reported: 0n, total: 0n, unpricedCalls: 0n };
  for (const l of lines) {
    total.calls += l.calls;
    total.durationNs += l.durationNs;
    total.priced += l.priced;
    total.reported += l.reported;
    total.total += l.total;
    total.unpricedCalls += l.unpricedCalls;
  }
  return total;
}

export async function queryCostReport(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: MsRange,
  groupBy: readonly CostDimension[],
  filter: CostFilter,
  book?: PriceBook,
): Promise<CostReport> {
  const priceBook = book ?? (await loadPriceBook(clickhouse, tenant));
  const lines = (await queryCostLines(clickhouse, tenant, range, groupBy, filter, priceBook)).map(roundLine);
  return { lines, total: sumLines(lines), priceBookVersion: priceBook.version };
}
