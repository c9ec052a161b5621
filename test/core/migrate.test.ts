import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate, readMigrations, renderMigration, splitStatements } from '../../core/migrate.ts';

async function schema(client: ClickHouseClient) {
  const rs = await client.query({
    query: `SELECT name, engine, create_table_query FROM system.tables
            WHERE database = currentDatabase() ORDER BY name`,
    format: 'JSONEachRow',
  });
  return rs.json<{ name: string; engine: string; create_table_query: string }>();
}

describe('migrations on the embedded engine', () => {
  let client: ClickHouseClient;
  before(async () => {
    client = await openClickHouse({ database: 'migrate_test', dataDir: mkdtempSync(path.join(os.tmpdir(), 'mig-')) });
  });
  after(() => client.close());

  /**
   * Runs `body` in a database of its own migrated up to migration `version` (not included); `apply`
   * adds the named migration files and migrates, answering which were applied.
   */
  async function migratedBefore(version: string, database: string, body: (apply: (...files: string[]) => Promise<string[]>) => Promise<void>) {
    const { cpSync, readdirSync } = await import('node:fs');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sql-'));
    const sqlDir = path.join(import.meta.dirname, '../../sql');
    for (const file of readdirSync(sqlDir).filter((f) => f < version)) cpSync(path.join(sqlDir, file), path.join(dir, file));
    await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}` });
    await client.command({ query: `USE ${database}` });
    try {
      await migrate(client, { retentionDays: 30, dir });
      await body(async (...files) => {
        for (const file of files) cpSync(path.join(sqlDir, file), path.join(dir, file));
        return (await migrate(client, { retentionDays: 30, dir })).applied;
      });
    } finally {
      await client.command({ query: 'USE migrate_test' });
    }
  }

  /** The rows `query` answers, as JSON objects. */
  const rows = async (query: string) => (await client.query({ query, format: 'JSONEachRow' })).json();

  it('applies every migration once; running them again changes nothing', async () => {
    const all = (await readMigrations()).map((m) => `${String(m.version).padStart(4, '0')}-${m.name}`);
    const first = await migrate(client, { retentionDays: 30 });
    assert.deepEqual(first, { applied: all, skipped: [] });
    const before = await schema(client);
    assert.deepEqual(
      before.map((t) => t.name),
      [
        'alert_history_v1', 'alert_settings_v1', 'alert_silences_v1', 'alerts_v1',
        'audit_events_v1', 'audit_lookup_mv_v1', 'audit_lookup_v1', 'audit_timeline_mv_v1', 'audit_timeline_replaced_mv_v1', 'audit_timeline_v1',
        'budget_events_v1', 'budgets_v1', 'call_reports_mv_v2', 'call_reports_v2', 'call_writes_mv_v1', 'call_writes_v1',
        'calls_1d_mv_v1', 'calls_1d_v1', 'calls_1h_mv_v1', 'calls_1h_v1', 'calls_1w_mv_v1', 'calls_1w_v1', 'calls_6h_mv_v1',
        'calls_6h_v1', 'calls_by_account_mv_v1', 'calls_by_account_v1', 'calls_by_id_mv_v1', 'calls_by_id_v1', 'closed_buckets_v1', 'closed_periods_v1',
        'cost_calls_1d_mv_v1', 'cost_calls_1d_v1', 'cost_calls_1w_mv_v1', 'cost_calls_1w_v1',
        'cost_calls_agentless_1d_mv_v1', 'cost_calls_agentless_1d_v1', 'cost_calls_agentless_1w_mv_v1', 'cost_calls_agentless_1w_v1', 'dead_letters_v1', 'denied_calls_mv_v1',
        'denied_calls_v1', 'price_book_v1', 'schema_migrations', 'spans_v1', 'tool_calls_1m_mv_v1', 'tool_calls_1m_v1',
        'trace_spans_mv_v1', 'trace_spans_v1',
      ],
    );

    // The tables read by key merge a month idle for an hour into one part (sql/0023).
    for (const name of ['calls_by_id_v1', 'trace_spans_v1', 'audit_lookup_v1', 'audit_timeline_v1']) {
      const ddl = before.find((t) => t.name === name)!.create_table_query;
      assert.match(ddl, /min_age_to_force_merge_seconds = 3600/, name);
      assert.match(ddl, /min_age_to_force_merge_on_partition_only = 1/, name);
    }

    const second = await migrate(client, { retentionDays: 30 });
    assert.deepEqual(second, { applied: [], skipped: all });
    assert.deepEqual(await schema(client), before);
    const count = await (await client.query({ query: 'SELECT count() AS n FROM schema_migrations', format: 'JSONEachRow' })).json<{ n: number }>();
    assert.equal(Number(count[0]!.n), all.length);
  });

  it('brings table TTLs to a changed retention setting', async () => {
    await migrate(client, { retentionDays: 7 });
    const tables = await schema(client);
    const audit = tables.find((t) => t.name === 'audit_events_v1')!;
    assert.match(audit.create_table_query, /TTL toDateTime\(timestamp\) \+ toIntervalDay\(7\)/);
    const rollup = tables.find((t) => t.name === 'tool_calls_1m_v1')!;
    assert.match(rollup.create_table_query, /TTL minute \+ toIntervalDay\(28\)/);
    for (const name of ['calls_1h_v1', 'calls_6h_v1', 'calls_1d_v1', 'calls_1w_v1', 'cost_calls_1d_v1', 'cost_calls_1w_v1', 'cost_calls_agentless_1d_v1', 'cost_calls_agentless_1w_v1']) {
      assert.match(tables.find((t) => t.name === name)!.create_table_query, /TTL bucket \+ toIntervalDay\(28\)/, name);
    }
    assert.match(tables.find((t) => t.name === 'denied_calls_v1')!.create_table_query, /TTL toDateTime\(timestamp\) \+ toIntervalDay\(28\)/);
    for (const [name, column] of [
      ['call_reports_v2', 'timestamp'],
      ['dead_letters_v1', 'received_at'],
      ['spans_v1', 'start_time'],
      ['audit_timeline_v1', 'timestamp'],
      ['audit_lookup_v1', 'timestamp'],
      ['calls_by_account_v1', 'timestamp'],
      ['calls_by_id_v1', 'timestamp'],
      ['trace_spans_v1', 'start_time'],
    ]) {
      const table = tables.find((t) => t.name === name)!;
      assert.match(table.create_table_query, new RegExp(`TTL toDateTime\\(${column}\\) \\+ toIntervalDay\\(7\\)`), name);
    }
  });

  /** Stores a call's span fact (with a trace id) and an audit record without one, applies `file` and runs `check`. */
  async function withReportsBefore(file: string, check: () => Promise<void>) {
    const version = file.slice(0, 4);
    await migratedBefore(version, `migrate_backfill_${version}`, async (apply) => {
      await client.command({
        query: `INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, tool, source)
                VALUES ('01a20f64-c9e1-74d3-92cf-2e71ca718516', 'acme', '2026-11-24 10:00:00', 't-1', 'users.Users.Get', 'span'),
                       ('01a20f64-c9e1-74d3-92cf-2e71ca718517', 'acme', '2026-11-24 10:00:01', '', 'users.Users.Get', 'audit')`,
      });
      assert.deepEqual(await apply(file), [file.replace(/\.sql$/, '')]);
      await check();
    });
  }
  const spanReport = { tenant: 'acme', trace_id: 't-1', tool: 'users.Users.Get', source: 'span' };

  it('copies the calls already stored into call_reports_v1 when 0006 is applied', async () => {
    await withReportsBefore('0006-call-reports.sql', async () => {
      assert.deepEqual(await rows('SELECT tenant, trace_id, tool, source FROM call_reports_v1'), [spanReport]);
    });
  });

  it('moves the call reports into call_reports_v2, sorted by the hour first, when 0025 is applied', async () => {
    await withReportsBefore('0025-call-reports-by-time.sql', async () => {
      assert.deepEqual(await rows('SELECT tenant, trace_id, tool, source FROM call_reports_v2'), [spanReport]);
      assert.deepEqual(
        await rows("SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE 'call_reports%' ORDER BY name"),
        [{ name: 'call_reports_mv_v2' }, { name: 'call_reports_v2' }],
      );
      // Its view feeds it from now on.
      await client.command({
        query: "INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, tool, source) VALUES ('01a20f64-c9e1-74d3-92cf-2e71ca718518', 'acme', '2026-11-24 11:00:00', 't-2', 'users.Users.Get', 'audit')",
      });
      assert.deepEqual(await rows("SELECT trace_id FROM call_reports_v2 ORDER BY trace_id"), [{ trace_id: 't-1' }, { trace_id: 't-2' }]);
    });
  });

  it('copies the events already stored into audit_timeline_v1 and audit_lookup_v1 when 0010 is applied', async () => {
    await migratedBefore('0010', 'migrate_backfill_0010', async (apply) => {
      // A span fact, then its call's audit record stored under the span's event_id (sql/0005), and a call with no ids.
      // (Two inserts, as the writer makes them: one block would keep only the last row of an event_id.)
      const insert = 'INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, otel_trace_id, session_id, tool, source, counted, report_id) VALUES';
      await client.command({
        query: `${insert} ('01a20f64-c9e1-74d3-92cf-2e71ca718516', 'acme', '2026-11-24 10:00:00', 't-1', '0af7651916cd43dd8448eb211c80319c', 's-1', 'users.Users.Get', 'span', true, '01a20f64-c9e1-74d3-92cf-2e71ca718516'),
                          ('01a20f64-c9e1-74d3-92cf-2e71ca718517', 'acme', '2026-11-24 10:00:01', '', '', '', 'users.Users.Get', 'audit', true, '01a20f64-c9e1-74d3-92cf-2e71ca718517')`,
      });
      await client.command({
        query: `${insert} ('01a20f64-c9e1-74d3-92cf-2e71ca718516', 'acme', '2026-11-24 10:00:02', 't-1', '', '', 'users.Users.Get', 'audit', false, '01a20f64-c9e1-74d3-92cf-2e71ca718599')`,
      });
      assert.deepEqual(await apply('0010-audit-log-reads.sql'), ['0010-audit-log-reads']);
      assert.deepEqual(await rows('SELECT timestamp, event_id, counted FROM audit_timeline_v1 ORDER BY timestamp'), [
        { timestamp: '2026-11-24 10:00:00.000000000', event_id: '01a20f64-c9e1-74d3-92cf-2e71ca718516', counted: true },
        { timestamp: '2026-11-24 10:00:01.000000000', event_id: '01a20f64-c9e1-74d3-92cf-2e71ca718517', counted: true },
        { timestamp: '2026-11-24 10:00:02.000000000', event_id: '01a20f64-c9e1-74d3-92cf-2e71ca718516', counted: false },
      ]);
      assert.deepEqual(await rows('SELECT kind, key, timestamp, span_fact FROM audit_lookup_v1 ORDER BY kind, key, timestamp'), [
        { kind: 'trace', key: 't-1', timestamp: '2026-11-24 10:00:00.000000000', span_fact: true },
        { kind: 'trace', key: 't-1', timestamp: '2026-11-24 10:00:02.000000000', span_fact: false },
        { kind: 'otel_trace', key: '0af7651916cd43dd8448eb211c80319c', timestamp: '2026-11-24 10:00:00.000000000', span_fact: true },
        { kind: 'session', key: 's-1', timestamp: '2026-11-24 10:00:00.000000000', span_fact: true },
        { kind: 'replaced', key: '01a20f64-c9e1-74d3-92cf-2e71ca718516', timestamp: '2026-11-24 10:00:02.000000000', span_fact: false },
      ]);
    });
  });

  it('marks in audit_timeline_v1 the replaced rows already stored when 0024 is applied', async () => {
    await migratedBefore('0024', 'migrate_backfill_0024', async (apply) => {
      // Two calls reported twice, each its first row then its merged row (two inserts, as the writer
      // makes them): ...516's merge stamped 2 s before its first row, ...517's at the same key; and a
      // call of another tenant like ...516.
      const insert = 'INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, tool, source, counted, report_id) VALUES';
      await client.command({
        query: `${insert} ('01a20f64-c9e1-74d3-92cf-2e71ca718516', 'acme', '2026-11-24 10:00:02', 't-1', 'users.Users.Get', 'audit', true, '01a20f64-c9e1-74d3-92cf-2e71ca718516'),
                          ('01a20f64-c9e1-74d3-92cf-2e71ca718517', 'acme', '2026-11-24 11:00:00', 't-2', 'users.Users.Get', 'span', true, '01a20f64-c9e1-74d3-92cf-2e71ca718517'),
                          ('01a20f64-c9e1-74d3-92cf-2e71ca718518', 'globex', '2026-11-24 12:00:02', 't-3', 'users.Users.Get', 'audit', true, '01a20f64-c9e1-74d3-92cf-2e71ca718518')`,
      });
      await client.command({
        query: `${insert} ('01a20f64-c9e1-74d3-92cf-2e71ca718516', 'acme', '2026-11-24 10:00:00', 't-1', 'users.Users.Get', 'audit', false, '01a20f64-c9e1-74d3-92cf-2e71ca718596'),
                          ('01a20f64-c9e1-74d3-92cf-2e71ca718517', 'acme', '2026-11-24 11:00:00', 't-2', 'users.Users.Get', 'audit', false, '01a20f64-c9e1-74d3-92cf-2e71ca718597'),
                          ('01a20f64-c9e1-74d3-92cf-2e71ca718518', 'globex', '2026-11-24 12:00:00', 't-3', 'users.Users.Get', 'audit', false, '01a20f64-c9e1-74d3-92cf-2e71ca718598')`,
      });
      assert.deepEqual(await apply('0024-replaced-row-markers.sql'), ['0024-replaced-row-markers']);
      assert.deepEqual(await rows("SELECT tenant, timestamp, toString(event_id) AS id, counted FROM audit_timeline_v1 WHERE source = 'replaced' ORDER BY timestamp"), [
        { tenant: 'acme', timestamp: '2026-11-24 10:00:02.000000000', id: '01a20f64-c9e1-74d3-92cf-2e71ca718516', counted: false },
        { tenant: 'globex', timestamp: '2026-11-24 12:00:02.000000000', id: '01a20f64-c9e1-74d3-92cf-2e71ca718518', counted: false },
      ]);
      // From now on the view marks a merge the writer stores with the key it replaces.
      await client.command({
        query: `INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, tool, source, counted, report_id, replaces_at)
                VALUES ('01a20f64-c9e1-74d3-92cf-2e71ca718519', 'acme', '2026-11-24 13:00:00', 't-4', 'users.Users.Get', 'audit', false, '01a20f64-c9e1-74d3-92cf-2e71ca718599', '2026-11-24 13:00:05')`,
      });
      assert.deepEqual(await rows("SELECT timestamp, toString(event_id) AS id FROM audit_timeline_v1 WHERE source = 'replaced' AND timestamp > '2026-11-24 13:00:00'"), [
        { timestamp: '2026-11-24 13:00:05.000000000', id: '01a20f64-c9e1-74d3-92cf-2e71ca718519' },
      ]);
    });
  });

  it('copies the minute rollup into the daily and weekly cost rollups when 0019, 0020 and 0021 are applied', async () => {
    await migratedBefore('0019', 'migrate_backfill_0019', async (apply) => {
      const insert = 'INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, tool, service, account_id, agent, duration_ns, cost_usd, source) VALUES';
      await client.command({
        query: `${insert} ('01a20f64-c9e1-74d3-92cf-2e71ca718516', 'acme', '2026-11-24 10:00:00', 't-1', 'users.Users.Get', 'users', 'a1', 'planner', 1000, 0.000000125, 'audit'),
                          ('01a20f64-c9e1-74d3-92cf-2e71ca718517', 'acme', '2026-11-24 23:59:59', 't-2', 'users.Users.Get', 'users', 'a1', 'planner', 2000, NULL, 'audit'),
                          ('01a20f64-c9e1-74d3-92cf-2e71ca718518', 'acme', '2026-11-27 00:00:00', 't-3', 'users.Users.Get', 'users', 'a1', 'planner', 4000, 1.5, 'audit')`,
      });
      assert.deepEqual(await apply('0019-daily-cost-rollup.sql', '0020-weekly-cost-rollup.sql', '0021-agentless-cost-rollups.sql'), ['0019-daily-cost-rollup', '0020-weekly-cost-rollup', '0021-agentless-cost-rollups']);
      // After the views exist, a call goes through them once, not again through the copy.
      await client.command({ query: `${insert} ('01a20f64-c9e1-74d3-92cf-2e71ca718519', 'acme', '2026-11-24 12:00:00', 't-4', 'users.Users.Get', 'users', 'a1', 'planner', 8000, NULL, 'audit')` });
      const rows = async (table: string) =>
        (await client.query({ query: `SELECT toString(bucket) AS bucket, toUInt32(sum(calls)) AS calls, toUInt32(sum(duration_sum_ns)) AS ns, toUInt32(sum(reported_nanos)) AS nanos FROM ${table} GROUP BY bucket ORDER BY bucket`, format: 'JSONEachRow' })).json();
      // 2026-11-19 and 2026-11-26 are week starts (weeks from 1970-01-01, a Thursday).
      assert.deepEqual(await rows('cost_calls_1d_v1'), [
        { bucket: '2026-11-24 00:00:00', calls: 3, ns: 11000, nanos: 125 },
        { bucket: '2026-11-27 00:00:00', calls: 1, ns: 4000, nanos: 1500000000 },
      ]);
      assert.deepEqual(await rows('cost_calls_1w_v1'), [
        { bucket: '2026-11-19 00:00:00', calls: 3, ns: 11000, nanos: 125 },
        { bucket: '2026-11-26 00:00:00', calls: 1, ns: 4000, nanos: 1500000000 },
      ]);
      // The same sums without the agent (0021), copied from the daily table, then fed by its view.
      assert.deepEqual(await rows('cost_calls_agentless_1d_v1'), await rows('cost_calls_1d_v1'));
      assert.deepEqual(await rows('cost_calls_agentless_1w_v1'), await rows('cost_calls_1w_v1'));
    });
  });

  it('copies the calls and spans already stored into calls_by_id_v1 and trace_spans_v1 when 0018 is applied', async () => {
    await migratedBefore('0018', 'migrate_backfill_0018', async (apply) => {
      // A call with both ids, one with only the gateway's, one with neither, and one whose gateway trace id is its OpenTelemetry one.
      const otel = '0af7651916cd43dd8448eb211c80319c';
      await client.command({
        query: `INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, otel_trace_id, otel_span_id, session_id, tool, agent, source) VALUES
                ('01a20f64-c9e1-74d3-92cf-2e71ca718516', 'acme', '2026-11-24 10:00:00', 't-1', '${otel}', 'b7ad6b7169203331', 's-1', 'users.Users.Get', 'planner', 'audit'),
                ('01a20f64-c9e1-74d3-92cf-2e71ca718517', 'acme', '2026-11-24 10:00:01', 't-2', '', '', '', 'users.Users.List', 'coder', 'audit'),
                ('01a20f64-c9e1-74d3-92cf-2e71ca718518', 'acme', '2026-11-24 10:00:02', '', '', '', '', 'users.Users.List', 'coder', 'audit'),
                ('01a20f64-c9e1-74d3-92cf-2e71ca718519', 'globex', '2026-11-24 10:00:03', '${otel}', '${otel}', 'b7ad6b7169203332', '', 'users.Users.Get', 'coder', 'span')`,
      });
      await client.command({
        query: `INSERT INTO spans_v1 (tenant, trace_id, span_id, parent_span_id, name, kind, service, scope_name, start_time, duration_ns, status_code, attributes, resource_attributes)
                VALUES ('acme', '${otel}', 'b7ad6b7169203331', '', 'mcp.tool.call', 'server', 'gw', 'go-micro', '2026-11-24 10:00:00', 5000, 'ok', map('mcp.tool.name', 'users.Users.Get'), map('service.name', 'gw'))`,
      });
      assert.deepEqual(await apply('0018-trace-reads.sql'), ['0018-trace-reads']);
      // Each call once per id it carries, the call as a JSON array without the id its key holds.
      const calls = await rows('SELECT tenant, id, kind, call FROM calls_by_id_v1 ORDER BY tenant, id, kind');
      const shown = (calls as Array<{ tenant: string; id: string; kind: string; call: string }>).map(({ call, ...key }) => {
        const [eventId, source, counted, traceId, otelTraceId, otelSpanId, session, , agent] = JSON.parse(call);
        return { ...key, eventId, source, counted, traceId, otelTraceId, otelSpanId, session, agent };
      });
      const e = '01a20f64-c9e1-74d3-92cf-2e71ca7185';
      assert.deepEqual(shown, [
        { tenant: 'acme', id: otel, kind: 'otel_trace', eventId: `${e}16`, source: 'audit', counted: true, traceId: 't-1', otelTraceId: '', otelSpanId: 'b7ad6b7169203331', session: 's-1', agent: 'planner' },
        { tenant: 'acme', id: 't-1', kind: 'trace', eventId: `${e}16`, source: 'audit', counted: true, traceId: '', otelTraceId: otel, otelSpanId: 'b7ad6b7169203331', session: 's-1', agent: 'planner' },
        { tenant: 'acme', id: 't-2', kind: 'trace', eventId: `${e}17`, source: 'audit', counted: true, traceId: '', otelTraceId: '', otelSpanId: '', session: '', agent: 'coder' },
        { tenant: 'globex', id: otel, kind: 'trace', eventId: `${e}19`, source: 'span', counted: true, traceId: '', otelTraceId: otel, otelSpanId: 'b7ad6b7169203332', session: '', agent: 'coder' },
        { tenant: 'globex', id: otel, kind: 'otel_trace', eventId: `${e}19`, source: 'span', counted: true, traceId: otel, otelTraceId: '', otelSpanId: 'b7ad6b7169203332', session: '', agent: 'coder' },
      ]);
      const spans = await rows('SELECT tenant, trace_id, span_id, start_time, span FROM trace_spans_v1');
      assert.deepEqual(spans, [
        {
          tenant: 'acme',
          trace_id: otel,
          span_id: 'b7ad6b7169203331',
          start_time: '2026-11-24 10:00:00.000000000',
          span: JSON.stringify(['', 'mcp.tool.call', 'server', 'gw', 5000, 'ok', '', { 'mcp.tool.name': 'users.Users.Get' }, []]),
        },
      ]);
    });
  });

  it('gives the rows stored before 0022 their entry, which the audit log, an event by id and a session read', async () => {
    const { queryAuditLog } = await import('../../api/queries/audit-log.ts');
    const { queryAuditEvent } = await import('../../api/queries/audit-event.ts');
    const { querySession } = await import('../../api/queries/session.ts');
    const insert = (rows: string) =>
      client.command({
        query: `INSERT INTO audit_events_v1 (event_id, tenant, timestamp, trace_id, otel_trace_id, otel_span_id, session_id, account_id, tool, service, agent,
                  agent_version, gateway, transport, scopes_required, allowed, denied_reason, duration_ns, error, is_error, request_bytes, response_bytes,
                  cost_usd, attributes, source) VALUES ${rows}`,
      });
    await migratedBefore('0022', 'migrate_entry_0022', async (apply) => {
      // Before 0022: a denied call with every field set (an id that is no UUIDv7), and an allowed one with the fewest.
      await insert(`('5b0e6c1e-93c4-4d52-8f0a-9d2f6ad3e001', 'acme', '2026-11-24 10:00:00.123456789', 't-1', '0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331',
                     's-1', 'acct-1', 'users.Users.Delete', 'users', 'planner', '1.2.0', 'gw-1', 'http', ['users:write', 'users:admin'], false, 'missing scope',
                     0, '', false, 120, 0, NULL, map('region', 'eu', 'a"b', 'say "hi"'), 'audit'),
                    ('01a20f64-c9e1-74d3-92cf-2e71ca718517', 'acme', '2026-11-24 10:00:01', '', '', '', 's-1', '', 'users.Users.List', 'users', 'coder',
                     '', '', '', [], true, '', 2500123456, '{"id":"x","code":500}', true, 0, 5, 0.000001234, map(), 'span')`);
      assert.deepEqual(await apply('0022-audit-timeline-entry.sql'), ['0022-audit-timeline-entry']);
      // After it: the same call as the first, under another tenant, stored with its entry.
      await insert(`('5b0e6c1e-93c4-4d52-8f0a-9d2f6ad3e001', 'globex', '2026-11-24 10:00:00.123456789', 't-1', '0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331',
                     's-1', 'acct-1', 'users.Users.Delete', 'users', 'planner', '1.2.0', 'gw-1', 'http', ['users:write', 'users:admin'], false, 'missing scope',
                     0, '', false, 120, 0, NULL, map('region', 'eu', 'a"b', 'say "hi"'), 'audit')`);

      const denied = {
        eventId: '5b0e6c1e-93c4-4d52-8f0a-9d2f6ad3e001', timestamp: '2026-11-24T10:00:00.123456789Z', traceId: 't-1', agent: 'planner', agentVersion: '1.2.0',
        sessionId: 's-1', accountId: 'acct-1', gateway: 'gw-1', transport: 'http', service: 'users', tool: 'users.Users.Delete',
        scopesRequired: ['users:write', 'users:admin'], allowed: false, outcome: 'DENIED', deniedReason: 'missing scope', durationMs: 0, error: null,
        otelTraceId: '0af7651916cd43dd8448eb211c80319c', otelSpanId: 'b7ad6b7169203331', requestBytes: 120, responseBytes: 0, costUsd: null, source: 'audit',
        attributes: [{ key: 'a"b', value: 'say "hi"' }, { key: 'region', value: 'eu' }],
      };
      const failed = {
        eventId: '01a20f64-c9e1-74d3-92cf-2e71ca718517', timestamp: '2026-11-24T10:00:01.000000000Z', traceId: '', agent: 'coder', agentVersion: '',
        sessionId: 's-1', accountId: null, gateway: '', transport: '', service: 'users', tool: 'users.Users.List', scopesRequired: [], allowed: true,
        outcome: 'ERROR', deniedReason: null, durationMs: 2500.123, error: '{"id":"x","code":500}', otelTraceId: null, otelSpanId: null,
        requestBytes: 0, responseBytes: 5, costUsd: { amount: '0.000001', currency: 'USD', micros: '1' }, source: 'span', attributes: [],
      };
      const log = await queryAuditLog('acme', client, {}, 10, undefined);
      assert.deepEqual(JSON.parse(JSON.stringify(log.items.map((i) => i.node))), [failed, denied]);
      assert.deepEqual(JSON.parse(JSON.stringify(await queryAuditEvent('acme', client, denied.eventId))), denied);
      assert.deepEqual(JSON.parse(JSON.stringify(await queryAuditEvent('acme', client, failed.eventId))), failed);
      assert.deepEqual(JSON.parse(JSON.stringify((await querySession('acme', client, 's-1', 10, undefined)).items.map((i) => i.node))), [denied, failed]);
      // The row stored after the migration reads the same, in its own tenant only.
      assert.deepEqual(JSON.parse(JSON.stringify((await queryAuditLog('globex', client, {}, 10, undefined)).items.map((i) => i.node))), [denied]);
      // By id, another tenant's event is none of this one's, by its time (a UUIDv7) or anywhere (not one).
      assert.equal(await queryAuditEvent('globex', client, failed.eventId), null);
      assert.equal(await queryAuditEvent('initech', client, denied.eventId), null);
    });
  });

  it('refuses a migration edited after it was applied', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sql-'));
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path.join(dir, '0001-probe.sql'), 'CREATE TABLE IF NOT EXISTS probe_v1 (a UInt8) ENGINE = MergeTree ORDER BY a;\n');
    const probeClient = client;
    await probeClient.command({ query: 'CREATE DATABASE IF NOT EXISTS migrate_probe' });
    await probeClient.command({ query: 'USE migrate_probe' });
    try {
      await migrate(probeClient, { retentionDays: 30, dir });
      writeFileSync(path.join(dir, '0001-probe.sql'), 'CREATE TABLE IF NOT EXISTS probe_v1 (a UInt16) ENGINE = MergeTree ORDER BY a;\n');
      await assert.rejects(migrate(probeClient, { retentionDays: 30, dir }), /0001-probe was changed after it was applied/);
    } finally {
      await probeClient.command({ query: 'USE migrate_test' });
    }
  });
});

describe('migration rendering', () => {
  it('makes replicated tables on a cluster and plain ones without', () => {
    const sql = 'CREATE TABLE t {{on_cluster}} (a UInt8) ENGINE = {{replicated}}ReplacingMergeTree ORDER BY a TTL d + INTERVAL {{retention_days}} DAY';
    assert.equal(
      renderMigration(sql, { retentionDays: 9 }),
      'CREATE TABLE t  (a UInt8) ENGINE = ReplacingMergeTree ORDER BY a TTL d + INTERVAL 9 DAY',
    );
    assert.equal(
      renderMigration(sql, { retentionDays: 9, cluster: 'prod' }),
      'CREATE TABLE t ON CLUSTER `prod` (a UInt8) ENGINE = ReplicatedReplacingMergeTree ORDER BY a TTL d + INTERVAL 9 DAY',
    );
    assert.throws(() => renderMigration('{{nope}}', { retentionDays: 1 }), /unknown migration placeholder \{\{nope\}\}/);
  });

  it('every real migration renders for a cluster with only replicated engines', async () => {
    for (const m of await readMigrations()) {
      for (const statement of splitStatements(renderMigration(m.sql, { retentionDays: 30, cluster: 'c1' }))) {
        // Schema changes run on every node; a data statement runs once, and replication copies it
        // (the supported cluster layout is one shard, see the README).
        if (/^INSERT\b/.test(statement)) continue;
        assert.match(statement, /ON CLUSTER `c1`/, `${m.name}: ${statement.slice(0, 60)}`);
        const engine = /ENGINE = (\w+)/.exec(statement)?.[1];
        if (engine) assert.match(engine, /^Replicated/, `${m.name} uses ${engine}`);
      }
    }
  });

  it('splits statements and drops comment lines', () => {
    assert.deepEqual(splitStatements('-- c;\nSELECT 1;\n\nSELECT 2;\n'), ['SELECT 1', 'SELECT 2']);
  });
});
