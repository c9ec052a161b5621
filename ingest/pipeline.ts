/**
 * One batch of messages → ClickHouse: decode and validate, insert each table once, dead-letter what
 * can't be used. Resolves only when every row is stored or dead-lettered, so the caller may then
 * commit the batch's offsets; rejects (after retrying transient errors until aborted) otherwise, and
 * then nothing of the batch may be committed.
 *
 * `process` is `store(await decode(messages))`. The two halves are apart so a worker can decode the
 * next batch (work on its own thread) while ClickHouse stores this one (work on the engine's threads).
 * Decoding yields to the event loop every DECODE_SLICE messages: done in one go, a 10,000-message
 * batch held the thread ~100 ms, and the store's look-ups, finished meanwhile, waited that long to go
 * on to the insert, leaving the engine idle.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from '../core/logger.ts';
import type { AuditRow } from '../model/audit-event.ts';
import type { SpanRow } from '../model/span.ts';
import type { TimeWindow } from '../model/time-window.ts';
import type { ClickHouseWriter, WriteResult } from './clickhouse-writer.ts';
import { decodeBatch, type DecodedBatch, type Sourced, type Topics } from './decode.ts';
import type { DeadLetter, InboundMessage } from './messages.ts';
import { isPermanentInsertError, isTransientInsertError, retry } from './retry.ts';

export interface DeadLetterSink {
  send(letters: readonly DeadLetter[]): Promise<void>;
}

export interface BatchOutcome {
  messages: number;
  auditRows: number;
  spanRows: number;
  duplicates: number;
  deadLetters: number;
}

export interface PipelineDeps {
  writer: ClickHouseWriter;
  deadLetters: DeadLetterSink;
  topics: Topics;
  /** The audit timestamps accepted, as at the receiver; the others are dead-lettered. Unset: any. */
  timeWindow?: TimeWindow;
  logger: Logger;
  /** Aborting stops retrying: the batch then fails and is not committed. */
  signal?: AbortSignal;
}

/** A batch decoded, ready to store. */
export interface DecodedMessages {
  messages: readonly InboundMessage[];
  decoded: DecodedBatch;
}

export interface Pipeline {
  process(messages: readonly InboundMessage[]): Promise<BatchOutcome>;
  /** Decodes and validates (CPU only, in slices). */
  decode(messages: readonly InboundMessage[]): Promise<DecodedMessages>;
  /** Stores a decoded batch: resolves or rejects as `process`. */
  store(batch: DecodedMessages): Promise<BatchOutcome>;
}

/** Messages decoded per turn of the event loop (~10 ms of work). */
const DECODE_SLICE = 1_000;

export function createPipeline(deps: PipelineDeps): Pipeline {
  const { writer, logger, signal } = deps;

  function withRetry<T>(operation: () => Promise<T>): Promise<T> {
    return retry(operation, {
      isRetryable: isTransientInsertError,
      signal,
      onRetry: (error, attempt, delayMs) =>
        logger.warn({ err: error, attempt, delayMs }, 'ClickHouse unavailable; retrying the batch'),
    });
  }

  /**
   * Inserts rows; when ClickHouse refuses the batch for its content, bisects to find the rows it
   * refuses, dead-letters their messages and stores the rest.
   */
  async function store<T>(
    items: Sourced<T>[],
    write: (rows: T[]) => Promise<WriteResult>,
    letters: DeadLetter[],
  ): Promise<WriteResult> {
    if (items.length === 0) return { inserted: 0, duplicates: 0 };
    try {
      return await withRetry(() => write(items.map((i) => i.row)));
    } catch (error) {
      if (!isPermanentInsertError(error)) throw error;
      if (items.length === 1) {
        letters.push({ message: items[0]!.message, reason: `refused by ClickHouse: ${(error as Error).message}` });
        return { inserted: 0, duplicates: 0 };
      }
      const half = Math.ceil(items.length / 2);
      const a = await store(items.slice(0, half), write, letters);
      const b = await store(items.slice(half), write, letters);
      return { inserted: a.inserted + b.inserted, duplicates: a.duplicates + b.duplicates };
    }
  }

  async function decode(messages: readonly InboundMessage[]): Promise<DecodedMessages> {
    const decoded: DecodedBatch = { audit: [], spans: [], deadLetters: [] };
    for (let i = 0; i < messages.length; i += DECODE_SLICE) {
      if (i > 0) await nextTurn();
      const slice = decodeBatch(messages.slice(i, i + DECODE_SLICE), deps.topics, deps.timeWindow);
      decoded.audit.push(...slice.audit);
      decoded.spans.push(...slice.spans);
      decoded.deadLetters.push(...slice.deadLetters);
    }
    return { messages, decoded };
  }

  async function storeBatch({ messages, decoded }: DecodedMessages): Promise<BatchOutcome> {
    const letters = [...decoded.deadLetters];
    const audit = await store<AuditRow>(decoded.audit, (rows) => writer.writeAudit(rows), letters);
    const spans = await store<SpanRow>(decoded.spans, (rows) => writer.writeSpans(rows), letters);
    if (letters.length > 0) {
      await retry(() => deps.deadLetters.send(letters), { isRetryable: () => true, signal });
      logger.warn({ count: letters.length, first: letters[0]!.reason }, 'messages dead-lettered');
    }
    return {
      messages: messages.length,
      auditRows: audit.inserted,
      spanRows: spans.inserted,
      duplicates: audit.duplicates + spans.duplicates,
      deadLetters: letters.length,
    };
  }

  return {
    decode,
    store: storeBatch,
    process: async (messages) => storeBatch(await decode(messages)),
  };
}
