/**
 * The chargeback statement of one billing period: one line per group, adjustment lines for the closed
 * periods it is the next open period of, and a total that is the sum of the printed lines.
 *
 * A closed period's statement is rendered from its stored snapshot, so it never changes. For an open
 * period, each closed period P whose next open period this is gets adjustment lines: P's costs as they
 * are now, minus what was billed for P (its snapshot, plus adjustments for P already billed in later
 * closed periods), per group of the grain P was closed with. Amounts are rounded half-even to the cent
 * per line, so what was billed plus its corrections is exactly P's cost as it is now.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { createGraphQLError } from 'graphql-yoga';
import { queryCostLines } from './cost-line-cache.ts';
import { COST_DIMENSIONS, type CostDimension, type CostLine } from './cost-lines.ts';
import { centsFromAtto, sumLines, type ReportTotal } from './cost-report.ts';
import { appendPeriodLog, listPeriods, nextPeriod, parsePeriod, snapshotText, type Period, type PeriodState, type Snapshot, type SnapshotAdjustment } from './closed-periods.ts';
import { loadPriceBook } from './price-book.ts';

export interface StatementLine extends ReportTotal {
  kind: 'usage' | 'adjustment';
  /** For adjustments: the closed period corrected. */
  adjusts?: string;
  key: Partial<Record<CostDimension, string>>;
}

export interface Statement {
  tenant: string;
  period: Period;
  groupBy: CostDimension[];
  generatedAt: string;
  priceBookVersion: string;
  closed: boolean;
  lines: StatementLine[];
  total: ReportTotal;
}

export class StatementError extends Error {
  constructor(
    message: string,
    readonly code: 'PERIOD_CLOSED_GRAIN' | 'PERIOD_CLOSED' | 'PERIOD_NOT_CLOSED',
  ) {
    super(message);
  }
}

const keyText = (key: Partial<Record<CostDimension, string>>, dims: readonly CostDimension[]) => JSON.stringify(dims.map((d) => key[d] ?? ''));
const project = (key: Partial<Record<CostDimension, string>>, dims: readonly CostDimension[]) => Object.fromEntries(dims.filter((d) => key[d] !== undefined).map((d) => [d, key[d]!]));

/** Exact lines summed to a coarser grain, then each rounded: the same numbers a live query gives. */
function usageLines(lines: Array<{ key: Partial<Record<CostDimension, string>>; calls: bigint; durationNs: bigint; pricedAtto: bigint; reportedAtto: bigint; unpricedCalls: bigint }>, groupBy: CostDimension[]): StatementLine[] {
  const groups = new Map<string, { key: Partial<Record<CostDimension, string>>; calls: bigint; durationNs: bigint; pricedAtto: bigint; reportedAtto: bigint; unpricedCalls: bigint }>();
  for (const l of lines) {
    const id = keyText(l.key, groupBy);
    const g = groups.get(id) ?? { key: project(l.key, groupBy), calls: 0n, durationNs: 0n, pricedAtto: 0n, reportedAtto: 0n, unpricedCalls: 0n };
    g.calls += l.calls;
    g.durationNs += l.durationNs;
    g.pricedAtto += l.pricedAtto;
    g.reportedAtto += l.reportedAtto;
    g.unpricedCalls += l.unpricedCalls;
    groups.set(id, g);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, g]) => {
      const priced = centsFromAtto(g.pricedAtto);
      const reported = centsFromAtto(g.reportedAtto);
      return { kind: 'usage', key: g.key, calls: g.calls, durationNs: g.durationNs, priced, reported, total: priced + reported, unpricedCalls: g.unpricedCalls };
    });
}

function adjustmentLines(adjustments: SnapshotAdjustment[], groupBy: CostDimension[]): StatementLine[] {
  const groups = new Map<string, StatementLine>();
  for (const a of adjustments) {
    const id = `${a.adjusts}|${keyText(a.key, groupBy)}`;
    const g = groups.get(id) ?? { kind: 'adjustment' as const, adjusts: a.adjusts, key: project(a.key, groupBy), calls: 0n, durationNs: 0n, priced: 0n, reported: 0n, total: 0n, unpricedCalls: 0n };
    g.calls += BigInt(a.calls);
    g.durationNs += BigInt(a.durationNs);
    g.priced += BigInt(a.priced);
    g.reported += BigInt(a.reported);
    g.total = g.priced + g.reported;
    groups.set(id, g);
  }
  return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);
}

function fromSnapshotLines(snapshot: Snapshot) {
  return snapshot.lines.map((l) => ({ key: l.key, calls: BigInt(l.calls), durationNs: BigInt(l.durationNs), pricedAtto: BigInt(l.pricedAtto), reportedAtto: BigInt(l.reportedAtto), unpricedCalls: BigInt(l.unpricedCalls) }));
}

/**
 * What is still owed (or owed back) for a closed period: its cost now minus what was billed for it, per
 * group of the grain it was closed with. Zero groups are left out.
 */
async function pendingAdjustments(clickhouse: ClickHouseClient, tenant: string, closed: PeriodState, states: PeriodState[]): Promise<SnapshotAdjustment[]> {
  const snapshot = closed.snapshot!;
  const period = parsePeriod(closed.period)!;
  const grain = snapshot.groupBy;
  const book = await loadPriceBook(clickhouse, tenant);
  const now = await queryCostLines(clickhouse, tenant, period, grain, {}, book);
  const billed = new Map<string, { key: Partial<Record<CostDimension, string>>; calls: bigint; durationNs: bigint; priced: bigint; reported: bigint }>();
  const add = (key: Partial<Record<CostDimension, string>>, calls: bigint, durationNs: bigint, priced: bigint, reported: bigint, sign: bigint) => {
    const id = keyText(key, grain);
    const b = billed.get(id) ?? { key: project(key, grain), calls: 0n, durationNs: 0n, priced: 0n, reported: 0n };
    b.calls += sign * calls;
    b.durationNs += sign * durationNs;
    b.priced += sign * priced;
    b.reported += sign * reported;
    billed.set(id, b);
  };
  for (const l of usageLines(fromSnapshotLines(snapshot), grain)) add(l.key, l.calls, l.durationNs, l.priced, l.reported, -1n);
  for (const s of states) {
    for (const a of s.snapshot?.adjustments ?? []) {
      if (a.adjusts === closed.period) add(a.key, BigInt(a.calls), BigInt(a.durationNs), BigInt(a.priced), BigInt(a.reported), -1n);
    }
  }
  for (const l of now as CostLine[]) add(l.key, l.calls, l.durationNs, centsFromAtto(l.pricedAtto), centsFromAtto(l.reportedAtto), 1n);
  return [...billed.values()]
    .filter((b) => b.calls !== 0n || b.durationNs !== 0n || b.priced !== 0n || b.reported !== 0n)
    .map((b) => ({ adjusts: closed.period, key: b.key, calls: String(b.calls), durationNs: String(b.durationNs), priced: String(b.priced), reported: String(b.reported) }));
}

/** The closed periods whose next open period is `period`. */
function correctedBy(period: Period, states: PeriodState[]): PeriodState[] {
  const closed = new Map(states.filter((s) => s.closed).map((s) => [s.period, s]));
  return [...closed.values()]
    .filter((s) => {
      if (s.period >= period.label) return false;
      let next = nextPeriod(parsePeriod(s.period)!);
      while (closed.has(next.label)) next = nextPeriod(next);
      return next.label === period.label;
    })
    .sort((a, b) => (a.period < b.period ? -1 : 1));
}

/** The live parts of an open period: its usage lines at `grain` (exact) and its pending adjustments. */
async function liveParts(clickhouse: ClickHouseClient, tenant: string, period: Period, grain: CostDimension[], states: PeriodState[]) {
  const book = await loadPriceBook(clickhouse, tenant);
  const lines = await queryCostLines(clickhouse, tenant, period, grain, {}, book);
  const adjustments: SnapshotAdjustment[] = [];
  for (const closed of correctedBy(period, states)) adjustments.push(...(await pendingAdjustments(clickhouse, tenant, closed, states)));
  return { lines, adjustments, version: book.version };
}

function statement(tenant: string, period: Period, groupBy: CostDimension[], generatedAt: string, version: string, closed: boolean, usage: StatementLine[], adjustments: StatementLine[]): Statement {
  const lines = [...usage, ...adjustments];
  return { tenant, period, groupBy, generatedAt, priceBookVersion: version, closed, lines, total: sumLines(lines) };
}

export async function buildStatement(clickhouse: ClickHouseClient, tenant: string, period: Period, groupBy: CostDimension[], nowMs = Date.now()): Promise<Statement> {
  const states = await listPeriods(clickhouse, tenant);
  const state = states.find((s) => s.period === period.label);
  if (state?.closed) {
    const snapshot = state.snapshot!;
    const missing = groupBy.filter((d) => !snapshot.groupBy.includes(d));
    if (missing.length > 0) {
      throw new StatementError(`period ${period.label} was closed grouped by ${snapshot.groupBy.join(',')}; its chargeback can be grouped by those only, not by ${missing.join(',')}`, 'PERIOD_CLOSED_GRAIN');
    }
    return statement(tenant, period, groupBy, snapshot.closedAt, snapshot.priceBookVersion, true, usageLines(fromSnapshotLines(snapshot), groupBy), adjustmentLines(snapshot.adjustments, groupBy));
  }
  const live = await liveParts(clickhouse, tenant, period, groupBy, states);
  return statement(tenant, period, groupBy, new Date(nowMs).toISOString(), live.version, false, usageLines(live.lines, groupBy), adjustmentLines(live.adjustments, groupBy));
}

function conflict(message: string) {
  return createGraphQLError(message, { extensions: { code: 'CONFLICT', http: { status: 409 } } });
}

export async function closePeriod(clickhouse: ClickHouseClient, tenant: string, period: Period, groupBy: CostDimension[], by: string, nowMs = Date.now()): Promise<PeriodState> {
  const states = await listPeriods(clickhouse, tenant);
  if (states.find((s) => s.period === period.label)?.closed) throw conflict(`period ${period.label} is closed already`);
  if (nowMs < period.toMs) throw conflict(`period ${period.label} has not ended yet; it can be closed from ${new Date(period.toMs).toISOString()}`);
  const grain = COST_DIMENSIONS.filter((d) => groupBy.includes(d));
  const live = await liveParts(clickhouse, tenant, period, grain, states);
  const snapshot: Snapshot = {
    period: period.label,
    groupBy: grain,
    closedAt: new Date(nowMs).toISOString(),
    priceBookVersion: live.version,
    lines: live.lines.map((l) => ({ key: l.key, calls: String(l.calls), durationNs: String(l.durationNs), pricedAtto: String(l.pricedAtto), reportedAtto: String(l.reportedAtto), unpricedCalls: String(l.unpricedCalls) })),
    adjustments: live.adjustments,
  };
  await appendPeriodLog(clickhouse, tenant, { period: period.label, action: 'close', snapshot: snapshotText(snapshot), atMs: nowMs, by, reason: '' });
  return (await listPeriods(clickhouse, tenant)).find((s) => s.period === period.label)!;
}

export async function reopenPeriod(clickhouse: ClickHouseClient, tenant: string, period: Period, reason: string, by: string, nowMs = Date.now()): Promise<PeriodState> {
  const states = await listPeriods(clickhouse, tenant);
  if (!states.find((s) => s.period === period.label)?.closed) throw conflict(`period ${period.label} is not closed`);
  await appendPeriodLog(clickhouse, tenant, { period: period.label, action: 'reopen', snapshot: '', atMs: nowMs, by, reason });
  return (await listPeriods(clickhouse, tenant)).find((s) => s.period === period.label)!;
}
