/**
 * One metric of one tenant over time, in buckets aligned to the step (step.ts), optionally one series
 * per agent, service, tool or account: the `top` groups by the metric's total (by calls for latencies)
 * keep their own series, the rest fold into one `other` series (its latencies merged, not averaged).
 * Buckets without calls are 0.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { formatRfc3339 } from '../../model/timestamp.ts';
import { microsFromDecimal } from '../money.ts';
import { COLUMN, type AggregateFilter, type Dimension } from './filter.ts';
import { msFromNs, type TimeRange } from './params.ts';
import { NO_CACHE, type ClosedBuckets } from './closed-buckets.ts';
import { count, selectRows } from './select-rows.ts';
import type { SourceOptions } from './rollup-plan.ts';
import type { Buckets } from './step.ts';

export const METRICS = ['CALLS', 'ERRORS', 'DENIALS', 'COST', 'AVG_MS', 'P95_MS'] as const;
export type Metric = (typeof METRICS)[number];
export const GROUP_BYS = ['NONE', 'AGENT', 'SERVICE', 'TOOL', 'ACCOUNT'] as const;
export type GroupBy = (typeof GROUP_BYS)[number];

const GROUP_DIMENSION: Record<Exclude<GroupBy, 'NONE'>, Dimension> = { AGENT: 'agent', SERVICE: 'service', TOOL: 'tool', ACCOUNT: 'account' };

// Fixed expressions chosen by the enum. WEIGHT ranks the groups; VALUE is the bucket's value as text.
const WEIGHT: Record<Metric, string> = {
  CALLS: 'calls',
  ERRORS: 'errors',
  DENIALS: 'denials',
  COST: 'toFloat64(cost_usd_sum)',
  AVG_MS: 'calls',
  P95_MS: 'calls',
};
const VALUE: Record<Metric, string> = {
  CALLS: 'toString(sum(n_calls))',
  ERRORS: 'toString(sum(n_errors))',
  DENIALS: 'toString(sum(n_denials))',
  COST: 'toString(sum(n_cost))',
  AVG_MS: 'toString(if(sum(n_calls) > sum(n_denials), sum(n_duration) / (sum(n_calls) - sum(n_denials)), 0))',
  P95_MS: 'toString(ifNotFinite(quantileDDMerge(0.01, 0.95)(n_sketch), 0))',
};

/** The bucket's merged durations: only P95_MS reads them (merging every row's sketch costs more than the rest). */
const SKETCH = '\n            quantileDDMergeState(0.01, 0.5)(duration_sketch) AS n_sketch,';

export interface Series {
  /** The agent, service, tool or account; null for the one series of groupBy NONE and for `other`. */
  key: string | null;
  /** True for the series folding every group beyond `top`. */
  other: boolean;
  values: number[];
}

export interface Timeseries {
  metric: Metric;
  stepSeconds: number;
  /** RFC 3339 start of each bucket. */
  buckets: string[];
  series: Series[];
}

const row = z.object({ b: count, key: z.string(), other: z.union([z.boolean(), count.transform((n) => n === 1)]), first_rank: count, v: z.string() });

export async function queryTimeseries(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  filter: AggregateFilter,
  metric: Metric,
  buckets: Buckets,
  groupBy: GroupBy,
  top: number,
  cache: ClosedBuckets = NO_CACHE,
): Promise<Timeseries> {
  const dimension = groupBy === 'NONE' ? undefined : GROUP_DIMENSION[groupBy];
  const key = dimension ? COLUMN[dimension] : "''";
  const options: SourceOptions = { range, filter, need: dimension ? [dimension] : [], stepSeconds: buckets.stepSeconds, ...(metric === 'P95_MS' ? {} : { sketch: false as const }) };
  const rows = await cache.read(clickhouse, tenant, options, (source) => {
    const sql = `
SELECT b, if(rank <= {top:UInt32}, key, '') AS key, rank > {top:UInt32} AS other, min(rank) AS first_rank, ${VALUE[metric]} AS v
FROM (
    SELECT *, dense_rank() OVER (ORDER BY weight DESC, key ASC) AS rank
    FROM (
        SELECT
            intDiv(toUnixTimestamp(t), {step:UInt32}) * {step:UInt32} AS b,
            ${key} AS key,
            sum(calls) AS n_calls, sum(errors) AS n_errors, sum(denials) AS n_denials,
            sum(duration_sum_ns) AS n_duration, sum(cost_usd_sum) AS n_cost,${metric === 'P95_MS' ? SKETCH : ''}
            sum(sum(${WEIGHT[metric]})) OVER (PARTITION BY key) AS weight
        FROM ${source.sql}
        GROUP BY b, key
    )
)
GROUP BY b, key, other
ORDER BY b`;
    return selectRows(clickhouse, 'timeseries', sql, { ...source.params, step: buckets.stepSeconds, top }, row);
  });

  const bucketIndex = (b: number) => (b - buckets.first) / buckets.stepSeconds;
  // One series per group, in rank order (the heaviest first), `other` last.
  const series = new Map<string, Series & { rank: number }>();
  for (const r of rows) {
    const id = r.other ? '\u0000other' : r.key;
    let s = series.get(id);
    if (!s) {
      s = { key: r.other || !dimension ? null : r.key, other: r.other, values: new Array<number>(buckets.count).fill(0), rank: r.other ? Infinity : r.first_rank };
      series.set(id, s);
    }
    const i = bucketIndex(r.b);
    if (i >= 0 && i < buckets.count) s.values[i] = value(metric, r.v);
  }
  if (!dimension && series.size === 0) series.set('', { key: null, other: false, values: new Array<number>(buckets.count).fill(0), rank: 1 });
  return {
    metric,
    stepSeconds: buckets.stepSeconds,
    buckets: Array.from({ length: buckets.count }, (_, i) => formatRfc3339({ epochMs: (buckets.first + i * buckets.stepSeconds) * 1000, subMsNanos: 0 })),
    series: [...series.values()].sort((a, b) => a.rank - b.rank).map(({ rank: _, ...s }) => s),
  };
}

const totalsRow = z.object({ b: count }).catchall(z.string());

/**
 * Several metrics of one filter over time, without groupBy (one series each), in one statement: a
 * dashboard chart asks for calls, errors, denials and cost (or latencies) of the same range at once,
 * and each would otherwise read the same rollups and raw edges again. The same series each metric's
 * queryTimeseries answers with groupBy NONE.
 */
export async function queryTotalsOverTime(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  filter: AggregateFilter,
  metrics: readonly Metric[],
  buckets: Buckets,
  cache: ClosedBuckets = NO_CACHE,
): Promise<Map<Metric, Timeseries>> {
  const wanted = [...new Set(metrics)];
  const sketch = wanted.includes('P95_MS');
  const options: SourceOptions = { range, filter, need: [], stepSeconds: buckets.stepSeconds, ...(sketch ? {} : { sketch: false as const }) };
  const rows = await cache.read(clickhouse, tenant, options, (source) => {
    const sql = `
SELECT b, ${wanted.map((m) => `${VALUE[m]} AS v_${m}`).join(', ')}
FROM (
    SELECT
        intDiv(toUnixTimestamp(t), {step:UInt32}) * {step:UInt32} AS b,
        sum(calls) AS n_calls, sum(errors) AS n_errors, sum(denials) AS n_denials,
        sum(duration_sum_ns) AS n_duration, sum(cost_usd_sum) AS n_cost${sketch ? ',\n        quantileDDMergeState(0.01, 0.5)(duration_sketch) AS n_sketch' : ''}
    FROM ${source.sql}
    GROUP BY b
)
GROUP BY b
ORDER BY b`;
    return selectRows(clickhouse, 'timeseries', sql, { ...source.params, step: buckets.stepSeconds }, totalsRow);
  });
  const starts = Array.from({ length: buckets.count }, (_, i) => formatRfc3339({ epochMs: (buckets.first + i * buckets.stepSeconds) * 1000, subMsNanos: 0 }));
  const answer = new Map<Metric, Timeseries>();
  for (const metric of wanted) {
    const values = new Array<number>(buckets.count).fill(0);
    for (const r of rows) {
      const i = (r.b - buckets.first) / buckets.stepSeconds;
      if (i >= 0 && i < buckets.count) values[i] = value(metric, r[`v_${metric}`]!);
    }
    answer.set(metric, { metric, stepSeconds: buckets.stepSeconds, buckets: starts, series: [{ key: null, other: false, values }] });
  }
  return answer;
}

/** Counts as they are, cost in integer micro-dollars (exact), latencies in milliseconds. */
function value(metric: Metric, text: string): number {
  switch (metric) {
    case 'COST':
      return Number(microsFromDecimal(text));
    case 'AVG_MS':
    case 'P95_MS':
      return msFromNs(Number(text)) ?? 0;
    default:
      return Number(text);
  }
}
