/**
 * Budget thresholds crossed, as the cost side reports them. The cost branch owns budgets; the
 * detector only consumes this interface and turns each crossing into a BUDGET_CROSSED alert, one per
 * budget and threshold (the subject's account carries the budget's scope).
 */
import type { Finding } from './findings.ts';

export interface BudgetCrossing {
  budgetId: string;
  /** What the budget covers; empty parts do not apply. */
  scope: { agent: string; account: string; costCentre: string };
  /** The threshold crossed, in percent of the limit (e.g. 80, 100). */
  thresholdPercent: number;
  /** Spent and limit in integer micro-units of the currency (api/money.ts). */
  spentMicros: bigint;
  limitMicros: bigint;
  currency: string;
  /** Epoch seconds of the crossing. */
  at: number;
}

export interface BudgetCrossingSource {
  /** Crossings of one tenant's budgets in [from, to), epoch seconds. */
  crossings(tenant: string, from: number, to: number): Promise<BudgetCrossing[]>;
}

const amount = (micros: bigint, currency: string) => `${currency === 'USD' ? '$' : `${currency} `}${(Number(micros) / 1e6).toFixed(2)}`;

/** `windowMinutes`: the judged window the crossing fell in. */
export function budgetFinding(c: BudgetCrossing, windowMinutes: number): Finding {
  const who = c.scope.costCentre ? `cost centre ${c.scope.costCentre}` : c.scope.account ? `account ${c.scope.account}` : c.scope.agent || `budget ${c.budgetId}`;
  return {
    kind: 'BUDGET_CROSSED',
    // The budget and threshold are the subject: one alert per threshold crossed.
    subject: { agent: c.scope.agent, tool: '', account: c.scope.account || c.scope.costCentre, session: `${c.budgetId}@${c.thresholdPercent}%` },
    windowMinutes,
    severity: c.thresholdPercent >= 100 ? 'CRITICAL' : 'WARNING',
    observed: Number(c.spentMicros) / 1e6,
    expected: Number(c.limitMicros) / 1e6,
    expectedLow: 0,
    expectedHigh: Number(c.limitMicros) / 1e6,
    score: c.limitMicros > 0n ? Number((c.spentMicros * 10_000n) / c.limitMicros) / 100 : 0,
    baseline: 'none',
    sentence: `${who} has spent ${amount(c.spentMicros, c.currency)} of its ${amount(c.limitMicros, c.currency)} budget (crossed ${c.thresholdPercent}%)`,
  };
}
