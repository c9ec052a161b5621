/** Per-agent activity of one tenant over a time range, from the per-minute rollups (busiest first). */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { msFromNs, type TimeRange } from './params.ts';
import { count, maybeFloat, selectRows } from './select-rows.ts';

export interface AgentStats {
  /** "" when the gateway did not report an agent name. */
  agent: string;
  calls: number;
  errors: number;
  denials: number;
  /** Percentiles of allowed calls; null when every call was denied. */
  p50Ms: number | null;
  p99Ms: number | null;
  costUsd: number;
}

const SQL = `
SELECT
    agent,
    sum(calls)                                            AS calls,
    sum(errors)                                           AS errors,
    sum(denials)                                          AS denials,
    quantilesTDigestMerge(0.5, 0.99)(duration_digest)     AS quantiles_ns,
    toFloat64(sum(cost_usd_sum))                          AS cost_usd
FROM tool_calls_1m_v1
WHERE tenant = {tenant:String}
  AND minute >= toStartOfMinute({from:DateTime64(9, 'UTC')})
  AND minute < {to:DateTime64(9, 'UTC')}
GROUP BY agent
ORDER BY calls DESC, agent ASC`;

const row = z.object({
  agent: z.string(),
  calls: count,
  errors: count,
  denials: count,
  quantiles_ns: z.tuple([maybeFloat, maybeFloat]),
  cost_usd: z.number(),
});

export async function queryAgents(clickhouse: ClickHouseClient, tenant: string, range: TimeRange): Promise<AgentStats[]> {
  const rows = await selectRows(clickhouse, 'agents', SQL, { tenant, ...range }, row);
  return rows.map((r) => ({
    agent: r.agent,
    calls: r.calls,
    errors: r.errors,
    denials: r.denials,
    p50Ms: msFromNs(r.quantiles_ns[0]),
    p99Ms: msFromNs(r.quantiles_ns[1]),
    costUsd: r.cost_usd,
  }));
}
