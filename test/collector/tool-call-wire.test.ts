// Recorded tool calls posted as columns (collector/tool-call-wire.ts): what the worker makes of them is
// exactly what the gateway's thread makes of the same calls (the same audit records, the same OTLP
// bytes), and the columns let go of the calls' strings once posted. Then through the worker sender's
// real threads to the test run's broker, with and without the encoder thread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TraceFlags, type SpanContext } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { normalizeAuditRecord, type AuditRecordInput } from '../../model/audit-event.ts';
import { decodeTraceRequest } from '../../model/otlp.ts';
import { writeTraceRequest } from '../../model/otlp-span-writer.ts';
import { ToolCall } from '../../collector/tool-call.ts';
import { createToolCallBatch, type FastRoute } from '../../collector/tool-call-spans.ts';
import { createToolCallReader, ToolCallWriter, wireable, type ReadCalls } from '../../collector/tool-call-wire.ts';
import { createSpanSink } from '../../collector/tracing.ts';
import { createWarnings } from '../../collector/warnings.ts';
import { createWorkerSender } from '../../collector/worker-sender.ts';
import { captureLogger, consumeExactly, createTopic, suffix, tempDir } from './helpers.ts';

const brokers = process.env.KAFKA_TEST_BROKERS;

const ORIGIN = 1_796_000_000_123.456;
const routeA: FastRoute = { resource: resourceFromAttributes({ 'service.name': 'gateway-a', 'host.cpus': 8, ratio: 0.5, tags: ['x', 'y'] }), scope: { name: 'mcp-audit-analytics/collector', version: '0.1.0' } };
const routeB: FastRoute = { resource: resourceFromAttributes({ 'service.name': 'gateway-b' }, { schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' }), scope: { name: 'other', schemaUrl: 'https://example.com/s' } };
const remoteParent: SpanContext = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED, isRemote: true };

/** Ordinary calls of every shape the columns carry; `ids`: with their ids made already (as with a context manager). */
function calls(ids: boolean): ToolCall[] {
  const made: ToolCall[] = [];
  const call = (i: number, route: FastRoute, fill: (c: ToolCall) => void, ...args: ConstructorParameters<typeof ToolCall>) => {
    const c = new ToolCall(...args);
    c.end = c.start + 0.25 + i * 1.000001;
    c.requestBytes = 10 * i;
    c.responseBytes = 100 + i;
    c.route = route;
    if (ids) {
      c.traceId = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
      c.otelTraceId = `${String(i + 1).padStart(32, '0')}`;
      c.otelSpanId = `${String(i + 1).padStart(16, 'a')}`;
    }
    fill(c);
    made.push(c);
  };
  call(0, routeA, () => {}, 1234.5678, 'users.Users.Get', 'http', 'acct-1', { name: 'claude-code', version: '2.1.0' }, 'session-7', 42);
  call(1, routeA, () => {}, 1300.000001, 'users.Users.List', 'stdio', undefined, undefined, undefined, 'req-a');
  call(2, routeB, (c) => (c.parent = remoteParent), 1400.9, 'orders.Get', 'websocket', '', { name: 'cursor' }, 'session-8', undefined);
  call(3, routeB, (c) => ((c.parent = { ...remoteParent, traceFlags: TraceFlags.NONE }), (c.sampled = false)), 1500, 'orders.Put', 'memory', 'acct-2', { version: '9' }, undefined, 7.5);
  call(4, routeA, (c) => (c.parent = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: TraceFlags.SAMPLED }), 1600.25, 'x'.repeat(256), 'http', 'acct-1', { name: 'claude-code', version: '2.1.0' }, 'session-7', 43);
  return made;
}

/** The records and span messages the gateway's thread makes of `calls` (as collector/index.ts wires the batch). */
function inThread(calls: ToolCall[]): ReadCalls {
  const out: ReadCalls = { records: [], spans: [] };
  const exportSpans = createSpanSink({ topic: 'otlp_spans', tenant: 'acme', maxMessageBytes: 1_000_000, warnings: createWarnings(captureLogger().logger), enqueue: (r) => (out.spans.push(r), true) }, writeTraceRequest);
  const batch = createToolCallBatch({
    audit: (record: AuditRecordInput) => out.records.push(record.gateway === undefined ? { ...record, gateway: 'gw-1' } : record),
    exportSpans: (spans) => void exportSpans(spans),
    onError: (error) => assert.fail(String(error)),
    timeOrigin: ORIGIN,
  });
  for (const call of calls) batch.add(call);
  batch.flush();
  return out;
}

function reader() {
  return createToolCallReader({
    tenant: 'acme',
    spansTopic: 'otlp_spans',
    maxMessageBytes: 1_000_000,
    gateway: 'gw-1',
    timeOrigin: ORIGIN,
    warnings: createWarnings(captureLogger().logger),
    onError: (error) => assert.fail(String(error)),
  });
}

/** What a postMessage of the columns delivers. */
function post(writer: ToolCallWriter) {
  const wire = structuredClone(writer.take());
  writer.clear();
  return wire;
}

test('tool calls through the columns: the same audit records and the same OTLP bytes as in the gateway thread', () => {
  const expected = inThread(calls(true));
  const writer = new ToolCallWriter(8);
  for (const call of calls(true)) {
    assert.ok(wireable(call));
    assert.ok(writer.add(call));
  }
  const read = reader()(post(writer));
  assert.equal(read.records.length, 5);
  assert.deepEqual(read.records, expected.records);
  // A message per run of calls of one route (A A, B, A); the unsampled call has no span.
  assert.equal(read.spans.length, 3);
  assert.deepEqual(read.spans.map((s) => ({ ...s, value: Buffer.from(s.value).toString('hex') })), expected.spans.map((s) => ({ ...s, value: Buffer.from(s.value).toString('hex') })));
  assert.equal(read.records[0]!.timestamp, expected.records[0]!.timestamp);
  assert.equal(read.records[0]!.duration, 250_000);
});

test('tool calls through the columns: ids made in the worker, the span its record\'s; routes announced once; slices bounded; strings let go', () => {
  const writer = new ToolCallWriter(3);
  const read = reader();
  const [a, b, c, d, e] = calls(false) as [ToolCall, ToolCall, ToolCall, ToolCall, ToolCall];
  assert.ok(writer.add(a) && writer.add(b) && writer.add(c));
  assert.equal(writer.add(d), false, 'a slice holds `capacity` calls');
  const first = writer.take();
  assert.deepEqual(first.routes?.map((r) => r.id), [0, 1]);
  const firstRead = read(structuredClone(first));
  writer.clear();
  assert.ok(first.values.every((v) => v === undefined), 'the posted strings are let go');
  assert.ok(writer.add(d) && writer.add(e));
  const second = writer.take();
  assert.equal(second.routes, undefined, 'known routes are not posted again');
  const secondRead = read(structuredClone(second));
  writer.clear();

  const records = [...firstRead.records, ...secondRead.records];
  const spans = [...firstRead.spans, ...secondRead.spans].flatMap((m) => decodeTraceRequest(m.value, 'protobuf', 'acme').spans);
  assert.equal(records.length, 5);
  assert.equal(spans.length, 4, 'the unsampled call has no span');
  for (const record of records) {
    assert.match(record.trace_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(record.otel_trace_id!, /^[0-9a-f]{32}$/);
    assert.match(record.otel_span_id!, /^[0-9a-f]{16}$/);
    assert.equal(record.gateway, 'gw-1');
  }
  assert.equal(records[2]!.otel_trace_id, remoteParent.traceId, 'a child of its remote parent');
  assert.equal(records[3]!.otel_trace_id, remoteParent.traceId);
  for (const span of spans) {
    const record = records.find((r) => r.otel_span_id === span.span_id);
    assert.ok(record, 'every span is a record\'s');
    assert.equal(span.trace_id, record.otel_trace_id);
    assert.equal(span.attributes['mcp.trace_id'], record.trace_id);
    assert.equal(span.attributes['mcp.tool.name'], record.tool);
  }
  assert.equal(spans.find((s) => s.span_id === records[2]!.otel_span_id)?.parent_span_id, remoteParent.spanId);
  assert.deepEqual(spans.map((s) => s.resource_attributes['service.name']), ['gateway-a', 'gateway-a', 'gateway-b', 'gateway-a']);
});

test('wireable: only calls whose inputs are numbers and strings', () => {
  const ordinary = () => calls(false)[0]!;
  assert.ok(wireable(ordinary()));
  const not: [string, (c: ToolCall) => void][] = [
    ['no route (SDK path)', (c) => (c.route = undefined)],
    ['failed', (c) => ((c.failed = true), (c.cause = new Error('x')))],
    ['an error read from the execution', (c) => (c.cause = new Error('x'))],
    ['an isError result', (c) => (c.isErrorResult = true)],
    ['a link', (c) => (c.link = { context: remoteParent })],
    ['a parent with a trace state', (c) => (c.parent = { ...remoteParent, traceState: { serialize: () => 'a=b' } as never })],
    ['an object as request id', (c) => Object.assign(c, { requestId: { id: 1 } })],
  ];
  for (const [what, change] of not) {
    const call = ordinary();
    change(call);
    assert.equal(wireable(call), false, what);
  }
});

test('tool calls through the worker sender, with and without the encoder thread: on the broker, the gateway thread\'s records and span bytes', { skip: brokers ? false : 'KAFKA_TEST_BROKERS is not set; run through `npm test`, which starts a broker' }, async () => {
  const expected = inThread(calls(true));
  for (const encoderThread of [true, false]) {
    const id = suffix();
    const topics = { audit: `wire-audit-${id}`, spans: `wire-spans-${id}` };
    for (const topic of Object.values(topics)) await createTopic(brokers!, topic);
    const { logger, lines } = captureLogger();
    const sender = createWorkerSender({
      config: {
        brokers: [brokers!],
        clientId: `wire-${id}`,
        tenant: 'acme',
        auditTopic: topics.audit,
        spansTopic: topics.spans,
        gateway: 'gw-1',
        timeOrigin: ORIGIN,
        spoolDir: await tempDir('tool-call-wire'),
        spoolMaxBytes: 1 << 20,
        queueMaxRecords: 100,
        batchMaxRecords: 100,
        batchMaxWaitMs: 5,
        maxMessageBytes: 1_000_000,
        encoderThread,
      },
      logger,
      warnings: createWarnings(logger),
      createFallback: () => assert.fail('the worker stopped'),
      finishInThread: () => assert.fail('a call was finished in the gateway thread'),
    });
    for (const call of calls(true)) assert.ok(sender.enqueueToolCall(call));
    await sender.flush();
    const stats = sender.stats();
    await sender.close(5_000);
    assert.deepEqual({ sent: stats.sent, queued: stats.queued, dropped: stats.dropped, invalid: stats.invalid, failed: stats.failed }, { sent: 8, queued: 0, dropped: 0, invalid: 0, failed: 0 }, JSON.stringify(lines));

    const audits = await consumeExactly(brokers!, topics.audit, 5);
    const events = audits.map((m) => JSON.parse(m.value.toString()) as { event_id: string; trace_id: string });
    const wanted = expected.records.map((record) => {
      const sent = events.find((e) => e.trace_id === record.trace_id);
      assert.ok(sent, `the record of ${record.trace_id} arrived`);
      const normalized = normalizeAuditRecord({ ...record, event_id: sent.event_id }, { tenant: 'acme' });
      assert.ok(normalized.ok);
      return JSON.parse(JSON.stringify(normalized.value)) as typeof normalized.value;
    });
    assert.deepEqual(events, wanted, `encoderThread: ${encoderThread}`);
    assert.deepEqual(audits.map((m) => m.key), wanted.map((e) => `acme/${e.agent}`));

    const spans = await consumeExactly(brokers!, topics.spans, 3);
    assert.deepEqual(spans.map((m) => m.value.toString('hex')), expected.spans.map((m) => Buffer.from(m.value).toString('hex')), `encoderThread: ${encoderThread}`);
    assert.deepEqual(spans.map((m) => m.headers), expected.spans.map((m) => m.headers));
  }
});
