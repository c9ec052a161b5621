// Run as a process of its own by worker-thread.test.ts, so that nothing has used libuv's thread pool
// before: starts a collector thread that lowers its own priority and then uses the pool first, and
// prints the scheduling of the pool's threads as JSON.
import { once } from 'node:events';
import { startCollectorThread } from '../../collector/worker-thread.ts';
import { processThreads } from './thread-scheduling.ts';

const worker = startCollectorThread(new URL('./worker-thread-pool-user.fixture.ts', import.meta.url), {});
const [reply] = (await once(worker, 'message')) as [{ got: string }];
console.log(JSON.stringify({ got: reply.got, pool: processThreads().filter((t) => t.name === 'libuv-worker') }));
await worker.terminate();
