/**
 * What the collector's threads share: starting a TypeScript worker, and the logger and warnings of a
 * worker, which travel to the parent thread as messages (`{ type: 'log', line }` with a pino line,
 * `{ type: 'warn', kind, fields, message }`) and end in the gateway's logger.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { pino } from 'pino';
import type { Logger } from '../core/logger.ts';
import { createWarnings, type Warnings } from './warnings.ts';

export type ThreadLogMessage =
  | { type: 'log'; line: string }
  | { type: 'warn'; kind: string; fields: Record<string, unknown>; message: string };

/**
 * Starts a worker on a TypeScript entry file. Node 20 does not apply `--import tsx` to worker threads,
 * so the worker registers tsx itself before importing the entry (without tsx, the entry is imported
 * as is, e.g. once compiled). A failure shows as the worker's 'error' and 'exit' events.
 */
export function startWorker(entry: URL, options: Omit<WorkerOptions, 'eval'>): Worker {
  let tsx: string | undefined;
  try {
    tsx = import.meta.resolve('tsx/esm/api');
  } catch {
    tsx = undefined;
  }
  const code = tsx
    ? `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); });`
    : `import(${JSON.stringify(entry.href)});`;
  return new Worker(code, { ...options, eval: true });
}

/** A worker's logger and throttled warnings, posted to its parent. */
export function threadLogging(post: (message: ThreadLogMessage) => void, level: string): { logger: Logger; warnings: Warnings } {
  const logger = pino({ level }, { write: (line: string) => post({ type: 'log', line }) });
  // Throttled here, then once more by the gateway's own warnings: one warning per kind across threads.
  const warnings = createWarnings((kind, fields, message) => post({ type: 'warn', kind, fields: plain(fields), message }));
  return { logger, warnings };
}

/** Fields that survive postMessage: errors as { type, message, stack }. */
function plain(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] = value instanceof Error ? { type: value.name, message: value.message, stack: value.stack } : value;
  }
  return out;
}
