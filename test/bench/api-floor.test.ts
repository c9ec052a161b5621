/**
 * The API bench's engine floor (bench/api.bench.ts, FLOOR): its statements run on the product's own
 * tables and read what trace(id) reads, the calls under a gateway trace id and the spans of their
 * OpenTelemetry trace, and nothing of another tenant; and what the audit log's first page reads.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FLOOR, type Context } from '../../bench/api.bench.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';

const dataDir = mkdtempSync(path.join(tmpdir(), 'api-floor-'));
let clickhouse: ClickHouseClient;

const SAMPLE = { eventId: '019ad7a0-0000-7000-8000-000000000001', traceId: 'b9242a29-240b-443e-8c58-921d07526099', otelTraceId: '15c98d54f92ff5cacc75489712686fb9', sessionId: 'sess-1' };
const PAGE_IDS = ['019ad7a0-0000-7000-8000-0000000000a1', '019ad7a0-0000-7000-8000-0000000000a2', '019ad7a0-0000-7000-8000-0000000000a3', '019ad7a0-0000-7000-8000-0000000000a4'];
const CTX: Context = { end: Date.parse('2026-12-01T00:00:00Z'), samples: [SAMPLE] };

before(async () => {
  clickhouse = await openClickHouse({ database: 'api_floor_test', dataDir });
  await migrate(clickhouse, { retentionDays: 3650 });
  // The bench's tenant (acme) and another with the same ids: the floor reads acme's only.
  for (const [tenant, spans] of [['acme', ['a1', 'a2']], ['other', ['o1']]] as const) {
    await clickhouse.command({
      query: `INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, tool, service, allowed, otel_trace_id, source)
              VALUES (generateUUIDv4(), {tenant:String}, '2026-11-30 12:00:00', {trace:String}, 'users.Users.Get', 'users', true, {otel:String}, 'audit')`,
      query_params: { tenant, trace: SAMPLE.traceId, otel: SAMPLE.otelTraceId },
    });
    // In the hour before the bench's end: three calls, one of them reported twice (its first row, then
    // the merge of both under its id, stamped at the call's start and not counted: sql/0005, with the
    // first row's time, where a marker hides it: sql/0024), and one call older than the hour. The call
    // reported twice is another in each tenant.
    const twice = tenant === 'acme' ? PAGE_IDS[0] : PAGE_IDS[1];
    for (const [id, at, counted] of [
      [PAGE_IDS[0], '2026-11-30 23:50:00', true],
      [PAGE_IDS[1], '2026-11-30 23:40:00', true],
      [twice, tenant === 'acme' ? '2026-11-30 23:49:59' : '2026-11-30 23:39:59', false],
      [PAGE_IDS[2], '2026-11-30 23:30:00', true],
      [PAGE_IDS[3], '2026-11-30 22:30:00', true],
    ] as const) {
      await clickhouse.command({
        query: `INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, tool, service, allowed, source, counted, replaces_at)
                VALUES ({id:UUID}, {tenant:String}, {at:String}, 'page', 'users.Users.Get', 'users', true, 'span', {counted:Bool}, {replaces:String})`,
        query_params: { id, tenant, at, counted, replaces: counted ? at : tenant === 'acme' ? '2026-11-30 23:50:00' : '2026-11-30 23:40:00' },
      });
    }
    for (const span of spans) {
      await clickhouse.command({
        query: `INSERT INTO spans_v1 (tenant, trace_id, span_id, name, start_time) VALUES ({tenant:String}, {otel:String}, {span:String}, 'mcp.tool.call', '2026-11-30 12:00:00')`,
        query_params: { tenant, otel: SAMPLE.otelTraceId, span },
      });
    }
  }
});

after(async () => {
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('each floor request runs, and its last statement reads what trace(id) would: the tenant’s calls and their spans', async () => {
  const [one, calls, both, union] = FLOOR;
  assert.deepEqual(FLOOR.slice(0, 4).map((f) => f.statements), [1, 1, 2, 1]);
  assert.equal((await one!.run(clickhouse, CTX, 0) as unknown[]).length, 1);
  // The call under its gateway trace id and under its OpenTelemetry trace id is one row per kind; only
  // the gateway id is asked for.
  const callRows = (await calls!.run(clickhouse, CTX, 0)) as Array<{ id: string; kind: string }>;
  assert.deepEqual(callRows.map((r) => [r.id, r.kind]), [[SAMPLE.traceId, 'trace']]);
  const spanRows = (await both!.run(clickhouse, CTX, 0)) as Array<{ span_id: string }>;
  assert.deepEqual(spanRows.map((r) => r.span_id).sort(), ['a1', 'a2']);
  // By the OpenTelemetry id, one statement: the call under that id and the spans.
  const unionRows = (await union!.run(clickhouse, CTX, 0)) as Array<{ what: string; key: string; sub: string }>;
  assert.deepEqual(unionRows.map((r) => [r.what, r.key, r.sub]).sort(), [['call', SAMPLE.otelTraceId, 'otel_trace'], ['span', SAMPLE.otelTraceId, 'a1'], ['span', SAMPLE.otelTraceId, 'a2']]);
});

test('the page floor reads the first page as auditLog does: the tenant’s newest rows of the last hour, with the marker of a replaced row', async () => {
  const [page] = FLOOR.slice(4);
  assert.deepEqual([FLOOR.length, page!.statements], [5, 1]);
  const rows = (await page!.run(clickhouse, CTX, 0)) as Array<{ event_id: string; counted: boolean; source: string }>;
  // acme's rows only (the other tenant has the same ids), newest first, nothing from before the hour;
  // the first row of the call reported twice after the marker that hides it (sql/0024).
  assert.deepEqual(rows.map((r) => [r.event_id, r.counted, r.source]), [
    [PAGE_IDS[0], false, 'replaced'],
    [PAGE_IDS[0], true, 'span'],
    [PAGE_IDS[0], false, 'span'],
    [PAGE_IDS[1], true, 'span'],
    [PAGE_IDS[2], true, 'span'],
  ]);
});
