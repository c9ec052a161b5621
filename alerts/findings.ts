/**
 * The detector's judgement, without I/O: given one tenant's windows (rollup-windows.ts) and session
 * bursts (session-loops.ts), what is firing now. Each subject is compared with its own baseline: the
 * same time of the week over the past four weeks when the tenant has four weeks of history and the
 * subject was active at that time four weeks ago,
 * the recent windows otherwise. Live passes and the backtest run exactly this.
 */
import { baselineOf, robustScore, type Baseline } from './robust-stats.ts';
import { RECENT_WINDOWS, SEASONAL_SPREAD, pairKey, seasonalWindows, type AccountWindow, type FirstSeen, type ToolWindow, type WindowPlan } from './rollup-windows.ts';
import { sentenceOf, type BaselineKind, type Subject } from './sentences.ts';
import type { SessionBurst } from './session-loops.ts';
import { minVolumeOf, type AlertKind, type AlertSettings } from './settings.ts';

export type Severity = 'WARNING' | 'CRITICAL';

export interface Finding {
  kind: AlertKind;
  subject: Subject;
  severity: Severity;
  observed: number;
  expected: number;
  expectedLow: number;
  expectedHigh: number;
  score: number;
  baseline: BaselineKind;
  sentence: string;
}

export interface DetectorInput {
  plan: WindowPlan;
  settings: AlertSettings;
  /** Start of the tenant's history, epoch seconds. */
  tenantSince: number | undefined;
  /** For the NEW_TOOL candidates' agents only (newToolCandidates), before the judged window. */
  firstSeen: FirstSeen;
  tools: ToolWindow[];
  accounts: AccountWindow[];
  bursts: SessionBurst[];
  usualSessionCounts: Map<string, number[]>;
}

/** Fewest past windows a recent baseline needs. */
const MIN_RECENT_SAMPLES = 6;
/** A window's error, denial or latency figure counts as a sample only with this many calls. */
const MIN_SAMPLE_CALLS = 5;
const SEASONAL_HISTORY_S = 28 * 86_400;

interface Totals {
  calls: number;
  errors: number;
  denials: number;
  costUsd: number;
  p95Ms: number | null;
}

type Series = Map<number, Totals>;

function add(series: Series, window: number, r: Omit<Totals, 'p95Ms'> & { p95Ms?: number | null }) {
  const t = series.get(window) ?? { calls: 0, errors: 0, denials: 0, costUsd: 0, p95Ms: null };
  t.calls += r.calls;
  t.errors += r.errors;
  t.denials += r.denials;
  t.costUsd += r.costUsd;
  if (r.p95Ms != null) t.p95Ms = r.p95Ms;
  series.set(window, t);
}

/**
 * Agents with a tool that may be new: called in the judged window with enough volume and in none of
 * the baseline windows read. Only their history is then looked up (queryFirstSeen).
 */
export function newToolCandidates(tools: ToolWindow[], settings: AlertSettings): string[] {
  const k = settings.kinds.NEW_TOOL;
  if (!k.enabled) return [];
  const seenBefore = new Set<string>();
  for (const r of tools) if (r.window > 0) seenBefore.add(pairKey(r.agent, r.tool));
  const agents = new Set<string>();
  for (const r of tools) if (r.window === 0 && r.calls >= minVolumeOf(settings, 'NEW_TOOL') && !seenBefore.has(pairKey(r.agent, r.tool))) agents.add(r.agent);
  return [...agents].sort();
}

export function detect(input: DetectorInput): Finding[] {
  const { plan, settings, firstSeen } = input;
  const { kinds } = settings;
  const at = plan.at;
  const tenantOld = input.tenantSince !== undefined && input.tenantSince <= at - SEASONAL_HISTORY_S;
  const oldestWeek = Math.max(...plan.weekWindows) - SEASONAL_SPREAD;
  /** Four weeks of history: the tenant's, and the subject was active at this time four weeks ago. */
  const seasonalOk = (series: Series) => tenantOld && [...series.keys()].some((w) => w >= oldestWeek);

  /** The past windows a subject is judged against, and which baseline they make. */
  function windowsFor(series: Series): { windows: number[]; baseline: BaselineKind } | undefined {
    if (seasonalOk(series)) return { windows: seasonalWindows(plan), baseline: 'hour-of-week' };
    let oldest = 0;
    for (const w of series.keys()) if (w >= 1 && w <= RECENT_WINDOWS && w > oldest) oldest = w;
    if (oldest < MIN_RECENT_SAMPLES) return undefined;
    return { windows: Array.from({ length: oldest }, (_, i) => i + 1), baseline: 'recent' };
  }

  const byAgent = new Map<string, Series>();
  const byPair = new Map<string, { agent: string; tool: string; series: Series }>();
  for (const r of input.tools) {
    let a = byAgent.get(r.agent);
    if (!a) byAgent.set(r.agent, (a = new Map()));
    add(a, r.window, { ...r, p95Ms: null });
    const key = pairKey(r.agent, r.tool);
    let p = byPair.get(key);
    if (!p) byPair.set(key, (p = { agent: r.agent, tool: r.tool, series: new Map() }));
    add(p.series, r.window, r);
  }
  const byAccount = new Map<string, Series>();
  for (const r of input.accounts) {
    let s = byAccount.get(r.account);
    if (!s) byAccount.set(r.account, (s = new Map()));
    add(s, r.window, { calls: 0, errors: 0, denials: 0, costUsd: r.costUsd });
  }

  const findings: Finding[] = [];
  const emit = (kind: AlertKind, subject: Subject, observed: number, b: Baseline, score: number, baseline: BaselineKind, calls?: number) => {
    const threshold = kinds[kind].threshold;
    findings.push({
      kind,
      subject,
      severity: threshold > 0 && score >= 2 * threshold ? 'CRITICAL' : 'WARNING',
      observed,
      expected: b.median,
      expectedLow: b.low,
      expectedHigh: b.high,
      score,
      baseline,
      sentence: sentenceOf({ kind, subject, windowMinutes: plan.windowMinutes, observed, expectedLow: b.low, expectedHigh: b.high, baseline, calls }),
    });
  };
  const subject = (agent: string, tool = '', account = '', session = ''): Subject => ({ agent, tool, account, session });
  const counts = (series: Series, windows: number[], pick: (t: Totals) => number) => windows.map((w) => { const t = series.get(w); return t ? pick(t) : 0; });

  /** Call-rate spike: observed calls well above the baseline and above the minimum volume. */
  function callSpike(series: Series, subj: Subject): boolean {
    const k = kinds.CALL_SPIKE;
    const observed = series.get(0)?.calls ?? 0;
    if (!k.enabled || observed < minVolumeOf(settings, 'CALL_SPIKE')) return false;
    const past = windowsFor(series);
    if (!past) return false;
    const b = baselineOf(counts(series, past.windows, (t) => t.calls))!;
    const score = robustScore(observed, b, Math.max(Math.sqrt(b.median), 1));
    if (observed < k.ratio * b.median || score < k.threshold) return false;
    emit('CALL_SPIKE', subj, observed, b, score, past.baseline);
    return true;
  }

  /** Error or denial share of calls well above the baseline share. */
  function shareSpike(kind: 'ERROR_SPIKE' | 'DENIAL_SPIKE', series: Series, agent: string) {
    const k = kinds[kind];
    const pick = (t: Totals) => (kind === 'ERROR_SPIKE' ? t.errors : t.denials);
    const now = series.get(0);
    if (!k.enabled || !now || pick(now) < minVolumeOf(settings, kind)) return;
    const past = windowsFor(series);
    if (!past) return;
    const shares = past.windows.flatMap((w) => { const t = series.get(w); return t && t.calls >= MIN_SAMPLE_CALLS ? [pick(t) / t.calls] : []; });
    const b = baselineOf(shares.length > 0 ? shares : [0])!;
    const observed = pick(now) / now.calls;
    const p = Math.max(b.median, 0.01);
    const score = robustScore(observed, b, Math.sqrt((p * (1 - p)) / now.calls));
    if (observed < k.ratio * b.median || observed - b.median < 0.05 || score < k.threshold) return;
    emit(kind, subject(agent), observed, b, score, past.baseline, now.calls);
  }

  for (const [agent, series] of byAgent) {
    // The agent-wide spike is reported only when no single tool of the agent explains it.
    let toolSpiked = false;
    for (const p of byPair.values()) {
      if (p.agent === agent && callSpike(p.series, subject(agent, p.tool))) toolSpiked = true;
    }
    if (!toolSpiked) callSpike(series, subject(agent));

    const collapse = kinds.CALL_COLLAPSE;
    const past = windowsFor(series);
    if (collapse.enabled && past) {
      const observed = series.get(0)?.calls ?? 0;
      const b = baselineOf(counts(series, past.windows, (t) => t.calls))!;
      const score = -robustScore(observed, b, Math.max(Math.sqrt(b.median), 1));
      if (b.median >= minVolumeOf(settings, 'CALL_COLLAPSE') && observed <= collapse.ratio * b.median && score >= collapse.threshold) {
        emit('CALL_COLLAPSE', subject(agent), observed, b, score, past.baseline);
      }
    }

    shareSpike('ERROR_SPIKE', series, agent);
    shareSpike('DENIAL_SPIKE', series, agent);
    costSpike(series, subject(agent));
  }

  function costSpike(series: Series, subj: Subject) {
    const k = kinds.COST_SPIKE;
    const observed = series.get(0)?.costUsd ?? 0;
    if (!k.enabled || observed < minVolumeOf(settings, 'COST_SPIKE')) return;
    const past = windowsFor(series);
    if (!past) return;
    const b = baselineOf(counts(series, past.windows, (t) => t.costUsd))!;
    const score = robustScore(observed, b, Math.max(0.1 * b.median, 0.01));
    if (observed < k.ratio * b.median || score < k.threshold) return;
    emit('COST_SPIKE', subj, observed, b, score, past.baseline);
  }
  for (const [account, series] of byAccount) costSpike(series, subject('', '', account));

  for (const { agent, tool, series } of byPair.values()) {
    const now = series.get(0);
    if (!now) continue;
    const latency = kinds.LATENCY_REGRESSION;
    if (latency.enabled && now.calls >= minVolumeOf(settings, 'LATENCY_REGRESSION') && now.p95Ms !== null) {
      const past = windowsFor(series);
      const samples = past?.windows.flatMap((w) => { const t = series.get(w); return t && t.calls >= MIN_SAMPLE_CALLS && t.p95Ms !== null ? [t.p95Ms] : []; }) ?? [];
      if (past && samples.length >= 4) {
        const b = baselineOf(samples)!;
        const score = robustScore(now.p95Ms, b, 0.05 * b.median);
        if (now.p95Ms >= latency.ratio * b.median && score >= latency.threshold) emit('LATENCY_REGRESSION', subject(agent, tool), now.p95Ms, b, score, past.baseline);
      }
    }

    // New: no call before the window in the look-back; the agent itself older than its learning period.
    const fresh = kinds.NEW_TOOL;
    const agentSince = firstSeen.agents.get(agent);
    if (
      fresh.enabled &&
      now.calls >= minVolumeOf(settings, 'NEW_TOOL') &&
      series.size === 1 &&
      !firstSeen.pairs.has(pairKey(agent, tool)) &&
      agentSince !== undefined && agentSince <= at - settings.learningHours * 3600
    ) {
      const none = { median: 0, spread: 0, low: 0, high: 0, samples: 0 };
      emit('NEW_TOOL', subject(agent, tool), now.calls, none, now.calls, 'none');
    }
  }

  const loop = kinds.CALL_LOOP;
  if (loop.enabled) {
    for (const burst of input.bursts) {
      if (burst.calls < minVolumeOf(settings, 'CALL_LOOP')) continue;
      const samples = input.usualSessionCounts.get(pairKey(burst.agent, burst.tool)) ?? [];
      const b = baselineOf(samples.length > 0 ? samples : [1])!;
      const usual = Math.max(b.median, 1);
      const score = robustScore(burst.calls, b, Math.max(Math.sqrt(usual), 1));
      if (burst.calls < loop.ratio * usual || score < loop.threshold) continue;
      emit('CALL_LOOP', subject(burst.agent, burst.tool, '', burst.session), burst.calls, b, score, 'recent');
    }
  }
  return findings;
}
