/**
 * Listing dead letters and replaying them after a fix. With Kafka they live on the dead-letter topic:
 * a replay sends each original message (bytes, key, headers) back to its original topic, where the
 * ingest takes it again, and remembers how far it got in a consumer group of its own, so each dead
 * letter is replayed once. Without Kafka they live in `dead_letters_v1` and a replay runs them through
 * the same pipeline directly, marking each one replayed.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { Kafka } from '../core/kafka.ts';
import type { Publisher } from '../core/publisher.ts';
import { DEAD_LETTER_HEADERS } from './dead-letter-topic.ts';
import { textHeaders, type InboundMessage } from './messages.ts';
import type { BatchOutcome, Pipeline } from './pipeline.ts';

export interface DeadLetterEntry {
  topic: string;
  partition: number;
  offset: string;
  reason: string;
  at: string;
  key: string | null;
  /** The original bytes as text (UTF-8), or base64 when they are not valid UTF-8. */
  value: string;
  encoding: 'utf8' | 'base64';
  headers: Record<string, string>;
}

export interface ReplayResult {
  replayed: number;
  skipped: number;
}

const DLQ_HEADER_NAMES = new Set<string>(Object.values(DEAD_LETTER_HEADERS));

/** Reads the dead-letter topic from its start to its current end. */
export async function listTopicDeadLetters(kafka: Kafka, topic: string, groupId: string): Promise<DeadLetterEntry[]> {
  const entries: DeadLetterEntry[] = [];
  await consumeToEnd(kafka, topic, `${groupId}-dead-letter-list-${process.pid}-${Date.now()}`, false, (message) => {
    entries.push(entryFromHeaders(message.headers, message.key, message.value));
  });
  return entries;
}

/** Sends each dead letter not replayed before back to its original topic. */
export async function replayTopicDeadLetters(
  kafka: Kafka,
  publisher: Publisher,
  topic: string,
  groupId: string,
  filter: (entry: DeadLetterEntry) => boolean = () => true,
): Promise<ReplayResult> {
  const result: ReplayResult = { replayed: 0, skipped: 0 };
  await consumeToEnd(kafka, topic, `${groupId}-dead-letter-replay`, true, async (message) => {
    const entry = entryFromHeaders(message.headers, message.key, message.value);
    if (!filter(entry)) {
      result.skipped++;
      return;
    }
    const headers = Object.fromEntries(Object.entries(entry.headers).filter(([k]) => !DLQ_HEADER_NAMES.has(k)));
    await publisher.publish(entry.topic, [{ key: entry.key, value: message.value, headers }]);
    result.replayed++;
  });
  return result;
}

interface RawMessage {
  key: Buffer | null;
  value: Buffer;
  headers: Record<string, string>;
}

/** Consumes a topic up to the end it had when called; with `commit`, each message once per group. */
async function consumeToEnd(
  kafka: Kafka,
  topic: string,
  groupId: string,
  commit: boolean,
  onMessage: (message: RawMessage) => void | Promise<void>,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect());
  const remaining = new Map(ends.filter((p) => p.high !== p.low).map((p) => [p.partition, BigInt(p.high)]));
  const consumer = kafka.consumer({ groupId });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let done: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    // Partitions whose committed position is already at the end have nothing to give.
    if (commit) {
      const probe = kafka.admin();
      await probe.connect();
      const [committed] = await probe.fetchOffsets({ groupId, topics: [topic] }).finally(() => probe.disconnect());
      for (const p of committed?.partitions ?? []) {
        if (p.offset !== '-1' && BigInt(p.offset) >= (remaining.get(p.partition) ?? 0n)) remaining.delete(p.partition);
      }
    }
    if (remaining.size === 0) return;
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const end = remaining.get(partition);
        if (end === undefined || BigInt(message.offset) >= end) return;
        await onMessage({ key: message.key, value: message.value ?? Buffer.alloc(0), headers: textHeaders(message.headers) });
        const next = BigInt(message.offset) + 1n;
        if (commit) await consumer.commitOffsets([{ topic, partition, offset: next.toString() }]);
        if (next >= end) remaining.delete(partition);
        if (remaining.size === 0) done();
      },
    });
    await finished;
  } finally {
    await consumer.disconnect();
  }
}

/** Dead letters kept in `dead_letters_v1` (no Kafka). */
export async function listTableDeadLetters(clickhouse: ClickHouseClient, options: { includeReplayed?: boolean } = {}) {
  const rows = await (
    await clickhouse.query({
      query: `SELECT toString(id) AS id, topic, partition, offset, reason, toString(received_at) AS at, key, value, headers,
                     replayed_at IS NOT NULL AS replayed
              FROM dead_letters_v1
              WHERE {all:Bool} OR replayed_at IS NULL
              ORDER BY received_at, id`,
      query_params: { all: options.includeReplayed ?? false },
      format: 'JSONEachRow',
    })
  ).json<{ id: string; topic: string; partition: number; offset: string; reason: string; at: string; key: string; value: string; headers: Record<string, string>; replayed: boolean | number }>();
  return rows.map((r) => ({ ...r, replayed: Boolean(r.replayed) }));
}

/** Runs the table's unreplayed dead letters through the pipeline again and marks them replayed. */
export async function replayTableDeadLetters(
  clickhouse: ClickHouseClient,
  pipeline: Pipeline,
  filter: (entry: { topic: string; reason: string }) => boolean = () => true,
): Promise<ReplayResult & { outcome?: BatchOutcome }> {
  const letters = (await listTableDeadLetters(clickhouse)).filter(filter);
  if (letters.length === 0) return { replayed: 0, skipped: 0 };
  const messages: InboundMessage[] = letters.map((l) => ({
    topic: l.topic,
    partition: l.partition,
    offset: l.offset,
    key: l.key === '' ? null : Buffer.from(l.key),
    value: Buffer.from(l.value),
    headers: l.headers,
  }));
  const outcome = await pipeline.process(messages);
  await clickhouse.command({
    query: 'ALTER TABLE dead_letters_v1 UPDATE replayed_at = now64(3) WHERE id IN {ids:Array(UUID)}',
    query_params: { ids: letters.map((l) => l.id) },
    clickhouse_settings: { mutations_sync: '2' },
  });
  return { replayed: letters.length, skipped: 0, outcome };
}

function entryFromHeaders(headers: Record<string, string>, key: Buffer | null, value: Buffer): DeadLetterEntry {
  const text = value.toString('utf8');
  const utf8 = Buffer.from(text, 'utf8').equals(value);
  return {
    topic: headers[DEAD_LETTER_HEADERS.topic] ?? '',
    partition: Number(headers[DEAD_LETTER_HEADERS.partition] ?? -1),
    offset: headers[DEAD_LETTER_HEADERS.offset] ?? '',
    reason: headers[DEAD_LETTER_HEADERS.reason] ?? '',
    at: headers[DEAD_LETTER_HEADERS.at] ?? '',
    key: key?.toString('utf8') ?? null,
    value: utf8 ? text : value.toString('base64'),
    encoding: utf8 ? 'utf8' : 'base64',
    headers,
  };
}
