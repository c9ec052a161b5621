/**
 * The anomaly detector: every ALERT_INTERVAL_S it judges each active tenant's last window against its
 * own baseline (findings.ts), turns what fires into alerts (lifecycle.ts), keeps them (alert-store.ts)
 * and queues the webhook deliveries (webhook-outbox.ts) before storing, so none is lost to a crash;
 * the outbox, shared with the API's announcements, is started and stopped by its owner (bin/start.ts).
 * Two processes running it make the same alert ids for the same anomaly (alert-record.ts), so the
 * table keeps one. The backtest runs the same `runOnce` with an in-memory store and no webhook.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { z } from 'zod';
import { selectRows } from '../api/queries/select-rows.ts';
import type { Logger } from '../core/logger.ts';
import type { Alert } from './alert-record.ts';
import { createClickHouseAlertStore, type AlertStore } from './alert-store.ts';
import { budgetFinding, type BudgetCrossingSource } from './budget-crossings.ts';
import { detect, newToolCandidates, type Finding } from './findings.ts';
import { applyFindings } from './lifecycle.ts';
import { planWindows, queryAccountWindows, queryActiveTenants, queryFirstSeen, queryShortWindows, queryTenantSince, queryToolWindows } from './rollup-windows.ts';
import { queryUsualSessionCounts, querySessionBursts } from './session-loops.ts';
import { DEFAULT_SETTINGS, mergeSettings, minVolumeOf, SHORT_WINDOW_KINDS, shortWindowOf, type AlertSettings, type SettingsOverride } from './settings.ts';
import { deliveryOf, type WebhookFormat, type WebhookOutbox } from './webhook-outbox.ts';

export interface AlertDetectorConfig {
  intervalS: number;
  /** The product-wide webhook; a tenant's own URL (alertSettings.webhookUrl) wins. */
  webhookUrl?: string;
  webhookFormat: WebhookFormat;
  /**
   * A pass runs this long after the boundary it judges, so the ingest has stored that minute's
   * rollups (its batches wait up to BATCH_MAX_WAIT_MS, and gateways' clocks differ a little). 10 s.
   */
  settleS?: number;
  /** Settings tried on top of each tenant's stored ones (the backtest's --settings). */
  override?: SettingsOverride;
  /** Only these tenants (the backtest's --tenant); default: every tenant with recent traffic. */
  tenants?: string[];
}

export interface AlertDetectorDependencies {
  clickhouse: ClickHouseClient;
  logger: Logger;
  config: AlertDetectorConfig;
  now?: () => number;
  store?: AlertStore;
  outbox?: WebhookOutbox;
  registry?: Registry;
  /** Budget thresholds crossed, from the cost side; without it no BUDGET_CROSSED alerts. */
  budgets?: BudgetCrossingSource;
}

export interface PassResult {
  /** End of the judged window, epoch seconds. */
  at: number;
  tenants: number;
  findings: Finding[];
  opened: Alert[];
  updated: Alert[];
  resolved: Alert[];
  durationMs: number;
}

export interface AlertDetector {
  start(): void;
  stop(): Promise<void>;
  /** One pass judging the window that ends at `at` (epoch ms, or a Date; default: the last boundary settled). */
  runOnce(at?: number | Date): Promise<PassResult>;
}

/**
 * When the live detector next runs, after `nowMs`: passes judge the windows ending at whole multiples
 * of the interval (each minute's end at the default 60 s) and run `settleS` after that boundary, so a
 * minute is judged as soon as it is complete. The backtest judges the same boundaries (passBoundaries).
 */
export function nextPass(nowMs: number, intervalS: number, settleS: number): { at: number; runAt: number } {
  const step = intervalS * 1000;
  const at = Math.floor((nowMs - settleS * 1000) / step) * step + step;
  return { at, runAt: at + settleS * 1000 };
}

/** The boundaries the live detector judges in [fromMs, toMs], epoch ms. */
export function passBoundaries(fromMs: number, toMs: number, intervalS: number): number[] {
  const step = intervalS * 1000;
  const boundaries: number[] = [];
  for (let at = Math.ceil(fromMs / step) * step; at <= toMs; at += step) boundaries.push(at);
  return boundaries;
}

/** A tenant stays in the passes this long after its last call, so that its falling silent is seen. */
const ACTIVE_HOURS = 3;

const OPEN_TENANTS_SQL = `SELECT DISTINCT tenant FROM alerts_v1 FINAL WHERE status != 'RESOLVED'`;

export function createAlertDetector({ clickhouse, logger, config, now = Date.now, store, outbox, registry, budgets }: AlertDetectorDependencies): AlertDetector {
  const alerts = store ?? createClickHouseAlertStore(clickhouse);
  const settleS = config.settleS ?? 10;
  const metrics = registry && {
    fired: new Counter({ name: 'alerts_fired_total', help: 'Alerts opened, by kind', labelNames: ['kind'], registers: [registry] }),
    open: new Gauge({ name: 'alerts_open', help: 'Alerts open after the last pass, by kind', labelNames: ['kind'], registers: [registry] }),
    pass: new Histogram({ name: 'alert_detector_pass_seconds', help: 'Duration of one detector pass', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30], registers: [registry] }),
  };
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;

  async function tenantsOf(at: number): Promise<string[]> {
    const active = await queryActiveTenants(clickhouse, at, ACTIVE_HOURS);
    const open = store ? [] : (await selectRows(clickhouse, 'tenants with open alerts', OPEN_TENANTS_SQL, {}, z.object({ tenant: z.string() }))).map((r) => r.tenant);
    return [...new Set([...active, ...open])].sort();
  }

  async function judgeTenant(tenant: string, at: number, result: PassResult) {
    const stored = await alerts.settings(tenant);
    let settings: AlertSettings = mergeSettings(DEFAULT_SETTINGS, stored);
    settings = mergeSettings(settings, config.override);
    const plan = planWindows(at, settings.windowMinutes);
    const tenantSince = await queryTenantSince(clickhouse, tenant);
    const seasonal = tenantSince !== undefined && tenantSince <= plan.at - 28 * 86_400;
    const loop = settings.kinds.CALL_LOOP;
    const shortLengths = [...new Set(SHORT_WINDOW_KINDS.filter((k) => settings.kinds[k].enabled).map((k) => shortWindowOf(settings, k)).filter((m) => m > 0))];
    const [tools, accounts, short, bursts] = await Promise.all([
      queryToolWindows(clickhouse, tenant, plan, seasonal),
      settings.kinds.COST_SPIKE.enabled ? queryAccountWindows(clickhouse, tenant, plan, seasonal) : [],
      queryShortWindows(clickhouse, tenant, plan.at, shortLengths),
      loop.enabled ? querySessionBursts(clickhouse, tenant, plan.at, settings.windowMinutes, minVolumeOf(settings, 'CALL_LOOP')) : [],
    ]);
    const pairs = [...new Map(bursts.map((b) => [`${b.agent}\u0000${b.tool}`, [b.agent, b.tool] as [string, string]])).values()];
    const usualSessionCounts = await queryUsualSessionCounts(clickhouse, tenant, plan.at, settings.windowMinutes, pairs);
    const firstSeen = await queryFirstSeen(clickhouse, tenant, plan.at - plan.windowMinutes * 60, newToolCandidates(tools, settings));
    const findings = detect({ plan, settings, tenantSince, firstSeen, tools, accounts, short, bursts, usualSessionCounts });
    if (budgets && settings.kinds.BUDGET_CROSSED.enabled) {
      // A crossing keeps its alert open for the judged window, then it resolves like any other.
      const crossings = await budgets.crossings(tenant, plan.at - settings.windowMinutes * 60, plan.at);
      findings.push(...crossings.map((c) => budgetFinding(c, settings.windowMinutes)));
    }

    const [open, silences] = await Promise.all([alerts.openAlerts(tenant), alerts.silences(tenant, plan.at)]);
    const transition = applyFindings(tenant, open, findings, silences, plan.at, settings);
    const byId = new Map(transition.alerts.map((a) => [a.id, a]));
    const url = settings.webhookUrl ?? config.webhookUrl;
    if (outbox && url) {
      const deliveries = transition.events.flatMap((e) =>
        e.action === 'opened' || e.action === 'escalated' || e.action === 'resolved' ? [deliveryOf(byId.get(e.alertId)!, e.action, e.at, url, config.webhookFormat)] : [],
      );
      await outbox.enqueue(deliveries);
    }
    await alerts.write(transition.alerts, transition.events);

    result.findings.push(...findings);
    for (const e of transition.events) {
      const alert = byId.get(e.alertId)!;
      if (e.action === 'opened') result.opened.push(alert);
      else if (e.action === 'resolved') result.resolved.push(alert);
      else result.updated.push(alert);
    }
  }

  async function runOnce(when?: number | Date): Promise<PassResult> {
    const started = performance.now();
    const atMs = when === undefined ? nextPass(now(), config.intervalS, settleS).at - config.intervalS * 1000 : typeof when === 'number' ? when : when.getTime();
    const at = Math.floor(atMs / 60_000) * 60;
    const tenants = config.tenants ?? (await tenantsOf(at));
    const result: PassResult = { at, tenants: tenants.length, findings: [], opened: [], updated: [], resolved: [], durationMs: 0 };
    for (const tenant of tenants) {
      try {
        await judgeTenant(tenant, at, result);
      } catch (err) {
        logger.error({ err, tenant }, 'alert detector pass failed for a tenant');
      }
    }
    result.durationMs = performance.now() - started;
    if (metrics) {
      for (const a of result.opened) metrics.fired.inc({ kind: a.kind });
      metrics.pass.observe(result.durationMs / 1000);
      if (!store) await refreshOpenGauge(metrics.open);
    }
    if (result.opened.length + result.resolved.length > 0) {
      logger.info({ at: new Date(at * 1000).toISOString(), opened: result.opened.length, resolved: result.resolved.length, ms: Math.round(result.durationMs) }, 'alert detector pass');
    }
    if (outbox) outbox.flush().catch((err: unknown) => logger.error({ err }, 'alert webhook outbox failed'));
    return result;
  }

  async function refreshOpenGauge(gauge: Gauge) {
    const rows = await selectRows(
      clickhouse,
      'open alerts by kind',
      `SELECT kind, count() AS open FROM alerts_v1 FINAL WHERE status != 'RESOLVED' GROUP BY kind`,
      {},
      z.object({ kind: z.string(), open: z.coerce.number() }),
    );
    gauge.reset();
    for (const r of rows) gauge.set({ kind: r.kind }, r.open);
  }

  /** One pass judging `at` (epoch ms); a pass still running when the next is due makes that one skip. */
  function tick(at?: number) {
    if (running) return;
    running = runOnce(at)
      .catch((err: unknown) => logger.error({ err }, 'alert detector pass failed'))
      .finally(() => (running = undefined));
  }

  /** Timers aligned to the boundaries, not a free-running interval that judges a minute up to a minute late. */
  function schedule() {
    const next = nextPass(now(), config.intervalS, settleS);
    timer = setTimeout(() => {
      if (!timer) return;
      tick(next.at);
      schedule();
    }, Math.max(0, next.runAt - now()));
    timer.unref();
  }

  return {
    runOnce,
    start() {
      if (timer) return;
      schedule();
      tick();
    },
    async stop() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
