/**
 * The slowest tools of one tenant over a time range, from the per-minute rollups: ordered by p99 of
 * allowed calls, then by the longest call. Tools whose every call was denied (no durations) come last.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { msFromNs, type TimeRange } from './params.ts';
import { count, maybeFloat, selectRows } from './select-rows.ts';

export interface ToolLatency {
  service: string;
  tool: string;
  calls: number;
  /** Percentiles of allowed calls; null when every call was denied. */
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  maxMs: number;
}

const SQL = `
SELECT
    service,
    tool,
    sum(calls)                                                  AS calls,
    quantilesTDigestMerge(0.5, 0.95, 0.99)(duration_digest)     AS quantiles_ns,
    max(duration_max_ns)                                        AS max_ns
FROM tool_calls_1m_v1
WHERE tenant = {tenant:String}
  AND minute >= toStartOfMinute({from:DateTime64(9, 'UTC')})
  AND minute < {to:DateTime64(9, 'UTC')}
GROUP BY service, tool
ORDER BY isNaN(quantiles_ns[3]) ASC, quantiles_ns[3] DESC, max_ns DESC, service ASC, tool ASC
LIMIT {limit:UInt32}`;

const row = z.object({
  service: z.string(),
  tool: z.string(),
  calls: count,
  quantiles_ns: z.tuple([maybeFloat, maybeFloat, maybeFloat]),
  max_ns: count,
});

export async function querySlowestTools(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  limit: number,
): Promise<ToolLatency[]> {
  const rows = await selectRows(clickhouse, 'slowestTools', SQL, { tenant, ...range, limit }, row);
  return rows.map((r) => ({
    service: r.service,
    tool: r.tool,
    calls: r.calls,
    p50Ms: msFromNs(r.quantiles_ns[0]),
    p95Ms: msFromNs(r.quantiles_ns[1]),
    p99Ms: msFromNs(r.quantiles_ns[2]),
    maxMs: msFromNs(r.max_ns) ?? 0,
  }));
}
