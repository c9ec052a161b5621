/**
 * `npm run dead-letters -- list [--all]` prints the dead letters, one JSON object per line.
 * `npm run dead-letters -- replay [--topic T] [--reason TEXT]` replays them after a fix: with Kafka, back
 * to their original topics (each dead letter once); without Kafka, through the pipeline directly (stop
 * `npm start` first: the embedded engine allows one process per data directory).
 */
import { parseArgs } from 'node:util';
import { openClickHouse } from '../core/clickhouse.ts';
import { ConfigError, loadConfig } from '../core/config.ts';
import { createKafka, createKafkaPublisher } from '../core/kafka.ts';
import { createLogger } from '../core/logger.ts';
import { migrate } from '../core/migrate.ts';
import { createClickHouseWriter } from '../ingest/clickhouse-writer.ts';
import { createDeadLetterTable } from '../ingest/dead-letter-table.ts';
import {
  listTableDeadLetters, listTopicDeadLetters, replayTableDeadLetters, replayTopicDeadLetters,
} from '../ingest/dead-letters.ts';
import { checkInsertJournal, replayInsertJournal } from '../ingest/insert-journal.ts';
import { createPipeline } from '../ingest/pipeline.ts';
import { createTimeWindow } from '../model/time-window.ts';

class UsageError extends Error {}

const USAGE = 'usage: npm run dead-letters -- list [--all] | replay [--topic TOPIC] [--reason TEXT]';

try {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { all: { type: 'boolean' }, topic: { type: 'string' }, reason: { type: 'string' } },
  });
  const command = positionals[0];
  if (command !== 'list' && command !== 'replay') throw new UsageError(USAGE);
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'dead-letters');
  const filter = (e: { topic: string; reason: string }) =>
    (!values.topic || e.topic === values.topic) && (!values.reason || e.reason.includes(values.reason));

  if (config.kafka) {
    const kafka = createKafka({ ...config.kafka, logger });
    if (command === 'list') {
      for (const entry of await listTopicDeadLetters(kafka, config.topics.deadLetter, config.kafka.groupId)) {
        if (filter(entry)) console.log(JSON.stringify(entry));
      }
    } else {
      const publisher = createKafkaPublisher(kafka, { logger });
      try {
        const result = await replayTopicDeadLetters(kafka, publisher, config.topics.deadLetter, config.kafka.groupId, filter);
        console.log(JSON.stringify(result));
      } finally {
        await publisher.disconnect();
      }
    }
  } else {
    const clickhouse = await openClickHouse({ ...config.clickhouse, dataDir: config.dataDir });
    try {
      await migrate(clickhouse, { cluster: config.clickhouse.cluster, retentionDays: config.retentionDays, logger });
      if (command === 'list') {
        for (const entry of await listTableDeadLetters(clickhouse, { includeReplayed: values.all })) {
          if (filter(entry)) console.log(JSON.stringify(entry));
        }
      } else {
        // The ingest's insert journal: what a killed run of either left is sent again first.
        await checkInsertJournal(config.insertJournalDir);
        await replayInsertJournal(clickhouse, config.insertJournalDir);
        const pipeline = createPipeline({
          writer: createClickHouseWriter(clickhouse, { journalDir: config.insertJournalDir }),
          deadLetters: createDeadLetterTable(clickhouse),
          topics: config.topics,
          // The same rule as the running ingest: a record still outside the window stays a dead letter.
          timeWindow: createTimeWindow({ retentionDays: config.retentionDays, maxClockSkewSeconds: config.maxClockSkewSeconds }),
          logger,
        });
        console.log(JSON.stringify(await replayTableDeadLetters(clickhouse, pipeline, filter)));
      }
    } finally {
      await clickhouse.close();
    }
  }
} catch (error) {
  const known = error instanceof ConfigError || error instanceof UsageError;
  console.error(known ? (error as Error).message : error);
  process.exit(known ? 2 : 1);
}

