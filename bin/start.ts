/**
 * `npm start`: the product, in the roles ROLES names (all by default). The receiver on RECEIVER_PORT;
 * the API and dashboard on PORT, where /healthz, /readyz and /metrics (the ingest's and the API's
 * figures, one registry) also answer. Between receiver and ingest: Kafka when KAFKA_BROKERS is set,
 * else the in-process queue, with the same validation, batching and writer either way. This file only
 * wires and listens.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { createBudgetEventSource } from '../alerts/budget-events.ts';
import { createAlertDetector } from '../alerts/detector.ts';
import { createAlertWebhookAnnouncer } from '../alerts/webhook-announcer.ts';
import { createWebhookOutbox } from '../alerts/webhook-outbox.ts';
import { BACKGROUND_READS, createApi } from '../api/app.ts';
import { loadPricesFile } from '../api/prices-file.ts';
import { checkAllBudgets } from '../api/queries/budgets.ts';
import { parsePeriod } from '../api/queries/closed-periods.ts';
import { createReceiver } from '../collector/receiver.ts';
import { KeysFileError, openKeyStore, type FileKeyStore } from '../core/api-keys.ts';
import { openClickHouse, type ClickHouseClient } from '../core/clickhouse.ts';
import { ConfigError, loadConfig, type Config } from '../core/config.ts';
import { createHealth } from '../core/health.ts';
import { listen, type Handler, type RunningServer } from '../core/http-server.ts';
import { classifyKafkaError, createKafka, createKafkaPublisher, isKafkaError } from '../core/kafka.ts';
import { ensureTopics } from '../core/kafka-topics.ts';
import { createLogger } from '../core/logger.ts';
import { migrate } from '../core/migrate.ts';
import { BackpressureError, type Publisher } from '../core/publisher.ts';
import { exitOnSignal } from '../core/shutdown.ts';
import { createClickHouseWriter } from '../ingest/clickhouse-writer.ts';
import { createDeadLetterTable } from '../ingest/dead-letter-table.ts';
import { createDeadLetterTopic } from '../ingest/dead-letter-topic.ts';
import { checkInsertJournal, replayInsertJournal } from '../ingest/insert-journal.ts';
import { createKafkaWorker } from '../ingest/kafka-worker.ts';
import { createMemoryQueue } from '../ingest/memory-queue.ts';
import { createIngestMetrics } from '../ingest/metrics.ts';
import { createPipeline } from '../ingest/pipeline.ts';
import { createQueueWorker } from '../ingest/queue-worker.ts';
import { retry } from '../ingest/retry.ts';
import { createTimeWindow } from '../model/time-window.ts';

const UI_DIR = fileURLToPath(new URL('../ui/dist/', import.meta.url));

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(2);
}

const { roles } = config;
const logger = createLogger(config.logLevel);

// One credential model for both borders: API_KEYS_FILE, plus INGEST_TOKENS as ingest keys.
let keys: FileKeyStore | undefined;
try {
  if (roles.has('api') || roles.has('receiver')) {
    keys = openKeyStore({ file: config.apiKeysFile, ingestTokens: config.ingestTokens, logger: logger.child({ component: 'api-keys' }) });
  }
} catch (error) {
  console.error(error instanceof KeysFileError ? error.message : error);
  process.exit(2);
}
if (keys && keys.size === 0) {
  logger.warn(
    { apiKeysFile: config.apiKeysFile ?? null },
    'no API keys configured: the API and the receiver answer loopback callers only, for tenant "default" (create keys with `npm run keys -- create` and set API_KEYS_FILE)',
  );
}
const health = createHealth();
const stops: (() => Promise<void>)[] = []; // run in order on SIGTERM
const shutdownController = new AbortController();
/** Aborted when shutdown begins: whatever still waits to start (Kafka topics, the consumer) stops waiting. */
const startup = new AbortController();

let clickhouse: ClickHouseClient | undefined;
if (roles.has('ingest') || roles.has('api') || roles.has('alerts')) {
  const client = await openClickHouse({ ...config.clickhouse, dataDir: config.dataDir });
  clickhouse = client;
  const migrations = await migrate(client, { cluster: config.clickhouse.cluster, retentionDays: config.retentionDays, logger });
  logger.info({ applied: migrations.applied.length, embedded: !config.clickhouse.url }, 'schema ready');
  health.addCheck('clickhouse', async () => {
    const ping = await client.ping();
    if (!ping.success) throw ping.error;
  });
}

const kafka = config.kafka && createKafka({ ...config.kafka, logger: logger.child({ component: 'kafka' }) });
const kafkaPublisher = kafka && createKafkaPublisher(kafka, { logger });
const queue = kafka ? undefined : createMemoryQueue({ maxMessages: config.batch.maxRows * 20 });
const publisher: Publisher = (kafkaPublisher ?? queue)!;
const metrics = roles.has('ingest') ? createIngestMetrics() : undefined;
/** The audit timestamps accepted, the same at the receiver and in the ingest. */
const timeWindow = createTimeWindow({ retentionDays: config.retentionDays, maxClockSkewSeconds: config.maxClockSkewSeconds });

// A new broker has no topics yet: they are created (or awaited) while the process already answers
// /readyz with the reason it is not ready. Nothing that needs them starts before they are there.
let kafkaWaiting: string | undefined = kafka && 'checking the Kafka topics';
const topicsReady =
  kafka && (roles.has('receiver') || roles.has('ingest'))
    ? ensureTopics(kafka, {
        topics: [config.topics.audit, config.topics.spans, config.topics.deadLetter],
        ...config.kafka!.newTopics,
        logger,
        signal: startup.signal,
        onWaiting: (reason) => (kafkaWaiting = reason),
      })
    : Promise.resolve(true);
if (kafka) {
  health.addCheck('kafka', async () => {
    if (kafkaWaiting) throw new Error(kafkaWaiting);
  });
}

/**
 * Until the topics are there the receiver answers 503 with Retry-After: a send before then would have
 * the broker auto-create a topic with its own defaults (often one partition), not ours.
 */
let topicsThere = !kafka;
void topicsReady.then((ready) => (topicsThere = ready));
const receiverPublisher: Publisher = {
  publish(topic, messages) {
    if (!topicsThere) return Promise.reject(new BackpressureError(5, 'the Kafka topics are not ready yet; retry later'));
    return publisher.publish(topic, messages);
  },
};

/** The detector's figures, served at /metrics with the ingest's and the API's. */
const alertsRegistry = roles.has('alerts') ? new Registry() : undefined;
const alertLogger = logger.child({ component: 'alerts' });
/**
 * One webhook outbox for the process: the detector's alerts and the API's acknowledgements and
 * resolutions are sent from the same directory by one sender, so none is sent twice by two.
 */
const alertOutbox = roles.has('alerts') || roles.has('api') ? createWebhookOutbox({ dir: config.alerts.outboxDir, secret: config.alerts.webhookSecret, logger: alertLogger }) : undefined;
alertOutbox?.start();

if (roles.has('alerts')) {
  const detector = createAlertDetector({
    clickhouse: clickhouse!,
    logger: alertLogger,
    config: { intervalS: config.alerts.intervalS, webhookUrl: config.alerts.webhookUrl, webhookFormat: config.alerts.webhookFormat },
    outbox: alertOutbox,
    registry: alertsRegistry,
    // Budget thresholds the API's minute check records become alerts too.
    budgets: createBudgetEventSource(clickhouse!),
  });
  detector.start();
  stops.push(() => detector.stop()); // the pass under way finishes and queues its webhooks
}

let receiverServer: RunningServer | undefined;
if (roles.has('receiver')) {
  const receiver = createReceiver({
    publisher: receiverPublisher,
    logger: logger.child({ component: 'receiver' }),
    topics: config.topics,
    keys,
    maxBodyBytes: config.receiver.maxBodyBytes,
    maxRecords: config.receiver.maxRecords,
    timeWindow,
  });
  receiverServer = await listen(withHealth(receiver.handle), config.receiverPort, config.host);
  stops.push(() => receiverServer!.close()); // every accepted request is published now
}

if (roles.has('ingest')) {
  // Audit inserts a killed process did not see return are sent again before anything is consumed.
  const journalDir = config.insertJournalDir;
  await checkInsertJournal(journalDir);
  const replayed = await replayInsertJournal(clickhouse!, journalDir);
  if (replayed.sent > 0) logger.info({ inserts: replayed.sent }, 'sent again the audit inserts a previous run did not see return');
  if (replayed.refused > 0) {
    logger.warn({ inserts: replayed.refused }, 'ClickHouse refused audit inserts a previous run left for their content; their rows are set aside when their messages come again');
  }
  const pipeline = createPipeline({
    writer: createClickHouseWriter(clickhouse!, { journalDir }),
    deadLetters: kafkaPublisher ? createDeadLetterTopic(kafkaPublisher, config.topics.deadLetter) : createDeadLetterTable(clickhouse!),
    topics: config.topics,
    timeWindow,
    logger: logger.child({ component: 'ingest' }),
    signal: shutdownController.signal,
  });
  if (kafka) {
    const worker = createKafkaWorker({
      kafka,
      pipeline,
      groupId: config.kafka!.groupId,
      topics: [config.topics.audit, config.topics.spans],
      batch: config.batch,
      logger: logger.child({ component: 'ingest' }),
      metrics,
    });
    // The consumer joins once the topics are there; a Kafka error on the way is waited out, never fatal.
    const consuming = topicsReady.then(async (ready) => {
      if (!ready) return;
      kafkaWaiting = 'joining the consumer group';
      await retry(() => worker.start(), {
        isRetryable: isKafkaError,
        initialDelayMs: 250,
        signal: startup.signal,
        onRetry: (error, attempt) => {
          kafkaWaiting = `joining the consumer group: ${(error as Error).message}`;
          const level = classifyKafkaError(error) === 'permanent' ? 'error' : 'warn';
          logger[level]({ err: error, attempt }, 'the consumer could not join its group; trying again');
        },
      });
    });
    consuming.then(
      () => {
        if (!startup.signal.aborted) kafkaWaiting = undefined;
      },
      (error) => {
        if (startup.signal.aborted) return; // shutting down while it still tried: nothing was consumed
        logger.fatal({ err: error }, 'the ingest could not start');
        process.exit(1);
      },
    );
    stops.push(async () => {
      await consuming.catch(() => {});
      await worker.stop(); // stores and commits what it holds, leaves the group
    });
  } else {
    const worker = createQueueWorker({ queue: queue!, pipeline, batch: config.batch, logger, metrics });
    worker.start();
    stops.push(() => worker.drain()); // everything accepted is in ClickHouse now
  }
}
if (kafkaPublisher) stops.push(() => kafkaPublisher.disconnect());
if (!roles.has('ingest')) void topicsReady.then((ready) => ready && (kafkaWaiting = undefined));

if (roles.has('api') && config.pricesFile) {
  // A bad file stops the start: serving costs from a book other than the one configured would mislead.
  const stored = await loadPricesFile(clickhouse!, config.pricesFile);
  logger.info({ file: config.pricesFile, stored }, 'price book loaded');
}

if (roles.has('api')) {
  // Budget thresholds are checked every minute, so a crossing is recorded without anyone asking.
  const timer = setInterval(() => {
    const period = parsePeriod(new Date().toISOString().slice(0, 7))!;
    checkAllBudgets(clickhouse!, period).catch((err: unknown) => logger.warn({ err }, 'checking budgets failed'));
  }, 60_000);
  timer.unref();
  stops.push(async () => clearInterval(timer));
}


// The API reads through a client of its own: on the embedded engine its sessions are its own, so the
// API's per-statement settings (max_execution_time) never apply to the ingest's inserts; and it has as
// many connections as reads it sends at once (its requests' and its background lane's), so those run in
// parallel.
const apiClickhouse = roles.has('api')
  ? await openClickHouse({ ...config.clickhouse, dataDir: config.dataDir, connections: config.api.readConcurrency + BACKGROUND_READS })
  : undefined;
const apiRegistry = new Registry();
const api = apiClickhouse
  ? createApi({
      clickhouse: apiClickhouse,
      logger: logger.child({ component: 'api' }),
      uiDir: path.resolve(UI_DIR),
      registry: apiRegistry,
      keys,
      replicated: config.clickhouse.cluster !== undefined,
      reads: { timeoutMs: config.api.queryTimeoutMs, concurrency: config.api.readConcurrency, threads: config.api.readThreads, maxQueuedPerCaller: config.api.readQueuePerCaller },
      alertWebhooks: createAlertWebhookAnnouncer({ outbox: alertOutbox!, logger: alertLogger, webhookUrl: config.alerts.webhookUrl, webhookFormat: config.alerts.webhookFormat }),
    })
  : undefined;
// One registry for the process: the ingest's, the API's and the detector's figures, whichever roles run here.
const registry = Registry.merge([...(metrics ? [metrics.registry] : []), ...(api ? [apiRegistry] : []), ...(alertsRegistry ? [alertsRegistry] : [])]);
const apiServer = await listen(
  withHealth((req, res) => {
    if ((metrics || api || alertsRegistry) && req.url === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          logger.error({ err }, 'collecting metrics failed');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n');
        },
      );
    } else if (api) {
      api.handle(req, res);
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
    }
  }),
  config.port,
  config.host,
);
stops.push(() => apiServer.close());
if (alertOutbox) stops.push(() => alertOutbox.stop()); // last: what is still undelivered waits in the outbox for the next start
logger.info(
  {
    roles: [...roles],
    ...(receiverServer && { receiver: `http://${config.host}:${receiverServer.port}` }),
    ...(api && { api: `http://${config.host}:${apiServer.port}/graphql` }),
    kafka: config.kafka?.brokers ?? 'in-process queue',
  },
  'listening',
);

exitOnSignal(logger, config.shutdownTimeoutMs, async () => {
  health.setShuttingDown();
  startup.abort();
  for (const stop of stops) await stop();
  shutdownController.abort();
  await apiClickhouse?.close();
  await clickhouse?.close();
});

function withHealth(handler: Handler): Handler {
  return (req, res) => {
    if (!health.handle(req, res)) handler(req, res);
  };
}
