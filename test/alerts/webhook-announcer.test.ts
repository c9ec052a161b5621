/**
 * A person's acknowledgement or resolution through the GraphQL API reaches the webhook through the
 * durable outbox: one signed delivery per change to a local HTTP receiver on 127.0.0.1, none for a
 * viewer's refused attempt or for a change that changes nothing, and none lost across a restart.
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
import { createAlertWebhookAnnouncer } from '../../alerts/webhook-announcer.ts';
import { createWebhookOutbox, type WebhookOutbox } from '../../alerts/webhook-outbox.ts';
import { createApi } from '../../api/app.ts';
import type { Caller } from '../../api/context.ts';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { insertCalls, windowCalls } from './helpers.ts';

const MIN = 60_000;
const AT = Math.floor(Date.now() / (10 * MIN)) * 10 * MIN - 24 * 3600_000;
const SECRET = 'another-webhook-secret-long-enough';
const dataDir = mkdtempSync(path.join(tmpdir(), 'alerts-announcer-test-'));
const outboxDir = path.join(dataDir, 'alert-outbox');
const logger = pino({ level: 'silent' });

const KEYS: KeyStore = {
  size: 2,
  lookup: (secret) => {
    const m = /^key-acme-(viewer|operator)$/.exec(secret);
    return m ? ({ tenant: 'acme', role: m[1] as Caller['role'], name: `acme-${m[1]}` } satisfies Caller) : undefined;
  },
};

let clickhouse: ClickHouseClient;
let hooks: Server;
let hookBase: string;
/** What the receiver answers next: a queue of statuses, then 200. */
const answers: number[] = [];
const received: Array<{ path: string; status: number; delivery: string; body: any; signed: boolean }> = [];

/** The API as one process of the product runs it: its own outbox over the data directory. */
async function startProduct() {
  const outbox = createWebhookOutbox({ dir: outboxDir, secret: SECRET, logger, initialDelayMs: 10, maxDelayMs: 40, pollMs: 10 });
  outbox.start();
  const alertWebhooks = createAlertWebhookAnnouncer({ outbox, logger, webhookUrl: `${hookBase}/product`, webhookFormat: 'json' });
  const server = createServer(createApi({ clickhouse, logger, keys: KEYS, alertWebhooks }).handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
  const gql = async (key: string, query: string, variables: Record<string, unknown> = {}) => {
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ query, variables }) });
    return (await response.json()) as { data?: any; errors?: Array<{ message: string; extensions?: { code?: string } }> };
  };
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      const closed = new Promise((resolve) => server.close(resolve));
      server.closeAllConnections();
      await closed;
      await outbox.stop();
    })());
  return { outbox, gql, stop };
}

/** Until the outbox has nothing waiting (bounded). */
async function drain(outbox: WebhookOutbox, deadlineMs = 10_000) {
  const deadline = Date.now() + deadlineMs;
  while ((await outbox.flush()) > 0) {
    if (Date.now() > deadline) throw new Error('the outbox did not drain');
    await new Promise((r) => setTimeout(r, 15));
  }
}

const ACK = 'mutation ($id: ID!) { acknowledgeAlert(id: $id) { status acknowledgedBy acknowledgedAt } }';
const RESOLVE = 'mutation ($id: ID!) { resolveAlert(id: $id) { status resolvedBy resolvedAt } }';
const accepted = () => received.filter((r) => r.status === 200);

before(async () => {
  clickhouse = await openClickHouse({ database: 'alerts_announcer_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  // Two agents fall silent: two CALL_COLLAPSE alerts, opened by a detector without webhooks.
  for (const agent of ['alpha', 'beta']) {
    await insertCalls(clickhouse, 'acme', Array.from({ length: 12 }, (_, k) => windowCalls(AT, k + 1, 60, { agent, tool: 'repo.Files.Read' })).flat());
  }
  const pass = await createAlertDetector({ clickhouse, logger, config: { intervalS: 60, webhookFormat: 'json' } }).runOnce(AT);
  assert.equal(pass.opened.length, 2);

  hooks = createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const status = answers.shift() ?? 200;
      const expected = `sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`;
      received.push({ path: req.url ?? '', status, delivery: String(req.headers['x-alert-delivery']), body: JSON.parse(raw), signed: req.headers['x-signature-256'] === expected });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  hookBase = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}`;
});

after(async () => {
  hooks?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function alertIds(gql: Awaited<ReturnType<typeof startProduct>>['gql']): Promise<Record<string, string>> {
  const result = await gql('key-acme-viewer', '{ alerts(status: OPEN) { nodes { id subject { agent } } } }');
  return Object.fromEntries(result.data.alerts.nodes.map((n: any) => [n.subject.agent, n.id]));
}

test('an acknowledgement is one signed delivery with who and when; a viewer cannot; a repeat sends nothing', async () => {
  const product = await startProduct();
  try {
    const ids = await alertIds(product.gql);
    const refused = await product.gql('key-acme-viewer', ACK, { id: ids.alpha });
    assert.equal(refused.errors?.[0]?.extensions?.code, 'FORBIDDEN');

    const { data } = await product.gql('key-acme-operator', ACK, { id: ids.alpha });
    assert.equal(data.acknowledgeAlert.status, 'ACKNOWLEDGED');
    await drain(product.outbox);
    assert.equal(received.length, 1);
    const [hook] = received;
    assert.equal(hook!.path, '/product');
    assert.equal(hook!.signed, true, 'the request carries the HMAC of its body');
    assert.equal(hook!.delivery, hook!.body.deliveryId);
    assert.deepEqual(
      [hook!.body.event, hook!.body.by, hook!.body.at, hook!.body.alert.id, hook!.body.alert.status, hook!.body.alert.acknowledgedBy, hook!.body.alert.acknowledgedAt],
      ['acknowledged', 'acme-operator', data.acknowledgeAlert.acknowledgedAt, ids.alpha, 'ACKNOWLEDGED', 'acme-operator', data.acknowledgeAlert.acknowledgedAt],
    );
    assert.equal(hook!.body.alert.sentence, 'alpha made 0 calls in 10 min; its usual over the last hours is 60');

    // Acknowledging it again changes nothing, so nothing is announced.
    assert.equal((await product.gql('key-acme-operator', ACK, { id: ids.alpha })).data.acknowledgeAlert.status, 'ACKNOWLEDGED');
    await drain(product.outbox);
    assert.equal(received.length, 1);
    assert.deepEqual(readdirSync(outboxDir), []);
  } finally {
    await product.stop();
  }
});

test("a resolution the receiver refuses waits in the outbox across a restart, then reaches the tenant's own webhook once", async () => {
  const first = await startProduct();
  let ids: Record<string, string>;
  let data: any;
  try {
    ids = await alertIds(first.gql);
    const set = await first.gql('key-acme-operator', 'mutation ($u: String!) { setAlertSettings(settings: { webhookUrl: $u }) { webhookUrl } }', { u: `${hookBase}/tenant` });
    assert.equal(set.data.setAlertSettings.webhookUrl, `${hookBase}/tenant`);
    answers.push(...Array(1000).fill(503));
    ({ data } = await first.gql('key-acme-operator', RESOLVE, { id: ids.beta }));
    assert.deepEqual([data.resolveAlert.status, data.resolveAlert.resolvedBy], ['RESOLVED', 'acme-operator']);
    // Refused at least once, then the product stops with the delivery still waiting.
    const deadline = Date.now() + 5000;
    while (!received.some((r) => r.status === 503)) {
      assert.ok(Date.now() < deadline, 'the receiver was not tried');
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    await first.stop();
  }
  assert.equal(readdirSync(outboxDir).filter((f) => f.endsWith('.json')).length, 1);
  const before = accepted().length;

  // A new process over the same data directory delivers it once the receiver is back.
  answers.length = 0;
  const second = await startProduct();
  try {
    await drain(second.outbox);
  } finally {
    await second.stop();
  }
  const delivered = accepted().slice(before);
  assert.equal(delivered.length, 1);
  assert.deepEqual(
    [delivered[0]!.path, delivered[0]!.signed, delivered[0]!.body.event, delivered[0]!.body.by, delivered[0]!.body.alert.id, delivered[0]!.body.alert.resolvedAt],
    ['/tenant', true, 'resolved', 'acme-operator', ids!.beta, data.resolveAlert.resolvedAt],
  );
  // Every attempt was the same delivery.
  assert.deepEqual([...new Set(received.slice(1).map((r) => r.delivery))], [delivered[0]!.delivery]);
  assert.deepEqual(readdirSync(outboxDir), []);
});
