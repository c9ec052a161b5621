/**
 * The collector's encoder thread: validates and encodes the gateway's audit records (prepare.ts), makes
 * the records and spans of the tool calls the gateway posted as columns (tool-call-wire.ts), and
 * hands the encoded messages to the Kafka thread (worker-entry.ts, which started it). Splitting the
 * two keeps the Kafka thread's work per record what raw kafkajs needs: with validation and JSON on
 * the same thread, the sender ran at ~16 µs of CPU per record against kafkajs's ~10.
 *
 * Protocol:
 *   in, from the gateway on `workerData.port`: the Kafka thread's own messages (ToWorker): items,
 *       flush, close, in the order the gateway posted them
 *   out, to the Kafka thread: { type: 'ready' }; { type: 'encoded', ... } (EncodedBatch); the flush and
 *       close requests, forwarded after everything posted before them; log and warn messages
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import type { AuditRecordInput } from '../model/audit-event.ts';
import { createPrepare } from './prepare.ts';
import type { DeliveryCounters } from './sender.ts';
import type { SpoolRecord } from './spool.ts';
import { createToolCallReader, type WireCalls } from './tool-call-wire.ts';
import type { ToWorker } from './worker-entry.ts';
import { lowerThreadPriority, threadLogging, type ThreadLogMessage, type ThreadPriority } from './worker-thread.ts';

export interface EncoderConfig {
  tenant: string;
  auditTopic: string;
  /** Topic of the tool calls' spans; their messages at most `maxMessageBytes`. */
  spansTopic: string;
  maxMessageBytes: number;
  /** Filled into the tool calls' records. */
  gateway?: string;
  /** The gateway thread's `performance.timeOrigin`: the tool calls' times are relative to it. */
  timeOrigin: number;
  logLevel: string;
  /** This thread's scheduling (worker-thread.ts); default `idle`. */
  threadPriority?: ThreadPriority;
  /** Where the gateway posts. */
  port: MessagePort;
}

/** Encoded audit records (topic `auditTopic`, header tenant), and the gateway's spans as they came. */
export interface EncodedBatch {
  type: 'encoded';
  keys: (string | null)[];
  /** Structured clone turns each Buffer into a Uint8Array. */
  values: Uint8Array[];
  spans: SpoolRecord[];
  /** Audit records that were not valid, or could not be encoded: settled here, counted by the Kafka thread. */
  invalid: number;
  failed: number;
  /** Items the posted tool calls became beyond one each (their spans' messages), less the calls that became nothing. */
  made: number;
}

export type FromEncoder = { type: 'ready' } | EncodedBatch | Extract<ToWorker, { type: 'flush' | 'close' }> | ThreadLogMessage;

const config = workerData as EncoderConfig;
const priority = lowerThreadPriority(config.threadPriority);
const parent = parentPort!;
const post = (message: FromEncoder) => parent.postMessage(message);
const { logger, warnings } = threadLogging(post, config.logLevel);
logger.debug({ threadPriority: priority, asked: config.threadPriority }, 'the collector\'s encoder thread started');
const prepare = createPrepare({ tenant: config.tenant, auditTopic: config.auditTopic, warnings });

const readCalls = createToolCallReader({ ...config, warnings, onError: (error) => logger.debug({ err: error }, 'could not audit a tool call') });

function encode(audits: AuditRecordInput[], spans: SpoolRecord[], calls: WireCalls | undefined): EncodedBatch {
  const counters: DeliveryCounters = { sent: 0, spilled: 0, dropped: 0, failed: 0, invalid: 0 };
  let made = 0;
  if (calls) {
    const read = readCalls(calls);
    made = read.records.length + read.spans.length - calls.count;
    audits = audits.length === 0 ? read.records : audits.concat(read.records);
    spans = spans.length === 0 ? read.spans : spans.concat(read.spans);
  }
  let records: SpoolRecord[] = [];
  try {
    records = prepare(audits, counters);
  } catch (error) {
    logger.error({ err: error }, 'could not encode audit records; they are dropped');
    counters.failed += audits.length;
  }
  const keys = new Array<string | null>(records.length);
  const values = new Array<Uint8Array>(records.length);
  for (let i = 0; i < records.length; i++) {
    keys[i] = records[i]!.key;
    values[i] = records[i]!.value;
  }
  return { type: 'encoded', keys, values, spans, invalid: counters.invalid, failed: counters.failed, made };
}

config.port.on('message', (message: ToWorker) => {
  if (message.type === 'items') post(encode(message.audits, message.spans, message.calls));
  else post(message);
});

post({ type: 'ready' });
