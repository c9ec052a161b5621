import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { COLLECTOR_RESOURCE_LIMITS, startCollectorThread, startWorker } from '../../collector/worker-thread.ts';
import { SCHED_IDLE, SCHED_OTHER, threadScheduling } from './thread-scheduling.ts';

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

const chrt = linux && spawnSync('chrt', ['--version']).status === 0;

for (const priority of ['idle', 'low', 'normal'] as const) {
  test(`lowerThreadPriority('${priority}') sets the calling thread only, not the gateway thread`, { skip: !linux && 'no /proc/thread-self' }, async () => {
    const before = os.getPriority();
    const gateway = threadScheduling(process.pid);
    const reply = await firstReply<{ got: string; nice: number; policy: number }>(startWorker(new URL('./worker-thread-priority.fixture.ts', import.meta.url), { workerData: priority }));
    if (priority === 'idle' && chrt) {
      assert.equal(reply.got, 'idle');
      assert.equal(reply.policy, SCHED_IDLE);
    } else {
      assert.equal(reply.got, priority === 'normal' ? 'normal' : 'low');
      assert.equal(reply.policy, SCHED_OTHER);
    }
    assert.equal(reply.nice, priority === 'normal' ? before : Math.max(before, 10));
    assert.equal(os.getPriority(), before);
    assert.deepEqual(threadScheduling(process.pid), gateway);
  });
}

test('libuv\'s thread pool keeps the gateway thread\'s priority when a collector thread is the first to use it', { skip: !linux && 'no /proc/thread-self' }, () => {
  // A process of its own, under Node's type stripping rather than tsx (whose loader uses the pool at start).
  const fixture = fileURLToPath(new URL('./worker-thread-pool.fixture.ts', import.meta.url));
  const run = spawnSync(process.execPath, [fixture], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
  const { got, pool } = JSON.parse(run.stdout) as { got: string; pool: { nice: number; policy: number }[] };
  assert.equal(got, chrt ? 'idle' : 'low');
  assert.equal(pool.length, 4, 'libuv makes UV_THREADPOOL_SIZE (4) threads');
  for (const thread of pool) assert.deepEqual({ nice: thread.nice, policy: thread.policy }, { nice: os.getPriority(), policy: SCHED_OTHER });
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
