/**
 * `npm run bench alerts`: the anomaly detector's quality and speed on generated traffic
 * (bench/data/alert-traffic.ts, seeded): a month for 50 agents with anomalies of every kind injected
 * at known times, and the same month clean. Reports precision and recall per kind, false alerts per
 * agent-week on the clean month's last week judged every minute, the median delay from an anomaly's
 * start to its alert in detector intervals (k: raised by the pass judging the minute that ends k
 * intervals after the start, which runs the settle time after it), and one pass's duration over 1,000
 * agents × 7 days (measured first, alone in the tables).
 * ALERT_BENCH_SETTINGS tries other settings (JSON, as setAlertSettings); ALERT_BENCH_SKIP_SCALE and
 * ALERT_BENCH_SKIP_QUALITY run one half.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { median } from 'simple-statistics';
import { runBacktest, type BacktestAlert } from '../alerts/backtest.ts';
import { createAlertDetector } from '../alerts/detector.ts';
import { createMemoryAlertStore } from '../alerts/alert-store.ts';
import { ALERT_KINDS, settingsOverride, type AlertKind } from '../alerts/settings.ts';
import { openClickHouse } from '../core/clickhouse.ts';
import { migrate } from '../core/migrate.ts';
import { agentProfiles, generateTraffic, injectionsFor, MAGNITUDES, planStart, SEED, type Injection, type TrafficPlan } from './data/alert-traffic.ts';
import { printTable, type Row } from './table.ts';

const DAYS = 35;
const AGENTS = 50;
const PER_KIND = 5;
const INTERVAL_S = 60;
/**
 * The clean week is judged every this many seconds: every minute, as the live detector does, so each
 * short window is judged too (at 600, a 10-minute window is judged once and most short ones never).
 */
const CLEAN_STEP_S = Number(process.env.ALERT_BENCH_CLEAN_STEP_S ?? INTERVAL_S);
/** Settings tried instead of the defaults, e.g. ALERT_BENCH_SETTINGS='{"windowMinutes":5}'. */
const OVERRIDE = process.env.ALERT_BENCH_SETTINGS ? settingsOverride.parse(JSON.parse(process.env.ALERT_BENCH_SETTINGS)) : undefined;
const SCALE_AGENTS = 1000;
const SCALE_DAYS = 7;

const logger = pino({ level: 'silent' });
const dataDir = mkdtempSync(path.join(tmpdir(), 'alerts-bench-'));
const clickhouse = await openClickHouse({ database: 'alerts_bench', dataDir });

try {
  await migrate(clickhouse, { retentionDays: 90 });
  // One pass over 1,000 agents × 7 days of rollups, measured first, while the tables hold only those.
  let scaleRow: Row | undefined;
  if (!process.env.ALERT_BENCH_SKIP_SCALE) {
    const t = performance.now();
    const scaleStart = planStart(SCALE_DAYS);
    await generateTraffic(clickhouse, { tenant: 'scale', start: scaleStart, days: SCALE_DAYS, agents: agentProfiles(SCALE_AGENTS, SEED + 1, 'bot'), injections: [] });
    console.log(`generated ${SCALE_AGENTS} agents × ${SCALE_DAYS} days in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const detector = createAlertDetector({ clickhouse, logger, store: createMemoryAlertStore(), config: { intervalS: INTERVAL_S, webhookFormat: 'json', tenants: ['scale'], override: OVERRIDE } });
    const durations: number[] = [];
    for (let k = 1; k <= 5; k++) durations.push((await detector.runOnce((scaleStart + SCALE_DAYS * 86_400 - k * 3600) * 1000)).durationMs);
    const pass = median(durations);
    scaleRow = [`one pass, ${SCALE_AGENTS} agents × ${SCALE_DAYS} days (median of 5, ms)`, pass.toFixed(0), '≤ 2000', pass <= 2000 ? 'PASS' : 'FAIL'];
  }
  const rows: Row[] = [];
  if (!process.env.ALERT_BENCH_SKIP_QUALITY) {
    const start = planStart(DAYS);
    const agents = agentProfiles(AGENTS, SEED);
    const injections = injectionsFor(agents, DAYS, PER_KIND, SEED);
    const injected: TrafficPlan = { tenant: 'injected', start, days: DAYS, agents, injections };
    const clean: TrafficPlan = { tenant: 'clean', start, days: DAYS, agents, injections: [] };
    let t = performance.now();
    await generateTraffic(clickhouse, injected);
    await generateTraffic(clickhouse, clean);
    console.log(`generated 2 × ${AGENTS} agents × ${DAYS} days (seed ${SEED}) in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    // Each injection: the detector live from 2 minutes before it starts to 12 minutes after.
    t = performance.now();
    const found: Array<{ injection: Injection; alerts: BacktestAlert[] }> = [];
    for (const injection of injections) {
      const from = (start + injection.from * 60 - 2 * 60) * 1000;
      const result = await runBacktest({ clickhouse, logger, from, to: from + 14 * 60_000, intervalS: INTERVAL_S, tenants: ['injected'], override: OVERRIDE });
      found.push({ injection, alerts: result.opened });
    }
    console.log(`${injections.length} injections judged in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const startOf = (j: Injection) => start + j.from * 60;
    const matches = (j: Injection, a: BacktestAlert) => {
      const agent = agents[j.agent]!;
      const subjectOk = a.alert.subject.agent === agent.name || (j.kind === 'COST_SPIKE' && a.alert.subject.account === agent.account);
      return a.alert.kind === j.kind && subjectOk && a.at >= startOf(j) && a.at <= startOf(j) + (j.minutes + 10) * 60;
    };
    /** An alert on an agent (or its account) while any anomaly is injected there: a true alert of another kind. */
    const secondary = (a: BacktestAlert) =>
      injections.some((j) => {
        const agent = agents[j.agent]!;
        const on = a.alert.subject.agent === agent.name || a.alert.subject.account === agent.account;
        return on && a.at >= startOf(j) && a.at <= startOf(j) + (j.minutes + 15) * 60;
      });

    const delays: number[] = [];
    const delaysByKind = new Map<AlertKind, number[]>();
    const seen = new Set<string>();
    const truePositives = new Map<AlertKind, number>();
    const falsePositives = new Map<AlertKind, number>();
    for (const { injection, alerts } of found) {
      const hit = alerts.filter((a) => matches(injection, a)).sort((a, b) => a.at - b.at)[0];
      if (hit) {
        const delay = Math.max(0, Math.ceil((hit.at - startOf(injection)) / INTERVAL_S));
        delays.push(delay);
        delaysByKind.set(injection.kind, [...(delaysByKind.get(injection.kind) ?? []), delay]);
      }
      for (const a of alerts) {
        const key = `${a.alert.kind}|${JSON.stringify(a.alert.subject)}|${a.at}`;
        if (seen.has(key)) continue; // the same alert seen by two overlapping runs
        seen.add(key);
        const own = injections.some((j) => matches(j, a));
        if (own) truePositives.set(a.alert.kind, (truePositives.get(a.alert.kind) ?? 0) + 1);
        else if (!secondary(a)) falsePositives.set(a.alert.kind, (falsePositives.get(a.alert.kind) ?? 0) + 1);
      }
    }
    for (const kind of ALERT_KINDS.filter((k) => k in MAGNITUDES)) {
      const ofKind = found.filter((f) => f.injection.kind === kind);
      const recalled = ofKind.filter((f) => f.alerts.some((a) => matches(f.injection, a))).length;
      const tp = truePositives.get(kind) ?? 0;
      const fp = falsePositives.get(kind) ?? 0;
      const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
      const recall = ofKind.length === 0 ? 0 : recalled / ofKind.length;
      rows.push([`${kind}: precision (${tp} true, ${fp} false)`, precision.toFixed(2), '≥ 0.90', precision >= 0.9 ? 'PASS' : 'FAIL']);
      rows.push([`${kind}: recall (${recalled} of ${ofKind.length})`, recall.toFixed(2), '≥ 0.90', recall >= 0.9 ? 'PASS' : 'FAIL']);
    }
    const delay = delays.length > 0 ? median(delays) : NaN;
    const byKindDelay = ALERT_KINDS.map((k) => `${k}=${delaysByKind.has(k) ? median(delaysByKind.get(k)!) : '-'}`).join(' ');
    rows.push([`median detection delay, intervals of 60 s (${byKindDelay})`, String(delay), '≤ 2', delay <= 2 ? 'PASS' : 'FAIL']);

    // The clean month's last week (the hour-of-week baseline has its four weeks there).
    t = performance.now();
    const weekFrom = (start + (DAYS - 7) * 86_400) * 1000;
    const cleanRun = await runBacktest({ clickhouse, logger, from: weekFrom, to: weekFrom + 7 * 86_400_000 - 1, intervalS: CLEAN_STEP_S, tenants: ['clean'], override: OVERRIDE });
    const perAgentWeek = cleanRun.opened.length / AGENTS;
    console.log(`clean week: ${cleanRun.passes} passes in ${((performance.now() - t) / 1000).toFixed(1)} s, ${cleanRun.opened.length} alerts`);
    const byKind = ALERT_KINDS.map((k) => `${k}=${cleanRun.opened.filter((a) => a.alert.kind === k).length}`).join(' ');
    rows.push([`false alerts per agent-week, clean week (${byKind})`, perAgentWeek.toFixed(3), '≤ 1', perAgentWeek <= 1 ? 'PASS' : 'FAIL']);
  }
  if (scaleRow) rows.push(scaleRow);
  printTable(rows);
} finally {
  await clickhouse.close();
  rmSync(dataDir, { recursive: true, force: true });
}
