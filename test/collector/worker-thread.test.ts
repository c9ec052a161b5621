import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { test } from 'node:test';
import { startWorker } from '../../collector/worker-thread.ts';

const linux = fs.existsSync('/proc/thread-self');

test('lowerThreadPriority lowers the calling thread only, not the gateway thread', { skip: !linux && 'no /proc/thread-self' }, async () => {
  const before = os.getPriority();
  const entry = new URL('./worker-thread-priority.fixture.ts', import.meta.url);
  const worker = startWorker(entry, {});
  const reply = await new Promise<{ lowered: boolean; nice: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  assert.equal(reply.lowered, true);
  assert.equal(reply.nice, Math.max(before, 10));
  assert.equal(os.getPriority(), before);
});
