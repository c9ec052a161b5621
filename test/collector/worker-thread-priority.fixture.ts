// Run as a worker by worker-thread.test.ts: lowers its own priority to workerData's, and reports what
// it got and the thread's scheduling as the kernel shows it.
import { parentPort, workerData } from 'node:worker_threads';
import { lowerThreadPriority, type ThreadPriority } from '../../collector/worker-thread.ts';
import { threadScheduling } from './thread-scheduling.ts';

const got = lowerThreadPriority(workerData as ThreadPriority);
parentPort!.postMessage({ got, ...threadScheduling() });
