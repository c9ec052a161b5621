/**
 * The slowest tools of one tenant over a range, from the rollups (sql/0008): ordered by the chosen
 * latency of allowed calls (p99 unless told), then by the longest call. Tools whose every call was
 * denied (no durations) come last.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { mergedRow, MERGED_METRICS, toMerged } from './aggregate-rows.ts';
import type { AggregateFilter } from './filter.ts';
import type { TimeRange } from './params.ts';
import { NO_CACHE, type ClosedBuckets } from './closed-buckets.ts';
import { selectRows } from './select-rows.ts';

export const TOOL_ORDERS = ['AVG', 'P50', 'P95', 'P99'] as const;
export type ToolOrder = (typeof TOOL_ORDERS)[number];

export interface ToolLatency {
  service: string;
  tool: string;
  calls: number;
  /** Latency of allowed calls; null when every call was denied. */
  avgMs: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  maxMs: number;
  /** errors / calls. */
  errorRate: number;
}

// Fixed expressions chosen by the enum, never text from the request.
const ORDER_KEY: Record<ToolOrder, string> = {
  AVG: 'if(calls > denials, duration_sum_ns / (calls - denials), nan)',
  P50: 'quantiles_ns[1]',
  P95: 'quantiles_ns[2]',
  P99: 'quantiles_ns[3]',
};

const row = z.object({ service: z.string(), tool: z.string(), ...mergedRow });

export async function querySlowestTools(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  filter: AggregateFilter,
  limit: number,
  orderBy: ToolOrder = 'P99',
  buckets: ClosedBuckets = NO_CACHE,
): Promise<ToolLatency[]> {
  const rows = await buckets.read(clickhouse, tenant, { range, filter, need: ['service', 'tool'] }, (source) => {
    const sql = `
SELECT service, tool, ${MERGED_METRICS}, ${ORDER_KEY[orderBy]} AS order_key
FROM ${source.sql}
GROUP BY service, tool
ORDER BY isNaN(order_key) ASC, order_key DESC, duration_max_ns DESC, service ASC, tool ASC
LIMIT {limit:UInt32}`;
    return selectRows(clickhouse, 'slowestTools', sql, { ...source.params, limit }, row);
  });
  return rows.map((r) => {
    const m = toMerged(r);
    return { service: r.service, tool: r.tool, calls: m.calls, avgMs: m.avgMs, p50Ms: m.p50Ms, p95Ms: m.p95Ms, p99Ms: m.p99Ms, maxMs: m.maxMs, errorRate: m.errorRate };
  });
}
