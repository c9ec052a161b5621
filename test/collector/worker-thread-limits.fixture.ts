// Run as a collector thread by worker-thread.test.ts: reports its resource limits, and the most its
// young generation grew to while it allocated objects that survive a scavenge or two.
import v8 from 'node:v8';
import { parentPort, resourceLimits } from 'node:worker_threads';

const youngBytes = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
let most = youngBytes();
let kept: object[] = [];
for (let i = 0; i < 2_000_000; i++) {
  kept.push({ i, text: `item ${i}` });
  if (kept.length === 100_000) kept = [];
  if (i % 10_000 === 0) most = Math.max(most, youngBytes());
}
parentPort!.postMessage({ limits: resourceLimits, youngMostBytes: most });
