/**
 * The call-loop detector's raw counts: a call reported both ways in two batches (either order) is one
 * call of its session, before and after ClickHouse merges its two rows into the second report.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { querySessionBursts, queryUsualSessionCounts } from '../../alerts/session-loops.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { createClickHouseWriter } from '../../ingest/clickhouse-writer.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput } from '../../model/audit-event.ts';
import { formatRfc3339 } from '../../model/timestamp.ts';

/** The detector's pass, at a whole minute; the calls lie in the 10 minutes before it. */
const AT_S = Math.floor(Date.now() / 60_000) * 60;
const WINDOW_MIN = 10;

function row(input: AuditRecordInput, source: 'audit' | 'span') {
  const normalized = normalizeAuditRecord(input);
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return toAuditRow(normalized.value, source);
}

/** Call i of session `session`: its span (at its start) and its audit record (30 ms later). */
function reports(session: string, i: number) {
  const at = (AT_S - 9 * 60) * 1000 + i * 1000;
  const call = { tenant: 'acme', trace_id: `${session}-${i}`, tool: 'repo.Files.Read', allowed: true, duration: 30_000_000, agent: 'looper', session_id: session };
  return {
    span: row({ ...call, timestamp: formatRfc3339({ epochMs: at, subMsNanos: 0 }), otel_trace_id: 'c'.repeat(32), otel_span_id: i.toString(16).padStart(16, '0') }, 'span'),
    audit: row({ ...call, timestamp: formatRfc3339({ epochMs: at + 30, subMsNanos: 0 }), account_id: 'alice' }, 'audit'),
  };
}

const dataDir = mkdtempSync(path.join(tmpdir(), 'session-loops-'));
let clickhouse: ClickHouseClient;

before(async () => {
  clickhouse = await openClickHouse({ database: 'session_loops_test', dataDir });
  await migrate(clickhouse, { retentionDays: 3650 });
  const writer = createClickHouseWriter(clickhouse);
  const spanFirst = Array.from({ length: 30 }, (_, i) => reports('s-span-first', i));
  const auditFirst = Array.from({ length: 20 }, (_, i) => reports('s-audit-first', i));
  await writer.writeAudit([...spanFirst.map((r) => r.span), ...auditFirst.map((r) => r.audit)]);
  await writer.writeAudit([...spanFirst.map((r) => r.audit), ...auditFirst.map((r) => r.span)]);
});

after(async () => {
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function storedRows(): Promise<number> {
  const result = await clickhouse.query({ query: "SELECT count() AS n FROM audit_events_v1 WHERE tenant = 'acme'", format: 'JSONEachRow' });
  const [row] = await result.json<{ n: number | string }>();
  return Number(row!.n);
}

async function bursts() {
  const found = await querySessionBursts(clickhouse, 'acme', AT_S, WINDOW_MIN, 1);
  return found.map((b) => [b.session, b.calls]).sort();
}

test('each call once, in either order, before and after the merge of its two rows', async () => {
  const expected = [['s-audit-first', 20], ['s-span-first', 30]];
  assert.equal(await storedRows(), 100, 'two rows a call before the merge');
  assert.deepEqual(await bursts(), expected);
  await clickhouse.command({ query: 'OPTIMIZE TABLE audit_events_v1 FINAL' });
  assert.equal(await storedRows(), 50, 'one row a call after it');
  assert.deepEqual(await bursts(), expected);
});

test('the usual per-session counts count each call once', async () => {
  // A pass 10 windows later: the calls lie in its baseline.
  const usual = await queryUsualSessionCounts(clickhouse, 'acme', AT_S + 100 * 60, WINDOW_MIN, [['looper', 'repo.Files.Read']]);
  const samples = usual.get('looper\u0000repo.Files.Read') ?? [];
  assert.equal(samples.reduce((a, b) => a + b, 0), 50);
});
