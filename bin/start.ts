/**
 * `npm start`: the product, in the roles ROLES names (all by default). The receiver on RECEIVER_PORT;
 * the API and dashboard on PORT, where /healthz, /readyz and the ingest's /metrics also answer. Between
 * receiver and ingest: Kafka when KAFKA_BROKERS is set, else the in-process queue, with the same
 * validation, batching and writer either way. This file only wires and listens.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { createAlertDetector } from '../alerts/detector.ts';
import { createWebhookOutbox } from '../alerts/webhook-outbox.ts';
import { createApi } from '../api/app.ts';
import { createReceiver } from '../collector/receiver.ts';
import { openClickHouse, type ClickHouseClient } from '../core/clickhouse.ts';
import { ConfigError, loadConfig, type Config } from '../core/config.ts';
import { createHealth } from '../core/health.ts';
import { listen, type Handler, type RunningServer } from '../core/http-server.ts';
import { createKafka, createKafkaPublisher } from '../core/kafka.ts';
import { createLogger } from '../core/logger.ts';
import { migrate } from '../core/migrate.ts';
import type { Publisher } from '../core/publisher.ts';
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
const health = createHealth();
const stops: (() => Promise<void>)[] = []; // run in order on SIGTERM
const shutdownController = new AbortController();

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
/** What /metrics serves: the ingest's, and the detector's when it runs here. */
const registry = metrics?.registry ?? (roles.has('alerts') ? new Registry() : undefined);

if (roles.has('alerts')) {
  const alertLogger = logger.child({ component: 'alerts' });
  const detector = createAlertDetector({
    clickhouse: clickhouse!,
    logger: alertLogger,
    config: { intervalS: config.alerts.intervalS, webhookUrl: config.alerts.webhookUrl, webhookFormat: config.alerts.webhookFormat },
    outbox: createWebhookOutbox({ dir: config.alerts.outboxDir, secret: config.alerts.webhookSecret, logger: alertLogger }),
    registry,
  });
  detector.start();
  stops.push(() => detector.stop()); // the pass under way finishes; undelivered webhooks stay in the outbox
}

let receiverServer: RunningServer | undefined;
if (roles.has('receiver')) {
  const receiver = createReceiver({
    publisher,
    logger: logger.child({ component: 'receiver' }),
    topics: config.topics,
    tokens: config.ingestTokens,
    maxBodyBytes: config.receiver.maxBodyBytes,
    maxRecords: config.receiver.maxRecords,
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
    await worker.start();
    stops.push(() => worker.stop()); // stores and commits what it holds, leaves the group
  } else {
    const worker = createQueueWorker({ queue: queue!, pipeline, batch: config.batch, logger, metrics });
    worker.start();
    stops.push(() => worker.drain()); // everything accepted is in ClickHouse now
  }
}
if (kafkaPublisher) stops.push(() => kafkaPublisher.disconnect());

const api = roles.has('api') ? createApi({ clickhouse: clickhouse!, logger: logger.child({ component: 'api' }), uiDir: path.resolve(UI_DIR) }) : undefined;
const apiServer = await listen(
  withHealth((req, res) => {
    if (registry && req.url === '/metrics') {
      registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(text);
      });
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
  for (const stop of stops) await stop();
  shutdownController.abort();
  await clickhouse?.close();
});

function withHealth(handler: Handler): Handler {
  return (req, res) => {
    if (!health.handle(req, res)) handler(req, res);
  };
}
