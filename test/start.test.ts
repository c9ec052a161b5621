/**
 * `npm start` as a user runs it: a fresh data directory, migrations applied at start, /healthz and
 * /readyz answering, records accepted over HTTP, and nothing accepted lost when SIGTERM arrives; with
 * a keys file, one key store for the receiver and the API; without, one start-up line saying so.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { appendKey, CHECK_EVERY_MS, generateKey, keyEntry, revokeKey } from '../core/api-keys.ts';
import { openClickHouse } from '../core/clickhouse.ts';
import { freePort, startProduct, waitFor, type Product } from './helpers/product.ts';

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

describe('npm start with the api role alone', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'start-api-'));
  let child: ChildProcess | undefined;
  after(() => child?.kill('SIGKILL'));

  it("serves the API's figures at /metrics, no ingest there", async () => {
    const port = await freePort();
    // The api role alone needs KAFKA_BROKERS set; the API never connects to it.
    child = spawn(process.execPath, ['--import', 'tsx', 'bin/start.ts'], {
      cwd: root,
      env: { ...process.env, DATA_DIR: dataDir, PORT: String(port), ROLES: 'api', KAFKA_BROKERS: '127.0.0.1:9', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exit = exited(child);
    await waitFor(`http://127.0.0.1:${port}/healthz`, 60_000);

    for (let i = 0; i < 2; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ slowestTools { tool calls } }' }),
      });
      assert.deepEqual(await res.json(), { data: { slowestTools: [] } });
    }
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(metrics.status, 200);
    const text = await metrics.text();
    assert.match(text, /^api_graphql_requests_total\{field="slowestTools"\} 2$/m);
    assert.match(text, /^api_graphql_request_duration_seconds_count\{field="slowestTools"\} 2$/m);
    assert.doesNotMatch(text, /^ingest_/m);

    child.kill('SIGTERM');
    assert.equal(await exit, 0);
  });
});

describe('npm start with API_KEYS_FILE', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'start-keys-'));
  let product: Product | undefined;
  after(() => {
    product?.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('one store for both borders: an ingest key sends, a viewer key reads its tenant, a revoked key stops at once', async () => {
    const file = path.join(dir, 'keys.yaml');
    const [viewer, ingest] = [generateKey(), generateKey()];
    appendKey(file, keyEntry({ name: 'dash', tenant: 'acme', role: 'viewer', secret: viewer }));
    appendKey(file, keyEntry({ name: 'gw', tenant: 'acme', role: 'ingest', secret: ingest }));
    const receiverPort = await freePort();
    product = await startProduct({ DATA_DIR: path.join(dir, 'data'), RECEIVER_PORT: String(receiverPort), API_KEYS_FILE: file, BATCH_MAX_WAIT_MS: '200' });
    assert.doesNotMatch(product.logs(), /no API keys configured/);

    const send = (key: string) =>
      fetch(`http://127.0.0.1:${receiverPort}/v1/audit`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ trace_id: 'k-1', timestamp: new Date().toISOString(), tool: 'users.Users.Get', allowed: true }),
      });
    assert.equal((await send(viewer)).status, 403);
    assert.equal((await send(ingest)).status, 202);

    const ask = (key: string | undefined) =>
      fetch(`http://127.0.0.1:${product!.port}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key && { authorization: `Bearer ${key}` }) },
        body: JSON.stringify({ query: '{ me { tenant name } auditLog { edges { node { traceId } } } }' }),
      });
    assert.equal((await ask(undefined)).status, 401);
    const deadline = Date.now() + 20_000;
    let body: { data?: { me: unknown; auditLog: { edges: Array<{ node: { traceId: string } }> } } } = {};
    while (Date.now() < deadline) {
      body = await (await ask(viewer)).json();
      if (body.data?.auditLog.edges.length) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(body.data, { me: { tenant: 'acme', name: 'dash' }, auditLog: { edges: [{ node: { traceId: 'k-1' } }] } });

    assert.equal(revokeKey(file, 'dash'), true);
    await new Promise((r) => setTimeout(r, CHECK_EVERY_MS + 200));
    assert.equal((await ask(viewer)).status, 401);
    assert.equal((await send(ingest)).status, 202, 'the other key still works');
  });
});

describe('npm start without keys', () => {
  it('says in one start-up line that only loopback callers are served, as tenant default', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'start-nokeys-'));
    const product = await startProduct({ DATA_DIR: dir, RECEIVER_PORT: String(await freePort()) });
    try {
      const lines = product.logs().trim().split('\n').filter((l) => l.includes('no API keys configured'));
      assert.equal(lines.length, 1);
      assert.match(lines[0]!, /the API and the receiver answer loopback callers only, for tenant \\"default\\"/);
    } finally {
      product.child.kill('SIGKILL');
      await product.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
