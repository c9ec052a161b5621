// Run as a worker by worker-thread.test.ts: lowers its own priority and reports the thread's nice value.
import fs from 'node:fs';
import os from 'node:os';
import { parentPort } from 'node:worker_threads';
import { lowerThreadPriority } from '../../collector/worker-thread.ts';

const lowered = lowerThreadPriority();
const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
parentPort!.postMessage({ lowered, nice: os.getPriority(tid) });
