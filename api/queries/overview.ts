/** Totals of one tenant over a range (exact to the nanosecond, see rollup-plan.ts), optionally filtered. */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { microsFromDecimal, money, type Money } from '../money.ts';
import type { AggregateFilter } from './filter.ts';
import { msFromNs, type TimeRange } from './params.ts';
import { NO_CACHE, type ClosedBuckets } from './closed-buckets.ts';
import { count, maybeFloat, selectRows } from './select-rows.ts';

export interface Overview {
  calls: number;
  errors: number;
  denials: number;
  /** Distinct agent names (a call with no agent name counts as the agent ""). */
  agents: number;
  /** p99 duration of allowed calls; null when there were none. */
  p99Ms: number | null;
  /** Sum of reported costs; calls without a price count as 0. */
  costUsd: Money;
}

const row = z.object({ calls: count, errors: count, denials: count, agents: count, p99_ns: maybeFloat, cost_usd: z.string() });

export async function queryOverview(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  filter: AggregateFilter = {},
  buckets: ClosedBuckets = NO_CACHE,
): Promise<Overview> {
  const [r] = await buckets.read(clickhouse, tenant, { range, filter, need: ['agent'] }, (source) => {
    const sql = `
SELECT
    sum(calls)                                   AS calls,
    sum(errors)                                  AS errors,
    sum(denials)                                 AS denials,
    uniqExact(agent)                             AS agents,
    quantileDDMerge(0.01, 0.99)(duration_sketch) AS p99_ns,
    toString(sum(cost_usd_sum))                  AS cost_usd
FROM ${source.sql}`;
    return selectRows(clickhouse, 'overview', sql, source.params, row);
  });
  if (!r) throw new Error('query overview returned no row');
  return { calls: r.calls, errors: r.errors, denials: r.denials, agents: r.agents, p99Ms: msFromNs(r.p99_ns), costUsd: money(microsFromDecimal(r.cost_usd)) };
}
