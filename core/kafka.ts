/**
 * The one module that knows kafkajs. Everything else talks to Kafka through `createKafka` (a client) and
 * `createKafkaPublisher` (a `Publisher`), so the client library can be swapped in one place.
 *
 * Producer settings: idempotent, acks -1 (all in-sync replicas), one request in flight (what kafkajs
 * idempotence requires), gzip (built into kafkajs; LZ4/ZSTD would need extra codec packages), and
 * kafkajs's default partitions (kafka-partitioner.ts).
 * Errors are classified from kafkajs error types and their `retriable` flag, never from message text.
 */
import zlib from 'node:zlib';
import kafkajs from 'kafkajs';
// kafkajs's idle connections arm no timer (see the module); scripts/kafka.mjs loads it too.
import './kafkajs-idle.mjs';
import type { Kafka, LogEntry, Message, Producer, RetryOptions } from 'kafkajs';
import type { Logger } from './logger.ts';
import { DefaultPartitioner } from './kafka-partitioner.ts';
import type { OutboundMessage, Publisher } from './publisher.ts';

const {
  CompressionCodecs,
  CompressionTypes,
  KafkaJSError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSTimeout,
  logLevel: KafkaLogLevel,
} = kafkajs;

export type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';

export interface KafkaOptions {
  brokers: string[];
  clientId: string;
  logger: Logger;
  /** Milliseconds to open a connection (kafkajs default 1000). */
  connectionTimeout?: number;
  /** Milliseconds a request may take (kafkajs default 30000). */
  requestTimeout?: number;
  /** kafkajs retry policy of every request of this client. */
  retry?: RetryOptions;
}

export function createKafka(options: KafkaOptions): Kafka {
  return new kafkajs.Kafka({
    brokers: options.brokers,
    clientId: options.clientId,
    connectionTimeout: options.connectionTimeout,
    requestTimeout: options.requestTimeout,
    retry: options.retry,
    logLevel: kafkaLogLevelFor(options.logger),
    logCreator: pinoLogCreator(options.logger),
  });
}

/** A `Publisher` over an idempotent kafkajs producer, plus the raw `send`/`sendBatch` shapes. */
export interface KafkaPublisher extends Publisher {
  send(topic: string, messages: OutboundMessage[]): Promise<void>;
  sendBatch(batches: { topic: string; messages: OutboundMessage[] }[]): Promise<void>;
  /** Optional: the first send connects. Rejects with a `PublishError`. */
  connect(): Promise<void>;
  disconnect(): Promise<void>;
}

export interface KafkaPublisherOptions {
  logger: Logger;
  /** Default gzip. */
  compression?: 'gzip' | 'none';
  /** Milliseconds the broker waits for the in-sync replicas (default 30000). */
  ackTimeoutMs?: number;
  /** kafkajs retry policy of each send; the client's when unset. */
  retry?: RetryOptions;
}

/** A send that failed. `retryable` says whether the same messages may succeed later. */
export class PublishError extends Error {
  override readonly name = 'PublishError';
  constructor(readonly retryable: boolean, options: { cause: unknown }) {
    super(`Kafka send failed (${retryable ? 'retryable' : 'permanent'}): ${describe(options.cause)}`, options);
  }
}

/**
 * Protocol errors that mean "this producer's idempotence state is gone" (its records expired, the broker
 * lost its state, a newer epoch exists). Not retryable as is, but a fresh producer can send the messages.
 */
const PRODUCER_STATE_ERRORS = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH']);

export type KafkaErrorClass = 'retryable' | 'reset-producer' | 'permanent';

/** Classifies an error thrown by kafkajs, from its types and `retriable` flags. */
export function classifyKafkaError(error: unknown): KafkaErrorClass {
  // kafkajs retried a retriable error until its budget ran out: the cause is transient (broker down).
  if (error instanceof KafkaJSNumberOfRetriesExceeded) return 'retryable';
  const root = rootKafkaError(error);
  if (root instanceof KafkaJSProtocolError) {
    if (PRODUCER_STATE_ERRORS.has(root.type)) return 'reset-producer';
    return root.retriable ? 'retryable' : 'permanent';
  }
  if (root instanceof KafkaJSTimeout) return 'retryable';
  if (root instanceof KafkaJSError) return root.retriable ? 'retryable' : 'permanent';
  // Not a kafkajs error: a bug (TypeError, RangeError...) would fail again the same way.
  return 'permanent';
}

/** An error kafkajs raised, retriable or not, as opposed to a bug in the code that called it. */
export function isKafkaError(error: unknown): error is Error {
  return error instanceof KafkaJSError;
}

export function isRetryableKafkaError(error: unknown): boolean {
  return classifyKafkaError(error) !== 'permanent';
}

/** kafkajs wraps the error that ended a retry loop (`cause`); the innermost kafkajs error decides. */
function rootKafkaError(error: unknown): unknown {
  let current = error;
  for (let depth = 0; depth < 8 && current instanceof KafkaJSError; depth++) {
    const cause: unknown = current.cause;
    if (!(cause instanceof KafkaJSError) || cause === current) break;
    current = cause;
  }
  return current;
}

export function createKafkaPublisher(kafka: Kafka, options: KafkaPublisherOptions): KafkaPublisher {
  const logger = options.logger;
  const compression = options.compression === 'none' ? CompressionTypes.None : CompressionTypes.GZIP;
  const timeout = options.ackTimeoutMs ?? 30_000;
  let producer: Producer | undefined;
  let connecting: Promise<Producer> | undefined;

  const newProducer = (): Producer =>
    kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // kafkajs's default partitions, computed without its per-message Long math (kafka-partitioner.ts).
      createPartitioner: DefaultPartitioner,
      retry: options.retry,
    });

  /** Connects once; a failed connect is retried by the next send. */
  function connected(): Promise<Producer> {
    if (producer) return Promise.resolve(producer);
    connecting ??= (async () => {
      const fresh = newProducer();
      try {
        await fresh.connect();
      } catch (error) {
        await fresh.disconnect().catch(() => {});
        throw error;
      }
      producer = fresh;
      return fresh;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  }

  async function sendBatch(batches: { topic: string; messages: OutboundMessage[] }[]): Promise<void> {
    const topicMessages = batches
      .filter((b) => b.messages.length > 0)
      .map((b) => ({ topic: b.topic, messages: b.messages.map(toKafkaMessage) }));
    if (topicMessages.length === 0) return;
    try {
      const p = await connected();
      await p.sendBatch({ topicMessages, acks: -1, timeout, compression });
    } catch (error) {
      const kind = classifyKafkaError(error);
      if (kind === 'reset-producer') await resetProducer(error);
      throw new PublishError(kind !== 'permanent', { cause: error });
    }
  }

  async function resetProducer(error: unknown): Promise<void> {
    const old = producer;
    producer = undefined;
    logger.warn({ err: error }, 'Kafka producer lost its idempotence state; the next send uses a new producer');
    await old?.disconnect().catch(() => {});
  }

  const send = (topic: string, messages: OutboundMessage[]) => sendBatch([{ topic, messages }]);
  return {
    publish: send,
    send,
    sendBatch,
    async connect() {
      try {
        await connected();
      } catch (error) {
        throw new PublishError(classifyKafkaError(error) !== 'permanent', { cause: error });
      }
    },
    async disconnect() {
      await connecting?.catch(() => {});
      const p = producer;
      producer = undefined;
      await p?.disconnect();
    },
  };
}

/**
 * gzip level of the collector's threads: zlib's fastest. Beside a gateway its CPU is what counts, and on
 * the collector's batches level 1 takes about half the CPU of zlib's default (6) for slightly more bytes.
 */
export const COLLECTOR_GZIP_LEVEL = zlib.constants.Z_BEST_SPEED;

/**
 * kafkajs's gzip codec, compressing in the calling thread at COLLECTOR_GZIP_LEVEL: kafkajs's own calls the
 * async zlib, which runs in libuv's thread pool, at the process's priority whatever the priority of the
 * thread that asked. Any gzip reader reads it.
 */
const gzipInThisThread = {
  compress: async (encoder: { buffer: Buffer }): Promise<Buffer> => zlib.gzipSync(encoder.buffer, { level: COLLECTOR_GZIP_LEVEL }),
  decompress: async (buffer: Buffer): Promise<Buffer> => zlib.unzipSync(buffer),
};

/**
 * Makes this thread's kafkajs gzip in this thread (see `gzipInThisThread`), for a thread of the collector's
 * own whose priority was lowered: its compression then yields to the host's threads as the rest of its work
 * does. kafkajs keeps its codecs per module instance, and each worker thread loads its own: other threads
 * keep the async codec.
 */
export function gzipInCallingThread(): void {
  CompressionCodecs[CompressionTypes.GZIP] = () => gzipInThisThread;
}

function toKafkaMessage(m: OutboundMessage): Message {
  return { key: m.key, value: m.value, headers: m.headers };
}

// ---------------------------------------------------------------------------
// kafkajs logs → pino

function kafkaLogLevelFor(logger: Logger): number {
  if (logger.isLevelEnabled('debug')) return KafkaLogLevel.DEBUG;
  if (logger.isLevelEnabled('info')) return KafkaLogLevel.INFO;
  if (logger.isLevelEnabled('warn')) return KafkaLogLevel.WARN;
  if (logger.isLevelEnabled('error')) return KafkaLogLevel.ERROR;
  return KafkaLogLevel.NOTHING;
}

/** While a broker is down kafkajs logs every failed attempt; the same line is repeated at most this often. */
const REPEAT_INTERVAL_MS = 30_000;

/** kafkajs `logCreator`: each entry becomes a pino line at the matching level, with kafkajs's fields. */
function pinoLogCreator(logger: Logger): () => (entry: LogEntry) => void {
  return () => {
    const child = logger.child({ component: 'kafkajs' });
    const lastSeen = new Map<string, { at: number; suppressed: number }>();
    return ({ namespace, level, log }) => {
      const { message, timestamp: _timestamp, ...fields } = log;
      const method =
        level === KafkaLogLevel.ERROR ? 'error' : level === KafkaLogLevel.WARN ? 'warn' : level === KafkaLogLevel.INFO ? 'info' : 'debug';
      let suppressed = 0;
      if (method === 'error' || method === 'warn') {
        const key = `${namespace}\u0000${message}`;
        const now = Date.now();
        const seen = lastSeen.get(key);
        if (seen && now - seen.at < REPEAT_INTERVAL_MS) {
          seen.suppressed++;
          return;
        }
        suppressed = seen?.suppressed ?? 0;
        if (lastSeen.size > 1000) lastSeen.clear();
        lastSeen.set(key, { at: now, suppressed: 0 });
      }
      child[method]({ namespace, ...fields, ...(suppressed > 0 && { suppressed }) }, message);
    };
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
