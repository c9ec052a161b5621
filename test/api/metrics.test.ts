/**
 * The API's figures in Prometheus text, after a known set of requests over a real listening server:
 * requests and latency per root field, errors per code, exactly as many as were sent, and nothing in
 * any label that a client chose or that names a tenant.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { typeDefs } from '../../api/schema.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { codes, insertCalls, post, startApi, type ApiServer } from './harness.ts';

const dataDir = mkdtempSync(path.join(tmpdir(), 'api-metrics-'));
let clickhouse: ClickHouseClient;
let server: ApiServer;
const registry = new Registry();
const BASE_MS = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
const RANGE = { from: new Date(BASE_MS - 3600_000).toISOString(), to: new Date(BASE_MS + 3600_000).toISOString() };

before(async () => {
  clickhouse = await openClickHouse({ database: 'api_metrics_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  await insertCalls(clickhouse, [{ tenant: 'acmesecret', tool: 'users.Users.Get', atMs: BASE_MS, ms: 5 }]);
  server = await startApi({ clickhouse, registry });
});

after(async () => {
  await server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** `name{labels} value` lines of the registry, as a map. */
async function samples(): Promise<Map<string, number>> {
  const text = await registry.metrics();
  const map = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const at = line.lastIndexOf(' ');
    map.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return map;
}

test('requests, latency and errors are counted per root field and code, and leak no tenant', async () => {
  const tenant = 'acmesecret';
  const tools = `query TenantAcmeSecretDashboard($from: String, $to: String) { acmesecretAlias: slowestTools(from: $from, to: $to) { tool calls } }`;
  // 3 × slowestTools answered; one with __typename as well.
  for (let i = 0; i < 2; i++) {
    const answer = await post(server.url, tools, { tenant, variables: RANGE });
    assert.deepEqual(answer.body.data, { acmesecretAlias: [{ tool: 'users.Users.Get', calls: 1 }] });
  }
  assert.equal((await post(server.url, `query ($from: String) { slowestTools(from: $from) { tool } __typename }`, { tenant, variables: { from: RANGE.from } })).body.errors, undefined);
  // 2 × BAD_USER_INPUT (slowestTools executed, refused its argument).
  for (const from of ['1969-01-01T00:00:00Z', 'yesterday']) {
    const answer = await post(server.url, `query ($from: String) { slowestTools(from: $from) { tool } }`, { tenant, variables: { from } });
    assert.equal(answer.body.errors![0]!.extensions!.code, 'BAD_USER_INPUT');
  }
  // Refused before execution: no field. TOO_MANY_TOKENS, TOO_MANY_ALIASES, GRAPHQL_VALIDATION_FAILED, UNAUTHENTICATED.
  assert.equal((await post(server.url, `{ ${'__typename '.repeat(1200)}}`, { tenant })).status, 400);
  assert.equal((await post(server.url, `{ ${Array.from({ length: 21 }, (_, i) => `a${i}: slowestTools { tool }`).join(' ')} }`, { tenant })).status, 400);
  assert.deepEqual(codes(await post(server.url, `{ acmesecretField }`, { tenant })), ['GRAPHQL_VALIDATION_FAILED']);
  const unauthenticated = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer not-a-key' },
    body: JSON.stringify({ query: '{ slowestTools { tool } }' }),
  });
  assert.equal(unauthenticated.status, 401);

  const m = await samples();
  assert.equal(m.get('api_graphql_requests_total{field="slowestTools"}'), 5);
  assert.equal(m.get('api_graphql_requests_total{field="__typename"}'), 1);
  assert.equal(m.get('api_graphql_requests_total{field="none"}'), 4);
  assert.equal(m.get('api_graphql_request_duration_seconds_count{field="slowestTools"}'), 5);
  assert.equal(m.get('api_graphql_request_duration_seconds_count{field="none"}'), 4);
  assert.ok(m.get('api_graphql_request_duration_seconds_sum{field="slowestTools"}')! > 0);
  assert.equal(m.get('api_graphql_errors_total{code="BAD_USER_INPUT"}'), 2);
  assert.equal(m.get('api_graphql_errors_total{code="TOO_MANY_TOKENS"}'), 1);
  assert.equal(m.get('api_graphql_errors_total{code="TOO_MANY_ALIASES"}'), 1);
  assert.equal(m.get('api_graphql_errors_total{code="GRAPHQL_VALIDATION_FAILED"}'), 1);
  assert.equal(m.get('api_graphql_errors_total{code="UNAUTHENTICATED"}'), 1);
  assert.equal(m.get('api_reads_running'), 0);
  assert.equal(m.get('api_reads_queued'), 0);
  assert.equal(m.get('api_reads_cancelled_total'), 0);
  // The cache fills' lane: whatever they are doing right now.
  assert.ok(m.has('api_background_reads_running') && m.has('api_background_reads_queued'));

  // Every label is a schema field, `none`, or a code; no tenant, alias or operation name anywhere.
  const text = (await registry.metrics()).toLowerCase();
  assert.ok(!text.includes('acme'), 'no tenant, alias, operation or field name a client chose');
  const sdl = typeDefs.join('\n');
  for (const key of m.keys()) {
    const field = /field="([^"]*)"/.exec(key)?.[1];
    if (field !== undefined) assert.ok(field === 'none' || field === '__typename' || new RegExp(`\\b${field}\\(`).test(sdl), `field label ${field}`);
  }
});
