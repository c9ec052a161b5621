/**
 * The API against the real embedded ClickHouse: a known fixture of audit events and spans goes in
 * through the real tables (and so through the rollup materialized view); GraphQL answers must match it
 * exactly. Runs over a real listening server, as the dashboard calls it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { createApi } from '../../api/app.ts';
import type { Caller } from '../../api/context.ts';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput } from '../../model/audit-event.ts';
import { toSpanInsertRow } from '../../model/otlp.ts';
import { validateSpanRow } from '../../model/span.ts';
import { formatRfc3339 } from '../../model/timestamp.ts';

// ---- fixture ------------------------------------------------------------------------------------------

/** Ten minutes ago, on a whole minute: every fixture call lands in two known rollup minutes. */
const BASE_MS = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
const RANGE = { from: iso(BASE_MS - 30 * 60_000), to: iso(BASE_MS + 30 * 60_000) };
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const MS = 1_000_000;

interface Call {
  second: number;
  agent: string;
  tool: string;
  account?: string;
  ms?: number;
  error?: string;
  denied?: string;
  cost?: number;
  otelTraceId?: string;
}

/** Tenant acme, in time order. Second 60+ is the next rollup minute. */
const ACME: Call[] = [
  { second: 1, agent: 'planner', tool: 'users.Users.Get', account: 'alice', ms: 10, cost: 0.001 },
  { second: 2, agent: 'planner', tool: 'users.Users.Get', account: 'alice', ms: 20, cost: 0.002 },
  { second: 3, agent: 'planner', tool: 'billing.Invoices.List', account: 'bob', ms: 300, error: 'upstream timeout', cost: 0.01 },
  { second: 4, agent: 'planner', tool: 'billing.Invoices.Delete', account: 'bob', denied: 'missing scope billing:write' },
  { second: 5, agent: 'coder', tool: 'repo.Files.Read', account: 'carol', ms: 50 },
  { second: 6, agent: 'coder', tool: 'repo.Files.Read', account: 'carol', ms: 70, error: 'not found' },
  { second: 7, agent: 'coder', tool: 'repo.Files.Write', account: 'carol', denied: 'read-only token' },
  { second: 8, agent: 'coder', tool: 'repo.Files.Write', account: 'carol', denied: 'read-only token' },
  { second: 65, agent: 'reviewer', tool: 'repo.Files.Read', account: 'dave', ms: 40 },
  { second: 66, agent: 'reviewer', tool: 'search.Search.Query', ms: 900, cost: 0.05, otelTraceId: TRACE_ID },
];
/** Outside RANGE: three hours earlier. */
const ACME_OLD: Call = { second: -3 * 3600, agent: 'planner', tool: 'users.Users.Get', account: 'alice', ms: 5 };
/** Another tenant, inside RANGE: must never show up in acme's answers. */
const GLOBEX: Call[] = [
  { second: 10, agent: 'intruder', tool: 'repo.Files.Read', ms: 5000 },
  { second: 11, agent: 'intruder', tool: 'repo.Files.Read', ms: 6000 },
];

function iso(epochMs: number, subMsNanos = 0): string {
  return formatRfc3339({ epochMs, subMsNanos });
}

/** Each call gets a distinct nanosecond part, so precision loss would show. */
function callTime(call: Call, index: number): string {
  return iso(BASE_MS + call.second * 1000 + index, 123_457 + index);
}

function record(tenant: string, call: Call, index: number): AuditRecordInput {
  return {
    tenant,
    trace_id: `${tenant}-trace-${index}`,
    timestamp: callTime(call, index),
    tool: call.tool,
    allowed: call.denied === undefined,
    ...(call.account && { account_id: call.account }),
    ...(call.denied && { denied_reason: call.denied }),
    ...(call.ms !== undefined && { duration: call.ms * MS }),
    ...(call.error && { error: call.error }),
    ...(call.cost !== undefined && { cost_usd: call.cost }),
    ...(call.otelTraceId && { otel_trace_id: call.otelTraceId, otel_span_id: 'b7ad6b7169203331' }),
    agent: call.agent,
    agent_version: '1.0.0',
    gateway: 'gw-1',
    session_id: `session-${call.agent}`,
  };
}

function auditRow(tenant: string, call: Call, index: number) {
  const normalized = normalizeAuditRecord(record(tenant, call, index));
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return toAuditRow(normalized.value);
}

const SPAN_START = BASE_MS + 66_000;

function span(tenant: string, fields: { id: string; parent: string; name: string; kind: string; service: string; startMs: number; ms: number; status?: 'ok' | 'error'; message?: string }) {
  const validated = validateSpanRow({
    tenant,
    trace_id: TRACE_ID,
    span_id: fields.id,
    parent_span_id: fields.parent,
    name: fields.name,
    kind: fields.kind,
    service: fields.service,
    scope_name: 'fixture',
    scope_version: '1',
    start_time_unix_nano: String(BigInt(fields.startMs) * 1_000_000n + 42n),
    duration_ns: String(fields.ms * MS),
    status_code: fields.status ?? 'unset',
    status_message: fields.message ?? '',
    attributes: fields.name === 'mcp.tool.call' ? { 'mcp.tool.name': 'search.Search.Query', 'mcp.transport': 'http' } : {},
    resource_attributes: { 'service.name': fields.service },
    events:
      fields.name === 'mcp.tool.call'
        ? [{ time_unix_nano: String(BigInt(fields.startMs + 1) * 1_000_000n), name: 'auth.checked', attributes: { allowed: 'true' } }]
        : [],
  });
  assert.ok(validated.ok, JSON.stringify(!validated.ok && validated.issues));
  return toSpanInsertRow(validated.value);
}

const ROOT = span('acme', { id: 'a000000000000001', parent: '', name: 'agent.run', kind: 'internal', service: 'reviewer-agent', startMs: SPAN_START, ms: 950 });
const TOOL_CALL = span('acme', { id: 'a000000000000002', parent: 'a000000000000001', name: 'mcp.tool.call', kind: 'server', service: 'gateway', startMs: SPAN_START + 1, ms: 900 });
const BACKEND = span('acme', { id: 'a000000000000003', parent: 'a000000000000002', name: 'search.query', kind: 'client', service: 'search', startMs: SPAN_START + 2, ms: 880, status: 'error', message: 'index cold' });
const GLOBEX_SPAN = span('globex', { id: 'b000000000000001', parent: '', name: 'other', kind: 'internal', service: 'x', startMs: SPAN_START, ms: 1 });

// ---- harness -----------------------------------------------------------------------------------------

const dataDir = mkdtempSync(path.join(tmpdir(), 'api-test-'));
let clickhouse: ClickHouseClient;
let server: Server;
let baseUrl: string;

interface GraphQLResponse {
  data?: Record<string, any> | null;
  errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
}

/** One viewer key per tenant the tests read; a request sends the key of the tenant it names (acme by default). */
const KEYS: KeyStore = {
  size: 4,
  lookup: (secret) => (/^key-(acme|globex|nobody|default)$/.test(secret) ? ({ tenant: secret.slice(4), role: 'viewer', name: secret } satisfies Caller) : undefined),
};

async function gql(query: string, variables: Record<string, unknown> = {}, url = baseUrl): Promise<GraphQLResponse> {
  const tenant = typeof variables.tenant === 'string' && /^(acme|globex|nobody|default)$/.test(variables.tenant) ? variables.tenant : 'acme';
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', authorization: `Bearer key-${tenant}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as GraphQLResponse;
}

/** Data of a query that must succeed. */
async function data(query: string, variables: Record<string, unknown> = {}): Promise<Record<string, any>> {
  const result = await gql(query, variables);
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data!;
}

async function listen(handle: (req: any, res: any) => void): Promise<{ server: Server; url: string }> {
  const s = createServer(handle);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return { server: s, url: `http://127.0.0.1:${(s.address() as AddressInfo).port}` };
}

/** A raw GET: unlike fetch, keeps `..` and encoded separators in the path exactly as written. */
function rawGet(url: string, pathname: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = request(`${url}/`, { path: pathname, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const uiDir = path.join(dataDir, 'ui');

before(async () => {
  clickhouse = await openClickHouse({ database: 'api_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  await clickhouse.insert({
    table: 'audit_events_v1',
    format: 'JSONEachRow',
    values: [
      ...ACME.map((c, i) => auditRow('acme', c, i)),
      auditRow('acme', ACME_OLD, 99),
      ...GLOBEX.map((c, i) => auditRow('globex', c, i)),
    ],
  });
  // The tool-call span is delivered twice, in two different inserts: spans_v1 FINAL lists it once.
  await clickhouse.insert({ table: 'spans_v1', format: 'JSONEachRow', values: [BACKEND, TOOL_CALL, GLOBEX_SPAN] });
  await clickhouse.insert({ table: 'spans_v1', format: 'JSONEachRow', values: [TOOL_CALL, ROOT] });

  mkdirSync(path.join(uiDir, 'assets'), { recursive: true });
  writeFileSync(path.join(uiDir, 'index.html'), '<!doctype html><title>dashboard</title><script src="/assets/app-3f2a1b.js"></script>');
  writeFileSync(path.join(uiDir, 'assets', 'app-3f2a1b.js'), 'console.log("dashboard")');
  writeFileSync(path.join(uiDir, 'assets', 'app-3f2a1b.css'), 'body { color: black }');
  writeFileSync(path.join(dataDir, 'secret.txt'), 'TOP-SECRET');

  ({ server, url: baseUrl } = await listen(createApi({ clickhouse, logger: pino({ level: 'silent' }), uiDir, keys: KEYS }).handle));
});

after(async () => {
  server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

// ---- queries -----------------------------------------------------------------------------------------

describe('overview', () => {
  const query = `query ($tenant: String, $from: String, $to: String) {
    overview(tenant: $tenant, from: $from, to: $to) { calls errors denials agents p99Ms costUsd { amount } }
  }`;

  test('counts every call of the tenant in the range exactly', async () => {
    const { overview } = await data(query, { tenant: 'acme', ...RANGE });
    const { p99Ms, ...exact } = overview;
    assert.deepEqual(exact, { calls: 10, errors: 2, denials: 3, agents: 3, costUsd: { amount: '0.063000' } });
    // A sketch's estimate over the allowed calls (10, 20, 40, 50, 70, 300, 900 ms): within 1% of the
    // value at rank 0.99 · 6, between the 6th and the 7th.
    assert.ok(p99Ms >= 300 * 0.99 && p99Ms <= 900 * 1.01, `p99Ms ${p99Ms}`);
  });

  test('keeps tenants apart', async () => {
    const { overview } = await data(query, { tenant: 'globex', ...RANGE });
    assert.deepEqual({ ...overview, p99Ms: undefined }, { calls: 2, errors: 0, denials: 0, agents: 1, p99Ms: undefined, costUsd: { amount: '0.000000' } });
  });

  test('counts only the range asked for', async () => {
    const old = { from: iso(BASE_MS - 4 * 3600_000), to: iso(BASE_MS - 2 * 3600_000) };
    const { overview } = await data(query, { tenant: 'acme', ...old });
    assert.deepEqual({ ...overview, p99Ms: undefined }, { calls: 1, errors: 0, denials: 0, agents: 1, p99Ms: undefined, costUsd: { amount: '0.000000' } });
    assert.ok(Math.abs(overview.p99Ms - 5) <= 0.05, `p99Ms ${overview.p99Ms}: within 1% of the one call`);
  });

  test('an empty range is zeros, with no percentile', async () => {
    const { overview } = await data(query, { tenant: 'nobody', ...RANGE });
    assert.deepEqual(overview, { calls: 0, errors: 0, denials: 0, agents: 0, p99Ms: null, costUsd: { amount: '0.000000' } });
  });

  test("the tenant is the key's and the range defaults to the last hour", async () => {
    const { overview } = await data('{ overview { calls } }');
    assert.equal(overview.calls, 10);
  });
});

test('agents: calls, errors, denials and cost per agent, busiest first', async () => {
  const { agents } = await data(
    `query ($from: String, $to: String) { agents(tenant: "acme", from: $from, to: $to) { agent calls errors denials p50Ms p99Ms costUsd { amount } } }`,
    RANGE,
  );
  assert.deepEqual(
    agents.map(({ agent, calls, errors, denials, costUsd }: any) => ({ agent, calls, errors, denials, costUsd })),
    [
      { agent: 'coder', calls: 4, errors: 1, denials: 2, costUsd: { amount: '0.000000' } },
      { agent: 'planner', calls: 4, errors: 1, denials: 1, costUsd: { amount: '0.013000' } },
      { agent: 'reviewer', calls: 2, errors: 0, denials: 0, costUsd: { amount: '0.050000' } },
    ],
  );
  for (const a of agents) assert.ok(a.p50Ms > 0 && a.p50Ms <= a.p99Ms, `${a.agent}: p50 ${a.p50Ms} p99 ${a.p99Ms}`);
  const planner = agents.find((a: any) => a.agent === 'planner');
  assert.ok(planner.p99Ms <= 300, 'a denied call has no duration and stays out of the percentiles');
});

describe('slowestTools', () => {
  const query = `query ($from: String, $to: String, $limit: Int) {
    slowestTools(tenant: "acme", from: $from, to: $to, limit: $limit) { service tool calls p50Ms p95Ms p99Ms maxMs }
  }`;

  test('orders tools by p99, tools with only denied calls last', async () => {
    const { slowestTools } = await data(query, RANGE);
    assert.deepEqual(
      slowestTools.map((t: any) => [t.service, t.tool, t.calls, t.maxMs]),
      [
        ['search', 'search.Search.Query', 1, 900],
        ['billing', 'billing.Invoices.List', 1, 300],
        ['repo', 'repo.Files.Read', 3, 70],
        ['users', 'users.Users.Get', 2, 20],
        ['billing', 'billing.Invoices.Delete', 1, 0],
        ['repo', 'repo.Files.Write', 2, 0],
      ],
    );
    // One call: every percentile is that call, within the sketch's 1%.
    const { p50Ms, p95Ms, p99Ms, ...exact } = slowestTools[0];
    assert.deepEqual(exact, { service: 'search', tool: 'search.Search.Query', calls: 1, maxMs: 900 });
    for (const p of [p50Ms, p95Ms, p99Ms]) assert.ok(Math.abs(p - 900) <= 9, `percentile ${p}`);
    const write = slowestTools[5];
    assert.deepEqual([write.p50Ms, write.p95Ms, write.p99Ms], [null, null, null]);
  });

  test('limit keeps the slowest', async () => {
    const { slowestTools } = await data(query, { ...RANGE, limit: 2 });
    assert.deepEqual(slowestTools.map((t: any) => t.tool), ['search.Search.Query', 'billing.Invoices.List']);
  });
});

describe('auditLog', () => {
  const query = `query ($from: String, $to: String, $agent: String, $tool: String, $account: String, $first: Int) {
    auditLog(tenant: "acme", filter: { from: $from, to: $to, agent: $agent, tool: $tool, account: $account }, first: $first) {
      edges { node {
        eventId timestamp traceId agent agentVersion sessionId accountId gateway service tool allowed outcome deniedReason
        durationMs error otelTraceId otelSpanId costUsd { amount micros currency }
      } }
    }
  }`;
  const expectedId = (i: number) => auditRow('acme', ACME[i]!, i).event_id;
  const nodes = (result: Record<string, any>) => result.auditLog.edges.map((e: any) => e.node);

  test('lists the range newest first, every field mapped', async () => {
    const auditLog = nodes(await data(query, RANGE));
    assert.deepEqual(
      auditLog.map((e: any) => e.eventId),
      ACME.map((_, i) => expectedId(i)).reverse(),
    );
    assert.deepEqual(auditLog[0], {
      eventId: expectedId(9),
      timestamp: callTime(ACME[9]!, 9),
      traceId: 'acme-trace-9',
      agent: 'reviewer',
      agentVersion: '1.0.0',
      sessionId: 'session-reviewer',
      accountId: null,
      gateway: 'gw-1',
      service: 'search',
      tool: 'search.Search.Query',
      allowed: true,
      outcome: 'OK',
      deniedReason: null,
      durationMs: 900,
      error: null,
      otelTraceId: TRACE_ID,
      otelSpanId: 'b7ad6b7169203331',
      costUsd: { amount: '0.050000', micros: '50000', currency: 'USD' },
    });
    assert.match(auditLog[0].timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    const denied = auditLog.find((e: any) => e.tool === 'billing.Invoices.Delete');
    assert.deepEqual([denied.allowed, denied.outcome, denied.deniedReason, denied.durationMs, denied.costUsd], [false, 'DENIED', 'missing scope billing:write', 0, null]);
  });

  test('filters by agent, tool and account, alone and together', async () => {
    const ids = async (vars: Record<string, unknown>) => nodes(await data(query, { ...RANGE, ...vars })).map((e: any) => e.eventId);
    assert.deepEqual(await ids({ agent: 'coder' }), [7, 6, 5, 4].map(expectedId));
    assert.deepEqual(await ids({ tool: 'repo.Files.Read' }), [8, 5, 4].map(expectedId));
    assert.deepEqual(await ids({ account: 'bob' }), [3, 2].map(expectedId));
    assert.deepEqual(await ids({ agent: 'coder', tool: 'repo.Files.Write' }), [7, 6].map(expectedId));
    assert.deepEqual(await ids({ agent: "coder' OR 1=1 --" }), []);
  });

  test('first keeps the newest', async () => {
    const auditLog = nodes(await data(query, { ...RANGE, first: 3 }));
    assert.deepEqual(auditLog.map((e: any) => e.eventId), [9, 8, 7].map(expectedId));
  });
});

describe('trace', () => {
  const query = `query ($tenant: String, $id: String!) {
    trace(tenant: $tenant, id: $id) {
      id otelTraceIds calls { eventId }
      spans { traceId spanId parentSpanId depth name kind service startTime durationMs statusCode statusMessage
              attributes { key value } events { time name attributes { key value } } }
    }
  }`;

  test('returns the calls and the spans of the trace once each, as a tree', async () => {
    const { trace } = await data(query, { tenant: 'acme', id: TRACE_ID.toUpperCase() });
    assert.equal(trace.id, TRACE_ID.toUpperCase());
    assert.deepEqual(trace.otelTraceIds, [TRACE_ID]);
    assert.deepEqual(trace.calls, [{ eventId: auditRow('acme', ACME[9]!, 9).event_id }]);
    assert.deepEqual(
      trace.spans.map((s: any) => [s.spanId, s.parentSpanId, s.depth, s.name, s.kind, s.service, s.durationMs, s.statusCode, s.statusMessage]),
      [
        ['a000000000000001', null, 0, 'agent.run', 'internal', 'reviewer-agent', 950, 'unset', null],
        ['a000000000000002', 'a000000000000001', 1, 'mcp.tool.call', 'server', 'gateway', 900, 'unset', null],
        ['a000000000000003', 'a000000000000002', 2, 'search.query', 'client', 'search', 880, 'error', 'index cold'],
      ],
    );
    assert.equal(trace.spans[0].startTime, iso(SPAN_START, 42));
    assert.deepEqual(trace.spans[1].attributes, [
      { key: 'mcp.tool.name', value: 'search.Search.Query' },
      { key: 'mcp.transport', value: 'http' },
    ]);
    assert.deepEqual(trace.spans[1].events, [{ time: iso(SPAN_START + 2), name: 'auth.checked', attributes: [{ key: 'allowed', value: 'true' }] }]);
  });

  test('by the gateway\'s trace id: the call, and the spans of its OpenTelemetry trace', async () => {
    const { trace } = await data(query, { tenant: 'acme', id: 'acme-trace-9' });
    assert.deepEqual(trace.calls, [{ eventId: auditRow('acme', ACME[9]!, 9).event_id }]);
    assert.deepEqual(trace.spans.map((s: any) => s.spanId), ['a000000000000001', 'a000000000000002', 'a000000000000003']);
  });

  test("is per tenant, and null when the tenant has no such trace", async () => {
    const globex = await data(query, { tenant: 'globex', id: TRACE_ID });
    assert.deepEqual(globex.trace.spans.map((s: any) => s.spanId), ['b000000000000001']);
    assert.deepEqual(globex.trace.calls, []);
    assert.equal((await data(query, { tenant: 'acme', id: 'f'.repeat(32) })).trace, null);
    assert.equal((await data(query, { tenant: 'globex', id: 'acme-trace-9' })).trace, null);
  });
});

// ---- errors ------------------------------------------------------------------------------------------

describe('bad arguments are BAD_USER_INPUT with a clear message', () => {
  const cases: Array<[string, string, Record<string, unknown>, RegExp]> = [
    ['from not a date', 'query ($from: String) { overview(from: $from) { calls } }', { from: 'yesterday' }, /^from must be an ISO-8601 date-time with a time zone, e\.g\. .*got "yesterday"$/],
    ['from without a zone', 'query ($from: String) { agents(from: $from) { calls } }', { from: '2026-11-24T10:00:00' }, /^from must be an ISO-8601 date-time/],
    ['to not a date', 'query ($to: String) { slowestTools(to: $to) { tool } }', { to: '2026-02-30T00:00:00Z' }, /^to must be an ISO-8601 date-time/],
    ['from after to', 'query ($from: String, $to: String) { overview(from: $from, to: $to) { calls } }', { from: '2026-11-24T11:00:00Z', to: '2026-11-24T10:00:00Z' }, /^from \(2026-11-24T11:00:00\.000000000Z\) must be before to \(2026-11-24T10:00:00\.000000000Z\)$/],
    ['first 0', '{ auditLog(first: 0) { edges { cursor } } }', {}, /^first must be a whole number from 1 to 500, got 0$/],
    ['limit 1001', '{ slowestTools(limit: 1001) { tool } }', {}, /^limit must be a whole number from 1 to 1000, got 1001$/],
    ['bad tenant', '{ overview(tenant: "a b") { calls } }', {}, /^tenant "a b" is not a tenant name/],
    ['empty trace id', '{ trace(id: "") { id } }', {}, /^id must be 1 to 128 characters, got 0$/],
  ];
  for (const [name, query, variables, message] of cases) {
    test(name, async () => {
      const result = await gql(query, variables);
      assert.equal(result.errors?.length, 1, JSON.stringify(result));
      const [error] = result.errors!;
      assert.match(error!.message, message);
      assert.equal(error!.extensions?.code, 'BAD_USER_INPUT');
    });
  }
});

test('unexpected errors are masked for the client and logged in full', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'error' }, { write: (line: string) => void lines.push(line) });
  const failing = {
    query: async () => {
      throw new Error('connection refused: clickhouse password=hunter2');
    },
  } as unknown as ClickHouseClient;
  const { server: s, url } = await listen(createApi({ clickhouse: failing, logger, keys: KEYS }).handle);
  try {
    const result = await gql('{ overview { calls } }', {}, url);
    assert.equal(result.errors?.length, 1);
    assert.equal(result.errors![0]!.message, 'Unexpected error.');
    assert.equal(result.errors![0]!.extensions?.code, 'INTERNAL_SERVER_ERROR');
    assert.doesNotMatch(JSON.stringify(result), /hunter2/);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /connection refused: clickhouse password=hunter2/);
  } finally {
    s.close();
  }
});

// ---- HTTP: GraphiQL, health, the dashboard's files ---------------------------------------------------

describe('http', () => {
  test('a browser GET of /graphql gets GraphiQL', async () => {
    const response = await fetch(`${baseUrl}/graphql`, { headers: { accept: 'text/html' } });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type')!, /^text\/html/);
    assert.match(await response.text(), /graphiql/i);
  });

  test('GET /graphql?query= works too', async () => {
    const response = await fetch(`${baseUrl}/graphql?query=${encodeURIComponent('{ overview(tenant: "acme") { calls } }')}`, { headers: { authorization: 'Bearer key-acme' } });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { data: { overview: { calls: 10 } } });
  });

  test('/health answers', async () => {
    assert.equal((await fetch(`${baseUrl}/health`)).status, 200);
  });

  test('index.html at /, revalidated on every load', async () => {
    const response = await fetch(`${baseUrl}/`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(response.headers.get('cache-control'), 'no-cache');
    assert.match(await response.text(), /<title>dashboard<\/title>/);
  });

  test('hashed assets with their content type, cached for good', async () => {
    const js = await fetch(`${baseUrl}/assets/app-3f2a1b.js`);
    assert.equal(js.status, 200);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(await js.text(), 'console.log("dashboard")');
    const css = await fetch(`${baseUrl}/assets/app-3f2a1b.css`);
    assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
  });

  test('a known ETag gets 304', async () => {
    const first = await fetch(`${baseUrl}/assets/app-3f2a1b.js`);
    const second = await fetch(`${baseUrl}/assets/app-3f2a1b.js`, { headers: { 'if-none-match': first.headers.get('etag')! } });
    assert.equal(second.status, 304);
  });

  test('unknown dashboard paths fall back to index.html; missing assets and API paths do not', async () => {
    const route = await fetch(`${baseUrl}/agents/coder?range=1h`);
    assert.equal(route.status, 200);
    assert.match(await route.text(), /<title>dashboard<\/title>/);
    assert.equal((await fetch(`${baseUrl}/assets/missing-123.js`)).status, 404);
    assert.equal((await fetch(`${baseUrl}/v1/audit`)).status, 404);
    assert.equal((await fetch(`${baseUrl}/`, { method: 'POST' })).status, 405);
  });

  test('paths cannot leave the dashboard directory', async () => {
    for (const attempt of ['/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/assets/..%2f..%2fsecret.txt', '/%2e%2e%5csecret.txt', '/%00', '/%E0%A4%A']) {
      const response = await rawGet(baseUrl, attempt);
      assert.ok([200, 400, 404].includes(response.status), `${attempt}: ${response.status}`);
      assert.doesNotMatch(response.body, /TOP-SECRET/, attempt);
    }
  });

  test('without a built dashboard, / says how to build it', async () => {
    const { server: s, url } = await listen(createApi({ clickhouse, logger: pino({ level: 'silent' }) }).handle);
    try {
      const response = await fetch(`${url}/`);
      assert.equal(response.status, 404);
      assert.match(await response.text(), /npm run build:ui/);
    } finally {
      s.close();
    }
  });
});
