#!/usr/bin/env node
// `npm run bench`: runs every bench/*.bench.ts (or those whose path contains an argument), one after
// another, each printing its measurements as ratios against the raw limit measured in the same run.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const filters = process.argv.slice(2);
const benches = readdirSync(new URL('../bench/', import.meta.url))
  .filter((f) => f.endsWith('.bench.ts'))
  .sort()
  .map((f) => `bench/${f}`)
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));

/**
 * Node flags of a bench whose subject runs in the bench's own process: the flags that subject runs with
 * in production. The ingest worker runs as `npm run ingest` / `npm start` do (package.json): a young
 * generation of 64 MiB per semi-space, so its per-batch garbage (a batch's messages, their JSON and
 * rows) dies young instead of being copied and promoted: in the ingest bench GC was ~18% of the main
 * thread with the default size.
 */
const NODE_FLAGS = {
  'bench/ingest.bench.ts': ['--max-semi-space-size=64'],
  // The API runs as `npm start` runs it (its clients are a process of their own).
  'bench/api.bench.ts': ['--max-semi-space-size=64'],
  // Not the gateway's flags: a young generation large enough that no GC runs inside a measured window.
  'bench/collector-alloc.bench.ts': ['--max-semi-space-size=128', '--min-semi-space-size=128'],
};

let failed = 0;
for (const bench of benches) {
  console.log(`\n=== ${bench}`);
  const { status } = spawnSync(process.execPath, [...(NODE_FLAGS[bench] ?? []), '--import', 'tsx', bench], { stdio: 'inherit' });
  if (status !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);
