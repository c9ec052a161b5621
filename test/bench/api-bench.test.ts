/**
 * The API bench's operation table against schemas: with issue 11's contract every operation builds a
 * request that validates (selection included, the connection's edges and nodes too); with the product's
 * schema as it is, an operation runs exactly when its field and arguments exist, else it is n/a.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ClickHouseClient } from '@clickhouse/client';
import { buildSchema, parse, validate } from 'graphql';
import { document, OPERATIONS, requests, selectOperations, type Context } from '../../bench/api.bench.ts';
import { createApiSchema } from '../../api/schema.ts';

const CTX: Context = {
  end: Date.parse('2026-12-01T00:00:00Z'),
  samples: [{ eventId: '019ad7a0-0000-7000-8000-000000000001', traceId: 'b9242a29-240b-443e-8c58-921d07526099', otelTraceId: '15c98d54f92ff5cacc75489712686fb9', sessionId: 'sess-1' }],
  page50After: 'opaque-cursor',
};

/** Issue 11's "What can be asked", as a schema (field types as a server might choose them). */
const CONTRACT = buildSchema(/* GraphQL */ `
  enum Outcome { OK ERROR DENIED }
  enum ToolOrder { AVG P50 P95 P99 }
  enum Metric { CALLS ERRORS DENIALS COST AVG_MS P95_MS }
  enum GroupBy { NONE AGENT SERVICE TOOL ACCOUNT }
  type Money { amount: String! micros: String! currency: String! }
  type Overview { calls: Int! errors: Int! p99Ms: Float }
  type AgentActivity { agent: String! calls: Int! share: Float! errorRate: Float! p95Ms: Float costUsd: Money! firstSeen: String lastSeen: String }
  type ServiceShare { service: String! calls: Int! share: Float! errors: Int! costUsd: Money! }
  type ToolLatency { tool: String! service: String! calls: Int! avgMs: Float p99Ms: Float maxMs: Float! errorRate: Float! }
  type Point { t: String! value: Float! }
  type Series { group: String! points: [Point!]! }
  type Timeseries { step: Int! series: [Series!]! }
  type Count { key: String! count: Int! }
  type Denials { byReason: [Count!]! byAgent: [Count!]! byTool: [Count!]! byScope: [Count!]! overTime: [Point!]! }
  type AuditEvent { eventId: ID! timestamp: String! tool: String! session(limit: Int!): [AuditEvent!] trace: Trace }
  type Edge { cursor: String! node: AuditEvent! }
  type PageInfo { hasNextPage: Boolean! endCursor: String }
  type AuditLogConnection { edges: [Edge!]! pageInfo: PageInfo! }
  type Span { spanId: String! parentSpanId: String name: String! }
  type Trace { traceId: String! calls: [AuditEvent!]! spans: [Span!]! }
  input Filter { agent: String service: String tool: String account: String outcome: Outcome }
  input AuditFilter { from: String to: String agent: String session: String }
  type Query {
    overview(from: String, to: String, filter: Filter): Overview!
    agents(from: String, to: String): [AgentActivity!]!
    agentActivity(from: String, to: String, filter: Filter): [AgentActivity!]!
    topServices(from: String, to: String, limit: Int, filter: Filter): [ServiceShare!]!
    slowestTools(from: String, to: String, limit: Int, orderBy: ToolOrder = P99, filter: Filter): [ToolLatency!]!
    timeseries(from: String, to: String, metric: Metric!, step: Int, groupBy: GroupBy = NONE, top: Int, filter: Filter): Timeseries!
    denials(from: String, to: String, filter: Filter): Denials!
    auditLog(first: Int, after: String, filter: AuditFilter): AuditLogConnection!
    auditEvent(id: ID!): AuditEvent
    trace(id: String, traceId: String): Trace
    session(id: String!): [AuditEvent!]!
  }
`);

test('with the contract, every operation builds a request that validates, selecting nested answers', () => {
  for (const op of OPERATIONS) {
    const doc = document(CONTRACT, op, CTX, 0);
    assert.ok('query' in doc, `${op.name}: ${'na' in doc ? doc.na : ''}`);
    assert.deepEqual(validate(CONTRACT, parse(doc.query)), [], op.name);
  }
  const page50 = OPERATIONS.find((op) => op.name.startsWith('auditLog 50th page'))!;
  const doc = document(CONTRACT, page50, CTX, 0);
  assert.ok('query' in doc);
  assert.match(doc.query, /after: "opaque-cursor"/);
  // Three levels: the connection, its edges, their nodes' fields.
  assert.match(doc.query, /\{ edges \{ cursor node \{ eventId timestamp tool \} \} pageInfo \{ hasNextPage endCursor \} \}/);
  // A field that needs an argument is left out (session); a type already on the path is not selected again (calls).
  const event = document(CONTRACT, OPERATIONS.find((op) => op.field === 'auditEvent')!, CTX, 0);
  assert.ok('query' in event);
  assert.match(event.query, /\{ eventId timestamp tool trace \{ traceId spans \{ spanId parentSpanId name \} \} \}/);
  const series = document(CONTRACT, OPERATIONS.find((op) => op.field === 'timeseries')!, CTX, 0);
  assert.ok('query' in series);
  assert.match(series.query, /metric: CALLS, groupBy: SERVICE, top: 5\) \{ step series \{ group points \{ t value \} \} \}/);
});

test('the requests an operation sends are its documents: the selection checked once, each call its own arguments', () => {
  const ctx: Context = { ...CTX, samples: [...CTX.samples, { ...CTX.samples[0]!, eventId: '019ad7a0-0000-7000-8000-000000000002', traceId: 'trace-2' }] };
  for (const op of OPERATIONS) {
    const sent = requests(CONTRACT, op, ctx);
    assert.ok('query' in sent, op.name);
    // "to now" ranges move with the clock: compare those without their times.
    const timeless = (q: string) => q.replace(/"\d{4}-\d\d-\d\dT[\d:.]+Z"/g, '"T"');
    for (const i of [0, 1]) assert.equal(timeless(sent.query(i)), timeless((document(CONTRACT, op, ctx, i) as { query: string }).query), `${op.name} call ${i}`);
  }
  assert.match((requests(CONTRACT, OPERATIONS.find((op) => op.name === 'trace(id) by gateway trace id')!, ctx) as { query: (i: number) => string }).query(1), /trace\(id: "trace-2"\)/);
  const page50 = OPERATIONS.find((op) => op.name.startsWith('auditLog 50th page'))!;
  assert.deepEqual(requests(CONTRACT, page50, { ...CTX, page50After: undefined, page50Problem: 'the audit log ended at page 3' }), { na: 'the audit log ended at page 3' });
});

test('without a cursor for page 50, that page is n/a and says why', () => {
  const page50 = OPERATIONS.find((op) => op.name.startsWith('auditLog 50th page'))!;
  assert.deepEqual(document(CONTRACT, page50, { ...CTX, page50After: undefined, page50Problem: 'the audit log ended at page 3' }, 0), { na: 'the audit log ended at page 3' });
});

test("with the product's schema, every operation runs: its field and arguments exist", () => {
  const schema = createApiSchema({ clickhouse: {} as ClickHouseClient });
  const fields = schema.getQueryType()!.getFields();
  let runnable = 0;
  for (const op of OPERATIONS) {
    const args = op.args(CTX, 0);
    assert.equal(typeof args, 'object', op.name);
    const field = fields[op.field];
    const exists = field !== undefined && Object.keys(args).every((a) => field.args.some((x) => x.name === a));
    const doc = document(schema, op, CTX, 0);
    if (exists) {
      assert.ok('query' in doc, `${op.name}: ${'na' in doc ? doc.na : ''}`);
      assert.deepEqual(validate(schema, parse(doc.query)), [], op.name);
      runnable++;
    } else {
      assert.ok('na' in doc && doc.na.startsWith('not in this schema'), op.name);
    }
  }
  assert.equal(runnable, OPERATIONS.length, 'the product answers every question the bench asks');
});

test('BENCH_ONLY selects operations by name or by GraphQL field, in table order; an unknown name is an error', () => {
  assert.equal(selectOperations(undefined).length, OPERATIONS.length);
  assert.equal(selectOperations(' , ').length, OPERATIONS.length);
  assert.deepEqual(
    selectOperations('session, trace').map((op) => op.name),
    ['trace(id) by gateway trace id', 'trace(id) by OpenTelemetry id', 'session(id)'],
  );
  assert.deepEqual(selectOperations('auditLog 50th page (connection)').map((op) => op.name), ['auditLog 50th page (connection)']);
  assert.throws(() => selectOperations('trace,nope'), /BENCH_ONLY: no operation named "nope"; names: overview 7 d, /);
});
