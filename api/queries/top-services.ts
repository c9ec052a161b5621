/** Services of one tenant by calls over a range, busiest first, with their share of all calls. */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { microsFromDecimal, money, type Money } from '../money.ts';
import { ratio } from './aggregate-rows.ts';
import type { AggregateFilter } from './filter.ts';
import type { TimeRange } from './params.ts';
import { NO_CACHE, type ClosedBuckets } from './closed-buckets.ts';
import { count, selectRows } from './select-rows.ts';

export interface ServiceShare {
  service: string;
  calls: number;
  /** calls / all calls in the filtered range (every service, not only those returned). */
  share: number;
  errors: number;
  costUsd: Money;
}

const row = z.object({ service: z.string(), calls: count, errors: count, cost_usd: z.string(), total: count });

export async function queryTopServices(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  filter: AggregateFilter,
  limit: number,
  buckets: ClosedBuckets = NO_CACHE,
): Promise<ServiceShare[]> {
  const rows = await buckets.read(clickhouse, tenant, { range, filter, need: ['service'] }, (source) => {
    const sql = `
SELECT service, calls, errors, cost_usd, sum(calls) OVER () AS total
FROM (
    SELECT service, sum(calls) AS calls, sum(errors) AS errors, toString(sum(cost_usd_sum)) AS cost_usd
    FROM ${source.sql}
    GROUP BY service
)
ORDER BY calls DESC, service ASC
LIMIT {limit:UInt32}`;
    return selectRows(clickhouse, 'topServices', sql, { ...source.params, limit }, row);
  });
  return rows.map((r) => ({ service: r.service, calls: r.calls, share: ratio(r.calls, r.total), errors: r.errors, costUsd: money(microsFromDecimal(r.cost_usd)) }));
}
