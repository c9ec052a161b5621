import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { COLLECTOR_RESOURCE_LIMITS, startCollectorThread, startWorker } from '../../collector/worker-thread.ts';

const linux = fs.existsSync('/proc/thread-self');

/** The first message a fixture thread posts; the thread is then stopped. */
async function firstReply<T>(worker: Worker): Promise<T> {
  try {
    return await new Promise<T>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  } finally {
    await worker.terminate();
  }
}

test('lowerThreadPriority lowers the calling thread only, not the gateway thread', { skip: !linux && 'no /proc/thread-self' }, async () => {
  const before = os.getPriority();
  const entry = new URL('./worker-thread-priority.fixture.ts', import.meta.url);
  const reply = await firstReply<{ lowered: boolean; nice: number }>(startWorker(entry, {}));
  assert.equal(reply.lowered, true);
  assert.equal(reply.nice, Math.max(before, 10));
  assert.equal(os.getPriority(), before);
});

test('the collector\'s threads run with a small young generation', async () => {
  const worker = startCollectorThread(new URL('./worker-thread-limits.fixture.ts', import.meta.url), {});
  const reply = await firstReply<{ limits: { maxYoungGenerationSizeMb: number }; youngMostBytes: number }>(worker);
  assert.equal(reply.limits.maxYoungGenerationSizeMb, COLLECTOR_RESOURCE_LIMITS.maxYoungGenerationSizeMb);
  assert.ok(reply.youngMostBytes > 0);
  // V8 counts its new space's pages beyond the limit's round figure; uncapped, this fixture's grew to 128 MB.
  const capBytes = COLLECTOR_RESOURCE_LIMITS.maxYoungGenerationSizeMb * 1024 * 1024;
  assert.ok(reply.youngMostBytes <= 2 * capBytes, `new space grew to ${reply.youngMostBytes} bytes`);
});
