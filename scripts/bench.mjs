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

let failed = 0;
for (const bench of benches) {
  console.log(`\n=== ${bench}`);
  const { status } = spawnSync(process.execPath, ['--import', 'tsx', bench], { stdio: 'inherit' });
  if (status !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);
