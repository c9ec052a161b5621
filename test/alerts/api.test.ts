/**
 * The alerts API over a real listening server and the embedded ClickHouse: alerts raised by the
 * detector from inserted audit records, read and changed through GraphQL with per-tenant keys.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { createAlertDetector } from '../../alerts/detector.ts';
import { createApi } from '../../api/app.ts';
import type { Caller } from '../../api/context.ts';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { insertCalls, windowCalls, type Call } from './helpers.ts';

const MIN = 60_000;
const AT = Math.floor(Date.now() / (10 * MIN)) * 10 * MIN - 24 * 3600_000;
const dataDir = mkdtempSync(path.join(tmpdir(), 'alerts-api-test-'));
const logger = pino({ level: 'silent' });
let clickhouse: ClickHouseClient;
let server: Server;
let url: string;

/** key-<tenant>-<role> */
const KEYS: KeyStore = {
  size: 4,
  lookup: (secret) => {
    const m = /^key-(acme|globex)-(viewer|operator|billing)$/.exec(secret);
    return m ? ({ tenant: m[1]!, role: m[2] as Caller['role'], name: `${m[1]}-${m[2]}` } satisfies Caller) : undefined;
  },
};

async function gql(key: string, query: string, variables: Record<string, unknown> = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as { data?: any; errors?: Array<{ message: string; extensions?: { code?: string } }> };
}

async function data(key: string, query: string, variables: Record<string, unknown> = {}) {
  const result = await gql(key, query, variables);
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data;
}

function spikeOf(agent: string, tool: string, base: number, peak: number): Call[] {
  const calls = [...Array.from({ length: 12 }, (_, k) => windowCalls(AT, k + 1, base, { agent, tool })).flat(), ...windowCalls(AT, 0, peak, { agent, tool })];
  return calls.map((c, i) => ({ ...c, session: `${agent}-${i % 100}` }));
}

const LIST = `query ($status: AlertStatus, $kind: AlertKind, $agent: String, $first: Int, $after: String) {
  alerts(status: $status, kind: $kind, agent: $agent, first: $first, after: $after) {
    nodes { id kind status severity subject { agent tool account session } sentence observed unit }
    endCursor hasNextPage
  }
}`;

before(async () => {
  clickhouse = await openClickHouse({ database: 'alerts_api_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  await insertCalls(clickhouse, 'acme', [...spikeOf('claude-desktop', 'payments.Payments.Refund', 6, 412), ...spikeOf('cursor', 'repo.Files.Write', 10, 300)]);
  await insertCalls(clickhouse, 'globex', spikeOf('intruder', 'vault.Secrets.Read', 5, 200));
  await createAlertDetector({ clickhouse, logger, config: { intervalS: 60, webhookFormat: 'json' } }).runOnce(AT);
  const s = createServer(createApi({ clickhouse, logger, keys: KEYS }).handle);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  server = s;
  url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
});

after(async () => {
  server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('reading alerts', () => {
  test("a key sees its tenant's alerts only", async () => {
    const acme = (await data('key-acme-viewer', LIST)).alerts.nodes;
    assert.deepEqual(acme.map((a: any) => [a.kind, a.subject.agent, a.subject.tool, a.subject.account, a.observed, a.unit]).sort(), [
      ['CALL_SPIKE', 'claude-desktop', 'payments.Payments.Refund', null, 412, 'calls'],
      ['CALL_SPIKE', 'cursor', 'repo.Files.Write', null, 300, 'calls'],
    ]);
    const globex = (await data('key-globex-viewer', LIST)).alerts.nodes;
    assert.deepEqual(globex.map((a: any) => a.sentence), ['intruder called vault.Secrets.Read 200 times in 10 min; its usual over the last hours is 5']);
    // Another tenant's alert by id: not there.
    assert.deepEqual(await data('key-acme-viewer', 'query ($id: ID!) { alert(id: $id) { id } }', { id: globex[0].id }), { alert: null });
    const refused = await gql('key-acme-operator', 'mutation ($id: ID!) { resolveAlert(id: $id) { id } }', { id: globex[0].id });
    assert.equal(refused.errors?.[0]?.extensions?.code, 'NOT_FOUND');
  });

  test('filters and pages', async () => {
    const page1 = (await data('key-acme-viewer', LIST, { first: 1 })).alerts;
    assert.equal(page1.nodes.length, 1);
    assert.equal(page1.hasNextPage, true);
    const page2 = (await data('key-acme-viewer', LIST, { first: 1, after: page1.endCursor })).alerts;
    assert.equal(page2.nodes.length, 1);
    assert.equal(page2.hasNextPage, false);
    assert.notEqual(page1.nodes[0].id, page2.nodes[0].id);
    assert.deepEqual((await data('key-acme-viewer', LIST, { agent: 'cursor' })).alerts.nodes.map((a: any) => a.subject.agent), ['cursor']);
    assert.deepEqual((await data('key-acme-viewer', LIST, { kind: 'ERROR_SPIKE' })).alerts.nodes, []);
    const bad = await gql('key-acme-viewer', LIST, { after: 'nonsense' });
    assert.equal(bad.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
  });

  test('one alert with its history and the series around it', async () => {
    const [node] = (await data('key-acme-viewer', LIST, { agent: 'claude-desktop' })).alerts.nodes;
    const { alert } = await data('key-acme-viewer', `query ($id: ID!) { alert(id: $id) { id windowStart windowEnd history { action by } series { minute calls } } }`, { id: node.id });
    assert.equal(alert.windowStart, new Date(AT - 10 * MIN).toISOString());
    assert.equal(alert.windowEnd, new Date(AT).toISOString());
    assert.deepEqual(alert.history, [{ action: 'opened', by: 'detector' }]);
    // Two hours before the window to 30 minutes after, every minute (empty ones as 0).
    assert.equal(alert.series.length, 120 + 10 + 30);
    const inWindow = alert.series.filter((p: any) => Date.parse(p.minute) >= AT - 10 * MIN && Date.parse(p.minute) < AT);
    assert.equal(inWindow.reduce((s: number, p: any) => s + p.calls, 0), 412);
    assert.equal(alert.series.reduce((s: number, p: any) => s + p.calls, 0), 412 + 12 * 6);
  });
});

describe('changing alerts', () => {
  test('a viewer may not acknowledge; an operator acknowledges, then resolves, with who and when', async () => {
    const [node] = (await data('key-acme-viewer', LIST, { agent: 'cursor' })).alerts.nodes;
    const ack = 'mutation ($id: ID!) { acknowledgeAlert(id: $id) { status acknowledgedBy acknowledgedAt } }';
    assert.equal((await gql('key-acme-viewer', ack, { id: node.id })).errors?.[0]?.extensions?.code, 'FORBIDDEN');
    assert.equal((await gql('key-acme-billing', ack, { id: node.id })).errors?.[0]?.extensions?.code, 'FORBIDDEN');
    const before = Date.now();
    const { acknowledgeAlert } = await data('key-acme-operator', ack, { id: node.id });
    assert.equal(acknowledgeAlert.status, 'ACKNOWLEDGED');
    assert.equal(acknowledgeAlert.acknowledgedBy, 'acme-operator');
    assert.ok(Date.parse(acknowledgeAlert.acknowledgedAt) >= before - 1);
    const { resolveAlert } = await data('key-acme-operator', 'mutation ($id: ID!) { resolveAlert(id: $id) { status resolvedBy } }', { id: node.id });
    assert.deepEqual(resolveAlert, { status: 'RESOLVED', resolvedBy: 'acme-operator' });
    assert.deepEqual((await data('key-acme-viewer', LIST, { status: 'RESOLVED' })).alerts.nodes.map((a: any) => a.subject.agent), ['cursor']);
    const { alert } = await data('key-acme-viewer', 'query ($id: ID!) { alert(id: $id) { history { action by } } }', { id: node.id });
    assert.deepEqual(alert.history, [{ action: 'opened', by: 'detector' }, { action: 'acknowledged', by: 'acme-operator' }, { action: 'resolved', by: 'acme-operator' }]);
  });

  test('settings: defaults, a change kept per tenant, bad values refused naming the argument', async () => {
    const query = '{ alertSettings { windowMinutes resolveAfterMinutes webhookUrl kinds { kind threshold minVolume enabled } } }';
    const defaults = (await data('key-acme-viewer', query)).alertSettings;
    assert.deepEqual([defaults.windowMinutes, defaults.resolveAfterMinutes, defaults.webhookUrl], [10, 15, null]);
    const set = `mutation ($s: AlertSettingsInput!) { setAlertSettings(settings: $s) { resolveAfterMinutes webhookUrl kinds { kind threshold minVolume enabled } } }`;
    await data('key-acme-operator', set, { s: { resolveAfterMinutes: 30, webhookUrl: 'http://127.0.0.1:9/hook', kinds: [{ kind: 'CALL_SPIKE', minVolume: 100 }] } });
    await data('key-acme-operator', set, { s: { kinds: [{ kind: 'NEW_TOOL', enabled: false }] } });
    const after = (await data('key-acme-viewer', query)).alertSettings;
    assert.equal(after.resolveAfterMinutes, 30);
    assert.equal(after.webhookUrl, 'http://127.0.0.1:9/hook');
    assert.deepEqual(after.kinds.find((k: any) => k.kind === 'CALL_SPIKE'), { kind: 'CALL_SPIKE', threshold: 8, minVolume: 100, enabled: true });
    assert.equal(after.kinds.find((k: any) => k.kind === 'NEW_TOOL').enabled, false);
    assert.equal((await data('key-globex-viewer', query)).alertSettings.resolveAfterMinutes, 15);
    const bad = await gql('key-acme-operator', set, { s: { windowMinutes: 0 } });
    assert.equal(bad.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.match(bad.errors![0]!.message, /settings\.windowMinutes/);
  });

  test('settings: the short window per kind, refused when not shorter than the window or on a kind without one', async () => {
    const query = '{ alertSettings { kinds { kind shortWindowMinutes shortMinVolume } } }';
    const kinds = (data: any) => Object.fromEntries(data.alertSettings.kinds.map((k: any) => [k.kind, [k.shortWindowMinutes, k.shortMinVolume]]));
    const defaults = kinds(await data('key-globex-viewer', query));
    assert.deepEqual([defaults.CALL_SPIKE, defaults.ERROR_SPIKE, defaults.CALL_COLLAPSE, defaults.CALL_LOOP], [[2, 60], [2, 20], [0, 0], [0, 0]]);
    const set = `mutation ($s: AlertSettingsInput!) { setAlertSettings(settings: $s) { windowMinutes } }`;
    await data('key-globex-operator', set, { s: { kinds: [{ kind: 'COST_SPIKE', shortWindowMinutes: 3, shortMinVolume: 2 }] } });
    assert.deepEqual(kinds(await data('key-globex-viewer', query)).COST_SPIKE, [3, 2]);

    const tooLong = await gql('key-globex-operator', set, { s: { windowMinutes: 2 } });
    assert.equal(tooLong.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.equal(tooLong.errors![0]!.message, 'settings.kinds.CALL_SPIKE.shortWindowMinutes: must be shorter than windowMinutes (2), or 0 for none; got 2');
    const noShort = await gql('key-globex-operator', set, { s: { kinds: [{ kind: 'CALL_LOOP', shortWindowMinutes: 2 }] } });
    assert.equal(noShort.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.match(noShort.errors![0]!.message, /^settings\.kinds\.CALL_LOOP\.shortWindowMinutes: only CALL_SPIKE, ERROR_SPIKE, DENIAL_SPIKE, LATENCY_REGRESSION, COST_SPIKE have a short window/);
    // Refused changes are not kept.
    assert.equal((await data('key-globex-viewer', '{ alertSettings { windowMinutes } }')).alertSettings.windowMinutes, 10);
  });

  test('silence: no new alert for the subject until then', async () => {
    const until = new Date(Date.now() + 3600_000).toISOString();
    const { silence } = await data('key-globex-operator', 'mutation ($u: String!) { silence(subject: { agent: "intruder" }, kind: CALL_SPIKE, until: $u) { kind subject { agent tool } createdBy } }', { u: until });
    assert.deepEqual(silence, { kind: 'CALL_SPIKE', subject: { agent: 'intruder', tool: null }, createdBy: 'globex-operator' });
    // The open alert resolves when quiet; the same spike judged again (a new window) opens nothing.
    const late = await createAlertDetector({ clickhouse, logger, config: { intervalS: 60, webhookFormat: 'json' } }).runOnce(AT + 40 * MIN);
    assert.deepEqual(late.resolved.filter((a) => a.tenant === 'globex').map((a) => a.subject.agent), ['intruder']);
    await insertCalls(clickhouse, 'globex', windowCalls(AT + 50 * MIN, 0, 200, { agent: 'intruder', tool: 'vault.Secrets.Read' }).map((c, i) => ({ ...c, session: `x-${i % 100}` })));
    const pass = await createAlertDetector({ clickhouse, logger, config: { intervalS: 60, webhookFormat: 'json' } }).runOnce(AT + 50 * MIN);
    assert.ok(pass.findings.some((f) => f.subject.agent === 'intruder'), 'the spike is still found');
    assert.deepEqual(pass.opened.filter((a) => a.tenant === 'globex'), []);
    const past = await gql('key-globex-operator', 'mutation { silence(subject: {}, kind: CALL_SPIKE, until: "2020-01-01T00:00:00Z") { kind } }');
    assert.equal(past.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
  });
});
