/**
 * A call reported twice (its span, then its audit record, or the other way round) is one call in every
 * aggregate, also where an answer reads raw rows (a range's partial hours) and also after ClickHouse has
 * merged the two rows of the call into the second report (ReplacingMergeTree on (tenant, event_id),
 * sql/0005). The raw rows include the marker of the first row the audit-first call's merge replaced
 * (sql/0024), which is no call.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { createApi } from '../../api/app.ts';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { createClickHouseWriter } from '../../ingest/clickhouse-writer.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput } from '../../model/audit-event.ts';
import { formatRfc3339 } from '../../model/timestamp.ts';

const MS = 1_000_000;
/** Twenty minutes ago: inside the current or the previous hour, so a range around it reads raw rows. */
const AT = Date.now() - 20 * 60_000;
const iso = (ms: number) => formatRfc3339({ epochMs: ms, subMsNanos: 0 });
const RANGE = { from: iso(AT - 5 * 60_000), to: iso(AT + 5 * 60_000) };
/** A minute around the calls: its raw rows are read in one pass, not by set lookups (rollup-plan.ts). */
const NARROW = { from: iso(AT - 30_000), to: iso(AT + 30_000) };

function row(input: AuditRecordInput, source: 'audit' | 'span') {
  const normalized = normalizeAuditRecord(input);
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return toAuditRow(normalized.value, source);
}

const call = { tenant: 'acme', tool: 'billing.Invoices.List', allowed: true, duration: 40 * MS } as const;
const SPAN = row({ ...call, trace_id: 'twice', timestamp: iso(AT), agent: 'planner', session_id: 's-1', otel_trace_id: 'c'.repeat(32), otel_span_id: 'd'.repeat(16) }, 'span');
const AUDIT = row({ ...call, trace_id: 'twice', timestamp: iso(AT + 40), agent: 'planner', account_id: 'alice', session_id: 's-1' }, 'audit');
// Reported audit record first: the merged row is stamped at the span's start, 40 ms before the first row.
const AUDIT_FIRST = row({ ...call, trace_id: 'audit-first', timestamp: iso(AT + 2040), agent: 'coder', account_id: 'carol' }, 'audit');
const SPAN_AFTER = row({ ...call, trace_id: 'audit-first', timestamp: iso(AT + 2000), agent: 'coder', otel_trace_id: 'e'.repeat(32), otel_span_id: 'f'.repeat(16) }, 'span');
const ONCE = row({ ...call, trace_id: 'once', timestamp: iso(AT + 1000), agent: 'planner', account_id: 'bob', error: 'upstream timeout' }, 'audit');

const KEYS: KeyStore = { size: 1, lookup: (secret) => (secret === 'acme' ? { tenant: 'acme', role: 'viewer', name: 'test' } : undefined) };
const dataDir = mkdtempSync(path.join(tmpdir(), 'analytics-merged-'));
let clickhouse: ClickHouseClient;
let server: Server;
let url: string;

before(async () => {
  clickhouse = await openClickHouse({ database: 'merged_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  const writer = createClickHouseWriter(clickhouse);
  await writer.writeAudit([SPAN]);
  await writer.writeAudit([AUDIT]);
  await writer.writeAudit([ONCE]);
  await writer.writeAudit([AUDIT_FIRST]);
  await writer.writeAudit([SPAN_AFTER]);
  server = createServer(createApi({ clickhouse, logger: pino({ level: 'silent' }), keys: KEYS }).handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
});

after(async () => {
  server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function answers(range = RANGE) {
  const query = `query ($from: String, $to: String) {
    overview(from: $from, to: $to) { calls errors }
    agentActivity(from: $from, to: $to) { agent calls errors accounts }
  }`;
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer acme' },
    body: JSON.stringify({ query, variables: range }),
  });
  const body = (await response.json()) as { data?: unknown; errors?: unknown };
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

const EXPECTED = {
  overview: { calls: 3, errors: 1 },
  // alice (the merged call's account, from its audit record) and bob; carol, the audit-first call's.
  agentActivity: [
    { agent: 'planner', calls: 2, errors: 1, accounts: 2 },
    { agent: 'coder', calls: 1, errors: 0, accounts: 1 },
  ],
};

test('three calls, two of them reported twice: counted once before the rows are merged', async () => {
  const rows = await (await clickhouse.query({ query: "SELECT count() AS n FROM audit_events_v1 WHERE tenant = 'acme'", format: 'JSONEachRow' })).json<{ n: string }>();
  assert.equal(Number(rows[0]!.n), 5, 'each call reported twice has two rows before a merge');
  assert.deepEqual(await answers(), EXPECTED);
  assert.deepEqual(await answers(NARROW), EXPECTED);
});

test('and after ClickHouse merged them into the second report', async () => {
  await clickhouse.command({ query: 'OPTIMIZE TABLE audit_events_v1 FINAL' });
  const rows = await (await clickhouse.query({ query: "SELECT count() AS n FROM audit_events_v1 WHERE tenant = 'acme'", format: 'JSONEachRow' })).json<{ n: string }>();
  assert.equal(Number(rows[0]!.n), 3, 'one row per call after the merge');
  assert.deepEqual(await answers(), EXPECTED);
  assert.deepEqual(await answers(NARROW), EXPECTED);
});
