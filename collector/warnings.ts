/**
 * Warnings that could repeat once per record (dropped, invalid, Kafka refused) are logged once, then at
 * most once per interval per kind, with the number of repeats left out in between.
 */
import type { Logger } from '../core/logger.ts';

export interface Warnings {
  warn(kind: string, fields: Record<string, unknown>, message: string): void;
}

/** Where a warning that passed the throttle goes: a logger, or another `Warnings` (the worker's go to the gateway's). */
export type WarningSink = Logger | ((kind: string, fields: Record<string, unknown>, message: string) => void);

export function createWarnings(sink: WarningSink, intervalMs = 60_000): Warnings {
  const last = new Map<string, { at: number; suppressed: number }>();
  return {
    warn(kind, fields, message) {
      const now = Date.now();
      const seen = last.get(kind);
      if (seen && now - seen.at < intervalMs) {
        seen.suppressed++;
        return;
      }
      const suppressed = seen?.suppressed ?? 0;
      last.set(kind, { at: now, suppressed: 0 });
      const all = { ...fields, ...(suppressed > 0 && { repeatsNotLogged: suppressed }) };
      if (typeof sink === 'function') sink(kind, all, message);
      else sink.warn(all, message);
    },
  };
}
