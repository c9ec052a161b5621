/**
 * The benches' 10M-event data set, built once and kept under .cache/bench/, keyed by the generator's
 * version, the number of events and the migrations (a new migration makes a new copy, migrated from
 * the generator's output). BENCH_DATA_DIR uses a directory as it is; BENCH_DATA_FROM copies an
 * existing data set instead of generating one.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { readMigrations } from '../../core/migrate.ts';
import { DATASET_FILE, GENERATOR_VERSION } from './generate-events.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Dataset {
  events: number;
  end: string;
  perTenant: Record<string, number>;
}

async function migrationsHash(): Promise<string> {
  const hash = createHash('sha256');
  for (const m of await readMigrations()) hash.update(`${m.version}:${m.checksum}\n`);
  return hash.digest('hex').slice(0, 10);
}

/** The data directory to use: BENCH_DATA_DIR, or the cache for (generator, N, migrations), built when missing. */
export async function cachedDataSet(events: number, progress: (line: string) => void): Promise<string> {
  if (process.env.BENCH_DATA_DIR) return path.resolve(process.env.BENCH_DATA_DIR);
  const dir = path.join(ROOT, '.cache', 'bench', `events-g${GENERATOR_VERSION}-n${events}-m${await migrationsHash()}`);
  if (existsSync(path.join(dir, DATASET_FILE))) return dir;

  const partial = `${dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(path.dirname(dir), { recursive: true });
  const from = process.env.BENCH_DATA_FROM;
  const started = performance.now();
  if (from) {
    const description = readDataset(from);
    if (description?.events !== events) throw new Error(`BENCH_DATA_FROM ${from} holds ${description?.events ?? 'an unknown number of'} events, not ${events} (BENCH_EVENTS)`);
    progress(`copying ${from} to ${dir}`);
    execFileSync('cp', ['-a', from, partial]);
  } else {
    progress(`building the data set (${events.toLocaleString('en-US')} events) in ${dir}: a few minutes at 10M`);
    const { status } = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/data/generate-events.ts'), '--dir', partial, '--events', String(events)], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    if (status !== 0) throw new Error(`the data set generator failed (exit ${status})`);
  }
  renameSync(partial, dir);
  progress(`data set ready in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return dir;
}

export function readDataset(dir: string): Dataset | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, DATASET_FILE), 'utf8')) as Dataset;
  } catch {
    return undefined;
  }
}
