/**
 * The collector's Kafka thread: it owns the Kafka producer, the disk spool and the background sender,
 * so validation, encoding, compression and kafkajs's request building stay off the gateway's event
 * loop. The gateway thread only queues records and posts them in batches (worker-sender.ts).
 *
 * It starts an encoder thread (encoder-entry.ts) and hands the gateway a port to it: the gateway's
 * records are validated and encoded there, in parallel with this thread's kafkajs work (each costs
 * about as much CPU per record), and arrive here encoded, followed by the gateway's flush and close
 * requests in the order it posted them. Without the encoder (it could not start), the gateway posts
 * here and this thread encodes too; if the encoder dies later, this thread ends, and the gateway carries
 * on in its own thread as for any failure of the worker.
 *
 * Protocol (plain objects; logs go back as pino lines):
 *   in:  workerData: WorkerConfig; { type: 'items', audits, spans, calls? } (calls: tool-call-wire.ts); { type: 'flush', id };
 *        { type: 'close', id, timeoutMs } (from the encoder when there is one, else from the gateway)
 *   out: { type: 'ready', port? }; { type: 'progress', stats, done }; { type: 'flushed', id };
 *        { type: 'closed', id }; { type: 'log', line }; { type: 'warn', kind, fields, message }
 */
import { MessageChannel, parentPort, workerData, type MessagePort, type Worker } from 'node:worker_threads';
import { createKafka, createKafkaPublisher, gzipInCallingThread } from '../core/kafka.ts';
import { TENANT_HEADER } from '../core/publisher.ts';
import type { AuditRecordInput } from '../model/audit-event.ts';
import type { EncodedBatch, EncoderConfig, FromEncoder } from './encoder-entry.ts';
import { createPrepare, EncodedMessage, type QueueItem } from './prepare.ts';
import { createSender, type SenderStats } from './sender.ts';
import { openSpool, type SpoolRecord } from './spool.ts';
import { createToolCallReader, type WireCalls } from './tool-call-wire.ts';
import { lowerThreadPriority, startCollectorThread, threadLogging, type ThreadLogMessage, type ThreadPriority } from './worker-thread.ts';

export interface WorkerConfig {
  brokers: string[];
  clientId: string;
  tenant: string;
  auditTopic: string;
  /** Topic of the spans of the tool calls posted as `calls`. */
  spansTopic: string;
  /** Filled into the records of those calls. */
  gateway?: string;
  /** The gateway thread's `performance.timeOrigin`: those calls' times are relative to it. */
  timeOrigin: number;
  spoolDir: string;
  spoolMaxBytes: number;
  queueMaxRecords: number;
  batchMaxRecords: number;
  batchMaxWaitMs: number;
  maxMessageBytes: number;
  retryMaxMs?: number;
  logLevel: string;
  /** Validate and encode in a thread of their own (default true). */
  encoderThread?: boolean;
  /** This thread's and the encoder's scheduling (worker-thread.ts); default `idle`. */
  threadPriority?: ThreadPriority;
}

export type ToWorker =
  | { type: 'items'; audits: AuditRecordInput[]; spans: SpoolRecord[]; calls?: WireCalls }
  | { type: 'flush'; id: number }
  | { type: 'close'; id: number; timeoutMs: number };

export type FromWorker =
  | { type: 'ready'; port?: MessagePort }
  | { type: 'progress'; stats: SenderStats; done: number }
  | { type: 'flushed'; id: number }
  | { type: 'closed'; id: number }
  | ThreadLogMessage;

const port = parentPort!;
const config = workerData as WorkerConfig;
const priority = lowerThreadPriority(config.threadPriority);
// kafkajs gzips in libuv's thread pool, whose threads keep the process's priority: here instead.
gzipInCallingThread();
const post = (message: FromWorker, transfer?: MessagePort[]) => port.postMessage(message, transfer);

const { logger, warnings } = threadLogging(post, config.logLevel);
logger.debug({ threadPriority: priority, asked: config.threadPriority }, 'the collector\'s Kafka thread started');
const kafka = createKafka({
  brokers: config.brokers,
  clientId: config.clientId,
  logger,
  connectionTimeout: 3_000,
  requestTimeout: 10_000,
  // Fail over to the spool quickly; the sender retries with its own backoff.
  retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1_000 },
});
const publisher = createKafkaPublisher(kafka, { logger, ackTimeoutMs: 10_000 });

/** Items refused by a full queue here (the gateway side counts them as posted). */
let refused = 0;
/**
 * Items the encoder settled (invalid, or not encodable), and `made`: the items the posted tool calls
 * became beyond one each (their spans' messages), less the calls that became nothing, in the encoder
 * or (without one) here.
 */
const encoderCounts = { invalid: 0, failed: 0, made: 0 };
let reportPending = false;
let closing = false;

const sender = createSender<QueueItem>({
  publisher,
  spool: openSpool({ dir: config.spoolDir, maxBytes: config.spoolMaxBytes, logger }),
  prepare: createPrepare({ tenant: config.tenant, auditTopic: config.auditTopic, warnings }),
  warnings,
  logger,
  queueMaxRecords: config.queueMaxRecords,
  batchMaxRecords: config.batchMaxRecords,
  batchMaxWaitMs: config.batchMaxWaitMs,
  maxMessageBytes: config.maxMessageBytes,
  retryMaxMs: config.retryMaxMs,
  onChange: reportSoon,
});

/** The tenant header of every encoded audit record. */
const auditHeaders = Object.freeze({ [TENANT_HEADER]: config.tenant });

function stats(): SenderStats {
  const s = sender.stats();
  return { ...s, dropped: s.dropped + refused, invalid: s.invalid + encoderCounts.invalid, failed: s.failed + encoderCounts.failed };
}

function reportSoon(): void {
  if (reportPending) return;
  reportPending = true;
  setTimeout(report, 5).unref();
}

function report(): void {
  reportPending = false;
  const s = stats();
  post({ type: 'progress', stats: s, done: s.settled + refused + encoderCounts.invalid + encoderCounts.failed - encoderCounts.made });
}

function enqueue(item: QueueItem): void {
  if (sender.enqueue(item)) return;
  refused++;
  warnings.warn('queue-full', { queueMaxRecords: config.queueMaxRecords }, 'the collector queue is full (the disk spool cannot keep up); records are dropped');
}

/** Tool calls posted as columns, when there is no encoder thread. */
const readCalls = createToolCallReader({ ...config, warnings, onError: (error) => logger.debug({ err: error }, 'could not audit a tool call') });

/** Structured clone turns a Buffer into a Uint8Array: the same bytes, as a Buffer again. */
const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

function enqueueSpans(spans: SpoolRecord[]): void {
  for (const span of spans) enqueue(new EncodedMessage({ ...span, value: asBuffer(span.value) }));
}

function enqueueEncoded(batch: EncodedBatch): void {
  const { keys, values } = batch;
  for (let i = 0; i < keys.length; i++) {
    enqueue(new EncodedMessage({ topic: config.auditTopic, key: keys[i]!, value: asBuffer(values[i]!), headers: auditHeaders }));
  }
  enqueueSpans(batch.spans);
  encoderCounts.invalid += batch.invalid;
  encoderCounts.failed += batch.failed;
  encoderCounts.made += batch.made;
  reportSoon();
}

function handle(message: ToWorker): void {
  switch (message.type) {
    case 'items': {
      for (const audit of message.audits) enqueue(audit);
      enqueueSpans(message.spans);
      if (message.calls) {
        const { records, spans } = readCalls(message.calls);
        for (const record of records) enqueue(record);
        enqueueSpans(spans);
        encoderCounts.made += records.length + spans.length - message.calls.count;
      }
      reportSoon();
      return;
    }
    case 'flush':
      void sender.flush().then(() => {
        report();
        post({ type: 'flushed', id: message.id });
      });
      return;
    case 'close':
      closing = true;
      void (async () => {
        await sender.close(message.timeoutMs);
        await publisher.disconnect().catch((error) => logger.warn({ err: error }, 'Kafka disconnect failed'));
        report();
        post({ type: 'closed', id: message.id });
      })();
      return;
  }
}

port.on('message', handle);

/** Starts the encoder; resolves with the gateway's end of its port, or undefined when it cannot run. */
function startEncoder(): Promise<MessagePort | undefined> {
  const channel = new MessageChannel();
  const encoderConfig: EncoderConfig = {
    tenant: config.tenant,
    auditTopic: config.auditTopic,
    spansTopic: config.spansTopic,
    gateway: config.gateway,
    timeOrigin: config.timeOrigin,
    maxMessageBytes: config.maxMessageBytes,
    logLevel: config.logLevel,
    threadPriority: config.threadPriority,
    port: channel.port1,
  };
  let encoder: Worker;
  try {
    encoder = startCollectorThread(new URL('./encoder-entry.ts', import.meta.url), {
      workerData: encoderConfig,
      transferList: [channel.port1],
      name: 'mcp-collector-encoder',
    });
  } catch (error) {
    logger.warn({ err: error }, 'the collector encoder thread cannot start; encoding in the Kafka thread');
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    let ready = false;
    encoder.on('message', (message: FromEncoder) => {
      switch (message.type) {
        case 'ready':
          ready = true;
          resolve(channel.port2);
          return;
        case 'encoded':
          enqueueEncoded(message);
          return;
        case 'log':
        case 'warn':
          post(message);
          return;
        default:
          handle(message);
      }
    });
    encoder.on('error', (error) => logger.error({ err: error }, 'the collector encoder thread failed'));
    encoder.on('exit', (code) => {
      if (!ready) {
        logger.warn({ exitCode: code }, 'the collector encoder thread did not start; encoding in the Kafka thread');
        resolve(undefined);
      } else if (!closing) {
        // The records inside it are lost; the gateway counts what this thread did not settle.
        logger.error({ exitCode: code }, 'the collector encoder thread stopped');
        process.exit(1);
      }
    });
  });
}

const gatewayPort = config.encoderThread === false ? undefined : await startEncoder();
post({ type: 'ready', ...(gatewayPort && { port: gatewayPort }) }, gatewayPort && [gatewayPort]);
