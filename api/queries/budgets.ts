/**
 * Budgets per cost centre, account or agent and billing period, with thresholds in percent. Spend is the
 * priced plus the reported cost so far (exact); the forecast extends the spend linearly to the period's
 * end. A threshold is crossed at the first rollup minute whose cumulative spend reaches it; each crossing
 * is recorded once in `budget_events_v1` (the alerts read them).
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { formatClickHouse } from '../../model/timestamp.ts';
import { queryCostLines } from './cost-line-cache.ts';
import type { CostDimension } from './cost-lines.ts';
import type { Period } from './closed-periods.ts';
import { centsFromAtto } from './cost-report.ts';
import { loadPriceBook } from './price-book.ts';
import { selectRows } from './select-rows.ts';

export const SCOPES = { cost_centre: 'costCentre', account: 'account', agent: 'agent' } as const satisfies Record<string, CostDimension>;
export type Scope = keyof typeof SCOPES;
const ATTO_PER_MICRO = 1_000_000_000_000n;

export interface Budget {
  scope: Scope;
  key: string;
  period: string;
  amountMicros: bigint;
  thresholds: number[];
  changedAt: string;
  changedBy: string;
}

export interface BudgetEvent {
  scope: Scope;
  key: string;
  period: string;
  threshold: number;
  budgetMicros: bigint;
  spendMicros: bigint;
  crossedMinute: string;
  recordedAt: string;
}

export interface BudgetStatus extends Budget {
  /** Micro-units, rounded half-even to the cent. */
  spend: bigint;
  forecast: bigint;
  events: BudgetEvent[];
}

const budgetRow = z.object({
  scope: z.enum(['cost_centre', 'account', 'agent']),
  key: z.string(),
  period: z.string(),
  last_amount_micros: z.coerce.bigint(),
  last_thresholds: z.array(z.coerce.number().int()),
  last_retired: z.coerce.boolean(),
  last_changed_at: z.string(),
  last_changed_by: z.string(),
});

const eventRow = z.object({
  scope: z.enum(['cost_centre', 'account', 'agent']),
  key: z.string(),
  period: z.string(),
  threshold: z.coerce.number().int(),
  budget_micros: z.coerce.bigint(),
  spend_micros: z.coerce.bigint(),
  crossed_minute: z.string(),
  recorded_at: z.string(),
});

const iso = (clickhouseTime: string) => `${clickhouseTime.replace(' ', 'T')}Z`;

export async function setBudget(clickhouse: ClickHouseClient, tenant: string, budget: Omit<Budget, 'changedAt' | 'changedBy'> & { retired?: boolean }, changedBy: string): Promise<void> {
  await clickhouse.insert({
    table: 'budgets_v1',
    format: 'JSONEachRow',
    values: [
      {
        tenant,
        scope: budget.scope,
        key: budget.key,
        period: budget.period,
        amount_micros: budget.amountMicros.toString(),
        thresholds: budget.thresholds,
        retired: budget.retired ?? false,
        changed_at: formatClickHouse({ epochMs: Date.now(), subMsNanos: 0 }),
        changed_by: changedBy,
      },
    ],
  });
}

export async function listBudgets(clickhouse: ClickHouseClient, tenant: string, period: string): Promise<Budget[]> {
  const rows = await selectRows(
    clickhouse,
    'budgets',
    `SELECT scope, key, period, toString(argMax(amount_micros, changed_at)) AS last_amount_micros, argMax(thresholds, changed_at) AS last_thresholds,
            argMax(retired, changed_at) AS last_retired, toString(max(changed_at)) AS last_changed_at, argMax(changed_by, changed_at) AS last_changed_by
     FROM budgets_v1 WHERE tenant = {tenant:String} AND period = {period:String}
     GROUP BY scope, key, period ORDER BY scope, key`,
    { tenant, period },
    budgetRow,
  );
  return rows
    .filter((r) => !r.last_retired)
    .map((r) => ({ scope: r.scope, key: r.key, period: r.period, amountMicros: r.last_amount_micros, thresholds: r.last_thresholds, changedAt: iso(r.last_changed_at), changedBy: r.last_changed_by }));
}

export async function listBudgetEvents(clickhouse: ClickHouseClient, tenant: string, period: string): Promise<BudgetEvent[]> {
  const rows = await selectRows(
    clickhouse,
    'budget-events',
    `SELECT scope, key, period, threshold, toString(budget_micros) AS budget_micros, toString(spend_micros) AS spend_micros,
            toString(crossed_minute) AS crossed_minute, toString(recorded_at) AS recorded_at
     FROM budget_events_v1 FINAL WHERE tenant = {tenant:String} AND period = {period:String}
     ORDER BY crossed_minute, scope, key, threshold`,
    { tenant, period },
    eventRow,
  );
  return rows.map((r) => ({ scope: r.scope, key: r.key, period: r.period, threshold: r.threshold, budgetMicros: r.budget_micros, spendMicros: r.spend_micros, crossedMinute: iso(r.crossed_minute), recordedAt: iso(r.recorded_at) }));
}

/**
 * Spend against each budget of the period, recording every threshold crossing not recorded yet.
 * Crossings are found per minute from the rollups, so a late record or a back-dated price that moves a
 * crossing earlier is found too; a crossing once recorded stays.
 */
export async function checkBudgets(clickhouse: ClickHouseClient, tenant: string, period: Period, nowMs = Date.now()): Promise<BudgetStatus[]> {
  const budgets = await listBudgets(clickhouse, tenant, period.label);
  if (budgets.length === 0) return [];
  const book = await loadPriceBook(clickhouse, tenant);
  const recorded = await listBudgetEvents(clickhouse, tenant, period.label);
  const fresh: BudgetEvent[] = [];
  const statuses: BudgetStatus[] = [];
  for (const scope of Object.keys(SCOPES) as Scope[]) {
    const ofScope = budgets.filter((b) => b.scope === scope);
    if (ofScope.length === 0) continue;
    const dimension = SCOPES[scope];
    const minutes = await queryCostLines(clickhouse, tenant, period, [dimension], {}, book, { byMinute: true });
    for (const budget of ofScope) {
      let cumulative = 0n;
      const crossings = new Map<number, { minute: string; spend: bigint }>();
      for (const m of minutes) {
        if (m.key[dimension] !== budget.key) continue;
        cumulative += m.pricedAtto + m.reportedAtto;
        for (const t of budget.thresholds) {
          if (!crossings.has(t) && cumulative * 100n >= BigInt(t) * budget.amountMicros * ATTO_PER_MICRO) crossings.set(t, { minute: m.minute!, spend: cumulative });
        }
      }
      const elapsed = Math.min(Math.max(nowMs, period.fromMs), period.toMs) - period.fromMs;
      const whole = period.toMs - period.fromMs;
      const forecast = elapsed <= 0 ? 0n : (cumulative * BigInt(whole)) / BigInt(elapsed);
      for (const [threshold, c] of [...crossings.entries()].sort(([a], [b]) => a - b)) {
        const known = recorded.find((e) => e.scope === scope && e.key === budget.key && e.threshold === threshold);
        if (known) continue;
        fresh.push({ scope, key: budget.key, period: period.label, threshold, budgetMicros: budget.amountMicros, spendMicros: centsFromAtto(c.spend), crossedMinute: `${c.minute.replace(' ', 'T')}Z`, recordedAt: new Date(nowMs).toISOString() });
      }
      statuses.push({ ...budget, spend: centsFromAtto(cumulative), forecast: centsFromAtto(forecast), events: [] });
    }
  }
  if (fresh.length > 0) {
    await clickhouse.insert({
      table: 'budget_events_v1',
      format: 'JSONEachRow',
      values: fresh.map((e) => ({
        tenant,
        scope: e.scope,
        key: e.key,
        period: e.period,
        threshold: e.threshold,
        budget_micros: e.budgetMicros.toString(),
        spend_micros: e.spendMicros.toString(),
        crossed_minute: e.crossedMinute.slice(0, 19).replace('T', ' '),
        recorded_at: formatClickHouse({ epochMs: nowMs, subMsNanos: 0 }),
      })),
    });
  }
  const events = [...recorded, ...fresh];
  for (const s of statuses) s.events = events.filter((e) => e.scope === s.scope && e.key === s.key).sort((a, b) => a.threshold - b.threshold);
  return statuses;
}

/** Checks the current month's budgets of every tenant that has any; returns the number of tenants checked. */
export async function checkAllBudgets(clickhouse: ClickHouseClient, period: Period, nowMs = Date.now()): Promise<number> {
  const tenants = await selectRows(clickhouse, 'budget-tenants', 'SELECT DISTINCT tenant FROM budgets_v1 WHERE period = {period:String}', { period: period.label }, z.object({ tenant: z.string() }));
  for (const { tenant } of tenants) await checkBudgets(clickhouse, tenant, period, nowMs);
  return tenants.length;
}
