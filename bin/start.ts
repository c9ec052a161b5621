/**
 * `npm start`: the whole product in one process. The receiver on RECEIVER_PORT, the API and dashboard
 * on PORT, the ingest in between: through Kafka when KAFKA_BROKERS is set, else through the in-process
 * queue, with the same validation, batching and writer either way.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApi } from '../api/app.ts';
import { createReceiver } from '../collector/receiver.ts';
import { openClickHouse } from '../core/clickhouse.ts';
import { ConfigError, loadConfig, type Config } from '../core/config.ts';
import { createHealth } from '../core/health.ts';
import { listen, type Handler } from '../core/http-server.ts';
import { createLogger } from '../core/logger.ts';
import { migrate } from '../core/migrate.ts';
import { exitOnSignal } from '../core/shutdown.ts';
import { createClickHouseWriter } from '../ingest/clickhouse-writer.ts';
import { createDeadLetterTable } from '../ingest/dead-letter-table.ts';
import { createMemoryQueue } from '../ingest/memory-queue.ts';
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

const logger = createLogger(config.logLevel);
const health = createHealth();
const clickhouse = await openClickHouse({ ...config.clickhouse, dataDir: config.dataDir });
const migrations = await migrate(clickhouse, {
  cluster: config.clickhouse.cluster,
  retentionDays: config.retentionDays,
  logger,
});
logger.info({ applied: migrations.applied.length, embedded: !config.clickhouse.url }, 'schema ready');
health.addCheck('clickhouse', async () => {
  const ping = await clickhouse.ping();
  if (!ping.success) throw ping.error;
});

const shutdownController = new AbortController();
const pipeline = createPipeline({
  writer: createClickHouseWriter(clickhouse),
  deadLetters: createDeadLetterTable(clickhouse),
  topics: config.topics,
  logger,
  signal: shutdownController.signal,
});

if (config.kafka) {
  // The Kafka path (receiver → Kafka → consumer group → ClickHouse) is wired by the ingest work.
  throw new Error('KAFKA_BROKERS is set, but this build runs only the in-process queue; unset KAFKA_BROKERS');
}
const queue = createMemoryQueue({ maxMessages: config.batch.maxRows * 20 });
const worker = createQueueWorker({ queue, pipeline, batch: config.batch, logger });
worker.start();

const receiver = createReceiver({
  publisher: queue,
  logger: logger.child({ component: 'receiver' }),
  topics: config.topics,
  tokens: config.ingestTokens,
  maxBodyBytes: config.receiver.maxBodyBytes,
  maxRecords: config.receiver.maxRecords,
});
const api = createApi({ clickhouse, logger: logger.child({ component: 'api' }), uiDir: path.resolve(UI_DIR) });

const withHealth =
  (handler: Handler): Handler =>
  (req, res) => {
    if (!health.handle(req, res)) handler(req, res);
  };
const receiverServer = await listen(withHealth(receiver.handle), config.receiverPort, config.host);
const apiServer = await listen(withHealth(api.handle), config.port, config.host);
logger.info(
  { receiver: `http://${config.host}:${receiverServer.port}`, api: `http://${config.host}:${apiServer.port}/graphql` },
  'listening',
);

exitOnSignal(logger, config.shutdownTimeoutMs, async () => {
  health.setShuttingDown();
  await receiverServer.close(); // every accepted request is in the queue now
  await worker.drain(); // and now in ClickHouse
  await apiServer.close();
  shutdownController.abort();
  await clickhouse.close();
});
