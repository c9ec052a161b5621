/**
 * The timestamps the product accepts: from RETENTION_DAYS ago (older rows are dropped by the tables'
 * TTL at their next merge, so a record stamped earlier would be answered 202 and then vanish) to
 * MAX_CLOCK_SKEW_S ahead of this server's clock (later is a gateway's clock bug: stored, it would sit in
 * the future, outside every dashboard range, until the day came). The receiver refuses such a record
 * and the ingest dead-letters it, with the same message.
 *
 * Canonical timestamps (`formatRfc3339`: UTC, nine fractional digits, fixed width) order as strings,
 * so the check compares text and costs no parse.
 */
import type { Issue } from './issues.ts';
import { formatRfc3339 } from './timestamp.ts';

export interface TimeWindowSettings {
  retentionDays: number;
  maxClockSkewSeconds: number;
}

export interface TimeWindow {
  /** The issue on `timestamp` when a canonical timestamp is outside the window; undefined inside it. */
  check(canonicalTimestamp: string): Issue | undefined;
}

const DAY_MS = 24 * 3600 * 1000;

export function createTimeWindow(settings: TimeWindowSettings, now: () => number = Date.now): TimeWindow {
  let bounds: { at: number; from: string; to: string; text: string } | undefined;
  /** The bounds move with the clock, in whole seconds (the window narrower by under a second, its message easier to read). */
  function current(): { from: string; to: string; text: string } {
    const at = now();
    if (!bounds || at - bounds.at >= 100 || at < bounds.at) {
      const from = Math.ceil((at - settings.retentionDays * DAY_MS) / 1000) * 1000;
      const to = Math.floor((at + settings.maxClockSkewSeconds * 1000) / 1000) * 1000;
      bounds = {
        at,
        from: formatRfc3339({ epochMs: from, subMsNanos: 0 }),
        to: formatRfc3339({ epochMs: to, subMsNanos: 0 }),
        text: `accepted from ${wholeSeconds(from)} to ${wholeSeconds(to)}`,
      };
    }
    return bounds;
  }
  return {
    check(timestamp) {
      const { from, to, text } = current();
      if (timestamp >= from && timestamp <= to) return undefined;
      const side =
        timestamp < from
          ? `before the retention window (RETENTION_DAYS=${settings.retentionDays})`
          : `more than ${settings.maxClockSkewSeconds} s ahead of the server's clock (MAX_CLOCK_SKEW_S)`;
      return {
        path: 'timestamp',
        message: `${timestamp} is ${side}; ${text}; send the time of the call, from a synchronized clock`,
      };
    },
  };
}

/** `2026-11-24T10:00:00Z` */
function wholeSeconds(epochMs: number): string {
  return `${new Date(epochMs).toISOString().slice(0, 19)}Z`;
}
