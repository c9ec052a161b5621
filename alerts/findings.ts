/**
 * The detector's judgement, without I/O: given one tenant's windows (rollup-windows.ts) and session
 * bursts (session-loops.ts), what is firing now. Each subject is compared with its own baseline: the
 * same time of the week over the past four weeks when the tenant has four weeks of history and the
 * subject was active at that time four weeks ago,
 * the recent windows otherwise. Live passes and the backtest run exactly this.
 */
import { baselineOf, robustScore, type Baseline } from './robust-stats.ts';
import { RECENT_WINDOWS, SEASONAL_SPREAD, pairKey, seasonalWindows, type AccountWindow, type FirstSeen, type ShortWindow, type ToolWindow, type WindowPlan } from './rollup-windows.ts';
import { sentenceOf, type BaselineKind, type Subject } from './sentences.ts';
import type { SessionBurst } from './session-loops.ts';
import { minVolumeOf, shortMinVolumeOf, shortWindowOf, type AlertKind, type AlertSettings } from './settings.ts';

export type Severity = 'WARNING' | 'CRITICAL';

export interface Finding {
  kind: AlertKind;
  subject: Subject;
  /** Length of the window it was seen in: the long window, or a spike kind's short window. */
  windowMinutes: number;
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
  /** The latest short windows, for the kinds that have one (shortWindowMinutes). */
  short: ShortWindow[];
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

/** A subject's windows by index (0: judged), and its latest short windows by length in minutes. */
interface Subjected {
  series: Series;
  short: Map<number, Totals>;
}

/** One thing a kind judges: observed totals, the baseline's scale, the window's length, the least volume. */
interface View {
  now: Totals | undefined;
  scale: number;
  minutes: number;
  minVolume: number;
}

/** A count baseline for a window `factor` times as long as the baseline's windows. */
function scaled(b: Baseline, factor: number): Baseline {
  return factor === 1 ? b : { ...b, median: b.median * factor, spread: b.spread * factor, low: b.low * factor, high: b.high * factor };
}

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

  const byAgent = new Map<string, Subjected>();
  const byPair = new Map<string, Subjected & { agent: string; tool: string }>();
  for (const r of input.tools) {
    let a = byAgent.get(r.agent);
    if (!a) byAgent.set(r.agent, (a = { series: new Map(), short: new Map() }));
    add(a.series, r.window, { ...r, p95Ms: null });
    const key = pairKey(r.agent, r.tool);
    let p = byPair.get(key);
    if (!p) byPair.set(key, (p = { agent: r.agent, tool: r.tool, series: new Map(), short: new Map() }));
    add(p.series, r.window, r);
  }
  const byAccount = new Map<string, Subjected>();
  for (const r of input.accounts) {
    let s = byAccount.get(r.account);
    if (!s) byAccount.set(r.account, (s = { series: new Map(), short: new Map() }));
    add(s.series, r.window, { calls: 0, errors: 0, denials: 0, costUsd: r.costUsd });
  }
  // A subject seen in the short window was seen in window 0, which holds it: it is in the maps above.
  for (const r of input.short) {
    if (r.account !== '') {
      const s = byAccount.get(r.account);
      if (s) add(s.short, r.minutes, { calls: 0, errors: 0, denials: 0, costUsd: r.costUsd });
      continue;
    }
    const a = byAgent.get(r.agent);
    if (a) add(a.short, r.minutes, { ...r, p95Ms: null });
    const p = byPair.get(pairKey(r.agent, r.tool));
    if (p) add(p.short, r.minutes, r);
  }

  /**
   * What a kind looks at for a subject: window 0 against the baseline, then, for a spike kind with a
   * short window, the latest short window against the baseline scaled to its length (counts and
   * money scale; shares and latencies do not). The first view that fires is reported.
   */
  function viewsOf(kind: AlertKind, subj: Subjected): View[] {
    const views: View[] = [{ now: subj.series.get(0), scale: 1, minutes: plan.windowMinutes, minVolume: minVolumeOf(settings, kind) }];
    const minutes = shortWindowOf(settings, kind);
    if (minutes > 0) views.push({ now: subj.short.get(minutes), scale: minutes / plan.windowMinutes, minutes, minVolume: shortMinVolumeOf(settings, kind) });
    return views;
  }

  const findings: Finding[] = [];
  const emit = (kind: AlertKind, subject: Subject, minutes: number, observed: number, b: Baseline, score: number, baseline: BaselineKind, calls?: number) => {
    const threshold = kinds[kind].threshold;
    findings.push({
      kind,
      subject,
      windowMinutes: minutes,
      severity: threshold > 0 && score >= 2 * threshold ? 'CRITICAL' : 'WARNING',
      observed,
      expected: b.median,
      expectedLow: b.low,
      expectedHigh: b.high,
      score,
      baseline,
      sentence: sentenceOf({ kind, subject, windowMinutes: minutes, observed, expectedLow: b.low, expectedHigh: b.high, baseline, calls }),
    });
  };
  const subject = (agent: string, tool = '', account = '', session = ''): Subject => ({ agent, tool, account, session });
  const counts = (series: Series, windows: number[], pick: (t: Totals) => number) => windows.map((w) => { const t = series.get(w); return t ? pick(t) : 0; });

  /** Call-rate spike: observed calls well above the baseline and above the minimum volume. */
  function callSpike(subj: Subjected, who: Subject): boolean {
    const k = kinds.CALL_SPIKE;
    if (!k.enabled) return false;
    const past = windowsFor(subj.series);
    if (!past) return false;
    const full = baselineOf(counts(subj.series, past.windows, (t) => t.calls))!;
    for (const view of viewsOf('CALL_SPIKE', subj)) {
      const observed = view.now?.calls ?? 0;
      if (observed < view.minVolume) continue;
      const b = scaled(full, view.scale);
      const score = robustScore(observed, b, Math.max(Math.sqrt(b.median), 1));
      if (observed < k.ratio * b.median || score < k.threshold) continue;
      emit('CALL_SPIKE', who, view.minutes, observed, b, score, past.baseline);
      return true;
    }
    return false;
  }

  /** Error or denial share of calls well above the baseline share. */
  function shareSpike(kind: 'ERROR_SPIKE' | 'DENIAL_SPIKE', subj: Subjected, agent: string) {
    const k = kinds[kind];
    if (!k.enabled) return;
    const pick = (t: Totals) => (kind === 'ERROR_SPIKE' ? t.errors : t.denials);
    const past = windowsFor(subj.series);
    if (!past) return;
    const shares = past.windows.flatMap((w) => { const t = subj.series.get(w); return t && t.calls >= MIN_SAMPLE_CALLS ? [pick(t) / t.calls] : []; });
    const b = baselineOf(shares.length > 0 ? shares : [0])!;
    for (const { now, minutes, minVolume } of viewsOf(kind, subj)) {
      if (!now || pick(now) < minVolume) continue;
      const observed = pick(now) / now.calls;
      const p = Math.max(b.median, 0.01);
      const score = robustScore(observed, b, Math.sqrt((p * (1 - p)) / now.calls));
      if (observed < k.ratio * b.median || observed - b.median < 0.05 || score < k.threshold) continue;
      emit(kind, subject(agent), minutes, observed, b, score, past.baseline, now.calls);
      return;
    }
  }

  function costSpike(subj: Subjected, who: Subject) {
    const k = kinds.COST_SPIKE;
    if (!k.enabled) return;
    const past = windowsFor(subj.series);
    if (!past) return;
    const full = baselineOf(counts(subj.series, past.windows, (t) => t.costUsd))!;
    for (const view of viewsOf('COST_SPIKE', subj)) {
      const observed = view.now?.costUsd ?? 0;
      if (observed < view.minVolume) continue;
      const b = scaled(full, view.scale);
      const score = robustScore(observed, b, Math.max(0.1 * b.median, 0.01));
      if (observed < k.ratio * b.median || score < k.threshold) continue;
      emit('COST_SPIKE', who, view.minutes, observed, b, score, past.baseline);
      return;
    }
  }

  for (const [agent, subj] of byAgent) {
    // The agent-wide spike is reported only when no single tool of the agent explains it.
    let toolSpiked = false;
    for (const p of byPair.values()) {
      if (p.agent === agent && callSpike(p, subject(agent, p.tool))) toolSpiked = true;
    }
    if (!toolSpiked) callSpike(subj, subject(agent));

    const collapse = kinds.CALL_COLLAPSE;
    const past = windowsFor(subj.series);
    if (collapse.enabled && past) {
      const observed = subj.series.get(0)?.calls ?? 0;
      const b = baselineOf(counts(subj.series, past.windows, (t) => t.calls))!;
      const score = -robustScore(observed, b, Math.max(Math.sqrt(b.median), 1));
      if (b.median >= minVolumeOf(settings, 'CALL_COLLAPSE') && observed <= collapse.ratio * b.median && score >= collapse.threshold) {
        emit('CALL_COLLAPSE', subject(agent), plan.windowMinutes, observed, b, score, past.baseline);
      }
    }

    shareSpike('ERROR_SPIKE', subj, agent);
    shareSpike('DENIAL_SPIKE', subj, agent);
    costSpike(subj, subject(agent));
  }
  for (const [account, subj] of byAccount) costSpike(subj, subject('', '', account));

  for (const pair of byPair.values()) {
    const { agent, tool, series } = pair;
    const now = series.get(0);
    if (!now) continue;
    const latency = kinds.LATENCY_REGRESSION;
    const past = latency.enabled ? windowsFor(series) : undefined;
    const samples = past?.windows.flatMap((w) => { const t = series.get(w); return t && t.calls >= MIN_SAMPLE_CALLS && t.p95Ms !== null ? [t.p95Ms] : []; }) ?? [];
    if (past && samples.length >= 4) {
      const b = baselineOf(samples)!;
      for (const view of viewsOf('LATENCY_REGRESSION', pair)) {
        const p95 = view.now?.p95Ms ?? null;
        if (!view.now || view.now.calls < view.minVolume || p95 === null) continue;
        const score = robustScore(p95, b, 0.05 * b.median);
        if (p95 < latency.ratio * b.median || score < latency.threshold) continue;
        emit('LATENCY_REGRESSION', subject(agent, tool), view.minutes, p95, b, score, past.baseline);
        break;
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
      emit('NEW_TOOL', subject(agent, tool), plan.windowMinutes, now.calls, none, now.calls, 'none');
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
      emit('CALL_LOOP', subject(burst.agent, burst.tool, '', burst.session), plan.windowMinutes, burst.calls, b, score, 'recent');
    }
  }
  return findings;
}
