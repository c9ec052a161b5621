/**
 * What the collector's threads share: starting a TypeScript worker, and the logger and warnings of a
 * worker, which travel to the parent thread as messages (`{ type: 'log', line }` with a pino line,
 * `{ type: 'warn', kind, fields, message }`) and end in the gateway's logger.
 */
import fs from 'node:fs';
import os from 'node:os';
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

/**
 * Nice value of the collector's own threads. Their work (encoding, gzip, kafkajs) can wait; the
 * gateway's thread and the V8 helper threads of its garbage collector cannot: on a busy machine a
 * runnable collector thread at the same priority takes the core a parallel scavenge or a request
 * would have had. At nice 10 the kernel gives such a thread about a tenth of a core's share when it
 * competes with the host's threads, and all the idle CPU otherwise.
 */
export const COLLECTOR_THREAD_NICE = 10;

/**
 * Resource limits of the collector's own threads: a small young generation (by default V8 lets a
 * worker's grow to a size set by the machine's memory). Most of what they allocate dies within a
 * batch, so the cap costs them only more, shorter scavenges. Grown large, the Kafka thread's heap went
 * through mark-compacts several times a second, whose marking and sweeping run on V8's helper
 * threads: shared with the gateway's isolate, at the process's priority, on the cores the gateway's
 * thread waits for.
 */
export const COLLECTOR_RESOURCE_LIMITS = Object.freeze({ maxYoungGenerationSizeMb: 8 });

/** Starts one of the collector's own threads (the Kafka thread, the encoder): startWorker with its limits. */
export function startCollectorThread(entry: URL, options: Omit<WorkerOptions, 'eval' | 'resourceLimits'>): Worker {
  return startWorker(entry, { ...options, resourceLimits: COLLECTOR_RESOURCE_LIMITS });
}

/**
 * Lowers the calling thread's scheduling priority (Linux: setpriority on the thread's id, which
 * /proc/thread-self names; a thread may always lower its own). Elsewhere, or if refused, nothing.
 */
export function lowerThreadPriority(nice = COLLECTOR_THREAD_NICE): boolean {
  try {
    const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return false;
    if (os.getPriority(tid) >= nice) return true;
    os.setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}
