/**
 * The collector's worker thread: it owns the Kafka producer, the disk spool and the background sender,
 * so validation, encoding, compression and kafkajs's request building (~15 µs of CPU per record) stay
 * off the gateway's event loop. The gateway thread only queues records and posts them here in batches
 * (worker-sender.ts). Logs go back to the gateway's logger as pino lines.
 *
 * Protocol (all messages are plain objects):
 *   in:  init-less (workerData: WorkerConfig); { type: 'items', audits, spans }; { type: 'flush', id };
 *        { type: 'close', id, timeoutMs }
 *   out: { type: 'ready' }; { type: 'progress', stats, done }; { type: 'flushed', id }; { type: 'closed', id };
 *        { type: 'log', line }; { type: 'warn', kind, fields, message }
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { createKafka, createKafkaPublisher } from '../core/kafka.ts';
import type { AuditRecordInput } from '../model/audit-event.ts';
import { createPrepare, SpanMessage, type QueueItem } from './prepare.ts';
import { createSender, type SenderStats } from './sender.ts';
import { openSpool, type SpoolRecord } from './spool.ts';
import { createWarnings } from './warnings.ts';

export interface WorkerConfig {
  brokers: string[];
  clientId: string;
  tenant: string;
  auditTopic: string;
  spoolDir: string;
  spoolMaxBytes: number;
  queueMaxRecords: number;
  batchMaxRecords: number;
  batchMaxWaitMs: number;
  maxMessageBytes: number;
  retryMaxMs?: number;
  logLevel: string;
}

export type ToWorker =
  | { type: 'items'; audits: AuditRecordInput[]; spans: SpoolRecord[] }
  | { type: 'flush'; id: number }
  | { type: 'close'; id: number; timeoutMs: number };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'progress'; stats: SenderStats; done: number }
  | { type: 'flushed'; id: number }
  | { type: 'closed'; id: number }
  | { type: 'log'; line: string }
  | { type: 'warn'; kind: string; fields: Record<string, unknown>; message: string };

const port = parentPort!;
const config = workerData as WorkerConfig;
const post = (message: FromWorker) => port.postMessage(message);

const logger = pino({ level: config.logLevel }, { write: (line: string) => post({ type: 'log', line }) });
// Throttled here, then once more by the gateway's own warnings: one warning per kind across both threads.
const warnings = createWarnings((kind, fields, message) => post({ type: 'warn', kind, fields: plain(fields), message }));
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
let reportPending = false;

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

function stats(): SenderStats {
  const s = sender.stats();
  return { ...s, dropped: s.dropped + refused };
}

function reportSoon(): void {
  if (reportPending) return;
  reportPending = true;
  setTimeout(report, 5).unref();
}

function report(): void {
  reportPending = false;
  const s = stats();
  post({ type: 'progress', stats: s, done: s.settled + refused });
}

function enqueue(item: QueueItem): void {
  if (sender.enqueue(item)) return;
  refused++;
  warnings.warn('queue-full', { queueMaxRecords: config.queueMaxRecords }, 'the collector queue is full (the disk spool cannot keep up); records are dropped');
}

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'items':
      for (const audit of message.audits) enqueue(audit);
      for (const span of message.spans) {
        // Structured clone turns a Buffer into a Uint8Array.
        const value = Buffer.from(span.value.buffer, span.value.byteOffset, span.value.byteLength);
        enqueue(new SpanMessage({ ...span, value }));
      }
      reportSoon();
      return;
    case 'flush':
      void sender.flush().then(() => {
        report();
        post({ type: 'flushed', id: message.id });
      });
      return;
    case 'close':
      void (async () => {
        await sender.close(message.timeoutMs);
        await publisher.disconnect().catch((error) => logger.warn({ err: error }, 'Kafka disconnect failed'));
        report();
        post({ type: 'closed', id: message.id });
      })();
      return;
  }
});

/** Fields that survive postMessage: errors as { type, message, stack }. */
function plain(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] = value instanceof Error ? { type: value.name, message: value.message, stack: value.stack } : value;
  }
  return out;
}

post({ type: 'ready' });
