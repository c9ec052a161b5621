/**
 * `npm start` as a user runs it: a fresh data directory, migrations applied at start, /healthz and
 * /readyz answering, records accepted over HTTP, and nothing accepted lost when SIGTERM arrives.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { openClickHouse } from '../core/clickhouse.ts';
import { freePort, waitFor } from './helpers/product.ts';

const root = new URL('../', import.meta.url).pathname;

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('npm start on the embedded default', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'start-'));
  let child: ChildProcess | undefined;
  after(() => child?.kill('SIGKILL'));

  it('migrates, answers health checks, and drains accepted records on SIGTERM', async () => {
    const [port, receiverPort] = [await freePort(), await freePort()];
    child = spawn(process.execPath, ['--import', 'tsx', 'bin/start.ts'], {
      cwd: root,
      env: { ...process.env, DATA_DIR: dataDir, PORT: String(port), RECEIVER_PORT: String(receiverPort), LOG_LEVEL: 'info', BATCH_MAX_WAIT_MS: '5000', KAFKA_BROKERS: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let logs = '';
    child.stdout!.on('data', (chunk) => (logs += chunk));
    const exit = exited(child);

    await waitFor(`http://127.0.0.1:${port}/healthz`, 60_000);
    const ready = await waitFor(`http://127.0.0.1:${receiverPort}/readyz`, 30_000);
    assert.deepEqual(JSON.parse(ready), { status: 'ready', checks: { clickhouse: 'ok' } });

    let accepted = 0;
    for (let batch = 0; batch < 5; batch++) {
      const records = Array.from({ length: 200 }, (_, i) => ({
        trace_id: `t-${batch}-${i}`,
        timestamp: new Date().toISOString(),
        tool: 'users.Users.Get',
        allowed: true,
        duration: 1000 + i,
      }));
      const res = await fetch(`http://127.0.0.1:${receiverPort}/v1/audit`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(records),
      });
      assert.equal(res.status, 202, await res.text());
      accepted += records.length;
    }
    // The batch wait is 5 s: these records are still queued when the signal arrives.
    child.kill('SIGTERM');
    assert.equal(await exit, 0, logs);
    assert.match(logs, /"msg":"stopped"/);

    const lines = logs.trim().split('\n').map((l) => JSON.parse(l) as { msg: string });
    assert.ok(lines.some((l) => l.msg === 'migration applied'));

    const clickhouse = await openClickHouse({ database: 'mcp_analytics', dataDir });
    try {
      const rows = await (await clickhouse.query({ query: 'SELECT count() AS n FROM audit_events_v1', format: 'JSONEachRow' })).json<{ n: string }>();
      assert.equal(Number(rows[0]!.n), accepted);
    } finally {
      await clickhouse.close();
    }
  });
});
