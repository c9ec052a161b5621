/**
 * `docker stop` on the image: the Dockerfile's CMD, run as it is (exec form, no shell, no npm), is the
 * process that receives SIGTERM. Here it is this test's direct child, receiving SIGTERM while gateways
 * are still sending, on the embedded default (the in-process queue, which holds what it accepted only
 * in memory): every record answered 202 must be stored, and the process must exit 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, it } from 'node:test';
import { openClickHouse } from '../core/clickhouse.ts';
import { freePort, waitFor } from './helpers/product.ts';

const root = new URL('../', import.meta.url).pathname;
const dockerfile = readFileSync(new URL('Dockerfile', new URL('../', import.meta.url)), 'utf8');
const [program, ...args]: string[] = JSON.parse(dockerfile.match(/^CMD (\[.*\])$/m)![1]!);
/** The image's ENV lines, `ENV A=1 B=2`. */
const imageEnv = Object.fromEntries(
  [...dockerfile.matchAll(/^ENV (.+)$/gm)].flatMap((m) => m[1]!.split(/\s+/).map((pair) => pair.split('=') as [string, string])),
);

const SENDERS = 4;
const RECORDS_PER_REQUEST = 50;

it("SIGTERM to the image's command while records arrive: every accepted record is stored, exit 0", async (t) => {
  assert.equal(program, 'node', 'the image runs node itself');
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'container-stop-'));
  const [port, receiverPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: {
      ...process.env,
      ...imageEnv,
      HOST: '127.0.0.1', // the image listens on 0.0.0.0; the test stays on loopback
      DATA_DIR: dataDir,
      PORT: String(port),
      RECEIVER_PORT: String(receiverPort),
      KAFKA_BROKERS: '',
      BATCH_MAX_WAIT_MS: '5000', // what arrived in the last 5 s is still queued when the signal comes
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  after(() => child.kill('SIGKILL'));
  let logs = '';
  child.stdout!.on('data', (chunk) => (logs += chunk));
  child.stderr!.on('data', (chunk) => (logs += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let running = true;
  void exited.then(() => (running = false));

  await waitFor(`http://127.0.0.1:${receiverPort}/readyz`, 60_000);

  const accepted: string[] = [];
  let refused = 0;
  let sent = 0;
  const now = new Date().toISOString();
  async function sender(id: number): Promise<void> {
    for (let request = 0; running && request < 10_000; request++) {
      const ids = Array.from({ length: RECORDS_PER_REQUEST }, (_, i) => `stop-${id}-${request}-${i}`);
      const records = ids.map((trace_id, i) => ({ trace_id, timestamp: now, tool: 'users.Users.Get', allowed: true, duration: 1000 + i }));
      sent += ids.length;
      try {
        const res = await fetch(`http://127.0.0.1:${receiverPort}/v1/audit`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(records),
        });
        await res.arrayBuffer();
        if (res.status === 202) accepted.push(...ids);
        else refused += ids.length;
      } catch {
        refused += ids.length; // the receiver stopped listening: the gateway keeps these and retries elsewhere
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
  const senders = Array.from({ length: SENDERS }, (_, id) => sender(id));

  while (accepted.length < 2_000) await new Promise((r) => setTimeout(r, 10));
  const acceptedBeforeSignal = accepted.length;
  child.kill('SIGTERM');
  const code = await exited;
  await Promise.all(senders);

  assert.equal(code, 0, logs);
  assert.match(logs, /"msg":"stopped"/);
  assert.ok(accepted.length >= acceptedBeforeSignal && refused > 0, `sent ${sent}: ${accepted.length} accepted, ${refused} refused`);
  t.diagnostic(`sent ${sent}: ${acceptedBeforeSignal} accepted before SIGTERM, ${accepted.length} in all, ${refused} refused while stopping`);

  const clickhouse = await openClickHouse({ database: 'mcp_analytics', dataDir });
  try {
    const rows = await (await clickhouse.query({ query: 'SELECT trace_id FROM audit_events_v1 ORDER BY trace_id', format: 'JSONEachRow' })).json<{
      trace_id: string;
    }>();
    assert.deepEqual(
      rows.map((r) => r.trace_id),
      [...accepted].sort(),
    );
  } finally {
    await clickhouse.close();
  }
});
