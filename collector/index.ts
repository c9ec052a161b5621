/**
 * The collector: the plugin a TypeScript MCP gateway loads to send its audit records and spans to the
 * pipeline (Kafka topics `mcp-audit` and `otlp_spans`).
 *
 *   const collector = createCollector({ kafka: { brokers: ['kafka:9092'] }, spoolDir: '/var/spool/mcp' });
 *   collector.instrumentServer(mcpServer);            // every tools/call audited and traced
 *   gatewayOptions.auditFunc = collector.auditFunc;   // or report go-micro-shaped records yourself
 *   tracerProvider: add collector.spanProcessor       // the gateway's own spans, to `otlp_spans`
 *   await collector.shutdown();                       // on exit: flush, disconnect
 *
 * It runs inside someone else's process, in the call path, so it never throws into it and never waits
 * for Kafka there: `auditFunc` checks the record's shape, copies it, pushes the copy on a bounded
 * queue and returns. Full validation, encoding and sending happen in the background sender (sender.ts),
 * with a disk spool (spool.ts) for when Kafka is down or slow; with its own Kafka producer the sender
 * runs in worker threads, off the gateway's event loop: one validates and encodes (encoder-entry.ts),
 * one sends (worker-entry.ts), fed by worker-sender.ts. `instrumentServer` records are made by the
 * collector itself and are queued without the check and the copy; with the worker threads, an ordinary
 * call's record and span are made in the encoder thread (tool-call-wire.ts).
 */
import { trace, type ProxyTracerProvider, type TracerProvider } from '@opentelemetry/api';
import type { BufferConfig, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { pino } from 'pino';
import { createKafka, createKafkaPublisher, type KafkaPublisher } from '../core/kafka.ts';
import type { Logger } from '../core/logger.ts';
import type { Publisher } from '../core/publisher.ts';
import { DEFAULT_TENANT, type AuditRecordInput } from '../model/audit-event.ts';
import { instrumentServer, type InstrumentOptions } from './instrument-server.ts';
import { createPrepare, EncodedMessage, type QueueItem } from './prepare.ts';
import { createSender, type Sender } from './sender.ts';
import { openSpool, type Spool } from './spool.ts';
import { writeTraceRequest } from '../model/otlp-span-writer.ts';
import type { SpoolRecord } from './spool.ts';
import { ToolCallPool, type ToolCall } from './tool-call.ts';
import { createToolCallBatch, fastRouteOf, type FastRoute, type ToolCallBatch } from './tool-call-spans.ts';
import { wireable } from './tool-call-wire.ts';
import { createSpanProcessor, createSpanSink, untraced } from './tracing.ts';
import { createWarnings } from './warnings.ts';
import { createWorkerSender, type WorkerSender } from './worker-sender.ts';
import { THREAD_PRIORITIES, type ThreadPriority } from './worker-thread.ts';

export { ToolDeniedError, TOOL_DENIED_CODE, type ToolDeniedOptions, type InstrumentOptions } from './instrument-server.ts';

/** go-micro v6's `AuditRecord` (as its JSON), or ours with the optional extensions; a Date is accepted too. */
export type AuditRecord = Omit<AuditRecordInput, 'timestamp'> & { timestamp: string | Date };

export interface CollectorOptions {
  /** Where messages go; when absent, a Kafka producer is built from `kafka` (and owned by the collector). */
  publisher?: Publisher;
  kafka?: { brokers: string[]; clientId?: string };
  /** Tenant of every record (a record naming another tenant is invalid). Default `default`. */
  tenant?: string;
  /** Name of this gateway, filled into records that do not name one. */
  gateway?: string;
  topics?: { audit?: string; spans?: string };
  /** Directory of the disk spool (created if missing). Give each collector process its own. */
  spoolDir: string;
  /** Default 256 MiB. */
  spoolMaxBytes?: number;
  /** In-memory queue capacity, in records. Default 20,000. */
  queueMaxRecords?: number;
  /** Records per Kafka request, at most. Default 1,000. */
  batchMaxRecords?: number;
  /** Longest a record waits in memory before its batch is sent. Default 200 ms. */
  batchMaxWaitMs?: number;
  /** Largest message sent to Kafka (the broker's `message.max.bytes`). Default 1,000,000. */
  maxMessageBytes?: number;
  /** Longest wait between retries while Kafka is down. Default 30 s. */
  retryMaxMs?: number;
  /** How long `shutdown` may wait for Kafka. Default 10 s. */
  shutdownTimeoutMs?: number;
  /** Provider of the `mcp.tool.call` spans; default the global one (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider;
  /** BatchSpanProcessor settings of `spanProcessor`. */
  spanProcessorConfig?: BufferConfig;
  /**
   * How `instrumentServer` makes the `mcp.tool.call` spans. `recorded` (default): when the tracer
   * provider feeds only `spanProcessor`, with the SDK's default sampler, ids and limits, each call is
   * recorded and its span made in the batch (collector/tool-call-spans.ts), the same span as the SDK
   * would make; otherwise an SDK span. `sdk`: always an SDK span, e.g. when tool handlers add to the
   * active span (in a recorded call it is a non-recording span carrying the call's ids).
   */
  toolCallSpans?: 'recorded' | 'sdk';
  /**
   * Where validation, spooling and kafkajs run when the collector builds its own producer: in worker
   * threads (default; the gateway's event loop only queues records), or in the gateway's own thread.
   */
  thread?: 'worker' | 'gateway';
  /**
   * Scheduling of those worker threads on Linux (collector/worker-thread.ts): `idle` (default, the
   * SCHED_IDLE policy: a gateway thread that wakes takes their core at once, but on a host whose cores
   * are all busy they get almost no CPU), `low` (nice 10: about a tenth of a busy core) or `normal`.
   */
  threadPriority?: ThreadPriority;
  /** Default: pino, level info, on stderr (stdout may be an MCP stdio transport). */
  logger?: Logger;
}

export interface CollectorStats {
  /** Records in memory, waiting for their batch. */
  queued: number;
  /** Records Kafka acknowledged (including ones replayed from the spool). */
  sent: number;
  /** Records written to the disk spool. */
  spilled: number;
  /** Records lost because the queue and the spool were full (or the collector was shut down). */
  dropped: number;
  /** Records Kafka refused permanently (too large, not authorized...). */
  failed: number;
  /** Records that were not valid audit records. */
  invalid: number;
  spooledBytes: number;
  /** Records waiting in the spool. */
  spooledRecords: number;
}

export interface Collector {
  /** Reports one tool call. Never throws, never waits. */
  auditFunc(record: AuditRecord): void;
  /** Audits and traces every `tools/call` of an MCP SDK server. */
  instrumentServer(server: McpServer | Server, options?: InstrumentOptions): void;
  /** Add to the gateway's tracer provider: its spans go to the `otlp_spans` topic. */
  spanProcessor: SpanProcessor;
  /** Resolves when everything reported so far is sent to Kafka or in the spool. */
  flush(): Promise<void>;
  /** Flushes and disconnects. Runs once; later calls return the same promise. */
  shutdown(): Promise<void>;
  stats(): CollectorStats;
}

/** The instrumentation scope (name, version) of the collector's tracer: its tool-call spans carry it. */
export const INSTRUMENTATION_SCOPE = 'mcp-audit-analytics/collector';
export const VERSION = '0.1.0';

export function createCollector(options: CollectorOptions): Collector {
  const logger = options.logger ?? pino({ name: 'mcp-collector', level: 'info' }, pino.destination({ fd: 2, sync: false }));
  const tenant = options.tenant ?? DEFAULT_TENANT;
  const gateway = options.gateway;
  const auditTopic = options.topics?.audit ?? 'mcp-audit';
  const spansTopic = options.topics?.spans ?? 'otlp_spans';
  const queueMaxRecords = positive('queueMaxRecords', options.queueMaxRecords ?? 20_000);
  const batchMaxRecords = positive('batchMaxRecords', options.batchMaxRecords ?? 1_000);
  const batchMaxWaitMs = positive('batchMaxWaitMs', options.batchMaxWaitMs ?? 200);
  const spoolMaxBytes = positive('spoolMaxBytes', options.spoolMaxBytes ?? 256 * 1024 * 1024);
  const maxMessageBytes = positive('maxMessageBytes', options.maxMessageBytes ?? 1_000_000);
  if (!options.spoolDir) throw new TypeError('createCollector: spoolDir is required');
  const threadPriority = options.threadPriority ?? 'idle';
  if (!THREAD_PRIORITIES.includes(threadPriority)) {
    throw new RangeError(`createCollector: threadPriority must be one of ${THREAD_PRIORITIES.join(', ')}, got ${JSON.stringify(threadPriority)}`);
  }
  if (!options.publisher && !options.kafka?.brokers.length) throw new TypeError('createCollector: give either publisher or kafka.brokers');

  const warnings = createWarnings(logger);
  /** Counted before a record reaches the sender: failed quick checks, and drops at a full queue. */
  const local = { invalid: 0, dropped: 0 };
  let ownPublisher: KafkaPublisher | undefined;

  /** The sender in the gateway's own thread: for a given publisher, or when the worker cannot run. */
  function inThreadSender(publisher: Publisher): Sender<QueueItem> {
    const spool: Promise<Spool | undefined> = openSpool({ dir: options.spoolDir, maxBytes: spoolMaxBytes, logger });
    spool.catch(() => {}); // reported by the sender
    return createSender<QueueItem>({
      publisher,
      spool,
      prepare: createPrepare({ tenant, auditTopic, warnings }),
      warnings,
      logger,
      queueMaxRecords,
      batchMaxRecords,
      batchMaxWaitMs,
      maxMessageBytes,
      retryMaxMs: options.retryMaxMs,
      detached: untraced,
    });
  }

  function kafkaPublisher(brokers: string[], clientId: string): KafkaPublisher {
    const kafka = createKafka({
      brokers,
      clientId,
      logger,
      connectionTimeout: 3_000,
      requestTimeout: 10_000,
      // Fail over to the spool quickly; the sender retries with its own backoff.
      retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1_000 },
    });
    return (ownPublisher = createKafkaPublisher(kafka, { logger, ackTimeoutMs: 10_000 }));
  }

  /** instrumentServer's calls, reused once posted to the worker's threads (~100 ms of calls at 10,000/s). */
  const toolCallPool = new ToolCallPool(1024);
  let sender: Sender<QueueItem>;
  /** The worker sender, which also takes recorded tool calls to finish in its threads. */
  let workerSender: WorkerSender | undefined;
  if (options.publisher) {
    sender = inThreadSender(options.publisher);
  } else {
    const brokers = options.kafka!.brokers;
    const clientId = options.kafka!.clientId ?? 'mcp-collector';
    const inThread = () => inThreadSender(kafkaPublisher(brokers, clientId));
    sender =
      options.thread === 'gateway'
        ? inThread()
        : (workerSender = createWorkerSender({
            config: {
              brokers,
              clientId,
              tenant,
              auditTopic,
              spansTopic,
              gateway,
              timeOrigin: performance.timeOrigin,
              spoolDir: options.spoolDir,
              spoolMaxBytes,
              queueMaxRecords,
              batchMaxRecords,
              batchMaxWaitMs,
              maxMessageBytes,
              retryMaxMs: options.retryMaxMs,
              threadPriority,
            },
            logger,
            warnings,
            createFallback: inThread,
            finishInThread: (call) => toolCalls.add(call),
            recycle: (call) => toolCallPool.release(call),
          }));
  }

  let closed = false;

  function enqueue(item: QueueItem): boolean {
    if (closed) return refuseClosed();
    return sender.enqueue(item) || refuseFull();
  }

  /** A recorded tool call, to be finished in the worker's threads: true when taken (queued or counted as dropped). */
  function offload(call: ToolCall): boolean {
    if (workerSender === undefined || !wireable(call)) return false;
    if (closed) refuseClosed();
    else if (!workerSender.enqueueToolCall(call)) refuseFull();
    return true;
  }

  function refuseClosed(): false {
    local.dropped++;
    warnings.warn('closed', {}, 'records reported after shutdown are dropped');
    return false;
  }

  function refuseFull(): false {
    local.dropped++;
    warnings.warn('queue-full', { queueMaxRecords }, 'the collector queue is full (the disk spool cannot keep up); records are dropped');
    return false;
  }

  function auditFunc(record: AuditRecord): void {
    try {
      if (!looksLikeAuditRecord(record)) {
        local.invalid++;
        warnings.warn('invalid', { record: typeof record }, 'invalid audit record dropped: needs trace_id, timestamp, tool and allowed');
        return;
      }
      // A copy: the caller may reuse its object. A missing event id is stamped by the sender, just
      // before validation and before the record can reach the spool, so a replay keeps it.
      const copy = { ...record } as AuditRecordInput;
      if (record.timestamp instanceof Date) copy.timestamp = record.timestamp.toISOString();
      if (gateway !== undefined && copy.gateway === undefined) copy.gateway = gateway;
      enqueue(copy);
    } catch (error) {
      local.invalid++;
      warnings.warn('audit-error', { err: error }, 'could not take an audit record');
    }
  }

  /** instrumentServer's records: made for the collector and not used again, so neither checked nor copied. */
  function auditOwned(record: AuditRecordInput): void {
    try {
      if (gateway !== undefined && record.gateway === undefined) record.gateway = gateway;
      enqueue(record);
    } catch (error) {
      local.invalid++;
      warnings.warn('audit-error', { err: error }, 'could not take an audit record');
    }
  }

  const spanSink = { topic: spansTopic, tenant, maxMessageBytes, enqueue: (record: SpoolRecord) => enqueue(new EncodedMessage(record)), warnings };
  const batchProcessor = createSpanProcessor(spanSink, options.spanProcessorConfig);
  const exportSpans = createSpanSink(spanSink, writeTraceRequest);
  /** instrumentServer's calls whose spans are recorded without the SDK (tool-call-spans.ts), finished in this thread. */
  const toolCalls = createToolCallBatch({
    audit: auditOwned,
    exportSpans: (spans) => void exportSpans(spans),
    onError: (error) => logger.debug({ err: error }, 'instrumentServer: could not audit a tool call'),
  });
  // What the gateway adds to its tracer provider: the batch processor, whose flush also covers the recorded calls.
  const spanProcessor: SpanProcessor = {
    onStart: (span, parentContext) => batchProcessor.onStart(span, parentContext),
    onEnd: (span) => batchProcessor.onEnd(span),
    forceFlush: () => {
      toolCalls.flush();
      return batchProcessor.forceFlush();
    },
    shutdown: () => {
      toolCalls.flush();
      return batchProcessor.shutdown();
    },
  };

  const tracerProvider = () => options.tracerProvider ?? trace.getTracerProvider();
  const tracer = () => tracerProvider().getTracer(INSTRUMENTATION_SCOPE, VERSION);
  // The fast route of the provider the calls' spans go to, looked up again only when that provider changes.
  let routedProvider: TracerProvider | undefined;
  let route: FastRoute | undefined;
  /** Where a recorded call goes: to the worker's threads when it can, else to the batch. */
  const recorded: ToolCallBatch = {
    add(call) {
      if (!offload(call)) toolCalls.add(call);
    },
    flush: () => toolCalls.flush(),
  };
  const fast = {
    batch: recorded,
    route(): FastRoute | undefined {
      if (options.toolCallSpans === 'sdk') return undefined;
      let provider = tracerProvider();
      // The global provider is a proxy (of whatever copy of the API registered it): its delegate decides.
      const proxy = provider as Partial<ProxyTracerProvider>;
      if (typeof proxy.getDelegate === 'function') provider = proxy.getDelegate();
      if (provider !== routedProvider) {
        routedProvider = provider;
        route = fastRouteOf(provider.getTracer(INSTRUMENTATION_SCOPE, VERSION), spanProcessor);
      }
      return route;
    },
  };

  let shutdownPromise: Promise<void> | undefined;
  async function shutdownOnce(): Promise<void> {
    try {
      await spanProcessor.shutdown().catch((error) => logger.warn({ err: error }, 'span processor shutdown failed'));
      closed = true;
      await sender.close(options.shutdownTimeoutMs ?? 10_000);
      await ownPublisher?.disconnect().catch((error) => logger.warn({ err: error }, 'Kafka disconnect failed'));
    } catch (error) {
      logger.error({ err: error }, 'collector shutdown failed');
    }
  }

  return {
    auditFunc,
    instrumentServer(server, instrumentOptions) {
      try {
        instrumentServer(server, { audit: auditOwned, tracer: tracer(), fast, calls: toolCallPool, logger }, instrumentOptions);
      } catch (error) {
        logger.error({ err: error }, 'instrumentServer failed; tool calls are not audited');
      }
    },
    spanProcessor,
    flush: () => {
      toolCalls.flush();
      return sender.flush();
    },
    shutdown() {
      shutdownPromise ??= shutdownOnce();
      return shutdownPromise;
    },
    stats() {
      const s = sender.stats();
      return {
        queued: s.queued,
        sent: s.sent,
        spilled: s.spilled,
        dropped: s.dropped + local.dropped,
        failed: s.failed,
        invalid: s.invalid + local.invalid,
        spooledBytes: s.spooledBytes,
        spooledRecords: s.spooledRecords,
      };
    },
  };
}

/** The cheap check of the call path; everything else is validated in the background. */
function looksLikeAuditRecord(record: unknown): record is AuditRecord {
  if (typeof record !== 'object' || record === null) return false;
  const r = record as Record<string, unknown>;
  return (
    typeof r['tool'] === 'string' &&
    r['tool'] !== '' &&
    typeof r['trace_id'] === 'string' &&
    (typeof r['timestamp'] === 'string' || r['timestamp'] instanceof Date) &&
    typeof r['allowed'] === 'boolean'
  );
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`createCollector: ${name} must be a positive number, got ${value}`);
  return value;
}
