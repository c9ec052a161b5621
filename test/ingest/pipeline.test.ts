import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { ClickHouseError } from '@clickhouse/client';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { createLogger } from '../../core/logger.ts';
import { migrate } from '../../core/migrate.ts';
import { auditMessageKey } from '../../core/publisher.ts';
import { normalizeAuditRecord, toAuditRow, type AuditEvent, type AuditRow } from '../../model/audit-event.ts';
import { createTimeWindow } from '../../model/time-window.ts';
import { formatClickHouse } from '../../model/timestamp.ts';
import { auditInsertBody, insertAuditBody } from '../../ingest/audit-insert.ts';
import { createClickHouseWriter, type ClickHouseWriter } from '../../ingest/clickhouse-writer.ts';
import { createDeadLetterTable } from '../../ingest/dead-letter-table.ts';
import { listTableDeadLetters, replayTableDeadLetters } from '../../ingest/dead-letters.ts';
import { checkInsertJournal, replayInsertJournal } from '../../ingest/insert-journal.ts';
import { createMemoryQueue } from '../../ingest/memory-queue.ts';
import type { InboundMessage } from '../../ingest/messages.ts';
import { createPipeline } from '../../ingest/pipeline.ts';
import { createQueueWorker } from '../../ingest/queue-worker.ts';
import { isPermanentInsertError } from '../../ingest/retry.ts';

const topics = { audit: 'mcp-audit', spans: 'otlp_spans' };
const logger = createLogger('silent');
let clickhouse: ClickHouseClient;
let offset = 0;

function event(i: number, extra: Record<string, unknown> = {}): AuditEvent {
  const r = normalizeAuditRecord({
    trace_id: `trace-${i}`,
    timestamp: new Date(Date.UTC(2026, 10, 24, 10, 0, i % 60)).toISOString(),
    tool: i % 3 === 0 ? 'users.Users.Get' : 'billing.Billing.Charge',
    allowed: i % 10 !== 0,
    ...(i % 10 === 0 ? { denied_reason: 'missing scope' } : { duration: 1_000_000 + i }),
    ...(i % 7 === 0 ? { error: 'boom' } : {}),
    agent: `agent-${i % 4}`,
    cost_usd: 0.001,
    ...extra,
  });
  assert.ok(r.ok);
  return r.value;
}

interface Call {
  record: Record<string, unknown> & { trace_id: string };
  span: { start: bigint; durationNs: bigint; tool: string; denied?: string; error?: string };
}

/** One call as go-micro reports it both ways: its AuditRecord and its mcp.tool.call span. */
function goMicroCall(traceId: string, tool: string, options: { denied?: string; error?: string } = {}): Call {
  const start = 1_795_600_000_000_000_000n + BigInt(traceId.charCodeAt(0)) * 1_000_000_000n;
  const durationNs = options.denied ? 200_000n : 1_500_000n;
  return {
    record: {
      trace_id: traceId,
      timestamp: new Date(Number((start + durationNs) / 1_000_000n)).toISOString(),
      tool,
      account_id: 'acct-1',
      scopes_required: ['users:read'],
      allowed: !options.denied,
      ...(options.denied ? { denied_reason: options.denied } : { duration: Number(durationNs) }),
      ...(options.error ? { error: options.error } : {}),
    },
    span: { start, durationNs, tool, ...options },
  };
}

function spanMessage(call: Call, n: number): InboundMessage {
  const { span } = call;
  const str = (key: string, value: string) => ({ key, value: { stringValue: value } });
  const attributes = [
    str('mcp.tool.name', span.tool),
    str('mcp.transport', 'http'),
    str('mcp.trace_id', call.record.trace_id),
    str('mcp.account.id', 'acct-1'),
    { key: 'mcp.auth.allowed', value: { boolValue: !span.denied } },
    { key: 'mcp.auth.scopes_required', value: { arrayValue: { values: [{ stringValue: 'users:read' }] } } },
    str('mcp.client.name', 'claude-desktop'),
    str('mcp.client.version', '1.2.0'),
    ...(span.denied ? [str('mcp.auth.denied_reason', span.denied)] : []),
  ];
  const body = {
    resourceSpans: [{
      resource: { attributes: [str('service.name', 'go-micro-gateway')] },
      scopeSpans: [{
        scope: { name: 'go-micro.dev/v6/gateway/mcp' },
        spans: [{
          traceId: n.toString(16).padStart(32, '0'),
          spanId: n.toString(16).padStart(16, '0'),
          name: 'mcp.tool.call',
          kind: 2,
          startTimeUnixNano: String(span.start),
          endTimeUnixNano: String(span.start + span.durationNs),
          attributes,
          status: span.denied || span.error ? { code: 2, message: span.denied ?? span.error } : { code: 1 },
        }],
      }],
    }],
  };
  return { ...message(body, topics.spans), headers: { 'content-type': 'application/json' } };
}

function message(value: unknown, topic = topics.audit): InboundMessage {
  return {
    topic,
    partition: 0,
    offset: String(offset++),
    key: null,
    value: Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
    headers: {},
  };
}

async function scalar(query: string): Promise<number> {
  const rows = await (await clickhouse.query({ query: `SELECT (${query}) AS n`, format: 'JSONEachRow' })).json<{ n: string | number }>();
  return Number(rows[0]!.n);
}

const rawCount = () => scalar('SELECT count() FROM audit_events_v1');
/** The rows calls_by_id_v1 holds for `rows`: one per trace id a row carries (sql/0018). */
const idRows = (rows: readonly AuditRow[]) => rows.reduce((n, r) => n + (r.trace_id ? 1 : 0) + (r.otel_trace_id ? 1 : 0), 0);
const rollupCalls = () => scalar('SELECT sum(calls) FROM tool_calls_1m_v1');
const rollupDenials = () => scalar('SELECT sum(denials) FROM tool_calls_1m_v1');

/** The test's client with its `exec` (the writer's inserts) replaced by `exec`, given the real client. */
function withInserts(exec: (target: ClickHouseClient, params: Parameters<ClickHouseClient['exec']>[0]) => ReturnType<ClickHouseClient['exec']>): ClickHouseClient {
  return new Proxy(clickhouse, {
    get(target, prop) {
      if (prop !== 'exec') return Reflect.get(target, prop, target);
      return (params: Parameters<ClickHouseClient['exec']>[0]) => exec(target, params);
    },
  });
}

/** Runs `run` with the materialized views detached: an insert then reaches the raw table only. */
async function withoutViews<T>(run: () => Promise<T>): Promise<T> {
  const views = ['tool_calls_1m_mv_v1', 'call_reports_mv_v2', 'audit_timeline_mv_v1', 'audit_lookup_mv_v1', 'calls_by_id_mv_v1'];
  for (const view of views) await clickhouse.command({ query: `DETACH TABLE ${view}` });
  try {
    return await run();
  } finally {
    for (const view of views) await clickhouse.command({ query: `ATTACH TABLE ${view}` });
  }
}

function pipelineWith(writer: ClickHouseWriter = createClickHouseWriter(clickhouse)) {
  return createPipeline({ writer, deadLetters: createDeadLetterTable(clickhouse), topics, logger });
}

describe('ingest pipeline on the embedded engine', () => {
  before(async () => {
    clickhouse = await openClickHouse({ database: 'ingest_test', dataDir: mkdtempSync(path.join(os.tmpdir(), 'ingest-')) });
    await migrate(clickhouse, { retentionDays: 3650 });
  });
  after(() => clickhouse.close());
  beforeEach(async () => {
    for (const table of ['audit_events_v1', 'call_reports_v2', 'tool_calls_1m_v1', 'spans_v1', 'dead_letters_v1', 'audit_timeline_v1', 'audit_lookup_v1', 'calls_by_id_v1', 'trace_spans_v1']) {
      await clickhouse.command({ query: `TRUNCATE TABLE ${table}` });
    }
  });

  it('stores each event once in the raw table and the rollups, even when the batch is delivered again', async () => {
    const batch = Array.from({ length: 500 }, (_, i) => message(event(i)));
    const pipeline = pipelineWith();
    const first = await pipeline.process(batch);
    assert.deepEqual(first, { messages: 500, auditRows: 500, spanRows: 0, duplicates: 0, deadLetters: 0 });
    const again = await pipeline.process([...batch.slice(100, 300), ...batch.slice(0, 50)]);
    assert.deepEqual(again, { messages: 250, auditRows: 0, spanRows: 0, duplicates: 250, deadLetters: 0 });
    assert.equal(await rawCount(), 500);
    assert.equal(await rollupCalls(), 500);
    assert.equal(await rollupDenials(), 50);
    assert.equal(await scalar('SELECT sum(errors) FROM tool_calls_1m_v1'), 72); // i % 7 === 0 for i < 500
    assert.equal(await scalar('SELECT sum(cost_usd_sum) FROM tool_calls_1m_v1'), 0.5);
  });

  it('ingests go-micro records as another producer wrote them, and dead-letters poison with its reason', async () => {
    const goMicro = { trace_id: 'gm-1', timestamp: '2026-11-24T10:00:00Z', tool: 'users.Users.Get', allowed: true, duration: 42 };
    const batch = [
      message(event(1)),
      message('{not json'),
      message({ ...goMicro, duration: 'slow' }),
      message(goMicro),
      message('garbage', topics.spans),
      message(event(2)),
    ];
    const outcome = await createPipeline({ writer: createClickHouseWriter(clickhouse), deadLetters: createDeadLetterTable(clickhouse), topics, logger }).process(batch);
    assert.deepEqual(outcome, { messages: 6, auditRows: 3, spanRows: 0, duplicates: 0, deadLetters: 3 });
    assert.equal(await rawCount(), 3);
    const letters = await (
      await clickhouse.query({ query: 'SELECT topic, offset, value, reason FROM dead_letters_v1 ORDER BY toUInt64(offset)', format: 'JSONEachRow' })
    ).json<{ topic: string; offset: string; value: string; reason: string }>();
    assert.equal(letters.length, 3);
    assert.equal(letters[0]!.value, '{not json');
    assert.match(letters[0]!.reason, /^not JSON/);
    assert.match(letters[1]!.reason, /duration: must be a duration in integer nanoseconds/);
    assert.equal(letters[2]!.topic, topics.spans);
    assert.match(letters[2]!.reason, /not an OTLP ExportTraceServiceRequest/);
    assert.deepEqual(letters.map((l) => Number(l.offset)), [1, 2, 4].map((k) => Number(batch[k]!.offset)));
  });

  it('dead-letters an audit record stamped outside the accepted window, with the reason the receiver gives', async () => {
    const now = Date.UTC(2026, 10, 24, 12, 0, 0);
    const timeWindow = createTimeWindow({ retentionDays: 30, maxClockSkewSeconds: 300 }, () => now);
    const record = (trace_id: string, timestamp: string) => ({ trace_id, timestamp, tool: 'users.Users.Get', allowed: true, duration: 42 });
    const batch = [
      message(record('old', '2026-10-25T11:59:59.999999999Z')), // 1 ns before the window
      message(record('first', '2026-10-25T12:00:00Z')), // its first instant
      message(event(3, { timestamp: '1970-01-01T00:00:00Z' })), // as a producer of ours would write it (fast path)
      message(record('last', '2026-11-24T12:05:00Z')), // its last instant
      message(record('ahead', '2026-11-24T12:05:00.000000001Z')), // 1 ns after it
    ];
    const pipeline = createPipeline({ writer: createClickHouseWriter(clickhouse), deadLetters: createDeadLetterTable(clickhouse), topics, timeWindow, logger });
    assert.deepEqual(await pipeline.process(batch), { messages: 5, auditRows: 2, spanRows: 0, duplicates: 0, deadLetters: 3 });
    const stored = await (await clickhouse.query({ query: 'SELECT trace_id FROM audit_events_v1 ORDER BY trace_id', format: 'JSONEachRow' })).json<{ trace_id: string }>();
    assert.deepEqual(stored.map((r) => r.trace_id), ['first', 'last']);
    const letters = await (
      await clickhouse.query({ query: 'SELECT offset, reason FROM dead_letters_v1 ORDER BY toUInt64(offset)', format: 'JSONEachRow' })
    ).json<{ offset: string; reason: string }>();
    const window = 'accepted from 2026-10-25T12:00:00Z to 2026-11-24T12:05:00Z; send the time of the call, from a synchronized clock';
    assert.deepEqual(letters, [
      { offset: batch[0]!.offset, reason: `invalid audit record: timestamp: 2026-10-25T11:59:59.999999999Z is before the retention window (RETENTION_DAYS=30); ${window}` },
      { offset: batch[2]!.offset, reason: `invalid audit record: timestamp: 1970-01-01T00:00:00.000000000Z is before the retention window (RETENTION_DAYS=30); ${window}` },
      {
        offset: batch[4]!.offset,
        reason: `invalid audit record: timestamp: 2026-11-24T12:05:00.000000001Z is more than 300 s ahead of the server's clock (MAX_CLOCK_SKEW_S); ${window}`,
      },
    ]);
  });

  it('retries a batch while ClickHouse fails, then stores it exactly once', async () => {
    const real = createClickHouseWriter(clickhouse);
    let failures = 3;
    const flaky: ClickHouseWriter = {
      async writeAudit(rows) {
        if (failures-- > 0) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        return real.writeAudit(rows);
      },
      writeSpans: (rows) => real.writeSpans(rows),
    };
    const outcome = await pipelineWith(flaky).process(Array.from({ length: 40 }, (_, i) => message(event(i))));
    assert.equal(outcome.auditRows, 40);
    assert.equal(failures, -1);
    assert.equal(await rawCount(), 40);
    assert.equal(await rollupCalls(), 40);
  });

  it('sets aside only the rows ClickHouse refuses for their content', async () => {
    const real = createClickHouseWriter(clickhouse);
    const picky: ClickHouseWriter = {
      async writeAudit(rows) {
        if (rows.some((r) => r.tool === 'bad.Tool'))
          throw new ClickHouseError({ message: 'Cannot parse input', code: '27', type: 'CANNOT_PARSE_INPUT_ASSERTION_FAILED' });
        return real.writeAudit(rows);
      },
      writeSpans: (rows) => real.writeSpans(rows),
    };
    const batch = Array.from({ length: 20 }, (_, i) => message(event(i, i === 5 || i === 13 ? { tool: 'bad.Tool' } : {})));
    const outcome = await pipelineWith(picky).process(batch);
    assert.deepEqual(outcome, { messages: 20, auditRows: 18, spanRows: 0, duplicates: 0, deadLetters: 2 });
    assert.equal(await rawCount(), 18);
    assert.equal(await scalar('SELECT count() FROM dead_letters_v1'), 2);
  });

  it('counts a call reported both as an audit record and as an mcp.tool.call span once, in either order', async () => {
    const pipeline = pipelineWith();
    const callA = goMicroCall('a0000000-0000-4000-8000-000000000001', 'users.Users.Get');
    const callB = goMicroCall('b0000000-0000-4000-8000-000000000002', 'billing.Billing.Charge');
    // A: span first, audit record later. B: audit record first, span later. Each then redelivered.
    await pipeline.process([spanMessage(callA, 1)]);
    await pipeline.process([message(callA.record), message(callB.record)]);
    await pipeline.process([spanMessage(callB, 2)]);
    await pipeline.process([spanMessage(callA, 1), message(callA.record), spanMessage(callB, 2), message(callB.record)]);

    assert.equal(await rollupCalls(), 2);
    const rows = await (
      await clickhouse.query({
        query: 'SELECT trace_id, source, account_id, duration_ns, agent FROM audit_events_v1 FINAL ORDER BY trace_id',
        format: 'JSONEachRow',
      })
    ).json<{ trace_id: string; source: string; account_id: string; duration_ns: string; agent: string }>();
    assert.deepEqual(
      rows.map((r) => [r.trace_id, r.source, r.account_id, Number(r.duration_ns)]),
      [
        [callA.record.trace_id, 'audit', 'acct-1', 1_500_000],
        [callB.record.trace_id, 'audit', 'acct-1', 1_500_000],
      ],
    );
    assert.equal(await scalar('SELECT sum(duration_sum_ns) FROM tool_calls_1m_v1'), 3_000_000);
  });

  it('stores each event and each call once when writes overlap (the look-ups of both before either insert)', async () => {
    const writer = createClickHouseWriter(clickhouse);
    const rows = Array.from({ length: 100 }, (_, i) => toAuditRow(event(i)));
    const audited = toAuditRow(event(200));
    const spanFact: AuditRow = { ...toAuditRow(event(201)), trace_id: audited.trace_id, tool: audited.tool, source: 'span' };
    const [a, b] = await Promise.all([
      writer.writeAudit([...rows.slice(0, 60), audited]),
      writer.writeAudit([...rows.slice(40), spanFact]),
    ]);
    assert.deepEqual([a.inserted + b.inserted, a.duplicates + b.duplicates], [101, 21]);
    assert.equal(await rawCount(), 101);
    assert.equal(await rollupCalls(), 101);
  });

  it('does not take rows as stored when the overlapping write that was inserting them was refused', async () => {
    // The first insert is refused for its content after a while; the second call's look-ups ran
    // before, so only what the first call's insert stored could tell it what they missed: nothing.
    let inserts = 0;
    const firstRefused = withInserts(async (target, params) => {
      if (inserts++ > 0) return target.exec(params);
      await new Promise((resolve) => setTimeout(resolve, 50));
      throw new ClickHouseError({ message: 'Cannot parse input', code: '27', type: 'CANNOT_PARSE_INPUT_ASSERTION_FAILED' });
    });
    const writer = createClickHouseWriter(firstRefused);
    const rows = Array.from({ length: 3_000 }, (_, i) => toAuditRow(event(i)));
    const [first, second] = await Promise.allSettled([writer.writeAudit(rows.slice(0, 2_000)), writer.writeAudit(rows.slice(1_000))]);
    assert.equal(first.status, 'rejected');
    assert.deepEqual(second, { status: 'fulfilled', value: { inserted: 2_000, duplicates: 0 } });
    assert.equal(await rawCount(), 2_000);
    assert.deepEqual(await writer.writeAudit(rows.slice(0, 2_000)), { inserted: 1_000, duplicates: 1_000 });
    assert.equal(await rollupCalls(), 3_000);
  });

  it("takes the embedded engine's refusals for content as permanent, and its other failures as transient", async () => {
    const refusal = await insertAuditBody(clickhouse, 'audit_events_v1', '["not a row"]\n', 'refused').catch((error: unknown) => error);
    assert.ok(refusal instanceof Error, 'the engine refused the row');
    assert.equal(isPermanentInsertError(refusal), true, String(refusal));
    const missing = await insertAuditBody(clickhouse, 'no_such_table', '[]\n', 'missing').catch((error: unknown) => error);
    assert.ok(missing instanceof Error);
    assert.equal(isPermanentInsertError(missing), false, String(missing));
    assert.equal(isPermanentInsertError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), false);
  });

  it('finds stored events on any day of a batch, and reports of one call a week apart, over a month end', async () => {
    const writer = createClickHouseWriter(clickhouse);
    // An event's look-up reads only its batch's days, a call's only its batch's longest call and a day
    // around them (callTimeBounds).
    const stamp = (epochMs: number) => formatClickHouse({ epochMs, subMsNanos: 0 });
    const onDay = (i: number, day: number): AuditRow => ({ ...toAuditRow(event(i)), timestamp: stamp(Date.UTC(2026, 10, 1) + day * 86_400_000) });
    const spread = Array.from({ length: 40 }, (_, i) => onDay(i, i));
    assert.deepEqual(await writer.writeAudit(spread), { inserted: 40, duplicates: 0 });
    // Redelivered: the first and last day in one batch, then the whole spread with new events.
    assert.deepEqual(await writer.writeAudit([spread[0]!, onDay(100, 39)]), { inserted: 1, duplicates: 1 });
    assert.deepEqual(await writer.writeAudit([...spread].reverse().concat([onDay(101, 20)])), { inserted: 1, duplicates: 40 });

    // A call that lasted a week minus a minute: its span is stamped at its start (Nov 25), its audit
    // record at its end (Dec 2). Either may come first, each in a batch of its own. The span tells the
    // call's duration; the audit record tells it too, or (0) none, and is then looked up as far as the
    // longest call allowed.
    const week = 7 * 86_400_000 - 60_000;
    const start = Date.UTC(2026, 10, 25, 12);
    const pair = (i: number, auditDurationNs: number) => {
      const audit = { ...toAuditRow(event(i, { duration: auditDurationNs })), timestamp: stamp(start + week) };
      const span: AuditRow = { ...toAuditRow(event(i + 1, { duration: week * 1e6 })), trace_id: audit.trace_id, tool: audit.tool, source: 'span', timestamp: stamp(start) };
      return { audit, span };
    };
    const spanFirst = pair(303, 0);
    const auditFirst = pair(403, week * 1e6);
    await writer.writeAudit([spanFirst.span]);
    await writer.writeAudit([auditFirst.audit]);
    assert.deepEqual(await writer.writeAudit([spanFirst.audit]), { inserted: 1, duplicates: 0 }); // stored under the span's event_id
    assert.deepEqual(await writer.writeAudit([auditFirst.span]), { inserted: 0, duplicates: 1 });
    assert.deepEqual(await writer.writeAudit([spanFirst.audit, spanFirst.span]), { inserted: 0, duplicates: 2 });
    assert.equal(await rawCount(), 42 + 3);
    assert.equal(await scalar('SELECT count() FROM audit_events_v1 FINAL'), 42 + 2);
    assert.equal(await rollupCalls(), 42 + 2);
  });

  // Bounded: refused, such a batch would be retried forever (the error is ClickHouse's TOO_MANY_PARTS, transient).
  it('stores a batch whose records and spans span more days than one insert may (ClickHouse: 100 partitions)', { timeout: 60_000 }, async () => {
    const day = 86_400_000_000_000n;
    const calls = Array.from({ length: 150 }, (_, i) => {
      const call = goMicroCall(`d${String(i).padStart(3, '0')}00000-0000-4000-8000-000000000000`, 'users.Users.Get');
      const start = 1_767_225_600_000_000_000n + BigInt(i) * day; // 2026-01-01, then one day after another
      call.span.start = start;
      call.record['timestamp'] = new Date(Number((start + call.span.durationNs) / 1_000_000n)).toISOString();
      return call;
    });
    // Audit records of 150 days in one batch; then the spans of those calls, of 150 other trace ids.
    const outcome = await pipelineWith().process(calls.map((c) => message(c.record)));
    assert.deepEqual(outcome, { messages: 150, auditRows: 150, spanRows: 0, duplicates: 0, deadLetters: 0 });
    const spans = calls.map((c, i) => spanMessage({ ...c, record: { ...c.record, trace_id: `other-${i}` } }, i + 1));
    const spanOutcome = await pipelineWith().process(spans);
    assert.equal(spanOutcome.spanRows, 150);
    assert.equal(spanOutcome.deadLetters, 0);
    assert.equal(await scalar('SELECT count() FROM spans_v1'), 150);
    assert.equal(await scalar('SELECT uniqExact(toDate(start_time)) FROM spans_v1'), 150);
    assert.equal(await rawCount(), 300);
    assert.equal(await rollupCalls(), 300);
  });

  it('sends again, after a crash, an insert whose views were cut off, and each table takes it once', async () => {
    const journalDir = mkdtempSync(path.join(os.tmpdir(), 'journal-'));
    // An insert that reaches the raw table but not the views, and whose caller never sees it return:
    // the views are detached while it runs, and the answer is lost.
    const cutOff = withInserts(async (target, params) => {
      await target.exec(params);
      throw new Error('killed');
    });
    const rows = Array.from({ length: 50 }, (_, i) => toAuditRow(event(i)));
    await withoutViews(() => assert.rejects(createClickHouseWriter(cutOff, { journalDir }).writeAudit(rows), /killed/));
    assert.deepEqual([await rawCount(), await rollupCalls()], [50, 0]);
    assert.equal(readdirSync(journalDir).length, 1);

    // The next start: the journal first, then the redelivered batch.
    assert.deepEqual(await replayInsertJournal(clickhouse, journalDir), { sent: 1, refused: 0 });
    assert.deepEqual(readdirSync(journalDir), []);
    assert.deepEqual([await rawCount(), await rollupCalls(), await scalar('SELECT count() FROM call_reports_v2')], [50, 50, 50]);
    assert.equal(await scalar('SELECT count() FROM audit_timeline_v1'), 50);
    assert.equal(await scalar('SELECT count() FROM calls_by_id_v1'), idRows(rows));
    assert.deepEqual(await createClickHouseWriter(clickhouse, { journalDir }).writeAudit(rows), { inserted: 0, duplicates: 50 });

    // An insert that did complete, replayed all the same (killed before it could forget it): no table takes it twice.
    const more = Array.from({ length: 20 }, (_, i) => toAuditRow(event(100 + i)));
    await assert.rejects(createClickHouseWriter(cutOff, { journalDir }).writeAudit(more), /killed/);
    assert.deepEqual(await replayInsertJournal(clickhouse, journalDir), { sent: 1, refused: 0 });
    assert.deepEqual([await rawCount(), await rollupCalls(), await scalar('SELECT count() FROM call_reports_v2')], [70, 70, 70]);
    assert.equal(await scalar('SELECT count() FROM audit_timeline_v1'), 70);
    assert.equal(await scalar('SELECT count() FROM calls_by_id_v1'), idRows([...rows, ...more]));
    assert.deepEqual(await replayInsertJournal(clickhouse, journalDir), { sent: 0, refused: 0 });
  });

  it('sends again, before anything else, an insert that failed after reaching the raw table and not the views', async () => {
    const journalDir = mkdtempSync(path.join(os.tmpdir(), 'journal-'));
    // The first insert reaches the raw table with the views detached, then its answer is lost.
    let inserts = 0;
    const cutOnce = withInserts(async (target, params) => {
      if (inserts++ > 0) return target.exec(params);
      await withoutViews(() => target.exec(params));
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    });
    const writer = createClickHouseWriter(cutOnce, { journalDir });
    const first = Array.from({ length: 50 }, (_, i) => toAuditRow(event(i)));
    const second = Array.from({ length: 30 }, (_, i) => toAuditRow(event(100 + i)));
    // The second call's look-ups ran before the first insert failed: it must not insert past it.
    const [a, b] = await Promise.allSettled([writer.writeAudit(first), writer.writeAudit(second)]);
    assert.match(String(a.status === 'rejected' && a.reason), /socket hang up/);
    assert.match(String(b.status === 'rejected' && b.reason), /sent again first/);
    assert.deepEqual([await rawCount(), await rollupCalls()], [50, 0]);
    assert.equal(readdirSync(journalDir).length, 1);

    // The retries, in the same process: the failed insert goes first, as it was.
    assert.deepEqual(await writer.writeAudit(second), { inserted: 30, duplicates: 0 });
    assert.deepEqual(await writer.writeAudit(first), { inserted: 0, duplicates: 50 });
    assert.deepEqual([await rawCount(), await rollupCalls(), await scalar('SELECT count() FROM call_reports_v2')], [80, 80, 80]);
    assert.deepEqual(readdirSync(journalDir), []);
  });

  it('drops, at the next start, a journaled insert ClickHouse refuses for its content, and sends the rest', async () => {
    const journalDir = mkdtempSync(path.join(os.tmpdir(), 'journal-'));
    const good = Array.from({ length: 10 }, (_, i) => toAuditRow(event(i)));
    writeFileSync(path.join(journalDir, 'aaaa.audit-insert'), '["not a row"]\n');
    writeFileSync(path.join(journalDir, 'bbbb.audit-insert'), auditInsertBody(good));
    assert.deepEqual(await replayInsertJournal(clickhouse, journalDir), { sent: 1, refused: 1 });
    assert.deepEqual(readdirSync(journalDir), []);
    assert.deepEqual([await rawCount(), await rollupCalls()], [10, 10]);
  });

  it('says, before consuming, that the insert journal cannot be written', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'data-'));
    await checkInsertJournal(path.join(dataDir, 'insert-journal'));
    assert.deepEqual(readdirSync(path.join(dataDir, 'insert-journal')), []);
    writeFileSync(path.join(dataDir, 'not-a-directory'), '');
    await assert.rejects(checkInsertJournal(path.join(dataDir, 'not-a-directory', 'insert-journal')), /insert journal .* can't be written \(ENOTDIR\): set DATA_DIR/);
  });

  it('replays a journal shared with another worker that sends some of it meanwhile', async () => {
    const journalDir = mkdtempSync(path.join(os.tmpdir(), 'journal-'));
    const older = Array.from({ length: 10 }, (_, i) => toAuditRow(event(i)));
    const newer = Array.from({ length: 10 }, (_, i) => toAuditRow(event(100 + i)));
    const olderFile = path.join(journalDir, 'aaaa.audit-insert');
    const newerFile = path.join(journalDir, 'bbbb.audit-insert');
    writeFileSync(olderFile, auditInsertBody(older));
    writeFileSync(newerFile, auditInsertBody(newer));
    utimesSync(olderFile, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    // While this replay sends the older insert, the other worker sends the newer one and removes it.
    const racing = withInserts(async (target, params) => {
      if (existsSync(newerFile)) {
        await insertAuditBody(target, 'audit_events_v1', readFileSync(newerFile, 'utf8'), 'bbbb');
        rmSync(newerFile);
      }
      return target.exec(params);
    });
    assert.deepEqual(await replayInsertJournal(racing, journalDir), { sent: 1, refused: 0 });
    assert.deepEqual(readdirSync(journalDir), []);
    assert.deepEqual([await rawCount(), await rollupCalls()], [20, 20]);
  });

  it('finds the same stored events and calls whether a look-up checks the primary key or scans', async () => {
    // Five one-row inserts: five parts of two marks each (the one granule, and the final mark) in both
    // audit_events_v1 and call_reports_v2, so 10 marks each; a list scans from 3 keys per mark, 30 keys.
    const rows = Array.from({ length: 64 }, (_, i) => toAuditRow(event(i)));
    for (const row of rows.slice(0, 5)) await createClickHouseWriter(clickhouse).writeAudit([row]);
    const spanOf = (row: AuditRow, i: number): AuditRow => ({ ...toAuditRow(event(i)), trace_id: row.trace_id, tool: row.tool, source: 'span' });
    const lookUps = async (batch: AuditRow[]) => {
      const settings: string[] = [];
      const spied = new Proxy(clickhouse, {
        get(target, key, receiver) {
          if (key !== 'query') return Reflect.get(target, key, receiver);
          return (params: { query: string }) => {
            const table = /FROM (audit_events_v1|call_reports_v2)/.exec(params.query)?.[1];
            if (table) settings.push(`${table}: ${/SETTINGS (.*)/.exec(params.query)?.[1] ?? 'primary key'}`);
            return target.query(params as never);
          };
        },
      });
      const result = await createClickHouseWriter(spied).writeAudit(batch);
      return { result, settings: settings.sort() };
    };

    // Two stored events and a span of a stored call, among 26 new: 29 keys, one short of scanning.
    assert.deepEqual(await lookUps([rows[0]!, rows[1]!, spanOf(rows[2]!, 100), ...rows.slice(5, 31)]), {
      result: { inserted: 26, duplicates: 3 },
      settings: ['audit_events_v1: primary key', 'call_reports_v2: primary key'],
    });
    // That insert made one more part in each table: 12 marks, so 36 keys scan.
    assert.deepEqual(await lookUps([rows[3]!, rows[4]!, spanOf(rows[0]!, 101), ...rows.slice(31)]), {
      result: { inserted: 33, duplicates: 3 },
      settings: ['audit_events_v1: use_index_for_in_with_subqueries = 0', 'call_reports_v2: use_index_for_in_with_subqueries = 0'],
    });
    assert.equal(await rawCount(), 64);
    assert.equal(await rollupCalls(), 64);
  });

  it('looks up trace ids with quotes, backslashes, control characters and non-ASCII exactly', async () => {
    const pipeline = pipelineWith();
    const awkward = [`it's`, 'back\\slash', 'quote"d', 'new\nline\ttab', 'nul\u0000byte', 'ünïcødé-🚀', `\\'); DROP TABLE x; --`];
    const calls = awkward.map((traceId) => goMicroCall(traceId, 'users.Users.Get'));
    // Spans first, then the audit records (stored under the span facts' ids), then all of it again.
    await pipeline.process(calls.map((call, i) => spanMessage(call, 100 + i)));
    await pipeline.process(calls.map((call) => message(call.record)));
    const again = await pipeline.process([...calls.map((call, i) => spanMessage(call, 100 + i)), ...calls.map((call) => message(call.record))]);

    assert.equal(again.auditRows, 0);
    assert.equal(await rollupCalls(), awkward.length);
    const stored = await (
      await clickhouse.query({ query: 'SELECT trace_id, source FROM audit_events_v1 FINAL', format: 'JSONEachRow' })
    ).json<{ trace_id: string; source: string }>();
    assert.deepEqual(stored.map((r) => r.trace_id).sort(), [...awkward].sort());
    assert.ok(stored.every((r) => r.source === 'audit'));
  });

  it('derives tool-call facts from mcp.tool.call spans alone: agent, account, denial, error', async () => {
    const pipeline = pipelineWith();
    const ok = goMicroCall('c0000000-0000-4000-8000-000000000003', 'users.Users.Get');
    const denied = goMicroCall('d0000000-0000-4000-8000-000000000004', 'billing.Billing.Charge', { denied: 'missing scope' });
    const failed = goMicroCall('e0000000-0000-4000-8000-000000000005', 'files.Files.Read', { error: 'disk on fire' });
    const outcome = await pipeline.process([spanMessage(ok, 3), spanMessage(denied, 4), spanMessage(failed, 5)]);
    assert.equal(outcome.spanRows, 3);
    assert.equal(await rollupCalls(), 3);
    assert.equal(await rollupDenials(), 1);
    assert.equal(await scalar('SELECT sum(errors) FROM tool_calls_1m_v1'), 1);
    const rows = await (
      await clickhouse.query({
        query: `SELECT tool, service, agent, agent_version, account_id, allowed, denied_reason, error, toUInt32(duration_ns) AS duration_ns, transport, scopes_required
                FROM audit_events_v1 FINAL ORDER BY tool`,
        format: 'JSONEachRow',
      })
    ).json<Record<string, unknown>>();
    assert.deepEqual(rows, [
      { tool: 'billing.Billing.Charge', service: 'billing', agent: 'claude-desktop', agent_version: '1.2.0', account_id: 'acct-1', allowed: false, denied_reason: 'missing scope', error: '', duration_ns: 0, transport: 'http', scopes_required: ['users:read'] },
      { tool: 'files.Files.Read', service: 'files', agent: 'claude-desktop', agent_version: '1.2.0', account_id: 'acct-1', allowed: true, denied_reason: '', error: 'disk on fire', duration_ns: 1500000, transport: 'http', scopes_required: ['users:read'] },
      { tool: 'users.Users.Get', service: 'users', agent: 'claude-desktop', agent_version: '1.2.0', account_id: 'acct-1', allowed: true, denied_reason: '', error: '', duration_ns: 1500000, transport: 'http', scopes_required: ['users:read'] },
    ]);
  });

  it('replays dead letters kept in the table once, through the same pipeline', async () => {
    const good = event(1);
    await clickhouse.insert({
      table: 'dead_letters_v1',
      values: [
        { topic: topics.audit, partition: 0, offset: '7', key: '', value: JSON.stringify(good), headers: {}, reason: 'rejected by an older version' },
        { topic: topics.audit, partition: 0, offset: '8', key: '', value: '{broken', headers: {}, reason: 'not JSON' },
      ],
      format: 'JSONEachRow',
    });
    assert.equal((await listTableDeadLetters(clickhouse)).length, 2);
    const result = await replayTableDeadLetters(clickhouse, pipelineWith());
    assert.equal(result.replayed, 2);
    assert.deepEqual({ stored: result.outcome!.auditRows, dead: result.outcome!.deadLetters }, { stored: 1, dead: 1 });
    assert.equal(await rawCount(), 1);
    // The broken one was dead-lettered again (a new entry); the two replayed ones are marked.
    const pending = await listTableDeadLetters(clickhouse);
    assert.deepEqual(pending.map((l) => [l.offset, l.value]), [['8', '{broken']]);
    assert.equal((await listTableDeadLetters(clickhouse, { includeReplayed: true })).filter((l) => l.replayed).length, 2);
    assert.equal((await replayTableDeadLetters(clickhouse, pipelineWith(), (l) => l.reason === 'nothing')).replayed, 0);
  });

  it('drains everything published to the in-process queue on shutdown', async () => {
    const queue = createMemoryQueue({ maxMessages: 10_000 });
    const worker = createQueueWorker({ queue, pipeline: pipelineWith(), batch: { maxRows: 300, maxWaitMs: 50 }, logger });
    worker.start();
    for (let i = 0; i < 10; i++) {
      const events = Array.from({ length: 100 }, (_, k) => event(i * 100 + k));
      await queue.publish(topics.audit, events.map((e) => ({ key: auditMessageKey(e), value: Buffer.from(JSON.stringify(e)) })));
    }
    await worker.drain();
    assert.equal(queue.size, 0);
    assert.equal(await rawCount(), 1000);
    assert.equal(await rollupCalls(), 1000);
    await assert.rejects(queue.publish(topics.audit, []), /shutting down/);
  });
});
