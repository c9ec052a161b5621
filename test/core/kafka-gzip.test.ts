import assert from 'node:assert/strict';
import { test } from 'node:test';
import zlib from 'node:zlib';
import kafkajs from 'kafkajs';
import { startWorker } from '../../collector/worker-thread.ts';
import { COLLECTOR_GZIP_LEVEL } from '../../core/kafka.ts';
import { brokers, createTopics, kafkaFor, readTopic, unique } from '../helpers/kafka.ts';
import { settlesInMicrotasks } from './kafka-gzip-settles.ts';

interface FixtureReply {
  inThread: boolean;
  compressed: Uint8Array;
}

function runFixture(data: { sample: string; messages: string[]; brokers?: string[]; topic?: string }): Promise<FixtureReply> {
  const worker = startWorker(new URL('./kafka-gzip.fixture.ts', import.meta.url), { workerData: data });
  return new Promise((resolve, reject) => {
    worker.once('message', (reply: FixtureReply) => void worker.terminate().then(() => resolve(reply)));
    worker.once('error', reject);
  });
}

const sample = JSON.stringify({ tool: 'users.Users.Get', allowed: true }).repeat(200);

test('gzipInCallingThread: kafkajs gzips in that thread, as standard gzip at the collector\'s level, and only there', async () => {
  const reply = await runFixture({ sample, messages: [] });
  assert.equal(reply.inThread, true);
  const bytes = Buffer.from(reply.compressed);
  assert.deepEqual([...bytes.subarray(0, 2)], [0x1f, 0x8b]);
  assert.equal(zlib.gunzipSync(bytes).toString(), sample);
  // At the collector's level (zlib's fastest), not zlib's default.
  assert.equal(COLLECTOR_GZIP_LEVEL, zlib.constants.Z_BEST_SPEED);
  assert.ok(bytes.equals(zlib.gzipSync(sample, { level: COLLECTOR_GZIP_LEVEL })));
  assert.ok(!bytes.equals(zlib.gzipSync(sample)));

  // This thread's kafkajs keeps its own codec, which goes through libuv's thread pool.
  const codec = kafkajs.CompressionCodecs[kafkajs.CompressionTypes.GZIP]();
  assert.equal(await settlesInMicrotasks(codec.compress({ buffer: Buffer.from(sample) })), false);
});

test('gzipInCallingThread: what it publishes, a consumer with kafkajs\'s own codec reads', { skip: !brokers && 'no Kafka broker (KAFKA_TEST_BROKERS)' }, async () => {
  const kafka = kafkaFor();
  const topic = unique('gzip-in-thread');
  await createTopics(kafka, [topic], 1);
  const messages = Array.from({ length: 500 }, (_, i) => `${sample.slice(0, 100 + i)}#${i}`);
  await runFixture({ sample, messages, brokers, topic });
  const read = await readTopic(kafka, topic, messages.length);
  assert.deepEqual(
    read.map((m) => m.value.toString()),
    messages,
  );
});
