/**
 * The benches' data set generator on the embedded engine: every row it loads is one the model accepts
 * and maps to the same row (normalizeAuditRecord + toAuditRow), ids and times agree, tenants follow
 * accounts, the views counted every row, spans form the stated trees, and a second run with the same
 * seed and end loads the same rows.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DAYS, generateEvents, TENANTS } from '../../bench/data/generate-events.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput } from '../../model/audit-event.ts';

const EVENTS = 3000;
const END = new Date('2026-12-01T12:00:00Z');

let dir: string;
let clickhouse: ClickHouseClient;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'generate-events-'));
  clickhouse = await openClickHouse({ database: 'generate_events_test', dataDir: dir });
});

after(async () => {
  await clickhouse?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function rows<T = Record<string, unknown>>(query: string): Promise<T[]> {
  return (await clickhouse.query({ query, format: 'JSONEachRow' })).json<T>();
}

/** Migrates a fresh database, makes it the session's (USE), and loads it. */
async function load(database: string, seed: number) {
  await clickhouse.command({ query: `CREATE DATABASE ${database}` });
  await clickhouse.command({ query: `USE ${database}` });
  await migrate(clickhouse, { retentionDays: 3650 });
  return generateEvents(clickhouse, { events: EVENTS, seed, end: END, chunk: 1000 });
}

/** Every stored row, in a stable order, as text: what "the same rows" means. */
async function fingerprint(): Promise<string> {
  const hash = createHash('sha256');
  for (const r of await rows('SELECT * EXCEPT ingested_at, toUnixTimestamp64Milli(ingested_at) AS ingested_ms FROM audit_events_v1 ORDER BY event_id')) hash.update(JSON.stringify(r));
  for (const r of await rows('SELECT * FROM spans_v1 ORDER BY trace_id, span_id')) hash.update(JSON.stringify(r));
  return hash.digest('hex');
}

interface Stored {
  event_id: string;
  tenant: string;
  timestamp: string;
  trace_id: string;
  tool: string;
  service: string;
  account_id: string;
  scopes_required: string[];
  allowed: boolean;
  denied_reason: string;
  duration_ns: string | number;
  error: string;
  is_error: boolean;
  agent: string;
  agent_version: string;
  session_id: string;
  gateway: string;
  transport: string;
  otel_trace_id: string;
  otel_span_id: string;
  request_bytes: string | number;
  response_bytes: string | number;
  cost_usd: string | number | null;
  attributes: Record<string, string>;
  source: string;
}

test('every row is one the model accepts and maps to the same row; ids, times and tenants agree', async () => {
  const result = await load('seed_1', 1);
  assert.equal(result.events, EVENTS);
  const stored = await rows<Stored>('SELECT * FROM audit_events_v1 ORDER BY event_id');
  assert.equal(stored.length, EVENTS);
  assert.equal(new Set(stored.map((r) => r.event_id)).size, EVENTS);

  const perTenant: Record<string, number> = {};
  const startMs = END.getTime() - DAYS * 86_400_000;
  for (const r of stored) {
    const input: AuditRecordInput = {
      v: 1,
      event_id: r.event_id,
      tenant: r.tenant,
      trace_id: r.trace_id,
      timestamp: `${r.timestamp.replace(' ', 'T')}Z`,
      tool: r.tool,
      account_id: r.account_id,
      scopes_required: r.scopes_required,
      allowed: r.allowed,
      denied_reason: r.denied_reason || undefined,
      duration: Number(r.duration_ns),
      error: r.error || undefined,
      agent: r.agent,
      agent_version: r.agent_version,
      session_id: r.session_id,
      gateway: r.gateway,
      transport: r.transport,
      otel_trace_id: r.otel_trace_id,
      otel_span_id: r.otel_span_id,
      request_bytes: Number(r.request_bytes),
      response_bytes: Number(r.response_bytes),
      cost_usd: r.cost_usd === null ? null : Number(r.cost_usd),
      attributes: r.attributes,
    };
    const normalized = normalizeAuditRecord(input);
    assert.ok(normalized.ok, `row ${r.event_id}: ${JSON.stringify(!normalized.ok && normalized.issues)}`);
    const mapped = toAuditRow(normalized.value);
    assert.deepEqual(
      mapped,
      {
        event_id: r.event_id, tenant: r.tenant, timestamp: r.timestamp, trace_id: r.trace_id, tool: r.tool, service: r.service,
        account_id: r.account_id, scopes_required: r.scopes_required, allowed: r.allowed ? 1 : 0, denied_reason: r.denied_reason,
        duration_ns: Number(r.duration_ns), error: r.error, is_error: r.is_error ? 1 : 0, agent: r.agent, agent_version: r.agent_version,
        session_id: r.session_id, gateway: r.gateway, transport: r.transport, otel_trace_id: r.otel_trace_id, otel_span_id: r.otel_span_id,
        request_bytes: Number(r.request_bytes), response_bytes: Number(r.response_bytes), cost_usd: r.cost_usd === null ? null : Number(r.cost_usd),
        attributes: r.attributes, source: 'audit',
      },
    );

    // UUIDv7 whose 48-bit millisecond is the event's.
    assert.match(r.event_id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const idMs = Number.parseInt(r.event_id.replace(/-/g, '').slice(0, 12), 16);
    assert.equal(idMs, Date.parse(`${r.timestamp.slice(0, 23).replace(' ', 'T')}Z`), r.event_id);
    assert.ok(idMs >= startMs && idMs < END.getTime(), `${r.timestamp} outside the 30 days`);
    assert.match(r.trace_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(r.allowed, r.denied_reason === '');
    assert.ok(!(r.is_error && !r.allowed), 'a denied call has no error');

    // The tenant is the account's: acct-0000..0799 acme, then globex, then initech.
    const account = Number(r.account_id.slice('acct-'.length));
    let upTo = 0;
    const owner = TENANTS.find((t) => account < (upTo += t.accounts))!.tenant;
    assert.equal(r.tenant, owner, r.account_id);
    perTenant[r.tenant] = (perTenant[r.tenant] ?? 0) + 1;
  }
  assert.deepEqual(result.perTenant, perTenant);
  assert.equal(new Set(stored.map((r) => r.agent)).size <= 50, true);
  assert.equal(new Set(stored.map((r) => r.tool)).size <= 200, true);

  // The views saw every row, as they see the ingest's inserts.
  const [rollup] = await rows<{ calls: string; errors: string; denials: string }>('SELECT sum(calls) AS calls, sum(errors) AS errors, sum(denials) AS denials FROM tool_calls_1m_v1');
  assert.deepEqual(
    { calls: Number(rollup!.calls), errors: Number(rollup!.errors), denials: Number(rollup!.denials) },
    { calls: EVENTS, errors: stored.filter((r) => r.is_error).length, denials: stored.filter((r) => !r.allowed).length },
  );
  const [reports] = await rows<{ n: string }>('SELECT count() AS n FROM call_reports_v2');
  assert.equal(Number(reports!.n), EVENTS);
});

test('spans: 3 per sampled call, root → mcp.tool.call (the call’s otel_span_id, its trace_id) → the tool’s handler', async () => {
  const calls = new Map((await rows<Stored>("SELECT * FROM audit_events_v1 WHERE otel_trace_id != ''")).map((r) => [r.otel_trace_id, r]));
  const spans = await rows<{ tenant: string; trace_id: string; span_id: string; parent_span_id: string; name: string; service: string; attributes: Record<string, string> }>(
    'SELECT tenant, trace_id, span_id, parent_span_id, name, service, attributes FROM spans_v1',
  );
  assert.ok(spans.length > 0);
  const byTrace = new Map<string, typeof spans>();
  for (const s of spans) byTrace.set(s.trace_id, [...(byTrace.get(s.trace_id) ?? []), s]);
  assert.equal(spans.length, byTrace.size * 3);
  for (const [traceId, tree] of byTrace) {
    const call = calls.get(traceId);
    assert.ok(call, `spans of trace ${traceId} belong to no call`);
    const root = tree.find((s) => s.parent_span_id === '')!;
    const toolCall = tree.find((s) => s.name === 'mcp.tool.call')!;
    const handler = tree.find((s) => s.name === call.tool)!;
    assert.equal(toolCall.parent_span_id, root.span_id);
    assert.equal(toolCall.span_id, call.otel_span_id);
    assert.equal(toolCall.attributes['mcp.trace_id'], call.trace_id);
    assert.equal(handler.parent_span_id, toolCall.span_id);
    assert.equal(handler.service, call.service);
    assert.ok(tree.every((s) => s.tenant === call.tenant));
  }
});

test('the same seed and end load the same rows; another seed does not', async () => {
  await clickhouse.command({ query: 'USE seed_1' });
  const first = await fingerprint();
  await load('seed_1_again', 1);
  assert.equal(await fingerprint(), first);
  await load('seed_2', 2);
  assert.notEqual(await fingerprint(), first);
});
