/**
 * `npm run alerts -- backtest`: the detector over stored history, interval by interval, printing what
 * it would have raised; nothing written.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { openClickHouse } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { insertCalls, windowCalls } from './helpers.ts';

const MIN = 60_000;
const AT = Math.floor(Date.now() / (10 * MIN)) * 10 * MIN - 24 * 3600_000;
const dataDir = mkdtempSync(path.join(tmpdir(), 'alerts-backtest-test-'));
const root = new URL('../../', import.meta.url).pathname;

after(() => rmSync(dataDir, { recursive: true, force: true }));

function backtest(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'bin/alerts.ts', 'backtest', ...args], {
    cwd: root,
    env: { ...process.env, DATA_DIR: dataDir, CLICKHOUSE_URL: '', KAFKA_BROKERS: '', LOG_LEVEL: 'warn' },
    encoding: 'utf8',
    timeout: 120_000,
  });
}

test('prints the alerts it would have raised, as JSON lines, and writes none', async () => {
  const clickhouse = await openClickHouse({ database: 'mcp_analytics', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  const tool = { agent: 'claude-desktop', tool: 'payments.Payments.Refund' };
  const calls = [...Array.from({ length: 12 }, (_, k) => windowCalls(AT, k + 1, 6, tool)).flat(), ...windowCalls(AT, 0, 412, tool)];
  await insertCalls(clickhouse, 'bt', calls.map((c, i) => ({ ...c, session: `s-${i % 100}` })));
  await insertCalls(clickhouse, 'other', windowCalls(AT, 0, 412, tool));
  await clickhouse.close();

  const run = backtest('--from', new Date(AT - 10 * MIN).toISOString(), '--to', new Date(AT + 10 * MIN).toISOString(), '--tenant', 'bt', '--json');
  assert.equal(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
  // One alert for the whole spike (updated while it fires), opened by the first pass whose window
  // holds enough of it: the spike is 41.2 calls a minute from AT − 10 min, so with 2 of its minutes.
  assert.deepEqual(lines.map((l) => [l.tenant, l.kind, l.subject.agent, l.subject.tool]), [['bt', 'CALL_SPIKE', 'claude-desktop', 'payments.Payments.Refund']]);
  assert.ok(Date.parse(lines[0].at) <= AT && Date.parse(lines[0].at) > AT - 10 * MIN, lines[0].at);
  assert.match(run.stderr, /1 alerts in 21 passes/);

  const check = await openClickHouse({ database: 'mcp_analytics', dataDir });
  const stored = await (await check.query({ query: 'SELECT count() AS n FROM alerts_v1', format: 'JSONEachRow' })).json<{ n: string }>();
  await check.close();
  assert.equal(Number(stored[0]!.n), 0);
});

test('refuses bad arguments with the usage', () => {
  const run = backtest('--from', 'yesterday', '--to', '2026-01-01T00:00:00Z');
  assert.equal(run.status, 2);
  assert.match(run.stderr, /--from must be an ISO-8601 time/);
});
