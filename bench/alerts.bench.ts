/**
 * `npm run bench alerts`: the anomaly detector's quality and speed on generated traffic
 * (bench/data/alert-traffic.ts, seeded): a month for 50 agents with anomalies of every kind injected
 * at known times, and the same month clean. Reports precision and recall per kind, false alerts per
 * agent-week on the clean month's last week judged every minute, the median delay from an anomaly's
 * start to its alert in detector intervals (k: raised by the pass judging the minute that ends k
 * intervals after the start, which runs the settle time after it), one pass's duration over 1,000
 * agents × 7 days (measured first, alone in the tables), and the same passes while the ingest runs at
 * full speed in this process: their duration and their CPU, as a share of one core.
 * ALERT_BENCH_SETTINGS tries other settings (JSON, as setAlertSettings); ALERT_BENCH_SKIP_SCALE and
 * ALERT_BENCH_SKIP_QUALITY run one half.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { median } from 'simple-statistics';
import { setTimeout as sleep } from 'node:timers/promises';
import { runBacktest, type BacktestAlert } from '../alerts/backtest.ts';
import { createAlertDetector } from '../alerts/detector.ts';
import { createMemoryAlertStore } from '../alerts/alert-store.ts';
import { ALERT_KINDS, settingsOverride, type AlertKind } from '../alerts/settings.ts';
import { openClickHouse } from '../core/clickhouse.ts';
import { migrate } from '../core/migrate.ts';
import { startIngestLoad, type BatchMark } from './data/ingest-load.ts';
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
/** Each of the two phases with the ingest alone, around the passes beside it. */
const INGEST_PHASE_MS = 10_000;

const logger = pino({ level: 'silent' });
const dataDir = mkdtempSync(path.join(tmpdir(), 'alerts-bench-'));
const clickhouse = await openClickHouse({ database: 'alerts_bench', dataDir });

/**
 * The passes again while the ingest stores audit events at full speed in this process (the in-process
 * queue, worker, pipeline and writer of `npm start` without Kafka, over the same engine). The process's
 * CPU time is read at batch boundaries: with the ingest alone (before and after) it gives the ingest's
 * CPU per row stored; over the passes, what the rows stored meanwhile cost is taken off, and the rest
 * is the detector's. Other processes on the machine do not count in process CPU time.
 */
async function passesBesideIngest(pass: (at: number) => Promise<number>, ats: number[]): Promise<Row[]> {
  const load = startIngestLoad(clickhouse, { tenant: 'ingest-load', logger, dataDir });
  try {
    await load.nextBatch(); // warmed up: the first batch stored
    const aloneA0 = await load.nextBatch();
    await sleep(INGEST_PHASE_MS);
    const aloneA1 = await load.nextBatch();
    const durations: number[] = [];
    for (const at of ats) durations.push(await pass(at));
    const during = await load.nextBatch();
    await sleep(INGEST_PHASE_MS);
    const aloneC1 = await load.nextBatch();

    const perRow = (a: BatchMark, b: BatchMark) => (b.cpuS - a.cpuS) / (b.rows - a.rows);
    const pooledPerRow = (aloneA1.cpuS - aloneA0.cpuS + (aloneC1.cpuS - during.cpuS)) / (aloneA1.rows - aloneA0.rows + (aloneC1.rows - during.rows));
    const aloneS = (aloneA1.at - aloneA0.at + (aloneC1.at - during.at)) / 1000;
    const aloneRate = (aloneA1.rows - aloneA0.rows + (aloneC1.rows - during.rows)) / aloneS;
    const aloneCores = (aloneA1.cpuS - aloneA0.cpuS + (aloneC1.cpuS - during.cpuS)) / aloneS;
    const sharedRate = (during.rows - aloneA1.rows) / ((during.at - aloneA1.at) / 1000);
    /** The detector's CPU a pass, the ingest's rows meanwhile costed at `cpuPerRow`. */
    const passCpu = (cpuPerRow: number) => (during.cpuS - aloneA1.cpuS - (during.rows - aloneA1.rows) * cpuPerRow) / ats.length;
    const passCpuS = passCpu(pooledPerRow);
    // The ingest's cost a row measured before and after the passes: how far the estimate can move.
    const [low, high] = [passCpu(perRow(aloneA0, aloneA1)), passCpu(perRow(during, aloneC1))].sort((a, b) => a - b);
    const passesS = durations.reduce((a, b) => a + b, 0) / 1000;
    console.log(
      `ingest alone ${Math.round(aloneRate).toLocaleString('en-US')} rows/s at ${aloneCores.toFixed(2)} cores (${(pooledPerRow * 1e6).toFixed(1)} µs CPU a row); ` +
        `beside the passes ${Math.round(sharedRate).toLocaleString('en-US')} rows/s; detector CPU ${passCpuS.toFixed(2)} s a pass ` +
        `(${low!.toFixed(2)}–${high!.toFixed(2)} with the ingest's cost a row from before or after alone; passes ${durations.map((d) => d.toFixed(0)).join(', ')} ms)`,
    );
    return [
      [`one pass while the ingest runs at full speed (median of ${ats.length}, ms)`, median(durations).toFixed(0), '', ''],
      [`its CPU, of one core while the passes run (${passCpuS.toFixed(2)} s CPU a pass)`, `${((100 * passCpuS * ats.length) / passesS).toFixed(0)} %`, '', ''],
      [`its CPU, of one core at one pass per ${INTERVAL_S} s`, `${((100 * passCpuS) / INTERVAL_S).toFixed(1)} %`, '', ''],
      [`ingest rows/s alone → beside the passes`, `${Math.round(aloneRate).toLocaleString('en-US')} → ${Math.round(sharedRate).toLocaleString('en-US')}`, '', ''],
    ];
  } finally {
    await load.stop();
  }
}

try {
  await migrate(clickhouse, { retentionDays: 90 });
  // One pass over 1,000 agents × 7 days of rollups, measured first, while the tables hold only those;
  // then the same passes while the ingest runs at full speed in this process.
  const scaleRows: Row[] = [];
  if (!process.env.ALERT_BENCH_SKIP_SCALE) {
    const t = performance.now();
    const scaleStart = planStart(SCALE_DAYS);
    await generateTraffic(clickhouse, { tenant: 'scale', start: scaleStart, days: SCALE_DAYS, agents: agentProfiles(SCALE_AGENTS, SEED + 1, 'bot'), injections: [] });
    console.log(`generated ${SCALE_AGENTS} agents × ${SCALE_DAYS} days in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const detector = createAlertDetector({ clickhouse, logger, store: createMemoryAlertStore(), config: { intervalS: INTERVAL_S, webhookFormat: 'json', tenants: ['scale'], override: OVERRIDE } });
    const passAts = [1, 2, 3, 4, 5].map((k) => (scaleStart + SCALE_DAYS * 86_400 - k * 3600) * 1000);
    const durations: number[] = [];
    for (const at of passAts) durations.push((await detector.runOnce(at)).durationMs);
    const pass = median(durations);
    scaleRows.push([`one pass, ${SCALE_AGENTS} agents × ${SCALE_DAYS} days (median of 5, ms)`, pass.toFixed(0), '≤ 2000', pass <= 2000 ? 'PASS' : 'FAIL']);
    scaleRows.push(...(await passesBesideIngest((at) => detector.runOnce(at).then((r) => r.durationMs), passAts)));
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
  rows.push(...scaleRows);
  printTable(rows);
} finally {
  await clickhouse.close();
  rmSync(dataDir, { recursive: true, force: true });
}
