/**
 * Time buckets of a series: aligned to multiples of the step since the Unix epoch (UTC), covering the
 * range; the first and last bucket may be partly outside it (only calls inside the range count).
 */
import { badInput } from './params.ts';
import { DAY_SECONDS, HOUR_SECONDS, nanosOf } from './rollup-plan.ts';
import type { TimeRange } from './params.ts';

export const MAX_POINTS = 500;
/** A step chosen automatically gives at most this many buckets; over a day, a whole number of hours. */
export const AUTO_POINTS = 200;
const AUTO_STEPS = [60, 300, 900, 3600, 10_800, 21_600, 43_200, 86_400, 604_800, 2_592_000];
const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

export interface Buckets {
  stepSeconds: number;
  /** Epoch seconds of the first bucket's start. */
  first: number;
  count: number;
}

/** `90s`, `5m`, `1h`, `1d` → seconds; undefined when omitted (then chosen by `buckets`). */
export function parseStep(step: string | null | undefined): number | undefined {
  if (step == null) return undefined;
  const m = /^([1-9]\d{0,6})([smhd])$/.exec(step);
  if (!m) throw badInput(`step must be a whole number and a unit (s, m, h or d), e.g. "5m" or "1h", got ${JSON.stringify(step)}`, 'step');
  return Number(m[1]) * UNITS[m[2]!]!;
}

export function formatStep(seconds: number): string {
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60]] as const) if (seconds % size === 0) return `${seconds / size}${unit}`;
  return `${seconds}s`;
}

export function buckets(range: TimeRange, stepSeconds: number | undefined): Buckets {
  const from = nanosOf(range.from);
  const to = nanosOf(range.to);
  const count = (step: number) => {
    const unit = BigInt(step) * 1_000_000_000n;
    const first = floorDiv(from, unit);
    const last = floorDiv(to - 1n, unit);
    return { first: Number(first) * step, count: Number(last - first + 1n) };
  };
  if (stepSeconds !== undefined) {
    const b = count(stepSeconds);
    if (b.count > MAX_POINTS) {
      throw badInput(`step ${formatStep(stepSeconds)} makes ${b.count} buckets over this range; at most ${MAX_POINTS} are allowed: take a longer step`, 'step');
    }
    return { stepSeconds, ...b };
  }
  const long = to - from > BigInt(DAY_SECONDS) * 1_000_000_000n;
  for (const step of AUTO_STEPS) {
    // Over a day, whole hours: the hourly rollup answers them, sub-hour steps read raw calls.
    if (long && step < HOUR_SECONDS) continue;
    const b = count(step);
    if (b.count <= AUTO_POINTS) return { stepSeconds: step, ...b };
  }
  const step = AUTO_STEPS[AUTO_STEPS.length - 1]!;
  const b = count(step);
  if (b.count > MAX_POINTS) throw badInput(`the range is too long for a series of at most ${MAX_POINTS} buckets`, 'from');
  return { stepSeconds: step, ...b };
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}
