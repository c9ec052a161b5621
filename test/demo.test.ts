/**
 * `npm run demo` against `npm start`, both as users run them: the product on a fresh data directory and
 * free ports, the demo pointed at its receiver for 8 s. Every call the demo's agents made is then in the
 * API, per agent, with its errors and denials.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { AgentStats as ApiAgentStats } from '../api/queries/agent-activity.ts';
import { freePort, waitFor } from './helpers/product.ts';

const root = new URL('../', import.meta.url).pathname;
const DEMO_AGENTS = ['claude-desktop', 'chatgpt', 'cursor', 'support-bot', 'nightly-etl'];

/** Resolves with the exit code, or rejects after `ms`. */
function exited(child: ChildProcess, ms: number, what: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not exit within ${ms} ms`)), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

type AgentStats = Pick<ApiAgentStats, 'agent' | 'calls' | 'errors' | 'denials'>;

async function agentsFromApi(port: number, from: string, to: string): Promise<AgentStats[]> {
  const res = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      query: 'query ($from: String, $to: String) { agents(from: $from, to: $to) { agent calls errors denials } }',
      variables: { from, to },
    }),
  });
  const body = (await res.json()) as { data?: { agents: AgentStats[] }; errors?: unknown };
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.ok(body.data, JSON.stringify(body.errors));
  return body.data.agents;
}

const sum = (rows: AgentStats[], key: 'calls' | 'errors' | 'denials') => rows.reduce((total, row) => total + row[key], 0);

describe('npm run demo against npm start', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'demo-data-'));
  const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'demo-spool-'));
  const children: ChildProcess[] = [];
  after(() => {
    for (const child of children) child.kill('SIGKILL');
  });

  it('five agents call the gateway; their calls, errors and denials reach the API', async () => {
    const [port, receiverPort] = [await freePort(), await freePort()];
    const product = spawn(process.execPath, ['--import', 'tsx', 'bin/start.ts'], {
      cwd: root,
      env: { ...process.env, DATA_DIR: dataDir, PORT: String(port), RECEIVER_PORT: String(receiverPort), LOG_LEVEL: 'warn', BATCH_MAX_WAIT_MS: '200', KAFKA_BROKERS: '' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    children.push(product);
    await waitFor(`http://127.0.0.1:${receiverPort}/readyz`, 60_000);
    const from = new Date(Date.now() - 60_000).toISOString();

    const demo = spawn(process.execPath, ['--import', 'tsx', 'demo/main.ts'], {
      cwd: root,
      env: { ...process.env, RECEIVER_URL: `http://127.0.0.1:${receiverPort}`, DEMO_DURATION_MS: '8000', DEMO_SEED: '7', DEMO_SPOOL_DIR: spoolDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(demo);
    let output = '';
    demo.stdout!.on('data', (chunk) => (output += chunk));
    demo.stderr!.on('data', (chunk) => (output += chunk));
    assert.equal(await exited(demo, 60_000, 'the demo'), 0, output);

    // What the demo says it did: calls made, errors and denials the gateway answered, nothing left behind.
    const summary = /demo stopped \+\d+s: calls (\d+) \(errors (\d+), denied (\d+), unanswered (\d+)\) \| collector (.*)/.exec(output);
    assert.ok(summary, output);
    const [calls, errors, denied, unanswered] = summary.slice(1, 5).map(Number) as [number, number, number, number];
    assert.equal(unanswered, 0, output);
    assert.match(summary[5]!, /queued 0, .*dropped 0, failed 0, invalid 0, spooledBytes 0, spooledRecords 0/);

    // The ingest batches for 200 ms: poll until every call is in, then compare exactly.
    const to = new Date(Date.now() + 60_000).toISOString();
    const deadline = Date.now() + 30_000;
    let agents = await agentsFromApi(port, from, to);
    while (sum(agents, 'calls') < calls && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      agents = await agentsFromApi(port, from, to);
    }
    const active = agents.filter((a) => a.calls > 0).map((a) => a.agent);
    assert.deepEqual(active.sort(), [...DEMO_AGENTS].sort(), JSON.stringify(agents));
    assert.equal(sum(agents, 'calls'), calls, JSON.stringify(agents));
    assert.equal(sum(agents, 'errors'), errors);
    assert.equal(sum(agents, 'denials'), denied);
    assert.ok(errors > 0 && denied > 0, `some errors and some denials: ${summary[0]}`);
    // The batch job pages through users faster than the gateway's rate limit allows.
    assert.ok(agents.find((a) => a.agent === 'nightly-etl')!.denials > 0, JSON.stringify(agents));

    product.kill('SIGTERM');
    assert.equal(await exited(product, 30_000, 'npm start'), 0);
  });
});
