/**
 * The background sender: drains the in-memory queue to Kafka in batches, and uses the disk spool when
 * Kafka is unreachable or cannot keep up. Nothing here runs in the caller's stack: `enqueue` only pushes
 * and, at most, arms an unref'd timer.
 *
 * Two activities, each one at a time:
 * - Kafka: send the next batch, from the spool while it holds anything (oldest first), else from the queue.
 * - Spill: move queued batches to the spool, while the spool holds anything (so newer records stay
 *   behind older ones), while Kafka is backing off after a failure, or while a send is in flight and
 *   the queue is half full.
 * Each batch takes a sequence number as it leaves the queue; the spool replays in that order, so a
 * batch whose send failed after newer ones were spilled still goes out before them.
 */
import type { Logger } from '../core/logger.ts';
import type { Publisher } from '../core/publisher.ts';
import { PublishError } from '../core/kafka.ts';
import { BoundedQueue } from './bounded-queue.ts';
import type { Spool, SpoolRecord } from './spool.ts';
import type { Warnings } from './warnings.ts';

export interface DeliveryCounters {
  sent: number;
  spilled: number;
  dropped: number;
  failed: number;
  invalid: number;
}

export interface SenderStats extends DeliveryCounters {
  /** Items in the memory queue. */
  queued: number;
  spooledBytes: number;
  spooledRecords: number;
  /** Items that left the queue for good: sent, spooled, or counted as lost. */
  settled: number;
}

export interface SenderOptions<T> {
  publisher: Publisher;
  /** Resolves to undefined when no spool could be opened: spilling then drops (counted). */
  spool: Promise<Spool | undefined>;
  /** Turns queued items into messages; counts the invalid ones itself. */
  prepare(items: T[], counters: DeliveryCounters): SpoolRecord[];
  warnings: Warnings;
  logger: Logger;
  queueMaxRecords: number;
  batchMaxRecords: number;
  batchMaxWaitMs: number;
  /** Messages larger than this are refused by Kafka; counted as failed without trying (default 1 MB). */
  maxMessageBytes?: number;
  /** Retry delay after a failed send: doubles from `retryMinMs` up to `retryMaxMs`, with jitter. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Runs the sender's entry points (timers, flush) outside the caller's context, e.g. untraced. */
  detached?: (fn: () => void) => void;
  /** Called whenever counters may have changed. */
  onChange?: () => void;
}

export interface Sender<T> {
  /** False when the queue is full. Never throws, never waits. */
  enqueue(item: T): boolean;
  stats(): SenderStats;
  /** Resolves once every item enqueued before the call is sent, spooled, or counted as lost. */
  flush(): Promise<void>;
  /** Flushes, waits for the send in flight (at most `timeoutMs`), closes the spool. */
  close(timeoutMs: number): Promise<void>;
}

export function createSender<T>(options: SenderOptions<T>): Sender<T> {
  const { publisher, warnings, logger, batchMaxRecords, batchMaxWaitMs } = options;
  const counters: DeliveryCounters = { sent: 0, spilled: 0, dropped: 0, failed: 0, invalid: 0 };
  const maxMessageBytes = options.maxMessageBytes ?? 1_000_000;
  const retryMinMs = options.retryMinMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 30_000;
  const detached = options.detached ?? ((fn: () => void) => fn());
  const queue = new BoundedQueue<T>(options.queueMaxRecords);
  const highWater = Math.max(1, Math.min(options.queueMaxRecords, Math.max(batchMaxRecords, Math.floor(options.queueMaxRecords / 2))));

  let spool: Spool | undefined;
  let spoolReady = false;
  let kafkaBusy = false;
  let spillBusy = false;
  let due = false;
  let closing = false;
  let accepted = 0;
  let settled = 0;
  let retryDelayMs = 0;
  let retryAt = 0;
  let outage = false;
  let batchTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let kickPending = false;
  /** The next batch, taken and encoded while the previous one was being sent. */
  let prepared: Batch | undefined;
  const flushWaiters: { target: number; resolve: () => void }[] = [];
  const idleWaiters: (() => void)[] = [];

  options.spool.then(
    (opened) => {
      spool = opened;
      spoolReady = true;
      detached(kick);
    },
    (error) => {
      logger.error({ err: error }, 'the disk spool cannot be opened; records that cannot be sent are dropped');
      spoolReady = true;
      detached(kick);
    },
  );

  function enqueue(item: T): boolean {
    if (!queue.push(item)) return false;
    accepted++;
    if (queue.length >= batchMaxRecords) kickSoon();
    else if (batchTimer === undefined) {
      batchTimer = setTimeout(onBatchTimer, batchMaxWaitMs);
      batchTimer.unref();
    }
    return true;
  }

  function onBatchTimer(): void {
    batchTimer = undefined;
    due = true;
    detached(kick);
  }

  function kickSoon(): void {
    if (kickPending) return;
    kickPending = true;
    setImmediate(() => {
      kickPending = false;
      detached(kick);
    }).unref();
  }

  const inBackoff = () => Date.now() < retryAt;
  const batchReady = () => queue.length >= batchMaxRecords || due || flushWaiters.length > 0 || closing;

  function shouldSpill(): boolean {
    if (queue.length === 0) return false;
    if (kafkaBusy && queue.length >= highWater) return true;
    return batchReady() && (inBackoff() || (spool?.hasPending() ?? false));
  }

  /** Starts whatever can run now. Synchronous; the activities report back by calling it again. */
  function kick(): void {
    if (spoolReady) {
      if (!spillBusy && shouldSpill()) void spill();
      if (!kafkaBusy) {
        if (spool?.hasPending()) {
          if (!inBackoff() && !closing) void replay();
        } else if ((prepared || (queue.length > 0 && batchReady())) && !inBackoff()) {
          void sendDirect();
        }
      }
    }
    if (queue.length === 0) {
      due = false;
      if (batchTimer !== undefined) {
        clearTimeout(batchTimer);
        batchTimer = undefined;
      }
    }
    settleWaiters();
  }

  /** Takes the next batch off the queue (its sequence number fixes its place) and encodes it. */
  function takeBatch(): Batch {
    const items = queue.take(batchMaxRecords);
    const seq = spool?.nextSeq() ?? 0;
    return { seq, records: sendable(items.length, encode(items)) };
  }

  /**
   * `takeBatch` for the batch after the one in flight: encoded a slice at a time, yielding in between,
   * so the Kafka client can compress and write the batch in flight, and read its reply, meanwhile.
   */
  async function takeBatchSliced(): Promise<Batch> {
    const items = queue.take(batchMaxRecords);
    const seq = spool?.nextSeq() ?? 0;
    const records: SpoolRecord[] = [];
    for (let i = 0; i < items.length; i += PREPARE_SLICE) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      for (const record of encode(items.slice(i, i + PREPARE_SLICE))) records.push(record);
    }
    return { seq, records: sendable(items.length, records) };
  }

  function encode(items: T[]): SpoolRecord[] {
    try {
      return options.prepare(items, counters);
    } catch (error) {
      logger.error({ err: error }, 'could not encode queued records; they are dropped');
      counters.failed += items.length;
      return [];
    }
  }

  /** Settles what `prepare` refused, and what Kafka would refuse as too large. */
  function sendable(taken: number, records: SpoolRecord[]): SpoolRecord[] {
    settled += taken - records.length;
    const fitting = records.filter((r) => r.value.length <= maxMessageBytes);
    if (fitting.length < records.length) {
      const tooLarge = records.length - fitting.length;
      counters.failed += tooLarge;
      settled += tooLarge;
      warnings.warn('too-large', { maxMessageBytes, count: tooLarge }, 'records larger than the Kafka message size limit are dropped');
    }
    return fitting;
  }

  async function sendDirect(): Promise<void> {
    kafkaBusy = true;
    const { seq, records } = prepared ?? takeBatch();
    prepared = undefined;
    try {
      const sending = publishAll(records);
      // Pipelining: the next full batch is validated and encoded while this one is on the wire.
      if (queue.length >= batchMaxRecords && !closing) {
        sending.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
        prepared = await takeBatchSliced();
      }
      await sending;
      counters.sent += records.length;
      settled += records.length;
      recovered();
    } catch (error) {
      const { remaining, cause } = error as PartialSend;
      const delivered = records.length - remaining.length;
      counters.sent += delivered;
      settled += delivered;
      if (isPermanent(cause)) {
        counters.failed += remaining.length;
        settled += remaining.length;
        warnings.warn('permanent', { err: cause, count: remaining.length }, 'Kafka refused records permanently; they are dropped');
      } else {
        backOff(cause);
        // The prepared batch is newer than this one and older than anything spilled from now on. Both
        // are appended now, in this order, before anything else can be: a spill between the two would
        // join this batch's segment and be replayed before the prepared one.
        const next = prepared;
        prepared = undefined;
        await Promise.all([toSpool(seq, remaining), next && toSpool(next.seq, next.records)]);
      }
    } finally {
      // A prepared batch is newer than this one and older than anything spilled meanwhile: when the
      // spool is in use, it goes there (its sequence number puts it in its place) before any replay.
      if (prepared && (inBackoff() || (spool?.hasPending() ?? false))) {
        const next = prepared;
        prepared = undefined;
        await toSpool(next.seq, next.records);
      }
      kafkaBusy = false;
      kick();
    }
  }

  async function replay(): Promise<void> {
    kafkaBusy = true;
    try {
      const batch = await spool!.read(batchMaxRecords);
      if (!batch) return;
      try {
        await publishAll(batch.records);
        counters.sent += batch.records.length;
      } catch (error) {
        const { cause } = error as PartialSend;
        if (!isPermanent(cause)) {
          backOff(cause);
          return;
        }
        counters.failed += batch.records.length;
        warnings.warn('permanent', { err: cause, count: batch.records.length }, 'Kafka refused spooled records permanently; they are dropped');
      }
      await spool!.ack(batch);
      recovered();
    } catch (error) {
      logger.error({ err: error }, 'reading the disk spool failed');
      backOff(error);
    } finally {
      kafkaBusy = false;
      kick();
    }
  }

  async function spill(): Promise<void> {
    spillBusy = true;
    try {
      while (shouldSpill()) {
        const { seq, records } = takeBatch();
        await toSpool(seq, records);
        settleWaiters();
      }
    } finally {
      spillBusy = false;
      kick();
    }
  }

  /** Writes records to the spool; whatever does not fit (or cannot be written) is dropped and counted. */
  async function toSpool(seq: number, records: SpoolRecord[]): Promise<void> {
    if (records.length === 0) return;
    let written = 0;
    try {
      if (spool) written = await spool.append(seq, records);
    } catch (error) {
      warnings.warn('spool-error', { err: error }, 'writing to the disk spool failed; records are dropped');
    }
    counters.spilled += written;
    counters.dropped += records.length - written;
    settled += records.length;
    if (written < records.length && spool) {
      warnings.warn('spool-full', { spoolBytes: spool.stats().bytes }, 'the disk spool is full; records are dropped');
    }
  }

  /** Sends per topic, in order. On failure, throws a PartialSend with the records not sent. */
  async function publishAll(records: SpoolRecord[]): Promise<void> {
    const byTopic = new Map<string, SpoolRecord[]>();
    for (const record of records) {
      const list = byTopic.get(record.topic);
      if (list) list.push(record);
      else byTopic.set(record.topic, [record]);
    }
    const groups = [...byTopic];
    for (let i = 0; i < groups.length; i++) {
      const [topic, list] = groups[i]!;
      try {
        await publisher.publish(topic, list);
      } catch (cause) {
        throw new PartialSend(cause, groups.slice(i).flatMap(([, l]) => l));
      }
    }
  }

  function backOff(error: unknown): void {
    retryDelayMs = Math.min(retryMaxMs, retryDelayMs === 0 ? retryMinMs : retryDelayMs * 2);
    const delay = Math.round(retryDelayMs * (0.8 + Math.random() * 0.4));
    retryAt = Date.now() + delay;
    if (!outage) {
      outage = true;
      logger.warn({ err: error, retryInMs: delay }, 'Kafka is unreachable; records go to the disk spool until it is back');
    }
    if (retryTimer !== undefined) clearTimeout(retryTimer);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      // The backoff is over when its timer fires, even if Date.now() is not quite at retryAt yet: the
      // timer counts from the event loop's cached time, which can be a few ms behind. Checking the
      // clock here left the sender waiting for a kick that never came once nothing new was reported.
      retryAt = 0;
      detached(kick);
    }, delay);
    retryTimer.unref();
  }

  function recovered(): void {
    retryDelayMs = 0;
    retryAt = 0;
    if (outage) {
      outage = false;
      logger.info({ spooledRecords: spool?.stats().records ?? 0 }, 'Kafka is reachable again; sending the spooled records');
    }
  }

  function settleWaiters(): void {
    options.onChange?.();
    while (flushWaiters.length > 0 && settled >= flushWaiters[0]!.target) flushWaiters.shift()!.resolve();
    if (!kafkaBusy && !spillBusy && idleWaiters.length > 0) for (const resolve of idleWaiters.splice(0)) resolve();
  }

  function flush(): Promise<void> {
    const target = accepted;
    if (settled >= target) return Promise.resolve();
    return new Promise((resolve) => {
      flushWaiters.push({ target, resolve });
      detached(kick);
    });
  }

  function idle(): Promise<void> {
    if (!kafkaBusy && !spillBusy) return Promise.resolve();
    return new Promise((resolve) => idleWaiters.push(resolve));
  }

  async function close(timeoutMs: number): Promise<void> {
    closing = true;
    let timer: NodeJS.Timeout | undefined;
    // Not unref'd: the caller waits for shutdown, and this bounds the wait.
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const outcome = await Promise.race([flush().then(idle), deadline]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      logger.warn({ queued: queue.length, timeoutMs }, 'shutdown timed out waiting for Kafka; queued records are lost');
    }
    if (batchTimer !== undefined) clearTimeout(batchTimer);
    if (retryTimer !== undefined) clearTimeout(retryTimer);
    await spool?.close();
  }

  return {
    enqueue,
    stats() {
      const spooled = spool?.stats() ?? { bytes: 0, records: 0 };
      return { ...counters, queued: queue.length, spooledBytes: spooled.bytes, spooledRecords: spooled.records, settled };
    },
    flush,
    close,
  };
}

/** Records taken off the queue together, with the spool sequence number they took. */
interface Batch {
  seq: number;
  records: SpoolRecord[];
}

/** Records encoded between two turns of the event loop while a batch is in flight (~0.3 ms). */
const PREPARE_SLICE = 100;

/** A send that failed after `remaining` (a suffix of the batch) was not sent. */
class PartialSend extends Error {
  constructor(override readonly cause: unknown, readonly remaining: SpoolRecord[]) {
    super('send failed', { cause });
  }
}

/** Only a publisher that says so makes a failure permanent; anything else is worth another try later. */
function isPermanent(error: unknown): boolean {
  return error instanceof PublishError && !error.retryable;
}
