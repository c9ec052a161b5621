/**
 * trace and session read from the look-up tables of sql/0018 (calls_by_id_v1, trace_spans_v1) and
 * sql/0010, filled by their materialized views as the ingest's writer stores calls and spans: both
 * kinds of id, tenants apart, spans stored after their calls, a call reported twice in either order,
 * a span delivered twice. Each answer is compared with what the test stored.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { createClickHouseWriter, type ClickHouseWriter } from '../../ingest/clickhouse-writer.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput, type AuditRow } from '../../model/audit-event.ts';
import { validateSpanRow, type SpanRow } from '../../model/span.ts';
import { formatRfc3339 } from '../../model/timestamp.ts';
import { MAX_TRACE_CALLS, MAX_TRACE_SPANS, queryTrace } from '../../api/queries/trace.ts';
import { post, startApi, type ApiServer } from './harness.ts';
import { recordingClient } from '../helpers/statements.ts';

const MS = 1_000_000;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const DAY = 86_400_000;

function call(input: Omit<AuditRecordInput, 'timestamp' | 'allowed'> & { atMs: number; allowed?: boolean }, source: 'audit' | 'span' = 'audit'): AuditRow {
  const { atMs, ...rest } = input;
  const normalized = normalizeAuditRecord({ allowed: true, ...(rest.allowed !== false && { duration: 3 * MS }), ...rest, timestamp: formatRfc3339({ epochMs: atMs, subMsNanos: 0 }) });
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return toAuditRow(normalized.value, source);
}

function span(tenant: string, traceId: string, spanId: string, parent: string, name: string, startMs: number): SpanRow {
  const validated = validateSpanRow({
    tenant,
    trace_id: traceId,
    span_id: spanId,
    parent_span_id: parent,
    name,
    kind: 'internal',
    service: `${tenant}-svc`,
    scope_name: 'test',
    scope_version: '1',
    start_time_unix_nano: String(BigInt(startMs) * 1_000_000n),
    duration_ns: String(2 * MS),
    status_code: 'ok',
    status_message: '',
    attributes: { tenant },
    resource_attributes: {},
    events: [],
  });
  assert.ok(validated.ok);
  return validated.value;
}

const OTEL = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const GATEWAY = '5b0a4c1e-8d2f-4e3a-9b7c-6d5e4f3a2b1c';

// acme: two calls of one gateway trace, the first traced; globex: a call with the same two ids.
const ACME_FIRST = call({
  tenant: 'acme', trace_id: GATEWAY, tool: 'users.Users.Get', agent: 'planner', agent_version: '2.1.0', session_id: 's-acme', otel_trace_id: OTEL, otel_span_id: '1000000000000002',
  account_id: 'alice', gateway: 'gw-1', transport: 'http', scopes_required: ['users:read', 'users:list'], error: 'upstream timeout', cost_usd: 0.0125,
  request_bytes: 321, response_bytes: 4096, attributes: { 'mcp.method': 'tools/call', region: 'eu' }, atMs: T0,
});
const DENIED = call({ tenant: 'acme', trace_id: GATEWAY, tool: 'billing.Invoices.Pay', agent: 'planner', allowed: false, denied_reason: 'missing scope billing:write', session_id: 's-other', atMs: T0 + 7 });
const ACME_SECOND = call({ tenant: 'acme', trace_id: GATEWAY, tool: 'users.Users.List', agent: 'planner', session_id: 's-acme', atMs: T0 + 5 });
const GLOBEX = call({ tenant: 'globex', trace_id: GATEWAY, tool: 'orders.Orders.Get', agent: 'coder', session_id: 's-acme', otel_trace_id: OTEL, otel_span_id: '2000000000000002', atMs: T0 + 1 });

// The spans of acme's OpenTelemetry trace arrive after the calls, stamped two days later (a clock
// far off, or a long trace): the trace is read by its id, not by its calls' days.
const ACME_SPANS = [
  span('acme', OTEL, '1000000000000001', '', 'agent.run', T0 + 2 * DAY),
  span('acme', OTEL, '1000000000000002', '1000000000000001', 'mcp.tool.call', T0 + 2 * DAY + 1),
  span('acme', OTEL, '1000000000000003', '1000000000000002', 'db.query', T0 + 2 * DAY + 2),
];
const GLOBEX_SPANS = [span('globex', OTEL, '2000000000000001', '', 'globex.root', T0)];

// A call reported by its audit record first, then by its span (the reverse of test/api/audit-log.test.ts).
const LATE_OTEL = 'f0e1d2c3b4a5968778695a4b3c2d1e0f';
const AUDIT_FIRST = call({ tenant: 'acme', trace_id: 'late-span', tool: 'billing.Invoices.List', agent: 'planner', account_id: 'alice', session_id: 's-late', atMs: T0 + 3600_000 });
const SPAN_SECOND = call(
  { tenant: 'acme', trace_id: 'late-span', tool: 'billing.Invoices.List', agent: 'span-agent', session_id: 's-late', otel_trace_id: LATE_OTEL, otel_span_id: '3000000000000001', atMs: T0 + 3600_000 - 2 },
  'span',
);
// A call reported by its span first and its audit record second, the record stamped first: the two
// rows of the call (the span fact and its replacement) are under different keys in time order.
const SPAN_FIRST = call(
  { tenant: 'acme', trace_id: 'early-audit', tool: 'repo.Files.Read', agent: 'span-agent', session_id: 's-late', otel_trace_id: LATE_OTEL, otel_span_id: '3000000000000002', atMs: T0 + 7200_000 },
  'span',
);
const AUDIT_SECOND = call({ tenant: 'acme', trace_id: 'early-audit', tool: 'repo.Files.Read', agent: 'reviewer', session_id: 's-late', atMs: T0 + 7200_000 - 3 });

const dataDir = mkdtempSync(path.join(tmpdir(), 'trace-test-'));
let clickhouse: ClickHouseClient;
let writer: ClickHouseWriter;
let api: ApiServer;

const TRACE = `query ($id: String!) {
  trace(id: $id) { id otelTraceIds truncated calls { eventId traceId otelTraceId otelSpanId agent tool accountId source } spans { traceId spanId parentSpanId depth name } }
}`;

/** Every field of an AuditEvent, and of a Span. */
const EVERY_FIELD = `query ($id: String!) {
  trace(id: $id) {
    calls {
      eventId timestamp traceId agent agentVersion sessionId accountId gateway transport service tool scopesRequired allowed outcome
      deniedReason durationMs error otelTraceId otelSpanId requestBytes responseBytes costUsd { micros } source attributes { key value }
    }
    spans { traceId spanId parentSpanId depth name kind service startTime durationMs statusCode statusMessage attributes { key value } events { name } }
  }
}`;

/** What the API shows of a stored row, every field. */
function shown(r: AuditRow) {
  return {
    eventId: r.event_id,
    timestamp: `${r.timestamp.replace(' ', 'T')}Z`,
    traceId: r.trace_id,
    agent: r.agent,
    agentVersion: r.agent_version,
    sessionId: r.session_id,
    accountId: r.account_id || null,
    gateway: r.gateway,
    transport: r.transport,
    service: r.service,
    tool: r.tool,
    scopesRequired: r.scopes_required,
    allowed: r.allowed === 1,
    outcome: !r.allowed ? 'DENIED' : r.is_error ? 'ERROR' : 'OK',
    deniedReason: r.denied_reason || null,
    durationMs: r.duration_ns / 1e6,
    error: r.error || null,
    otelTraceId: r.otel_trace_id || null,
    otelSpanId: r.otel_span_id || null,
    requestBytes: r.request_bytes,
    responseBytes: r.response_bytes,
    costUsd: r.cost_usd === null ? null : { micros: String(Math.round(r.cost_usd * 1e6)) },
    source: r.source.toUpperCase(),
    attributes: Object.entries(r.attributes).sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, value]) => ({ key, value })),
  };
}

async function trace(id: string, tenant = 'acme') {
  const answer = await post(api.url, TRACE, { tenant, variables: { id } });
  assert.equal(answer.body.errors, undefined, JSON.stringify(answer.body.errors));
  return answer.body.data!.trace;
}

/** The session's calls as [eventId, agent], every page of `first`. */
async function sessionCalls(id: string, first: number, tenant = 'acme'): Promise<string[][]> {
  const calls: string[][] = [];
  let cursor: string | undefined;
  for (;;) {
    const answer = await post(api.url, 'query ($id: String!, $first: Int, $after: String) { session(id: $id, first: $first, after: $after) { edges { node { eventId agent } } pageInfo { hasNextPage endCursor } } }', {
      tenant,
      variables: { id, first, after: cursor },
    });
    assert.equal(answer.body.errors, undefined, JSON.stringify(answer.body.errors));
    const { edges, pageInfo } = answer.body.data!.session;
    calls.push(...edges.map((e: any) => [e.node.eventId, e.node.agent]));
    if (!pageInfo.hasNextPage) return calls;
    cursor = pageInfo.endCursor;
  }
}

before(async () => {
  clickhouse = await openClickHouse({ database: 'trace_test', dataDir });
  await migrate(clickhouse, { retentionDays: 3650 });
  writer = createClickHouseWriter(clickhouse);
  await writer.writeAudit([ACME_FIRST, ACME_SECOND, DENIED, GLOBEX]);
  await writer.writeSpans(GLOBEX_SPANS);
  api = await startApi({ clickhouse });
});

after(async () => {
  await api?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('trace (sql/0018)', () => {
  test('every field of a call and of a span as stored, by either id', async () => {
    const answer = await post(api.url, EVERY_FIELD, { variables: { id: GATEWAY } });
    assert.equal(answer.body.errors, undefined, JSON.stringify(answer.body.errors));
    assert.deepEqual(answer.body.data!.trace.calls, [ACME_FIRST, ACME_SECOND, DENIED].map(shown));
    assert.deepEqual(answer.body.data!.trace.spans, []);
    const byOtel = await post(api.url, EVERY_FIELD, { variables: { id: OTEL } });
    assert.deepEqual(byOtel.body.data!.trace.calls, [shown(ACME_FIRST)]);
  });

  test('by either id, the same calls; the spans stored after the calls, days later, are found once they arrive', async () => {
    const calls = [
      { eventId: ACME_FIRST.event_id, traceId: GATEWAY, otelTraceId: OTEL, otelSpanId: '1000000000000002', agent: 'planner', tool: 'users.Users.Get', accountId: 'alice', source: 'AUDIT' },
      { eventId: ACME_SECOND.event_id, traceId: GATEWAY, otelTraceId: null, otelSpanId: null, agent: 'planner', tool: 'users.Users.List', accountId: null, source: 'AUDIT' },
      { eventId: DENIED.event_id, traceId: GATEWAY, otelTraceId: null, otelSpanId: null, agent: 'planner', tool: 'billing.Invoices.Pay', accountId: null, source: 'AUDIT' },
    ];
    assert.deepEqual(await trace(GATEWAY), { id: GATEWAY, otelTraceIds: [OTEL], truncated: false, calls, spans: [] });
    assert.deepEqual(await trace(OTEL.toUpperCase()), { id: OTEL.toUpperCase(), otelTraceIds: [OTEL], truncated: false, calls: [calls[0]], spans: [] });

    await writer.writeSpans(ACME_SPANS);
    const tree = [
      { traceId: OTEL, spanId: '1000000000000001', parentSpanId: null, depth: 0, name: 'agent.run' },
      { traceId: OTEL, spanId: '1000000000000002', parentSpanId: '1000000000000001', depth: 1, name: 'mcp.tool.call' },
      { traceId: OTEL, spanId: '1000000000000003', parentSpanId: '1000000000000002', depth: 2, name: 'db.query' },
    ];
    assert.deepEqual((await trace(GATEWAY)).spans, tree);
    assert.deepEqual((await trace(OTEL)).spans, tree);
    const every = await post(api.url, EVERY_FIELD, { variables: { id: OTEL } });
    assert.deepEqual(every.body.data!.trace.spans[1], {
      ...tree[1],
      kind: 'internal',
      service: 'acme-svc',
      startTime: `${new Date(T0 + 2 * DAY + 1).toISOString().slice(0, 23)}000000Z`,
      durationMs: 2,
      statusCode: 'ok',
      statusMessage: null,
      attributes: [{ key: 'tenant', value: 'acme' }],
      events: [],
    });
  });

  test('statements: by an OpenTelemetry id its calls and spans are one; by a gateway trace id, the calls and then their spans', async () => {
    // After the test above: acme's spans of OTEL are stored.
    const { client: counted, sent } = recordingClient(clickhouse);
    const byOtel = await queryTrace('acme', counted, OTEL);
    assert.equal(sent.length, 1, sent.join('\n---\n'));
    assert.deepEqual([byOtel?.calls.map((c) => c.eventId), byOtel?.spans.map((s) => s.spanId)], [[ACME_FIRST.event_id], ['1000000000000001', '1000000000000002', '1000000000000003']]);
    sent.length = 0;
    const byGateway = await queryTrace('acme', counted, GATEWAY);
    assert.equal(sent.length, 2, sent.join('\n---\n'));
    assert.deepEqual(byGateway?.spans.map((s) => s.spanId), ['1000000000000001', '1000000000000002', '1000000000000003']);
  });

  test("each tenant sees only its own calls and spans under the same ids; another tenant's id answers null", async () => {
    const globex = await trace(GATEWAY, 'globex');
    assert.deepEqual(globex.calls.map((c: any) => [c.eventId, c.agent]), [[GLOBEX.event_id, 'coder']]);
    assert.deepEqual(globex.spans.map((s: any) => s.name), ['globex.root']);
    assert.deepEqual((await trace(OTEL, 'globex')).calls.map((c: any) => c.eventId), [GLOBEX.event_id]);
    const acme = await trace(OTEL);
    assert.ok(!acme.calls.some((c: any) => c.eventId === GLOBEX.event_id));
    assert.ok(!acme.spans.some((s: any) => s.name === 'globex.root'));
    assert.equal(await trace(GATEWAY, 'initech'), null);
    assert.equal(await trace(OTEL, 'initech'), null);
  });

  test('a span delivered twice (in two batches) is listed once', async () => {
    await writer.writeSpans([ACME_SPANS[2]!, span('acme', OTEL, '1000000000000004', '1000000000000001', 'llm.call', T0 + 2 * DAY + 3)]);
    assert.deepEqual(
      (await trace(OTEL)).spans.map((s: any) => [s.spanId, s.depth]),
      [['1000000000000001', 0], ['1000000000000002', 1], ['1000000000000003', 2], ['1000000000000004', 1]],
    );
  });

  test("an OpenTelemetry id that is also a call's gateway trace id: that call, and the spans of both OpenTelemetry traces in start order", async () => {
    // Read at once, the asked id's spans; after the calls, those of the trace the call carries.
    const asked = 'c0ffee00c0ffee00c0ffee00c0ffee00';
    const carried = 'dead0000beef0000dead0000beef0000';
    const both = call({ tenant: 'acme', trace_id: asked, tool: 'search.Index.Query', agent: 'indexer', otel_trace_id: carried, otel_span_id: '4000000000000002', atMs: T0 + 9 * DAY });
    await writer.writeAudit([both]);
    await writer.writeSpans([
      span('acme', carried, '4000000000000001', '', 'carried.first', T0 + 9 * DAY),
      span('acme', asked, '5000000000000001', '', 'asked.root', T0 + 9 * DAY + 1),
      span('acme', carried, '4000000000000002', '', 'carried.second', T0 + 9 * DAY + 2),
    ]);
    const answer = await trace(asked);
    assert.deepEqual(answer.otelTraceIds, [asked, carried].sort());
    assert.deepEqual(answer.calls.map((c: { eventId: string }) => c.eventId), [both.event_id]);
    assert.deepEqual(answer.spans.map((s: { name: string }) => s.name), ['carried.first', 'asked.root', 'carried.second']);
  });

  test('a trace of more calls and spans than it answers: the earliest of each, in order, and truncated', async () => {
    const BIG_OTEL = '0123456789abcdef0123456789abcdef';
    // One row more than a read of the calls takes, and more spans than one answers, stored newest first
    // (storage order is not time order).
    const calls = Array.from({ length: 2 * (MAX_TRACE_CALLS + 1) + 1 }, (_, i) =>
      call({ tenant: 'acme', trace_id: 'big-trace', tool: 'users.Users.Get', agent: 'planner', otel_trace_id: BIG_OTEL, atMs: T0 + 5 * DAY - i * 1000 }),
    );
    await writer.writeAudit(calls);
    const spans = Array.from({ length: MAX_TRACE_SPANS + 2 }, (_, i) => span('acme', BIG_OTEL, (0x1000000000000000n + BigInt(i)).toString(16), '', 'step', T0 + 5 * DAY - i));
    await writer.writeSpans(spans);
    const earliest = calls.slice(-MAX_TRACE_CALLS).reverse().map((c) => c.event_id);
    const earliestSpans = spans.slice(-MAX_TRACE_SPANS).reverse().map((s) => s.span_id);
    for (const id of ['big-trace', BIG_OTEL]) {
      const answer = await post(api.url, 'query ($id: String!) { trace(id: $id) { truncated calls { eventId } spans { spanId } } }', { tenant: 'acme', variables: { id } });
      assert.equal(answer.body.errors, undefined, JSON.stringify(answer.body.errors));
      const { truncated, calls: shownCalls, spans: shownSpans } = answer.body.data!.trace;
      assert.equal(truncated, true, id);
      assert.deepEqual(shownCalls.map((c: { eventId: string }) => c.eventId), earliest, id);
      assert.deepEqual(shownSpans.map((s: { spanId: string }) => s.spanId), earliestSpans, id);
    }
  });

  test('a call reported twice, in either order, is one call: the merged row, by either id', async () => {
    assert.deepEqual(await writer.writeAudit([AUDIT_FIRST]), { inserted: 1, duplicates: 0 });
    assert.deepEqual(await writer.writeAudit([SPAN_SECOND]), { inserted: 1, duplicates: 0 });
    assert.deepEqual(await writer.writeAudit([SPAN_FIRST]), { inserted: 1, duplicates: 0 });
    assert.deepEqual(await writer.writeAudit([AUDIT_SECOND]), { inserted: 1, duplicates: 0 });
    // Two rows stored for each call (sql/0005): the first report, then the merged one.
    const stored = await (await clickhouse.query({ query: "SELECT count() AS n FROM audit_events_v1 WHERE trace_id IN ('late-span', 'early-audit')", format: 'JSONEachRow' })).json<{ n: string }>();
    assert.equal(Number(stored[0]!.n), 4);

    const lateSpan = { eventId: AUDIT_FIRST.event_id, traceId: 'late-span', otelTraceId: LATE_OTEL, otelSpanId: '3000000000000001', agent: 'planner', tool: 'billing.Invoices.List', accountId: 'alice', source: 'AUDIT' };
    const earlyAudit = { eventId: SPAN_FIRST.event_id, traceId: 'early-audit', otelTraceId: LATE_OTEL, otelSpanId: '3000000000000002', agent: 'reviewer', tool: 'repo.Files.Read', accountId: null, source: 'AUDIT' };
    assert.deepEqual((await trace('late-span')).calls, [lateSpan]);
    assert.deepEqual((await trace('early-audit')).calls, [earlyAudit]);
    const both = await trace(LATE_OTEL);
    assert.deepEqual(both.calls, [lateSpan, earlyAudit]);
    assert.deepEqual(both.otelTraceIds, [LATE_OTEL]);
  });
});

describe('session (one statement)', () => {
  test('a call reported twice is listed once, as the merged row, whichever report came first, on any page size', async () => {
    // s-late: the two calls of the test above, each stored as two rows.
    const expected = [[AUDIT_FIRST.event_id, 'planner'], [SPAN_FIRST.event_id, 'reviewer']];
    assert.deepEqual(await sessionCalls('s-late', 500), expected);
    assert.deepEqual(await sessionCalls('s-late', 1), expected);
  });

  test('a span fact replaced by an audit record that names another session is listed in that session only', async () => {
    const spanFact = call({ tenant: 'acme', trace_id: 'cross', tool: 'users.Users.Get', agent: 'span-agent', session_id: 's-span', atMs: T0 + 3 * 3600_000 }, 'span');
    const record = call({ tenant: 'acme', trace_id: 'cross', tool: 'users.Users.Get', agent: 'planner', session_id: 's-record', atMs: T0 + 3 * 3600_000 + 1 });
    await writer.writeAudit([spanFact]);
    assert.deepEqual(await sessionCalls('s-span', 10), [[spanFact.event_id, 'span-agent']]);
    await writer.writeAudit([record]);
    assert.deepEqual(await sessionCalls('s-span', 10), []);
    assert.deepEqual(await sessionCalls('s-record', 10), [[spanFact.event_id, 'planner']]);
  });

  test("only the caller's tenant, under the same session id", async () => {
    assert.deepEqual(await sessionCalls('s-acme', 1), [[ACME_FIRST.event_id, 'planner'], [ACME_SECOND.event_id, 'planner']]);
    assert.deepEqual(await sessionCalls('s-other', 1), [[DENIED.event_id, 'planner']]);
    assert.deepEqual(await sessionCalls('s-acme', 10, 'globex'), [[GLOBEX.event_id, 'coder']]);
    assert.deepEqual(await sessionCalls('s-late', 10, 'globex'), []);
  });
});
