/**
 * RFC 3339 timestamps with up to nanosecond precision, as Go's time.Time marshals them
 * (`2026-11-24T10:00:00.123456789Z`, `2026-11-24T11:00:00+01:00`).
 * JavaScript's Date keeps milliseconds only, so the sub-millisecond digits are carried apart.
 */

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

export interface Instant {
  /** Whole milliseconds since the Unix epoch, UTC. */
  epochMs: number;
  /** Nanoseconds within that millisecond, 0–999999. */
  subMsNanos: number;
}

/** Parses an RFC 3339 timestamp; returns undefined when it is not one or names an impossible date. */
export function parseRfc3339(text: string): Instant | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac = '', zone] = m;
  const year = Number(y), month = Number(mo), day = Number(d);
  const hour = Number(h), minute = Number(mi), second = Number(s);
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 60) return undefined;
  const probe = new Date(Date.UTC(year, month - 1, day));
  if (probe.getUTCDate() !== day) return undefined; // e.g. February 30th

  let offsetMinutes = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone!.startsWith('-') ? -1 : 1;
    const [oh, om] = zone!.slice(1).split(':').map(Number);
    if (oh! > 23 || om! > 59) return undefined;
    offsetMinutes = sign * (oh! * 60 + om!);
  }
  const nanos = Number(frac.padEnd(9, '0'));
  const epochMs =
    Date.UTC(year, month - 1, day, hour, minute, Math.min(second, 59)) -
    offsetMinutes * 60_000 +
    Math.floor(nanos / 1_000_000);
  return { epochMs, subMsNanos: nanos % 1_000_000 };
}

export function instantFromEpochNanos(nanos: bigint): Instant {
  return { epochMs: Number(nanos / 1_000_000n), subMsNanos: Number(nanos % 1_000_000n) };
}

export function epochNanos(instant: Instant): bigint {
  return BigInt(instant.epochMs) * 1_000_000n + BigInt(instant.subMsNanos);
}

/** `2026-11-24T10:00:00.123456789Z`: canonical RFC 3339 in UTC with nine fractional digits. */
export function formatRfc3339(instant: Instant): string {
  return `${new Date(instant.epochMs).toISOString().slice(0, 23)}${pad6(instant.subMsNanos)}Z`;
}

/** `2026-11-24 10:00:00.123456789`: the text ClickHouse reads into DateTime64(9, 'UTC'). */
export function formatClickHouse(instant: Instant): string {
  return `${new Date(instant.epochMs).toISOString().slice(0, 23).replace('T', ' ')}${pad6(instant.subMsNanos)}`;
}

function pad6(n: number): string {
  return String(n).padStart(6, '0');
}
