/** Turning the API's time series into chart lines. */
import type { ChartSeries } from '../components/chart.svelte';
import type { Timeseries } from './api.ts';

/** The single series of an ungrouped metric (zeros when the API sent none). */
export function valuesOf(ts: Timeseries, scale = 1): number[] {
  const series = ts.series.find((s) => s.key === null && !s.other) ?? ts.series[0];
  return series ? series.values.map((v) => v * scale) : ts.buckets.map(() => 0);
}

export const COLORS = { calls: '#4f46e5', errors: '#c2362f', denials: '#b45309', cost: '#0f766e', p95: '#7c3aed', avg: '#2563eb' };

export function line(label: string, values: number[], color: string, unit: ChartSeries['unit']): ChartSeries {
  return { label, values, color, unit };
}
