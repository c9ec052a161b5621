/**
 * A baseline from past windows, robust to the odd outlier among them: the median as the expectation,
 * the median absolute deviation (scaled to a standard deviation) as the spread, the 5th–95th
 * percentiles as the "usual" range a sentence quotes.
 */
import { median, medianAbsoluteDeviation, quantile } from 'simple-statistics';

export interface Baseline {
  median: number;
  /** 1.4826 × MAD: a standard deviation for normally distributed samples. */
  spread: number;
  low: number;
  high: number;
  samples: number;
}

/** Consistency constant between the MAD and the standard deviation of a normal distribution. */
const MAD_TO_SD = 1.4826;

export function baselineOf(samples: number[]): Baseline | undefined {
  if (samples.length === 0) return undefined;
  return {
    median: median(samples),
    spread: MAD_TO_SD * medianAbsoluteDeviation(samples),
    low: quantile(samples, 0.05),
    high: quantile(samples, 0.95),
    samples: samples.length,
  };
}

/**
 * How many spreads `observed` lies from the median. The spread is never below `floor`: a baseline of
 * identical windows (MAD 0) would otherwise make any change infinitely surprising.
 */
export function robustScore(observed: number, baseline: Baseline, floor: number): number {
  return (observed - baseline.median) / Math.max(baseline.spread, floor, Number.EPSILON);
}
