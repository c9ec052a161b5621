/**
 * The detector's source of budget crossings: the threshold crossings the cost side records in
 * budget_events_v1 (api/queries/budgets.ts checks every budget each minute). A crossing is asked for
 * by the minute that crossed, or by when it was recorded, so one recorded after its minute's pass
 * window (a late record, a back-dated price) still reaches the next pass.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { selectRows } from '../api/queries/select-rows.ts';
import { CURRENCY } from '../api/money.ts';
import type { BudgetCrossing, BudgetCrossingSource } from './budget-crossings.ts';

const SQL = `
SELECT scope, key, period, threshold, toString(budget_micros) AS budget_micros, toString(spend_micros) AS spend_micros,
       toUnixTimestamp(crossed_minute) AS at
FROM budget_events_v1 FINAL
WHERE tenant = {tenant:String}
  AND crossed_minute < toDateTime({to:UInt32}, 'UTC')
  AND (crossed_minute >= toDateTime({from:UInt32}, 'UTC') OR recorded_at >= toDateTime64({from:UInt32}, 6, 'UTC'))
ORDER BY crossed_minute, scope, key, threshold`;

const row = z.object({
  scope: z.enum(['cost_centre', 'account', 'agent']),
  key: z.string(),
  period: z.string(),
  threshold: z.coerce.number().int(),
  budget_micros: z.string().transform((s) => BigInt(s)),
  spend_micros: z.string().transform((s) => BigInt(s)),
  at: z.coerce.number().int(),
});

export function createBudgetEventSource(clickhouse: ClickHouseClient): BudgetCrossingSource {
  return {
    async crossings(tenant, from, to): Promise<BudgetCrossing[]> {
      const rows = await selectRows(clickhouse, 'alert-budget-crossings', SQL, { tenant, from: Math.floor(from), to: Math.ceil(to) }, row);
      return rows.map((r) => ({
        budgetId: `${r.scope}:${r.key}:${r.period}`,
        scope: { agent: r.scope === 'agent' ? r.key : '', account: r.scope === 'account' ? r.key : '', costCentre: r.scope === 'cost_centre' ? r.key : '' },
        thresholdPercent: r.threshold,
        spentMicros: r.spend_micros,
        limitMicros: r.budget_micros,
        currency: CURRENCY,
        at: r.at,
      }));
    },
  };
}
