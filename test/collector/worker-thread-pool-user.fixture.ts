// Run as a collector thread by worker-thread-pool.fixture.ts: lowers its own priority, then uses
// libuv's thread pool (an fs call), and replies with what it got.
import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { lowerThreadPriority } from '../../collector/worker-thread.ts';

const got = lowerThreadPriority('idle');
await fs.promises.stat(import.meta.filename);
parentPort!.postMessage({ got });
