/**
 * Webhooks to a local HTTP server on 127.0.0.1: each opened and resolved alert delivered, signed,
 * retried after failures, and none lost across a restart (a new outbox over the same directory).
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { createAlertDetector } from '../../alerts/detector.ts';
import { createWebhookOutbox, deliveryOf } from '../../alerts/webhook-outbox.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { insertCalls, windowCalls } from './helpers.ts';

const MIN = 60_000;
const AT = Math.floor(Date.now() / (10 * MIN)) * 10 * MIN - 24 * 3600_000;
const SECRET = 'a-webhook-secret-of-some-length';
const dataDir = mkdtempSync(path.join(tmpdir(), 'alerts-webhook-test-'));
const outboxDir = path.join(dataDir, 'alert-outbox');
const logger = pino({ level: 'silent' });
let clickhouse: ClickHouseClient;
let server: Server;
let hookUrl: string;

/** What the receiver answers next: a queue of statuses, then 200. */
const answers: number[] = [];
const received: Array<{ status: number; delivery: string; body: any; signed: boolean }> = [];

before(async () => {
  clickhouse = await openClickHouse({ database: 'alerts_webhook_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  for (const agent of ['alpha', 'beta']) {
    const calls = [...Array.from({ length: 12 }, (_, k) => windowCalls(AT, k + 1, 60, { agent, tool: 'repo.Files.Read' })).flat()];
    await insertCalls(clickhouse, 'hooks', calls);
  }
  server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const status = answers.shift() ?? 200;
      const expected = `sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`;
      received.push({ status, delivery: String(req.headers['x-alert-delivery']), body: JSON.parse(raw), signed: req.headers['x-signature-256'] === expected });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
});

after(async () => {
  server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function outbox() {
  return createWebhookOutbox({ dir: outboxDir, secret: SECRET, logger, initialDelayMs: 10, maxDelayMs: 40, pollMs: 10 });
}

async function drain(box: ReturnType<typeof outbox>, deadlineMs = 10_000) {
  const deadline = Date.now() + deadlineMs;
  while ((await box.flush()) > 0) {
    if (Date.now() > deadline) throw new Error('the outbox did not drain');
    await new Promise((r) => setTimeout(r, 15));
  }
}

const accepted = () => received.filter((r) => r.status === 200).map((r) => `${r.body.alert.id}:${r.body.event}`).sort();

test('retried after failures, signed, exactly the alerts fired; none lost across a restart', async () => {
  // Both agents fall silent: two CALL_COLLAPSE alerts. The receiver fails the first three attempts.
  answers.push(500, 500, 503);
  const first = outbox();
  const detector = createAlertDetector({ clickhouse, logger, config: { intervalS: 60, webhookUrl: hookUrl, webhookFormat: 'json' }, outbox: first });
  const pass = await detector.runOnce(AT);
  assert.equal(pass.opened.length, 2);
  await drain(first);
  assert.deepEqual(accepted(), pass.opened.map((a) => `${a.id}:opened`).sort());
  assert.equal(received.filter((r) => r.status !== 200).length, 3);
  assert.ok(received.every((r) => r.signed), 'every request carries the HMAC of its body');
  assert.deepEqual(received.filter((r) => r.status === 200).map((r) => r.body.alert.sentence).sort(), [
    'alpha made 0 calls in 10 min; its usual over the last hours is 60',
    'beta made 0 calls in 10 min; its usual over the last hours is 60',
  ]);
  assert.deepEqual(readdirSync(outboxDir), []);

  // The agents are back from AT on; the receiver is down while the alerts resolve; the product
  // stops (the outbox keeps them).
  for (const agent of ['alpha', 'beta']) {
    await insertCalls(clickhouse, 'hooks', [0, 1, 2].flatMap((k) => windowCalls(AT + 30 * MIN, k, 60, { agent, tool: 'repo.Files.Read' })));
  }
  answers.push(...Array(50).fill(500));
  const resolvedPass = await detector.runOnce(AT + 30 * MIN);
  assert.equal(resolvedPass.resolved.length, 2);
  await new Promise((r) => setTimeout(r, 50));
  await detector.stop();
  await first.stop();
  assert.equal(readdirSync(outboxDir).filter((f) => f.endsWith('.json')).length, 2);
  assert.deepEqual(accepted(), pass.opened.map((a) => `${a.id}:opened`).sort());

  // A new process over the same data directory delivers them once the receiver is back.
  answers.length = 0;
  await drain(outbox());
  assert.deepEqual(accepted(), [...pass.opened.map((a) => `${a.id}:opened`), ...resolvedPass.resolved.map((a) => `${a.id}:resolved`)].sort());
  assert.deepEqual(readdirSync(outboxDir), []);
});

test('a Slack-compatible body', () => {
  const alert = {
    id: 'f'.repeat(32), tenant: 't', kind: 'CALL_LOOP', severity: 'CRITICAL', status: 'OPEN', subject: { agent: 'a', tool: 'x', account: '', session: 's' },
    windowStart: 0, windowEnd: 600, lastFiredAt: 600, observed: 60, expected: 2, expectedLow: 2, expectedHigh: 2, score: 40, baseline: 'recent',
    sentence: 'a called x 60 times in 10 min in session s; its usual per session is 2', acknowledgedBy: '', acknowledgedAt: null, resolvedBy: '', resolvedAt: null, updatedAt: 0,
  } as const;
  const d = deliveryOf({ ...alert, subject: { ...alert.subject } }, 'opened', 600_000, hookUrl, 'slack');
  assert.deepEqual(JSON.parse(d.body).text, '[CRITICAL] call loop opened: a called x 60 times in 10 min in session s; its usual per session is 2');
  // A person's change names the person.
  const ack = deliveryOf({ ...alert, subject: { ...alert.subject }, status: 'ACKNOWLEDGED', acknowledgedBy: 'ops', acknowledgedAt: 660_000 }, 'acknowledged', 660_000, hookUrl, 'slack', 'ops');
  assert.deepEqual(JSON.parse(ack.body).text, '[CRITICAL] call loop acknowledged by ops: a called x 60 times in 10 min in session s; its usual per session is 2');
});
