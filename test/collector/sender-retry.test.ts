// The sender through a short outage, with nothing new reported after it:
// - the retry must not depend on Date.now() having reached the retry time when the retry timer fires
//   (timers count from the event loop's cached clock and can fire a millisecond early; here the clock
//   runs slow). It used to wait for another kick, which never came: the spooled records stayed there.
// - the batch prepared while the failed one was in flight goes to the spool right after it: a spill in
//   between joined the failed batch's segment and was replayed before the prepared batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCollector } from '../../collector/index.ts';
import { PublishError } from '../../core/kafka.ts';
import type { Publisher } from '../../core/publisher.ts';
import { captureLogger, goMicroRecord, tempDir, waitFor } from './helpers.ts';

test('collector: after an outage, spooled records are sent, in order, when the retry timer fires', async (t) => {
  const realNow = Date.now.bind(Date);
  const origin = realNow();
  t.mock.method(Date, 'now', () => origin + Math.floor((realNow() - origin) / 2)); // a clock at half speed

  let failures = 3;
  const received: string[] = [];
  const publisher: Publisher = {
    publish: async (_topic, messages) => {
      if (failures > 0) {
        failures--;
        throw new PublishError(true, { cause: new Error('down') });
      }
      for (const m of messages) received.push(JSON.parse(m.value.toString()).trace_id);
    },
  };
  const { logger } = captureLogger();
  const collector = createCollector({ publisher, spoolDir: await tempDir('collector-retry'), batchMaxRecords: 10, batchMaxWaitMs: 5, retryMaxMs: 100, logger });
  const expected: string[] = [];
  for (let i = 0; i < 30; i++) {
    const record = goMicroRecord(i);
    expected.push(record['trace_id'] as string);
    collector.auditFunc(record as never);
  }
  await collector.flush();
  await waitFor(() => collector.stats().sent === 30, 5_000, () => `all sent (${JSON.stringify(collector.stats())})`);
  await collector.shutdown();
  assert.deepEqual(received, expected);
});
