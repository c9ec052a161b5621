/**
 * The detector over stored history, as if it had run live: one pass per boundary the live timer
 * judges (passBoundaries) from `from` to `to`, the same detection (long and short windows), alerts
 * kept in memory (nothing written, nobody paged). Settings can be tried before they are saved.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { Logger } from '../core/logger.ts';
import type { Alert } from './alert-record.ts';
import { createMemoryAlertStore, readOverride } from './alert-store.ts';
import { createAlertDetector, passBoundaries } from './detector.ts';
import type { SettingsOverride } from './settings.ts';

export interface BacktestOptions {
  clickhouse: ClickHouseClient;
  logger: Logger;
  /** Epoch milliseconds; passes judge the windows ending at each multiple of the interval in [from, to]. */
  from: number;
  to: number;
  intervalS: number;
  tenants?: string[];
  override?: SettingsOverride;
}

export interface BacktestAlert {
  /** When the pass that opened it judged (epoch seconds). */
  at: number;
  alert: Alert;
}

export interface BacktestResult {
  opened: BacktestAlert[];
  passes: number;
  /** Slowest single pass, ms. */
  slowestPassMs: number;
}

export async function runBacktest(options: BacktestOptions, onAlert?: (a: BacktestAlert) => void): Promise<BacktestResult> {
  const { clickhouse, logger, intervalS } = options;
  // Each tenant's stored settings, so the backtest judges as the live detector would.
  const overrides = new Map<string, SettingsOverride>();
  for (const tenant of options.tenants ?? []) {
    const stored = await readOverride(clickhouse, tenant);
    if (stored) overrides.set(tenant, stored);
  }
  const store = createMemoryAlertStore(overrides);
  const detector = createAlertDetector({
    clickhouse,
    logger,
    store,
    config: { intervalS, webhookFormat: 'json', override: options.override, tenants: options.tenants },
  });
  const result: BacktestResult = { opened: [], passes: 0, slowestPassMs: 0 };
  // The boundaries the live detector judges, each as it would right after it settled.
  for (const at of passBoundaries(options.from, options.to, intervalS)) {
    const pass = await detector.runOnce(at);
    result.passes++;
    result.slowestPassMs = Math.max(result.slowestPassMs, pass.durationMs);
    for (const alert of pass.opened) {
      const entry = { at: pass.at, alert };
      result.opened.push(entry);
      onAlert?.(entry);
    }
  }
  return result;
}
