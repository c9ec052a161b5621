/**
 * What the collector's threads share: starting a TypeScript worker, and the logger and warnings of a
 * worker, which travel to the parent thread as messages (`{ type: 'log', line }` with a pino line,
 * `{ type: 'warn', kind, fields, message }`) and end in the gateway's logger.
 */
import { execFileSync } from 'node:child_process';
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
 * How the collector's own threads (the encoder and its Kafka producer) are scheduled, on Linux; their
 * work (encoding, gzip, kafkajs) can wait, the gateway's thread and its garbage collector's helpers
 * cannot.
 * - `idle` (default): the SCHED_IDLE policy. They run on whatever core time the host's threads leave,
 *   and a host thread that wakes takes its core from them at once. At nice 10 it did not: the kernel's
 *   scheduler (EEVDF, Linux 6.6 and later) lets a running thread finish its slice, a few ms, before a
 *   thread that woke on its core preempts it unless that thread's slice is shorter, whatever the nice
 *   values; a SCHED_IDLE thread has no such protection. The cost: on a host whose cores are all busy
 *   they get almost nothing (a weight of 3 against 1,024 for a host thread), so records wait in the
 *   collector's queues (`queueMaxRecords`), and past those are dropped and counted (`stats().dropped`).
 * - `low`: nice 10, about a tenth of a core's share against each busy host thread, and all the idle
 *   time otherwise.
 * - `normal`: the priority of the thread that started them.
 */
export const THREAD_PRIORITIES = ['idle', 'low', 'normal'] as const;
export type ThreadPriority = (typeof THREAD_PRIORITIES)[number];

/** Nice value of the collector's own threads at `low`, and at `idle` where SCHED_IDLE cannot be set. */
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
  // libuv's thread pool is made by the first thread that uses it, and its threads inherit that
  // thread's priority. Made by a collector thread (its first DNS lookup or file read), the pool the
  // gateway's fs, dns, crypto and zlib calls share would run at the collector's lowered priority:
  // made here, from this thread, it runs at this one's. A call on an existing pool is a no-op's cost.
  fs.access('.', () => undefined);
  return startWorker(entry, { ...options, resourceLimits: COLLECTOR_RESOURCE_LIMITS });
}

/**
 * Lowers the calling thread's scheduling priority to `priority`, and answers what it got. Linux only:
 * the thread's id is what /proc/thread-self names. Nice 10 by setpriority (a thread may always lower
 * its own), then SCHED_IDLE by util-linux's `chrt`, as Node has no call for a scheduling policy (a
 * thread may always move itself there, and back only with CAP_SYS_NICE or a high RLIMIT_NICE). Where
 * `chrt` is missing or refused, the thread keeps nice 10; elsewhere, or if refused, what it had.
 */
export function lowerThreadPriority(priority: ThreadPriority = 'idle'): ThreadPriority {
  if (priority === 'normal') return 'normal';
  let tid: number;
  try {
    tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
  } catch {
    return 'normal';
  }
  if (!Number.isInteger(tid) || tid <= 0) return 'normal';
  let got: ThreadPriority = 'normal';
  try {
    if (os.getPriority(tid) < COLLECTOR_THREAD_NICE) os.setPriority(tid, COLLECTOR_THREAD_NICE);
    got = 'low';
  } catch {
    // refused: the thread keeps its priority.
  }
  if (priority === 'idle') {
    try {
      execFileSync('chrt', ['--idle', '--pid', '0', String(tid)], { stdio: 'ignore', timeout: 5_000 });
      got = 'idle';
    } catch {
      // no chrt, or refused: nice 10 stays.
    }
  }
  return got;
}
