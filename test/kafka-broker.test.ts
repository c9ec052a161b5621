// Smoke test against the real Kafka broker that scripts/test.mjs starts
// (KAFKA_TEST_BROKERS). Proves kafkajs can produce idempotently and consume
// through a consumer group end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import '../core/kafkajs-idle.mjs';

const MESSAGE_COUNT = 100;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    const describe = typeof what === 'function' ? what : () => what;
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${describe()}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

test('kafka broker: idempotent produce then consumer-group consume, in order', async (t) => {
  const brokers = process.env.KAFKA_TEST_BROKERS;
  if (!brokers) {
    t.skip('KAFKA_TEST_BROKERS is not set: no Kafka broker (npm test starts one when java and mvn are installed)');
    return;
  }

  const suffix = randomBytes(4).toString('hex');
  const topic = `kafka-broker-test-${suffix}`;
  const kafka = new Kafka({ clientId: `kafka-broker-test-${suffix}`, brokers: brokers.split(','), logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const consumer = kafka.consumer({ groupId: `kafka-broker-test-${suffix}` });

  t.after(async () => {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.deleteTopics({ topics: [topic], timeout: 5_000 }).catch(() => {});
    await admin.disconnect().catch(() => {});
  });

  await withTimeout(admin.connect(), 30_000, 'admin connect');
  const created = await withTimeout(
    admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true }),
    30_000,
    `create topic ${topic}`,
  );
  assert.equal(created, true);

  const expected = Array.from({ length: MESSAGE_COUNT }, (_, i) => `message-${i}`);
  await withTimeout(producer.connect(), 30_000, 'producer connect');
  for (const value of expected) {
    await producer.send({ topic, acks: -1, messages: [{ key: suffix, value }] });
  }

  const values: string[] = [];
  const offsets: string[] = [];
  await withTimeout(consumer.connect(), 30_000, 'consumer connect');
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const allReceived = new Promise<void>((resolve, reject) => {
    consumer
      .run({
        eachMessage: async ({ message }) => {
          values.push(message.value?.toString() ?? '<null>');
          offsets.push(message.offset);
          if (values.length >= MESSAGE_COUNT) resolve();
        },
      })
      .catch(reject);
  });
  await withTimeout(allReceived, 60_000, () => `consume ${MESSAGE_COUNT} messages (got ${values.length})`);
  await consumer.stop();

  assert.deepEqual(values, expected);
  // Idempotence: exactly one record per send, no duplicates in the log.
  assert.deepEqual(offsets, expected.map((_, i) => String(i)));
});
