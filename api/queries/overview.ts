/**
 * Totals of one tenant over a time range, from the per-minute rollups. A minute bucket counts when it
 * overlaps the range, so the edges resolve to whole minutes.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { msFromNs, type TimeRange } from './params.ts';
import { count, maybeFloat, selectRows } from './select-rows.ts';

export interface Overview {
  calls: number;
  errors: number;
  denials: number;
  /** Distinct agent names (a call with no agent name counts as the agent ""). */
  agents: number;
  /** p99 duration of allowed calls; null when there were none. */
  p99Ms: number | null;
  /** Sum of known costs; calls without a price count as 0. */
  costUsd: number;
}

const SQL = `
SELECT
    sum(calls)                                   AS calls,
    sum(errors)                                  AS errors,
    sum(denials)                                 AS denials,
    uniqExact(agent)                             AS agents,
    quantileTDigestMerge(0.99)(duration_digest)  AS p99_ns,
    toFloat64(sum(cost_usd_sum))                 AS cost_usd
FROM tool_calls_1m_v1
WHERE tenant = {tenant:String}
  AND minute >= toStartOfMinute({from:DateTime64(9, 'UTC')})
  AND minute < {to:DateTime64(9, 'UTC')}`;

const row = z.object({
  calls: count,
  errors: count,
  denials: count,
  agents: count,
  p99_ns: maybeFloat,
  cost_usd: z.number(),
});

export async function queryOverview(clickhouse: ClickHouseClient, tenant: string, range: TimeRange): Promise<Overview> {
  const [r] = await selectRows(clickhouse, 'overview', SQL, { tenant, ...range }, row);
  if (!r) throw new Error('query overview returned no row');
  return {
    calls: r.calls,
    errors: r.errors,
    denials: r.denials,
    agents: r.agents,
    p99Ms: msFromNs(r.p99_ns),
    costUsd: r.cost_usd,
  };
}
