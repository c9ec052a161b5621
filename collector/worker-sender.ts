/**
 * The gateway-side half of the worker sender: `enqueue` pushes on a bounded queue (as the in-thread
 * sender does), and batches are posted to the collector's threads, which validate (encoder-entry.ts),
 * spool and send them (worker-entry.ts): to the encoder's port when the Kafka thread hands one over
 * with its 'ready', else to the Kafka thread itself. At most `queueMaxRecords` records are in the worker at a time;
 * beyond that they wait here, and beyond this queue's capacity they are dropped and counted.
 *
 * Recorded tool calls (`enqueueToolCall`) wait in the same queue and are posted as columns
 * (tool-call-wire.ts): the encoder thread makes their records and spans.
 *
 * If the worker cannot start (or dies), the collector carries on with an in-thread sender on the same
 * spool directory (`createFallback`), after the worker has exited, and tool calls are finished in the
 * gateway's thread (`finishInThread`); records that were inside the dead worker are counted as dropped
 * (spooled ones are on disk and are sent by the fallback).
 */
import type { MessagePort, Worker } from 'node:worker_threads';
import type { Logger } from '../core/logger.ts';
import { BoundedQueue } from './bounded-queue.ts';
import { EncodedMessage, type QueueItem } from './prepare.ts';
import type { Sender, SenderStats } from './sender.ts';
import type { SpoolRecord } from './spool.ts';
import { ToolCall } from './tool-call.ts';
import { ToolCallWriter } from './tool-call-wire.ts';
import type { Warnings } from './warnings.ts';
import type { FromWorker, ToWorker, WorkerConfig } from './worker-entry.ts';
import { startCollectorThread } from './worker-thread.ts';
import type { AuditRecordInput } from '../model/audit-event.ts';

export interface WorkerSenderOptions {
  config: Omit<WorkerConfig, 'logLevel'>;
  logger: Logger;
  /** The worker's throttled warnings are throttled once more here, with the gateway thread's own. */
  warnings: Warnings;
  /** An in-thread sender, used when the worker cannot run. */
  createFallback(): Sender<QueueItem>;
  /** Finishes a tool call in the gateway's thread (its record and span to the fallback), when the worker cannot run. */
  finishInThread(call: ToolCall): void;
  /** Takes back a tool call once posted: nothing refers to it any more. */
  recycle?(call: ToolCall): void;
}

export interface WorkerSender extends Sender<QueueItem> {
  /** Queues a call `wireable` says can be finished in the worker; false when the queue is full. */
  enqueueToolCall(call: ToolCall): boolean;
}

/** Items per postMessage: cloning is synchronous on the gateway's loop, so it is done in small slices. */
const POST_CHUNK = 256;
/**
 * Longest a record waits here before it is posted (batches for Kafka are made in the worker). Short, so
 * that records die young in the gateway's heap: one kept 200 ms outlives a few scavenges at load and is
 * promoted to the old generation, which the gateway's major GCs then pay for.
 */
const POST_DELAY_MS = 10;

const EMPTY: SenderStats = { sent: 0, spilled: 0, dropped: 0, failed: 0, invalid: 0, queued: 0, spooledBytes: 0, spooledRecords: 0, settled: 0 };
const PINO_LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

export function createWorkerSender(options: WorkerSenderOptions): WorkerSender {
  const { config, logger } = options;
  const { batchMaxRecords, batchMaxWaitMs, queueMaxRecords } = config;
  const postChunk = Math.min(batchMaxRecords, POST_CHUNK);
  const postDelayMs = Math.min(batchMaxWaitMs, POST_DELAY_MS);
  const local = new BoundedQueue<QueueItem | ToolCall>(queueMaxRecords);
  const calls = new ToolCallWriter(postChunk);
  let remote: SenderStats = EMPTY;
  let posted = 0;
  let done = 0;
  let lost = 0;
  let ready = false;
  let closing = false;
  let exited = false;
  let fallback: Sender<QueueItem> | undefined;
  let batchTimer: NodeJS.Timeout | undefined;
  let pumpPending = false;
  let due = false;
  let nextId = 1;
  let refs = 0;
  const replies = new Map<number, () => void>();
  const readyWaiters: (() => void)[] = [];

  const workerData: WorkerConfig = { ...config, logLevel: logger.level };
  const worker = startCollectorThread(new URL('./worker-entry.ts', import.meta.url), { workerData, name: 'mcp-collector' });
  worker.unref();
  /** Where records and requests go: the encoder thread's port, or the Kafka thread. */
  let target: Worker | MessagePort = worker;
  worker.on('message', (message: FromWorker) => {
    switch (message.type) {
      case 'ready':
        if (message.port) {
          target = message.port;
          message.port.unref();
        }
        ready = true;
        for (const resolve of readyWaiters.splice(0)) resolve();
        pump();
        return;
      case 'progress':
        remote = message.stats;
        done = message.done;
        pump();
        return;
      case 'flushed':
      case 'closed':
        replies.get(message.id)?.();
        replies.delete(message.id);
        return;
      case 'log':
        relog(message.line);
        return;
      case 'warn':
        options.warnings.warn(message.kind, { ...message.fields, thread: 'collector-worker' }, message.message);
        return;
    }
  });
  worker.on('error', (error) => logger.error({ err: error }, 'the collector worker failed'));
  worker.on('exit', (code) => {
    exited = true;
    if (closing && replies.size === 0) return;
    lost += posted - done;
    if (!closing) {
      logger.error({ exitCode: code, lostRecords: posted - done }, 'the collector worker stopped; continuing in the gateway thread');
      fallback = options.createFallback();
      for (const item of local.take(local.length)) {
        if (item instanceof ToolCall) options.finishInThread(item);
        else fallback.enqueue(item);
      }
    }
    for (const resolve of readyWaiters.splice(0)) resolve();
    for (const resolve of replies.values()) resolve();
    replies.clear();
  });

  function relog(line: string): void {
    try {
      const { level, msg, time: _time, pid: _pid, hostname: _hostname, ...fields } = JSON.parse(line) as Record<string, unknown>;
      const method = PINO_LEVELS[level as number] ?? 'info';
      logger[method]({ ...fields, thread: 'collector-worker' }, typeof msg === 'string' ? msg : '');
    } catch {
      logger.warn({ line }, 'unreadable log line from the collector worker');
    }
  }

  function enqueue(item: QueueItem): boolean {
    if (fallback) return fallback.enqueue(item);
    return push(item);
  }

  function enqueueToolCall(call: ToolCall): boolean {
    if (fallback) {
      options.finishInThread(call);
      return true;
    }
    return push(call);
  }

  function push(item: QueueItem | ToolCall): boolean {
    if (!local.push(item)) return false;
    if (local.length >= postChunk) pumpSoon();
    else if (batchTimer === undefined) armTimer();
    return true;
  }

  /** When the oldest queued record has waited POST_DELAY_MS, everything queued is posted. */
  function armTimer(): void {
    batchTimer = setTimeout(() => {
      batchTimer = undefined;
      due = true;
      pump();
    }, postDelayMs);
    batchTimer.unref();
  }

  function pumpSoon(): void {
    if (pumpPending) return;
    pumpPending = true;
    setImmediate(() => {
      pumpPending = false;
      pump();
    }).unref();
  }

  /**
   * Posts one slice (cloning it is synchronous work on this thread), then yields before the next:
   * full slices while the worker has room, the rest once due.
   */
  function pump(): void {
    if (!ready || fallback || exited) return;
    if (local.length === 0) {
      due = false;
      return;
    }
    if (posted - done >= queueMaxRecords) return; // the next progress report pumps again
    if (!due && local.length < postChunk) {
      if (batchTimer === undefined) armTimer();
      return;
    }
    postSlice();
    if (local.length > 0) pumpSoon();
    else due = false;
  }

  function postSlice(): void {
    const items = local.take(postChunk);
    const audits: AuditRecordInput[] = [];
    const spans: SpoolRecord[] = [];
    for (const item of items) {
      if (item instanceof ToolCall) {
        if (calls.add(item)) options.recycle?.(item);
        else options.finishInThread(item); // its route cannot be posted: finished here
      } else if (item instanceof EncodedMessage) spans.push(item.record);
      else audits.push(item);
    }
    const count = audits.length + spans.length + calls.length;
    try {
      target.postMessage({ type: 'items', audits, spans, calls: calls.length > 0 ? calls.take() : undefined } satisfies ToWorker);
    } finally {
      calls.clear();
    }
    posted += count;
  }

  /** Sends a request and waits for its reply, keeping the process alive meanwhile. */
  function request(message: ToWorker & { id: number }): Promise<void> {
    if (exited) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (refs++ === 0) worker.ref();
      replies.set(message.id, () => {
        if (--refs === 0) worker.unref();
        resolve();
      });
      target.postMessage(message);
    });
  }

  async function whenReady(): Promise<void> {
    if (ready || exited) return;
    if (refs++ === 0) worker.ref();
    await new Promise<void>((resolve) => readyWaiters.push(resolve));
    if (--refs === 0) worker.unref();
  }

  async function flush(): Promise<void> {
    await whenReady();
    if (fallback) return fallback.flush();
    // Everything queued here goes to the worker first, whatever its load: flush waits for all of it.
    while (local.length > 0 && !exited && !fallback) postSlice();
    await request({ type: 'flush', id: nextId++ });
    if (fallback) await (fallback as Sender<QueueItem>).flush();
  }

  async function close(timeoutMs: number): Promise<void> {
    closing = true;
    if (batchTimer !== undefined) clearTimeout(batchTimer);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs + 2_000)));
    await Promise.race([
      (async () => {
        await flush();
        if (fallback) return fallback.close(timeoutMs);
        await request({ type: 'close', id: nextId++, timeoutMs });
      })(),
      deadline,
    ]);
    clearTimeout(timer);
    if (!exited) await worker.terminate();
  }

  return {
    enqueue,
    enqueueToolCall,
    stats() {
      const inWorker = exited ? 0 : posted - done;
      const base = fallback ? sum(remote, fallback.stats()) : remote;
      return { ...base, queued: local.length + inWorker + (fallback?.stats().queued ?? 0), dropped: base.dropped + lost };
    },
    flush,
    close,
  };
}

function sum(a: SenderStats, b: SenderStats): SenderStats {
  return {
    sent: a.sent + b.sent,
    spilled: a.spilled + b.spilled,
    dropped: a.dropped + b.dropped,
    failed: a.failed + b.failed,
    invalid: a.invalid + b.invalid,
    queued: 0,
    spooledBytes: b.spooledBytes,
    spooledRecords: b.spooledRecords,
    settled: a.settled + b.settled,
  };
}
