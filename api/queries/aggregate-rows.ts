/** Pieces every aggregate over callsSource() shares: merged metric columns and their row mapping. */
import { z } from 'zod';
import { microsFromDecimal, money, type Money } from '../money.ts';
import { isoFromClickHouse, msFromNs } from './params.ts';
import { count, maybeFloat } from './select-rows.ts';

/**
 * Merged metrics of a group of source rows; percentiles and averages cover allowed calls only. A
 * percentile is within 1% of the exact value at its rank (DDSketch, relative accuracy 0.01, sql/0008).
 */
export const MERGED_METRICS = `
    sum(calls)                                                    AS calls,
    sum(errors)                                                   AS errors,
    sum(denials)                                                  AS denials,
    sum(duration_sum_ns)                                          AS duration_sum_ns,
    max(duration_max_ns)                                          AS duration_max_ns,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(duration_sketch)      AS quantiles_ns,
    toString(sum(cost_usd_sum))                                   AS cost_usd,
    min(first_seen)                                               AS first_seen,
    max(last_seen)                                                AS last_seen`;

export const mergedRow = {
  calls: count,
  errors: count,
  denials: count,
  duration_sum_ns: count,
  duration_max_ns: count,
  quantiles_ns: z.tuple([maybeFloat, maybeFloat, maybeFloat]),
  cost_usd: z.string(),
  first_seen: z.string(),
  last_seen: z.string(),
};

export interface Merged {
  calls: number;
  errors: number;
  denials: number;
  /** errors / calls; 0 when there were no calls. */
  errorRate: number;
  /** Mean duration of allowed calls; null when every call was denied. */
  avgMs: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  maxMs: number;
  costUsd: Money;
  firstSeen: string;
  lastSeen: string;
}

type MergedRow = { [K in keyof typeof mergedRow]: z.output<(typeof mergedRow)[K]> };

export function toMerged(r: MergedRow): Merged {
  const allowed = r.calls - r.denials;
  return {
    calls: r.calls,
    errors: r.errors,
    denials: r.denials,
    errorRate: ratio(r.errors, r.calls),
    avgMs: allowed > 0 ? msFromNs(r.duration_sum_ns / allowed) : null,
    p50Ms: msFromNs(r.quantiles_ns[0]),
    p95Ms: msFromNs(r.quantiles_ns[1]),
    p99Ms: msFromNs(r.quantiles_ns[2]),
    maxMs: msFromNs(r.duration_max_ns) ?? 0,
    costUsd: money(microsFromDecimal(r.cost_usd)),
    firstSeen: isoFromClickHouse(r.first_seen),
    lastSeen: isoFromClickHouse(r.last_seen),
  };
}

/** part / whole, 0 for an empty whole. */
export function ratio(part: number, whole: number): number {
  return whole === 0 ? 0 : part / whole;
}
