/**
 * The raw-record questions (auditLog, auditEvent, trace, session) against the real embedded ClickHouse,
 * over a listening server: every answer is compared with the same question computed here, in
 * JavaScript, over the records the test stored.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { createApi } from '../../api/app.ts';
import type { Caller } from '../../api/context.ts';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { queryAuditLog } from '../../api/queries/audit-log.ts';
import { parseAuditLogFilter } from '../../api/queries/audit-params.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { createClickHouseWriter } from '../../ingest/clickhouse-writer.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput, type AuditRow } from '../../model/audit-event.ts';
import { toSpanInsertRow } from '../../model/otlp.ts';
import { validateSpanRow } from '../../model/span.ts';
import { formatRfc3339, parseRfc3339 } from '../../model/timestamp.ts';
import { recordingClient } from '../helpers/statements.ts';

// ---- fixture ------------------------------------------------------------------------------------------

const MS = 1_000_000;
/** Two days back, so records fall on several days (partitions). */
const START_MS = Date.UTC(2026, 10, 20, 22, 0, 0);
const AGENTS = ['planner', 'coder', 'reviewer'];
const TOOLS = ['users.Users.Get', 'users.Users.List', 'billing.Invoices.List', 'repo.Files.Read', 'search.Search.Query'];
const ACCOUNTS = ['alice', 'bob', 'carol', ''];
const ERRORS = ['Upstream TIMEOUT after 30s', 'not found', 'connection reset'];
const DENIALS = ['missing scope billing:write', 'read-only token', 'rate limit: timeout window'];
const OTEL_A = '0af7651916cd43dd8448eb211c80319c';

/** What the test knows of each stored record: the input and the row the API must show. */
interface Stored {
  tenant: string;
  row: AuditRow;
}

/** A small deterministic generator (mulberry32), so a failure replays the same records. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function row(input: AuditRecordInput, source: 'audit' | 'span' = 'audit'): AuditRow {
  const normalized = normalizeAuditRecord(input);
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return toAuditRow(normalized.value, source);
}

function iso(epochMs: number, subMsNanos = 0): string {
  return formatRfc3339({ epochMs, subMsNanos });
}

/** `count` records of `tenant`, spread over ~40 hours; every 10th shares its timestamp with the one before. */
function records(tenant: string, count: number, seed: number): AuditRow[] {
  const next = random(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]!;
  const out: AuditRow[] = [];
  let ms = START_MS;
  let nanos = 0;
  for (let i = 0; i < count; i++) {
    if (i % 10 !== 9) {
      ms += Math.floor(next() * 8 * 60_000);
      nanos = Math.floor(next() * 1_000_000);
    }
    const outcome = next();
    const denied = outcome < 0.15;
    const error = !denied && outcome < 0.3;
    out.push(
      row({
        tenant,
        trace_id: i % 7 === 0 ? `shared-trace-${i % 21}` : `${tenant}-trace-${i}`,
        timestamp: iso(ms, nanos),
        tool: pick(TOOLS),
        allowed: !denied,
        ...(pick(ACCOUNTS) !== '' && { account_id: pick(ACCOUNTS.slice(0, 3)) }),
        ...(denied && { denied_reason: pick(DENIALS) }),
        ...(error && { error: pick(ERRORS) }),
        ...(!denied && { duration: Math.floor(next() * 500) * MS }),
        ...(i % 3 === 0 && { cost_usd: Math.floor(next() * 10_000) / 1_000_000 }),
        ...(i % 11 === 0 && { otel_trace_id: OTEL_A, otel_span_id: 'b7ad6b7169203331' }),
        agent: pick(AGENTS),
        agent_version: '1.0.0',
        gateway: 'gw-1',
        transport: 'http',
        session_id: `session-${i % 5}`,
        scopes_required: ['users:read'],
      }),
    );
  }
  return out;
}

const ACME = records('acme', 240, 1);
/** Another tenant with the same trace, session and OpenTelemetry ids: never in acme's answers. */
const GLOBEX = records('globex', 60, 2);
/** The tenant whose log is paged while records arrive. */
const INITECH = records('initech', 100, 3);

/** The call reported twice: its `mcp.tool.call` span's fact first, then its audit record (sql/0005). */
const TWICE_MS = START_MS + 3 * 3600_000 + 17;
const TWICE_SPAN = row(
  {
    tenant: 'acme',
    trace_id: 'twice-trace',
    timestamp: iso(TWICE_MS),
    tool: 'billing.Invoices.List',
    allowed: true,
    duration: 40 * MS,
    agent: 'span-agent',
    session_id: 'session-twice',
    otel_trace_id: 'c'.repeat(32),
    otel_span_id: 'd'.repeat(16),
  },
  'span',
);
const TWICE_AUDIT = row({
  tenant: 'acme',
  trace_id: 'twice-trace',
  timestamp: iso(TWICE_MS + 40),
  tool: 'billing.Invoices.List',
  allowed: true,
  duration: 40 * MS,
  agent: 'planner',
  account_id: 'alice',
  cost_usd: 0.25,
  session_id: 'session-twice',
});

/**
 * A call reported the other way round: its audit record first, then its span, 25 ms earlier (the call's
 * start), in a later batch. The merged row is stored under the audit record's id, at the span's time.
 */
const LATER_MS = START_MS + 5 * 3600_000 + 29;
const LATER_AUDIT = row({
  tenant: 'acme',
  trace_id: 'audit-first-trace',
  timestamp: iso(LATER_MS + 25),
  tool: 'users.Users.Get',
  allowed: false,
  denied_reason: 'missing scope users:write',
  agent: 'coder',
  account_id: 'bob',
  session_id: 'session-audit-first',
});
const LATER_SPAN = row(
  {
    tenant: 'acme',
    trace_id: 'audit-first-trace',
    timestamp: iso(LATER_MS),
    tool: 'users.Users.Get',
    allowed: false,
    agent: 'coder',
    session_id: 'session-audit-first',
    gateway: 'gw-span',
    transport: 'stdio',
    otel_trace_id: 'f'.repeat(32),
    otel_span_id: 'a'.repeat(16),
  },
  'span',
);

const SPANS = [
  { id: 'e000000000000001', parent: '', name: 'agent.run', startMs: TWICE_MS - 5 },
  { id: 'e000000000000002', parent: 'e000000000000001', name: 'mcp.tool.call', startMs: TWICE_MS },
  { id: 'e000000000000004', parent: 'e000000000000001', name: 'llm.call', startMs: TWICE_MS + 50 },
  { id: 'e000000000000003', parent: 'e000000000000002', name: 'db.query', startMs: TWICE_MS + 1 },
].map((s) => {
  const validated = validateSpanRow({
    tenant: 'acme',
    trace_id: 'c'.repeat(32),
    span_id: s.id,
    parent_span_id: s.parent,
    name: s.name,
    kind: 'internal',
    service: 'svc',
    scope_name: 'test',
    scope_version: '1',
    start_time_unix_nano: String(BigInt(s.startMs) * 1_000_000n),
    duration_ns: String(10 * MS),
    status_code: 'unset',
    status_message: '',
    attributes: {},
    resource_attributes: {},
    events: [],
  });
  assert.ok(validated.ok);
  return toSpanInsertRow(validated.value);
});

/**
 * What the audit log must show of acme, before the records the paging test adds: one row per call. The
 * call reported twice is one merged row (ingest/merge-reports.ts): the audit record's fields, the span's
 * trace ids, stamped at the call's start (the earlier report, the span), under the span fact's id.
 */
/**
 * The same, with the span stamped 90 minutes before the audit record (a long call), on the same UTC
 * day: the merged row lies before the hour a first page reads first, the row it replaces inside it.
 */
const FAR_MS = START_MS + 7 * 3600_000 + 13;
const FAR_AUDIT = row({ tenant: 'acme', trace_id: 'long-call-trace', timestamp: iso(FAR_MS), tool: 'repo.Files.Read', allowed: true, duration: 90 * 60_000 * MS, agent: 'coder', account_id: 'bob' });
const FAR_SPAN = row(
  { tenant: 'acme', trace_id: 'long-call-trace', timestamp: iso(FAR_MS - 90 * 60_000), tool: 'repo.Files.Read', allowed: true, agent: 'coder', gateway: 'gw-span', transport: 'stdio' },
  'span',
);

function acmeShown(): AuditRow[] {
  const merged: AuditRow = {
    ...TWICE_AUDIT,
    timestamp: TWICE_SPAN.timestamp,
    otel_trace_id: TWICE_SPAN.otel_trace_id,
    otel_span_id: TWICE_SPAN.otel_span_id,
    event_id: TWICE_SPAN.event_id,
    report_id: TWICE_AUDIT.event_id,
    counted: 0 as const,
  };
  const later: AuditRow = {
    ...LATER_AUDIT,
    timestamp: LATER_SPAN.timestamp,
    gateway: 'gw-span',
    transport: 'stdio',
    otel_trace_id: LATER_SPAN.otel_trace_id,
    otel_span_id: LATER_SPAN.otel_span_id,
    report_id: LATER_SPAN.event_id,
    counted: 0 as const,
  };
  const far: AuditRow = { ...FAR_AUDIT, timestamp: FAR_SPAN.timestamp, gateway: 'gw-span', transport: 'stdio', report_id: FAR_SPAN.event_id, counted: 0 as const };
  return [...ACME, merged, later, far];
}

// ---- the independent computation ----------------------------------------------------------------------

function nanosOf(r: AuditRow): bigint {
  const instant = parseRfc3339(`${r.timestamp.replace(' ', 'T')}Z`)!;
  return BigInt(instant.epochMs) * 1_000_000n + BigInt(instant.subMsNanos);
}

/** ClickHouse orders UUIDs by their second 64 bits, then their first. */
function uuidOrder(id: string): string {
  const hex = id.replace(/-/g, '');
  return hex.slice(16) + hex.slice(0, 16);
}

function newestFirst(a: AuditRow, b: AuditRow): number {
  const ta = nanosOf(a), tb = nanosOf(b);
  if (ta !== tb) return ta > tb ? -1 : 1;
  return uuidOrder(a.event_id) > uuidOrder(b.event_id) ? -1 : uuidOrder(a.event_id) < uuidOrder(b.event_id) ? 1 : 0;
}

function outcome(r: AuditRow): string {
  return !r.allowed ? 'DENIED' : r.is_error ? 'ERROR' : 'OK';
}

// ---- harness -----------------------------------------------------------------------------------------

const dataDir = mkdtempSync(path.join(tmpdir(), 'audit-log-test-'));
let clickhouse: ClickHouseClient;
let server: Server;
let baseUrl: string;

const KEYS: KeyStore = {
  size: 5,
  lookup: (secret) => (/^key-(acme|globex|initech|umbrella|hooli)$/.test(secret) ? ({ tenant: secret.slice(4), role: 'viewer', name: secret } satisfies Caller) : undefined),
};

interface GraphQLResponse {
  data?: Record<string, any> | null;
  errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
}

async function gql(query: string, variables: Record<string, unknown> = {}, tenant = 'acme'): Promise<GraphQLResponse> {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer key-${tenant}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as GraphQLResponse;
}

async function data(query: string, variables: Record<string, unknown> = {}, tenant = 'acme'): Promise<Record<string, any>> {
  const result = await gql(query, variables, tenant);
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data!;
}

const AUDIT_LOG = `query ($filter: AuditLogFilter, $first: Int, $after: String) {
  auditLog(filter: $filter, first: $first, after: $after) {
    edges { cursor node { eventId timestamp traceId agent sessionId accountId tool allowed outcome error deniedReason costUsd { amount micros } source } }
    pageInfo { hasNextPage endCursor }
  }
}`;

/** Every page of the audit log for `filter`, `first` at a time; `between` runs after each page. */
async function allPages(filter: Record<string, unknown>, first: number, tenant = 'acme', between?: (page: number, cursor: string) => Promise<void>) {
  const ids: string[] = [];
  let after: string | undefined;
  for (let page = 0; ; page++) {
    const { auditLog } = await data(AUDIT_LOG, { filter, first, after }, tenant);
    assert.ok(auditLog.edges.length <= first);
    ids.push(...auditLog.edges.map((e: any) => e.node.eventId));
    if (!auditLog.pageInfo.hasNextPage) break;
    assert.equal(auditLog.edges.length, first, 'a page before the last is full');
    after = auditLog.pageInfo.endCursor;
    await between?.(page, after!);
  }
  return ids;
}

async function insert(rows: AuditRow[]) {
  await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: rows });
}

before(async () => {
  clickhouse = await openClickHouse({ database: 'audit_log_test', dataDir });
  await migrate(clickhouse, { retentionDays: 3650 });
  await insert([...ACME.slice(0, 120)]);
  await insert([...ACME.slice(120), ...GLOBEX, ...INITECH]);
  const writer = createClickHouseWriter(clickhouse);
  assert.deepEqual(await writer.writeAudit([TWICE_SPAN]), { inserted: 1, duplicates: 0 });
  assert.deepEqual(await writer.writeAudit([TWICE_AUDIT]), { inserted: 1, duplicates: 0 });
  assert.deepEqual(await writer.writeAudit([LATER_AUDIT]), { inserted: 1, duplicates: 0 });
  assert.deepEqual(await writer.writeAudit([LATER_SPAN]), { inserted: 1, duplicates: 0 });
  assert.deepEqual(await writer.writeAudit([FAR_AUDIT]), { inserted: 1, duplicates: 0 });
  assert.deepEqual(await writer.writeAudit([FAR_SPAN]), { inserted: 1, duplicates: 0 });
  await clickhouse.insert({ table: 'spans_v1', format: 'JSONEachRow', values: SPANS });
  const s = createServer(createApi({ clickhouse, logger: pino({ level: 'silent' }), keys: KEYS }).handle);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  server = s;
  baseUrl = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
});

after(async () => {
  server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

// ---- auditLog ----------------------------------------------------------------------------------------

describe('auditLog', () => {
  test('the first page: the newest 50, newest first, every field of a row as stored', async () => {
    const { auditLog } = await data(AUDIT_LOG, {});
    const expected = acmeShown().sort(newestFirst);
    assert.deepEqual(auditLog.edges.map((e: any) => e.node.eventId), expected.slice(0, 50).map((r) => r.event_id));
    assert.equal(auditLog.pageInfo.hasNextPage, true);
    assert.equal(auditLog.pageInfo.endCursor, auditLog.edges[49].cursor);
    for (const { node } of auditLog.edges) {
      const r = expected.find((x) => x.event_id === node.eventId)!;
      assert.deepEqual(node, {
        eventId: r.event_id,
        timestamp: `${r.timestamp.replace(' ', 'T')}Z`,
        traceId: r.trace_id,
        agent: r.agent,
        sessionId: r.session_id,
        accountId: r.account_id || null,
        tool: r.tool,
        allowed: r.allowed === 1,
        outcome: outcome(r),
        error: r.error || null,
        deniedReason: r.denied_reason || null,
        costUsd: r.cost_usd === null ? null : { amount: r.cost_usd.toFixed(6), micros: String(Math.round(r.cost_usd * 1e6)) },
        source: 'AUDIT',
      });
    }
  });

  test('fields asked for through fragments are read (a page reads only the columns asked for)', async () => {
    const query = `
      fragment Cost on AuditEvent { costUsd { micros } }
      fragment Page on AuditEventConnection { edges { node { ...Cost ... on AuditEvent { tool outcome } } } }
      { auditLog(first: 20) { ...Page edges { node { durationMs } } } }`;
    const { auditLog } = await data(query);
    const expected = acmeShown().sort(newestFirst).slice(0, 20);
    assert.deepEqual(
      auditLog.edges.map((e: any) => e.node),
      expected.map((r) => ({
        costUsd: r.cost_usd === null ? null : { micros: String(Math.round(r.cost_usd * 1e6)) },
        tool: r.tool,
        outcome: outcome(r),
        durationMs: r.duration_ns / 1e6,
      })),
    );
  });

  test('paging while records arrive lists each record exactly once', async () => {
    const late: AuditRow[] = [];
    const newer: AuditRow[] = [];
    const ids = await allPages({}, 17, 'initech', async (page) => {
      // Newer than every page so far: not listed (the list goes back in time from its first page).
      const fresh = row({ tenant: 'initech', trace_id: `new-${page}`, timestamp: iso(Date.now() + page), tool: 'users.Users.Get', allowed: true });
      newer.push(fresh);
      // Older than every record so far (one that arrived late): listed on a later page, once.
      const older = row({ tenant: 'initech', trace_id: `late-${page}`, timestamp: iso(START_MS - 3600_000 - page), tool: 'users.Users.Get', allowed: true });
      late.push(older);
      await insert([fresh, older]);
    });
    assert.equal(new Set(ids).size, ids.length, 'no record twice');
    assert.deepEqual(ids, [...INITECH, ...late].sort(newestFirst).map((r) => r.event_id));
    assert.ok(late.length >= 5);
    for (const r of newer) assert.ok(!ids.includes(r.event_id));
  });

  describe('each filter agrees with the same filter over the stored records', () => {
    const from = nanosOf(ACME[60]!);
    const to = nanosOf(ACME[180]!);
    const cases: Array<[string, Record<string, unknown>, (r: AuditRow) => boolean]> = [
      ['from (inclusive)', { from: `${ACME[60]!.timestamp.replace(' ', 'T')}Z` }, (r) => nanosOf(r) >= from],
      ['to (exclusive)', { to: `${ACME[180]!.timestamp.replace(' ', 'T')}Z` }, (r) => nanosOf(r) < to],
      ['agent', { agent: 'coder' }, (r) => r.agent === 'coder'],
      ['service', { service: 'users' }, (r) => r.service === 'users'],
      ['tool', { tool: 'repo.Files.Read' }, (r) => r.tool === 'repo.Files.Read'],
      ['account', { account: 'bob' }, (r) => r.account_id === 'bob'],
      ['account: anonymous', { account: '' }, (r) => r.account_id === ''],
      ['outcome OK', { outcome: 'OK' }, (r) => outcome(r) === 'OK'],
      ['outcome ERROR', { outcome: 'ERROR' }, (r) => outcome(r) === 'ERROR'],
      ['outcome DENIED', { outcome: 'DENIED' }, (r) => outcome(r) === 'DENIED'],
      ['session', { session: 'session-3' }, (r) => r.session_id === 'session-3'],
      ['traceId (the gateway\'s)', { traceId: 'shared-trace-7' }, (r) => r.trace_id === 'shared-trace-7'],
      ['traceId (OpenTelemetry, any case)', { traceId: OTEL_A.toUpperCase() }, (r) => r.otel_trace_id === OTEL_A],
      ['text, any case, in the error or the denial reason', { text: 'TimeOut' }, (r) => r.error.toLowerCase().includes('timeout') || r.denied_reason.toLowerCase().includes('timeout')],
      [
        'several at once',
        { agent: 'planner', outcome: 'OK', from: `${ACME[30]!.timestamp.replace(' ', 'T')}Z`, session: 'session-1' },
        (r) => r.agent === 'planner' && outcome(r) === 'OK' && nanosOf(r) >= nanosOf(ACME[30]!) && r.session_id === 'session-1',
      ],
      ['no match', { agent: "coder' OR 1=1 --" }, () => false],
    ];
    for (const [name, filter, keep] of cases) {
      test(name, async () => {
        const expected = acmeShown().filter(keep).sort(newestFirst).map((r) => r.event_id);
        assert.ok(name === 'no match' || expected.length > 0, 'the fixture has matches');
        assert.deepEqual(await allPages(filter, 500), expected);
        assert.deepEqual(await allPages(filter, 4), expected, 'the same, 4 at a time');
      });
    }
  });

  test('a call reported by its span and then by its audit record is listed once, merged: the audit record at the call\'s start', async () => {
    const shown = (await allPages({ traceId: 'twice-trace' }, 10));
    assert.deepEqual(shown, [TWICE_SPAN.event_id]);
    const { auditLog } = await data(AUDIT_LOG, { filter: { traceId: 'twice-trace' } });
    const node = auditLog.edges[0].node;
    assert.deepEqual(
      [node.agent, node.accountId, node.timestamp, node.costUsd, node.source],
      ['planner', 'alice', iso(TWICE_MS), { amount: '0.250000', micros: '250000' }, 'AUDIT'],
    );
    // The span's fact is not listed under what only it said.
    assert.deepEqual(await allPages({ agent: 'span-agent' }, 10), []);
  });

  test('calls whose merged row has the key of the row it replaces (span first, stamped at its start): each listed once, whatever the page size', async () => {
    // A tenant of its own: every other call is reported by its span and then by its audit record, 40 ms
    // later, so the merged row and the span's fact share (timestamp, event_id). Where a read ends
    // between the two, after other hidden facts, the page still lists the merged row.
    const base = START_MS + 60 * 3600_000;
    const spans: AuditRow[] = [];
    const audits: AuditRow[] = [];
    const expected: AuditRow[] = [];
    for (let i = 0; i < 8; i++) {
      const at = base + i * 60_000;
      const record = { tenant: 'umbrella', trace_id: `tie-${i}`, tool: 'users.Users.Get', allowed: true, duration: 40 * MS, agent: 'planner' };
      if (i % 2 === 1) {
        audits.push(row({ ...record, timestamp: iso(at) }));
        expected.push(audits.at(-1)!);
        continue;
      }
      spans.push(row({ ...record, timestamp: iso(at), otel_trace_id: `${i}`.repeat(32), otel_span_id: `${i + 1}`.repeat(16) }, 'span'));
      audits.push(row({ ...record, timestamp: iso(at + 40) }));
      expected.push(spans.at(-1)!);
    }
    const writer = createClickHouseWriter(clickhouse);
    await writer.writeAudit(spans);
    await writer.writeAudit(audits);
    const ids = expected.sort(newestFirst).map((r) => r.event_id);
    for (let first = 1; first <= ids.length + 1; first++) assert.deepEqual(await allPages({}, first, 'umbrella'), ids, `${first} a page`);
  });

  test('a call reported by its audit record and then by its span is listed once, merged, at the span\'s (earlier) time', async () => {
    for (const first of [1, 2, 500]) assert.deepEqual(await allPages({ traceId: 'audit-first-trace' }, first), [LATER_AUDIT.event_id]);
    const { auditLog } = await data(AUDIT_LOG, { filter: { traceId: 'audit-first-trace' } });
    const node = auditLog.edges[0].node;
    assert.deepEqual(
      [node.agent, node.accountId, node.timestamp, node.outcome, node.deniedReason, node.source],
      ['coder', 'bob', iso(LATER_MS), 'DENIED', 'missing scope users:write', 'AUDIT'],
    );
    // The unfiltered log, a page at a time across the call: once.
    const ids = await allPages({ to: iso(LATER_MS + 3_600_000), from: iso(LATER_MS - 3_600_000) }, 1);
    assert.equal(ids.filter((id) => id === LATER_AUDIT.event_id).length, 1);
    assert.deepEqual(await allPages({ outcome: 'DENIED', account: 'bob', session: 'session-audit-first' }, 10), [LATER_AUDIT.event_id]);
  });

  test('statements: a page by time is one read, which sees the marker of a replaced row; filtered on another column, the read and a look-up', async () => {
    const { client: counted, sent } = recordingClient(clickhouse);
    // An hour around the call reported audit record first: its first row is there, hidden by its marker.
    const range = { from: iso(LATER_MS - 1_800_000), to: iso(LATER_MS + 1_800_000) };
    const byTime = await queryAuditLog('acme', counted, parseAuditLogFilter(range), 500, undefined);
    assert.equal(sent.length, 1, sent.join('\n---\n'));
    assert.equal(byTime.items.filter((i) => i.node.eventId === LATER_AUDIT.event_id).length, 1);
    sent.length = 0;
    const byAgent = await queryAuditLog('acme', counted, parseAuditLogFilter({ ...range, agent: 'coder' }), 500, undefined);
    assert.equal(sent.length, 2, sent.join('\n---\n'));
    assert.deepEqual(byAgent.items.filter((i) => i.node.eventId === LATER_AUDIT.event_id).map((i) => i.node.timestamp), [iso(LATER_MS)]);
  });

  test('where calls are reported twice, a page reads again while short, and the next page of that tenant asks for enough rows at once', async () => {
    // Twelve calls of tenant wayne, each reported audit record first: three rows each (the merged row,
    // and at the record's key the marker and the record).
    const at = (i: number) => START_MS + 9 * 3600_000 + i * 1000;
    const call = (i: number) => ({ tenant: 'wayne', trace_id: `wayne-${i}`, tool: 'users.Users.Get', allowed: true, duration: 40 * MS, agent: 'planner' });
    const audits = Array.from({ length: 12 }, (_, i) => row({ ...call(i), timestamp: iso(at(i) + 40) }));
    const spans = Array.from({ length: 12 }, (_, i) => row({ ...call(i), timestamp: iso(at(i)), otel_trace_id: 'a'.repeat(31) + (i % 10), otel_span_id: `${i}`.padStart(16, '0') }, 'span'));
    const writer = createClickHouseWriter(clickhouse);
    await writer.writeAudit(audits);
    await writer.writeAudit(spans);
    const { client: counted, sent } = recordingClient(clickhouse);
    const range = parseAuditLogFilter({ from: iso(at(0) - 60_000), to: iso(at(11) + 60_000) });
    const page = () => queryAuditLog('wayne', counted, range, 5, undefined);
    const expected = audits.slice(7).reverse().map((r) => r.event_id);
    const once = await page();
    assert.deepEqual(once.items.map((i) => i.node.eventId), expected);
    assert.ok(sent.length >= 2, `the first page read again: ${sent.length}`);
    sent.length = 0;
    const again = await page();
    assert.deepEqual(again.items.map((i) => i.node.eventId), expected);
    assert.equal(sent.length, 1);
  });

  test("a record in the last hour before a page's end, replaced by its merged row stamped before that hour: the merged row, once", async () => {
    const toMs = FAR_MS + 60_000;
    const expected = acmeShown()
      .filter((r) => nanosOf(r) < BigInt(toMs) * 1_000_000n)
      .sort(newestFirst)
      .map((r) => r.event_id);
    const listed = await allPages({ to: iso(toMs) }, 2);
    assert.deepEqual(listed, expected);
    assert.equal(listed.filter((id) => id === FAR_AUDIT.event_id).length, 1);
    const { auditEvent } = await data('query ($id: ID!) { auditEvent(id: $id) { timestamp gateway } }', { id: FAR_AUDIT.event_id });
    assert.deepEqual(auditEvent, { timestamp: iso(FAR_MS - 90 * 60_000), gateway: 'gw-span' });
  });

  test('pages whose records lie partly in the hour before their end and partly before it (read in two parts): the newest, in order, each once', async () => {
    const shownRows = acmeShown().sort(newestFirst);
    const to = shownRows[100]!;
    const toIso = `${to.timestamp.replace(' ', 'T')}Z`;
    const before = shownRows.filter((r) => nanosOf(r) < nanosOf(to));
    const inLastHour = before.filter((r) => nanosOf(r) >= nanosOf(to) - 3_600_000_000_000n).length;
    assert.ok(inLastHour > 3 && inLastHour < 40, `${inLastHour} records in the last hour`);
    const { auditLog } = await data(AUDIT_LOG, { filter: { to: toIso }, first: 40 });
    assert.deepEqual(auditLog.edges.map((e: any) => e.node.eventId), before.slice(0, 40).map((r) => r.event_id));
    assert.deepEqual(await allPages({ to: toIso }, 3), before.map((r) => r.event_id));
  });

  test("tenant B's records are never listed for tenant A", async () => {
    const acme = new Set(await allPages({}, 500));
    const globex = await allPages({}, 500, 'globex');
    assert.deepEqual(globex, [...GLOBEX].sort(newestFirst).map((r) => r.event_id));
    for (const id of globex) assert.ok(!acme.has(id));
    assert.deepEqual(await allPages({ session: 'session-1' }, 500, 'globex'), GLOBEX.filter((r) => r.session_id === 'session-1').sort(newestFirst).map((r) => r.event_id));
    // A cursor of acme's list reads globex's own records when globex sends it.
    const { auditLog } = await data(AUDIT_LOG, { first: 1 });
    const page = await data(AUDIT_LOG, { first: 500, after: auditLog.pageInfo.endCursor }, 'globex');
    for (const e of page.auditLog.edges) assert.ok(!acme.has(e.node.eventId));
  });
});

// ---- auditEvent, trace, session ----------------------------------------------------------------------

describe('auditEvent', () => {
  const query = `query ($id: ID!) { auditEvent(id: $id) { eventId agent tool timestamp source costUsd { amount } } }`;

  test('by its event id; the audit record of a call reported twice', async () => {
    const r = ACME[5]!;
    assert.deepEqual((await data(query, { id: r.event_id.toUpperCase() })).auditEvent, {
      eventId: r.event_id,
      agent: r.agent,
      tool: r.tool,
      timestamp: `${r.timestamp.replace(' ', 'T')}Z`,
      source: 'AUDIT',
      costUsd: r.cost_usd === null ? null : { amount: r.cost_usd.toFixed(6) },
    });
    const twice = (await data(query, { id: TWICE_SPAN.event_id })).auditEvent;
    assert.deepEqual([twice.agent, twice.timestamp, twice.costUsd], ['planner', iso(TWICE_MS), { amount: '0.250000' }]);
    // Reported audit record first: the merged row, stamped at the span's start (before the id's millisecond).
    const later = (await data(query, { id: LATER_AUDIT.event_id })).auditEvent;
    assert.deepEqual([later.agent, later.timestamp, later.source], ['coder', iso(LATER_MS), 'AUDIT']);
  });

  test("null for another tenant's event", async () => {
    assert.equal((await data(query, { id: GLOBEX[0]!.event_id })).auditEvent, null);
    assert.equal((await data(query, { id: GLOBEX[0]!.event_id }, 'globex')).auditEvent.eventId, GLOBEX[0]!.event_id);
  });
});

describe('trace', () => {
  const query = `query ($id: String!) {
    trace(id: $id) { id otelTraceIds truncated calls { eventId agent } spans { spanId parentSpanId depth name } }
  }`;

  test("by the gateway's trace id: its calls in time order", async () => {
    const expected = ACME.filter((r) => r.trace_id === 'shared-trace-7').sort((a, b) => -newestFirst(a, b));
    const { trace } = await data(query, { id: 'shared-trace-7' });
    assert.deepEqual(trace.calls.map((c: any) => c.eventId), expected.map((r) => r.event_id));
    assert.deepEqual(trace.otelTraceIds, [...new Set(expected.filter((r) => r.otel_trace_id).map((r) => r.otel_trace_id))]);
    assert.equal(trace.truncated, false);
  });

  test('by an OpenTelemetry trace id (any case): its calls', async () => {
    const expected = ACME.filter((r) => r.otel_trace_id === OTEL_A).sort((a, b) => -newestFirst(a, b));
    const { trace } = await data(query, { id: OTEL_A.toUpperCase() });
    assert.deepEqual(trace.calls.map((c: any) => c.eventId), expected.map((r) => r.event_id));
  });

  test('a call reported twice: once, as the audit record, with the span tree of its OpenTelemetry trace', async () => {
    for (const id of ['twice-trace', 'c'.repeat(32)]) {
      const { trace } = await data(query, { id });
      assert.deepEqual(trace.calls, [{ eventId: TWICE_SPAN.event_id, agent: 'planner' }], id);
      assert.deepEqual(trace.otelTraceIds, ['c'.repeat(32)]);
      assert.deepEqual(
        trace.spans.map((s: any) => [s.spanId, s.parentSpanId, s.depth, s.name]),
        [
          ['e000000000000001', null, 0, 'agent.run'],
          ['e000000000000002', 'e000000000000001', 1, 'mcp.tool.call'],
          ['e000000000000003', 'e000000000000002', 2, 'db.query'],
          ['e000000000000004', 'e000000000000001', 1, 'llm.call'],
        ],
        id,
      );
    }
  });

  test("tenant B's calls and spans are not in tenant A's trace", async () => {
    const globex = (await data(query, { id: 'shared-trace-7' }, 'globex')).trace;
    assert.deepEqual(globex.calls.map((c: any) => c.eventId), GLOBEX.filter((r) => r.trace_id === 'shared-trace-7').sort((a, b) => -newestFirst(a, b)).map((r) => r.event_id));
    assert.equal((await data(query, { id: 'c'.repeat(32) }, 'globex')).trace, null);
    assert.equal((await data(query, { id: 'globex-trace-1' })).trace, null);
  });
});

describe('session', () => {
  const query = `query ($id: String!, $first: Int, $after: String) {
    session(id: $id, first: $first, after: $after) { edges { node { eventId sessionId } } pageInfo { hasNextPage endCursor } }
  }`;

  async function sessionIds(id: string, first: number, tenant = 'acme') {
    const ids: string[] = [];
    let after: string | undefined;
    for (;;) {
      const { session } = await data(query, { id, first, after }, tenant);
      ids.push(...session.edges.map((e: any) => e.node.eventId));
      if (!session.pageInfo.hasNextPage) return ids;
      after = session.pageInfo.endCursor;
    }
  }

  test('the calls of one session, oldest first, page by page', async () => {
    const expected = acmeShown().filter((r) => r.session_id === 'session-2').sort((a, b) => -newestFirst(a, b)).map((r) => r.event_id);
    assert.ok(expected.length > 20);
    assert.deepEqual(await sessionIds('session-2', 500), expected);
    assert.deepEqual(await sessionIds('session-2', 7), expected);
  });

  test('a call reported twice is in its session once', async () => {
    assert.deepEqual(await sessionIds('session-twice', 10), [TWICE_SPAN.event_id]);
    assert.deepEqual(await sessionIds('session-audit-first', 1), [LATER_AUDIT.event_id]);
  });

  test("only the caller's tenant", async () => {
    const expected = GLOBEX.filter((r) => r.session_id === 'session-2').sort((a, b) => -newestFirst(a, b)).map((r) => r.event_id);
    assert.deepEqual(await sessionIds('session-2', 500, 'globex'), expected);
    assert.deepEqual(await sessionIds('session-twice', 10, 'globex'), []);
  });
});

describe('the marker of a replaced row (sql/0024)', () => {
  // A call's audit record (session hooli-a), then its merged row under the same event_id, stamped 40 ms
  // earlier and in another session: rows a merge could leave (the writer takes the record's session,
  // so here they are inserted as they are). The marker sits at the audit record's key.
  const AT = START_MS + 2 * 3600_000;
  const first = row({ tenant: 'hooli', trace_id: 'hooli-call', timestamp: iso(AT + 40), tool: 'users.Users.Get', allowed: true, agent: 'coder', session_id: 'hooli-a' });
  const merged: AuditRow = {
    ...row({ tenant: 'hooli', trace_id: 'hooli-call', timestamp: iso(AT), tool: 'users.Users.Get', allowed: true, agent: 'coder', session_id: 'hooli-b' }),
    event_id: first.event_id,
    counted: 0,
    replaces_at: first.timestamp,
  };
  before(async () => {
    await insert([first]);
    await insert([merged]);
  });

  test('is stored at the key of the row it hides', async () => {
    const rows = await (
      await clickhouse.query({ query: "SELECT timestamp, toString(event_id) AS id, counted FROM audit_timeline_v1 WHERE tenant = 'hooli' AND source = 'replaced'", format: 'JSONEachRow' })
    ).json();
    assert.deepEqual(rows, [{ timestamp: first.timestamp, id: first.event_id, counted: false }]);
  });

  test('and is never shown: not in the log, nor as the event, nor in a session', async () => {
    assert.deepEqual(await allPages({}, 1, 'hooli'), [first.event_id]);
    const { auditLog } = await data(AUDIT_LOG, {}, 'hooli');
    assert.deepEqual(auditLog.edges.map((e: any) => [e.node.timestamp, e.node.agent]), [[iso(AT), 'coder']]);
    const { auditEvent } = await data('query ($id: ID!) { auditEvent(id: $id) { timestamp agent sessionId } }', { id: first.event_id }, 'hooli');
    assert.deepEqual(auditEvent, { timestamp: iso(AT), agent: 'coder', sessionId: 'hooli-b' });
    // Session hooli-a holds the audit record's key only (the merge went to hooli-b), where the marker is:
    // whatever it lists there, not the marker (no agent, no tool).
    const session = async (id: string) =>
      (await data('query ($id: String!) { session(id: $id) { edges { node { timestamp agent tool } } } }', { id }, 'hooli')).session.edges.map((e: any) => e.node);
    for (const node of await session('hooli-a')) assert.deepEqual([node.agent, node.tool], ['coder', 'users.Users.Get']);
    assert.deepEqual(await session('hooli-b'), [{ timestamp: iso(AT), agent: 'coder', tool: 'users.Users.Get' }]);
  });
});

// ---- bad arguments -----------------------------------------------------------------------------------

describe('bad arguments are BAD_USER_INPUT naming the argument', () => {
  let cursor = '';
  let sessionCursor = '';
  before(async () => {
    cursor = (await data(AUDIT_LOG, { first: 2 })).auditLog.pageInfo.endCursor;
    sessionCursor = (await data(`{ session(id: "session-1", first: 1) { pageInfo { endCursor } } }`)).session.pageInfo.endCursor;
  });

  const tamper = (c: string) => {
    const text = Buffer.from(c, 'base64url').toString();
    return Buffer.from(text.replace(/\d(?=\.\d{9}\|)/, (d) => String((Number(d) + 1) % 10))).toString('base64url');
  };

  const cases: Array<[string, () => [string, Record<string, unknown>], RegExp]> = [
    ['first 0', () => ['{ auditLog(first: 0) { edges { cursor } } }', {}], /^first must be a whole number from 1 to 500, got 0$/],
    ['first 501', () => ['{ auditLog(first: 501) { edges { cursor } } }', {}], /^first must be a whole number from 1 to 500, got 501$/],
    ['session first 0', () => ['{ session(id: "s", first: 0) { edges { cursor } } }', {}], /^first must be/],
    ['a cursor that is not one', () => ['query ($a: String) { auditLog(after: $a) { edges { cursor } } }', { a: 'not a cursor!' }], /^after is not a cursor of this list/],
    ['a tampered cursor', () => ['query ($a: String) { auditLog(after: $a) { edges { cursor } } }', { a: tamper(cursor) }], /^after is not a cursor of this list/],
    ["another list's cursor", () => ['query ($a: String) { auditLog(after: $a) { edges { cursor } } }', { a: sessionCursor }], /^after is not a cursor of this list/],
    ['a bad event id', () => ['{ auditEvent(id: "123") { eventId } }', {}], /^id must be an event id \(a UUID\), got "123"$/],
    ['an empty trace id', () => ['{ trace(id: "") { id } }', {}], /^id must be 1 to 128 characters, got 0$/],
    ['a trace id too long', () => [`{ trace(id: "${'x'.repeat(129)}") { id } }`, {}], /^id must be 1 to 128 characters, got 129$/],
    ['an empty session id', () => ['{ session(id: "") { edges { cursor } } }', {}], /^id must be 1 to 128 characters/],
    ['from not a date', () => ['{ auditLog(filter: { from: "yesterday" }) { edges { cursor } } }', {}], /^filter\.from must be an ISO-8601 date-time/],
    ['to after 2262', () => ['{ auditLog(filter: { to: "2300-01-01T00:00:00Z" }) { edges { cursor } } }', {}], /^filter\.to must be between 1970/],
    ['from before 1970', () => ['{ auditLog(filter: { from: "1969-12-31T23:59:59Z" }) { edges { cursor } } }', {}], /^filter\.from must be between 1970/],
    ['from after to', () => ['{ auditLog(filter: { from: "2026-11-24T11:00:00Z", to: "2026-11-24T10:00:00Z" }) { edges { cursor } } }', {}], /^filter\.from .* must be before filter\.to/],
    ['empty text', () => ['{ auditLog(filter: { text: "" }) { edges { cursor } } }', {}], /^filter\.text must not be empty/],
  ];
  for (const [name, make, message] of cases) {
    test(name, async () => {
      const [query, variables] = make();
      const result = await gql(query, variables);
      assert.equal(result.errors?.length, 1, JSON.stringify(result));
      assert.match(result.errors![0]!.message, message);
      assert.equal(result.errors![0]!.extensions?.code, 'BAD_USER_INPUT');
    });
  }
});
