/**
 * A Kafka connection with nothing to send sleeps: kafkajs 2.2.4 armed a 1 ms timer after every answer,
 * forever, with a negative delay that Node 24 reports as a TimeoutNegativeWarning (core/kafkajs-idle.mjs,
 * tulios/kafkajs#1751).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { auditEvent, auditMessages, brokers, createTopics, kafkaFor, publisherFor, unique } from '../helpers/kafka.ts';

const IDLE_MS = 300;

test('an idle producer arms no timer: no negative delay, no TimeoutNegativeWarning', { skip: !brokers && 'no Kafka broker (KAFKA_TEST_BROKERS)' }, async () => {
  const kafka = kafkaFor();
  const topic = unique('idle');
  await createTopics(kafka, [topic], 1);
  const publisher = publisherFor(kafka);
  const warnings: string[] = [];
  const onWarning = (warning: Error) => {
    if (warning.name === 'TimeoutNegativeWarning') warnings.push(warning.message);
  };
  const realSetTimeout = globalThis.setTimeout;
  const delays: number[] = [];
  process.on('warning', onWarning);
  globalThis.setTimeout = ((handler: () => void, ms?: number, ...args: unknown[]) => {
    delays.push(Number(ms ?? 0));
    return realSetTimeout(handler, ms, ...args);
  }) as typeof setTimeout;
  let idle: number[];
  try {
    for (let i = 0; i < 3; i++) await publisher.send(topic, auditMessages([auditEvent(i)]));
    const sent = delays.length;
    await new Promise((resolve) => realSetTimeout(resolve, IDLE_MS));
    idle = delays.slice(sent);
  } finally {
    globalThis.setTimeout = realSetTimeout;
    await publisher.disconnect();
    // Node emits a warning on a later tick.
    await new Promise((resolve) => setImmediate(resolve));
    process.off('warning', onWarning);
  }
  assert.deepEqual(delays.filter((ms) => ms < 0), [], 'no timer armed with a negative delay');
  assert.ok(idle.length < 10, `${idle.length} timers armed in ${IDLE_MS} ms with nothing to send`);
  assert.deepEqual(warnings, []);
});
