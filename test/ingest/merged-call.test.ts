// One call reported both as an audit record and as a server span (go-micro's mcp.tool.call, or one
// written with OpenTelemetry's MCP conventions by the real SDK) is one stored row that keeps what both
// reports know, in either arrival order, in one batch or two, and on redelivery; the rollups count it once.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { createLogger } from '../../core/logger.ts';
import { migrate } from '../../core/migrate.ts';
import { createClickHouseWriter } from '../../ingest/clickhouse-writer.ts';
import { createDeadLetterTable } from '../../ingest/dead-letter-table.ts';
import type { InboundMessage } from '../../ingest/messages.ts';
import { createPipeline } from '../../ingest/pipeline.ts';
import { otlpProtobuf, recordSemconvSpans, type SemconvCall } from '../helpers/semconv-spans.ts';

const topics = { audit: 'mcp-audit', spans: 'otlp_spans' };
const TENANT = 'merge';
let clickhouse: ClickHouseClient;
let offset = 0;

function auditMessage(record: Record<string, unknown>): InboundMessage {
  return { topic: topics.audit, partition: 0, offset: String(offset++), key: null, value: Buffer.from(JSON.stringify({ tenant: TENANT, ...record })), headers: {} };
}

function spanMessage(spans: ReadableSpan[]): InboundMessage {
  return { topic: topics.spans, partition: 1, offset: String(offset++), key: null, value: Buffer.from(otlpProtobuf(spans)), headers: { tenant: TENANT } };
}

const iso = (ms: number) => new Date(ms).toISOString();
const chTime = (ms: number) => `${iso(ms).slice(0, 10)} ${iso(ms).slice(11, 23)}000000`;

const START = Date.UTC(2026, 11, 2, 14, 0, 0);

/** What a stored call must show: each field from the report that knows it. */
interface Expected {
  trace_id: string;
  tool: string;
  timestamp: string;
  account_id: string;
  scopes_required: string[];
  allowed: boolean;
  denied_reason: string;
  duration_ns: number;
  error: string;
  agent: string;
  session_id: string;
  gateway: string;
  transport: string;
  otel_trace_id: string;
  otel_span_id: string;
  request_bytes: number;
  source: string;
}

interface Pair {
  span: ReadableSpan;
  record: Record<string, unknown>;
  expected: Expected;
}

/**
 * A call of a server instrumented with the conventions, and its audit record, which (without
 * go-micro's per-call id) names the call by the span's trace id and carries its span id.
 */
function semconvPairs(calls: (SemconvCall & { record: Record<string, unknown> })[], oneTrace = false): Pair[] {
  const spans = recordSemconvSpans('weather-gateway', calls, oneTrace);
  return calls.map((call, i) => {
    const span = spans[i]!;
    const { traceId, spanId } = span.spanContext();
    const record: Record<string, unknown> = {
      trace_id: traceId,
      otel_trace_id: traceId,
      otel_span_id: spanId,
      timestamp: iso(call.startMs + call.durationMs),
      tool: call.tool,
      ...call.record,
    };
    const allowed = record.allowed as boolean;
    return {
      span,
      record,
      expected: {
        trace_id: traceId,
        tool: call.tool,
        timestamp: chTime(call.startMs),
        account_id: (record.account_id as string | undefined) ?? '',
        scopes_required: (record.scopes_required as string[] | undefined) ?? [],
        allowed,
        denied_reason: (record.denied_reason as string | undefined) ?? '',
        duration_ns: allowed ? call.durationMs * 1e6 : 0,
        error: (record.error as string | undefined) ?? (allowed && call.error ? call.error.message : ''),
        agent: (record.agent as string | undefined) ?? call.agent ?? '',
        session_id: call.session ?? '',
        gateway: 'weather-gateway',
        transport: 'http',
        otel_trace_id: traceId,
        otel_span_id: spanId,
        request_bytes: (record.request_bytes as number | undefined) ?? 0,
        source: 'audit',
      },
    };
  });
}

/** A go-micro call: its span (mcp.tool.call, go-micro's names) and its AuditRecord, paired by go-micro's per-call trace id. */
function goMicroPair(n: number, tool: string, startMs: number): Pair {
  const goTraceId = `0000000${n}-6f1c-4e5f-8a9b-0c1d2e3f4a5b`;
  const [span] = recordSemconvSpans('go-micro-gateway', [
    {
      tool,
      startMs,
      durationMs: 4,
      name: 'mcp.tool.call',
      method: 'unused',
      extra: {
        'mcp.method.name': 'tools/call',
        'mcp.tool.name': tool,
        'mcp.trace_id': goTraceId,
        'mcp.transport': 'http',
        'mcp.account.id': 'acct-7',
        'mcp.auth.allowed': true,
        'mcp.client.name': 'claude-desktop',
      },
    },
  ]);
  const { traceId, spanId } = span!.spanContext();
  const record = { trace_id: goTraceId, timestamp: iso(startMs + 4), tool, account_id: 'acct-7', scopes_required: ['users:read'], allowed: true, duration: 4_000_000 };
  return {
    span: span!,
    record,
    expected: {
      trace_id: goTraceId, tool, timestamp: chTime(startMs), account_id: 'acct-7', scopes_required: ['users:read'], allowed: true,
      denied_reason: '', duration_ns: 4_000_000, error: '', agent: 'claude-desktop', session_id: '', gateway: 'go-micro-gateway',
      transport: 'http', otel_trace_id: traceId, otel_span_id: spanId, request_bytes: 0, source: 'audit',
    },
  };
}

async function storedCalls(): Promise<Expected[]> {
  const rows = await (
    await clickhouse.query({
      query: `SELECT trace_id, tool, toString(timestamp) AS timestamp, account_id, scopes_required, allowed, denied_reason,
                     toUInt64(duration_ns) AS duration_ns, error, agent, session_id, gateway, transport, otel_trace_id, otel_span_id,
                     toUInt64(request_bytes) AS request_bytes, source
              FROM audit_events_v1 FINAL WHERE tenant = {tenant:String} ORDER BY otel_span_id`,
      query_params: { tenant: TENANT },
      format: 'JSONEachRow',
    })
  ).json<Expected>();
  return rows.map((r) => ({ ...r, duration_ns: Number(r.duration_ns), request_bytes: Number(r.request_bytes) }));
}

async function rollup(): Promise<{ calls: number; errors: number; denials: number; duration: number }> {
  const [r] = await (
    await clickhouse.query({
      query: `SELECT sum(calls) AS calls, sum(errors) AS errors, sum(denials) AS denials, sum(duration_sum_ns) AS duration
              FROM tool_calls_1m_v1 WHERE tenant = {tenant:String}`,
      query_params: { tenant: TENANT },
      format: 'JSONEachRow',
    })
  ).json<Record<string, string>>();
  return { calls: Number(r!.calls), errors: Number(r!.errors), denials: Number(r!.denials), duration: Number(r!.duration) };
}

/** The keys of audit_timeline_v1's markers (sql/0024): where a first row was replaced by a merge stamped elsewhere. */
async function markers(): Promise<string[]> {
  const rows = await (
    await clickhouse.query({
      query: `SELECT toString(timestamp) AS at FROM audit_timeline_v1 WHERE tenant = {tenant:String} AND source = 'replaced' ORDER BY timestamp`,
      query_params: { tenant: TENANT },
      format: 'JSONEachRow',
    })
  ).json<{ at: string }>();
  return rows.map((r) => r.at);
}

const byspan = (a: Expected, b: Expected) => (a.otel_span_id < b.otel_span_id ? -1 : 1);

describe('one merged record per call', () => {
  before(async () => {
    clickhouse = await openClickHouse({ database: 'merge_test', dataDir: mkdtempSync(path.join(os.tmpdir(), 'merge-')) });
    await migrate(clickhouse, { retentionDays: 3650 });
  });
  after(() => clickhouse.close());
  beforeEach(async () => {
    for (const table of ['audit_events_v1', 'call_reports_v2', 'tool_calls_1m_v1', 'spans_v1', 'audit_timeline_v1']) await clickhouse.command({ query: `TRUNCATE TABLE ${table}` });
  });

  const pipeline = () => createPipeline({ writer: createClickHouseWriter(clickhouse), deadLetters: createDeadLetterTable(clickhouse), topics, logger: createLogger('silent') });

  it('keeps what the record and the span know, whichever arrives first, in one batch or two, and on redelivery', async () => {
    const pairs = [
      ...semconvPairs([
        // span first, record in a later batch
        { tool: 'get-weather', startMs: START, durationMs: 12, session: 'sess-1', agent: 'trip-planner', record: { account_id: 'acct-1', scopes_required: ['weather:read'], allowed: true, duration: 12_000_000, request_bytes: 40 } },
        // record first, span in a later batch; the tool failed (isError: error.type tool_error)
        { tool: 'get-weather', startMs: START + 1_000, durationMs: 3, session: 'sess-1', error: { type: 'tool_error', message: 'city not found' }, record: { account_id: 'acct-1', allowed: true, duration: 3_000_000, error: 'city not found', agent: 'trip-planner' } },
        // one batch, span before record
        { tool: 'get-forecast', startMs: START + 2_000, durationMs: 7, record: { account_id: 'acct-2', allowed: true, duration: 7_000_000 } },
        // one batch, record before span; denied by the gateway's policy (the span only saw a JSON-RPC error)
        { tool: 'book-flight', startMs: START + 3_000, durationMs: 1, error: { type: '-32003', message: 'Forbidden: missing scope' }, record: { account_id: 'acct-2', scopes_required: ['flights:write'], allowed: false, denied_reason: 'missing scope' } },
      ]),
      goMicroPair(1, 'users.Users.Get', START + 4_000), // span first
      goMicroPair(2, 'users.Users.List', START + 5_000), // record first
    ];
    const [a, b, c, d, g1, g2] = pairs as [Pair, Pair, Pair, Pair, Pair, Pair];
    const p = pipeline();
    await p.process([spanMessage([a.span, g1.span])]);
    await p.process([auditMessage(b.record), auditMessage(g2.record)]);
    const together = await p.process([spanMessage([c.span]), auditMessage(c.record), auditMessage(d.record), spanMessage([d.span])]);
    assert.deepEqual(together, { messages: 4, auditRows: 2, spanRows: 2, duplicates: 2, deadLetters: 0 });
    await p.process([auditMessage(a.record), auditMessage(g1.record), spanMessage([b.span, g2.span])]);

    const expected = pairs.map((pair) => pair.expected).sort(byspan);
    assert.deepEqual(await storedCalls(), expected);
    const counts = {
      calls: 6,
      errors: 1, // b
      denials: 1, // d
      duration: (12 + 3 + 7 + 0 + 4 + 4) * 1e6,
    };
    assert.deepEqual(await rollup(), counts);
    // A record stored first (b, g2) is stamped at the call's end, the merge at its start: a marker hides
    // the record's row. A span stored first shares its key with the merge, and one batch stores one row.
    const marked = [chTime(START + 1_000 + 3), chTime(START + 5_000 + 4)];
    assert.deepEqual(await markers(), marked);

    // Everything again, in other batches and orders: nothing changes, nothing is counted twice.
    const all = pairs.flatMap((pair) => [auditMessage(pair.record), spanMessage([pair.span])]);
    const again = await p.process(all.reverse());
    assert.deepEqual(again, { messages: 12, auditRows: 0, spanRows: 6, duplicates: 12, deadLetters: 0 });
    await p.process(pairs.map((pair) => spanMessage([pair.span])));
    assert.deepEqual(await storedCalls(), expected);
    assert.deepEqual(await rollup(), counts);
    assert.deepEqual(await markers(), marked);
  });

  it('tells apart calls of the same tool in one trace by their span ids', async () => {
    const pairs = semconvPairs(
      [0, 1, 2].map((i) => ({ tool: 'search', startMs: START + i * 100, durationMs: 5 + i, session: 's', record: { account_id: `acct-${i}`, allowed: true, duration: (5 + i) * 1e6 } })),
      true,
    );
    assert.equal(new Set(pairs.map((pair) => pair.expected.otel_trace_id)).size, 1, 'one trace');
    const p = pipeline();
    await p.process([spanMessage(pairs.map((pair) => pair.span))]);
    await p.process(pairs.map((pair) => auditMessage(pair.record)));
    assert.deepEqual(await storedCalls(), pairs.map((pair) => pair.expected).sort(byspan));
    assert.deepEqual(await rollup(), { calls: 3, errors: 0, denials: 0, duration: 18e6 });
  });
});
