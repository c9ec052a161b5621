// The fast path of instrumentServer (collector/tool-call-spans.ts) against the SDK path: the same calls
// through a gateway whose tracer provider feeds only collector.spanProcessor (recorded spans) and
// through one that also feeds an in-memory exporter (SDK spans) give the same span rows and audit
// events, ids and times aside; ids and times are checked for what they must be. The same again with
// the collector's worker threads and the real broker of the test run, where the ordinary calls are
// finished in the encoder thread (collector/tool-call-wire.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { context, propagation, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { createCollector, ToolDeniedError, TOOL_DENIED_CODE } from '../../collector/index.ts';
import { fastRouteOf } from '../../collector/tool-call-spans.ts';
import { ToolCallPool } from '../../collector/tool-call.ts';
import { ToolCallWriter } from '../../collector/tool-call-wire.ts';
import type { OutboundMessage, Publisher } from '../../core/publisher.ts';
import { normalizeAuditRecord, type AuditEvent } from '../../model/audit-event.ts';
import { decodeTraceRequest } from '../../model/otlp.ts';
import { MCP_ATTR, TOOL_CALL_SPAN, type SpanRow } from '../../model/span.ts';
import { AsyncLocalStorageContextManager } from '../../demo/tracing.ts';
import { captureLogger, consumeExactly, createTopic, suffix, tempDir } from './helpers.ts';

const brokers = process.env.KAFKA_TEST_BROKERS;

const PARENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN = '00f067aa0ba902b7';

interface Seen {
  baggage?: string;
  traceId?: string;
  spanId?: string;
}

interface Outcome {
  events: AuditEvent[];
  spans: SpanRow[];
  seen: Seen[];
}

/**
 * The calls of the comparison, through a gateway whose provider also feeds an in-memory exporter
 * (`sdk`) or not (`recorded`), both with an in-process publisher; `worker`: not, with the collector's
 * worker threads sending to the test run's broker.
 */
async function run(mode: 'sdk' | 'recorded' | 'worker'): Promise<Outcome> {
  const sdk = mode === 'sdk';
  const published = new Map<string, OutboundMessage[]>();
  const publisher: Publisher = { publish: async (topic, messages) => void published.set(topic, [...(published.get(topic) ?? []), ...messages]) };
  const { logger, lines } = captureLogger();
  let provider: BasicTracerProvider | undefined;
  const late = { getTracer: (name: string, version?: string) => provider!.getTracer(name, version) };
  const topics = { audit: `tool-calls-audit-${suffix()}`, spans: `tool-calls-spans-${suffix()}` };
  if (mode === 'worker') for (const topic of Object.values(topics)) await createTopic(brokers!, topic);
  const collector = createCollector({
    ...(mode === 'worker' ? { kafka: { brokers: [brokers!] }, topics } : { publisher }),
    tracerProvider: late,
    spoolDir: await tempDir('tool-call-spans'),
    tenant: 'acme',
    gateway: 'gw-1',
    batchMaxWaitMs: 5,
    logger,
  });
  const resource = resourceFromAttributes({ 'service.name': 'gateway-a' });
  provider = new BasicTracerProvider({ resource, spanProcessors: sdk ? [new SimpleSpanProcessor(new InMemorySpanExporter()), collector.spanProcessor] : [collector.spanProcessor] });

  const server = new McpServer({ name: 'gateway', version: '1.0.0' });
  collector.instrumentServer(server);
  const seen: Seen[] = [];
  const look = () => {
    const active = context.active();
    seen.push({ baggage: propagation.getBaggage(active)?.getEntry('userId')?.value, traceId: trace.getSpanContext(active)?.traceId, spanId: trace.getSpanContext(active)?.spanId });
  };
  server.registerTool('t.ok', {}, async () => (look(), { content: [{ type: 'text', text: 'fine' }] }));
  server.registerTool('t.fail', {}, async () => {
    throw Object.assign(new Error('database is down'), { code: 'E_DB' });
  });
  server.registerTool('t.soft', {}, async () => ({ content: [{ type: 'text', text: 'no' }], isError: true }));
  server.registerTool('t.deny', {}, async () => {
    throw new ToolDeniedError('insufficient scopes', { scopesRequired: ['w:1', 'w:2'] });
  });
  server.registerTool('t.limit', {}, async () => {
    throw new McpError(TOOL_DENIED_CODE, 'slow down', { reason: 'rate limited', rateLimited: true });
  });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  serverSide.sessionId = 'session-7';
  await server.connect(serverSide);
  const client = new Client({ name: 'claude-code', version: '2.1.0' });
  await client.connect(clientSide);

  await client.callTool({ name: 't.ok', arguments: { id: 'x' } });
  await client.callTool({ name: 't.ok', arguments: {}, _meta: { traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01`, tracestate: 'rojo=00f067aa0ba902b7', baggage: 'userId=alice' } });
  await client.callTool({ name: 't.ok', arguments: {}, _meta: { traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-00` } }); // not sampled: ids, no span
  await client.callTool({ name: 't.ok', arguments: {}, _meta: { baggage: 'userId=bob' } });
  // The worker sender posts what it holds, and so gives its calls back for the next calls to reuse.
  await collector.flush();
  await client.callTool({ name: 't.fail', arguments: {} });
  await client.callTool({ name: 't.soft', arguments: {} });
  await client.callTool({ name: 't.deny', arguments: {} });
  await client.callTool({ name: 't.limit', arguments: {} });
  // A span active when the request arrives is linked (with _meta) or the parent (without).
  const ambient = provider.getTracer('transport').startSpan('POST /mcp');
  await context.with(trace.setSpan(context.active(), ambient), async () => {
    await client.callTool({ name: 't.ok', arguments: {}, _meta: { traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01` } });
    await client.callTool({ name: 't.ok', arguments: {} });
  });
  ambient.end();

  await client.close();
  await provider.forceFlush();
  await collector.flush();
  if (mode === 'worker') {
    const { sent, queued, dropped, failed, invalid } = collector.stats();
    // 10 records, and the spans in at least one message (the ambient span's, and the calls').
    assert.deepEqual({ queued, dropped, failed, invalid }, { queued: 0, dropped: 0, failed: 0, invalid: 0 }, JSON.stringify(lines));
    assert.ok(sent > 10, `sent ${sent}`);
    published.set('mcp-audit', await consumeExactly(brokers!, topics.audit, 10));
    published.set('otlp_spans', await consumeExactly(brokers!, topics.spans, sent - 10));
  }
  const events = (published.get('mcp-audit') ?? []).map((m) => {
    const parsed = normalizeAuditRecord(JSON.parse(m.value.toString()));
    assert.ok(parsed.ok);
    return parsed.value;
  });
  const spans = (published.get('otlp_spans') ?? []).flatMap((m) => decodeTraceRequest(m.value, 'protobuf', 'acme').spans).filter((s) => s.name === TOOL_CALL_SPAN);
  await collector.shutdown();
  await provider.shutdown();
  return { events, spans, seen };
}

/** A span row without what differs from run to run (ids, times, the per-call id), its parent as a role. */
function comparable(row: SpanRow, events: AuditEvent[], ambientSpanIds: Set<string>): unknown {
  const { trace_id: _t, span_id: _s, parent_span_id: parent, start_time_unix_nano: _st, duration_ns: _d, attributes, events: spanEvents, ...rest } = row as SpanRow & Record<string, unknown>;
  const { [MCP_ATTR.traceId]: perCall, ...otherAttributes } = attributes;
  assert.ok(events.some((e) => e.trace_id === perCall && e.otel_span_id === row.span_id && e.otel_trace_id === row.trace_id), 'the span is its record\'s');
  return {
    ...rest,
    links: (rest as { links?: unknown[] }).links?.length,
    parent: parent === PARENT_SPAN ? 'client' : ambientSpanIds.has(parent) ? 'ambient' : parent,
    attributes: otherAttributes,
    events: spanEvents.map(({ time_unix_nano: _time, ...e }) => e),
  };
}

function comparableEvent({ event_id: _e, trace_id: _t, timestamp: _ts, duration: _d, otel_trace_id: o, otel_span_id: _s, ...rest }: AuditEvent): unknown {
  return { ...rest, continued: o === PARENT_TRACE, hasSpanIds: o !== '' };
}

test('recorded tool-call spans and records are the SDK path\'s, with and without a context manager', async (t) => {
  for (const withManager of [false, true]) {
    if (withManager) context.setGlobalContextManager(new AsyncLocalStorageContextManager());
    const sdk = await run('sdk');
    const fast = await run('recorded');
    if (withManager) context.disable();

    assert.equal(fast.events.length, 10);
    assert.deepEqual(fast.events.map(comparableEvent), sdk.events.map(comparableEvent));
    assert.equal(fast.spans.length, 9, 'the unsampled call has no span');
    const ambientOf = (o: Outcome) => new Set(o.spans.map((s) => s.parent_span_id).filter((p) => p !== '' && p !== PARENT_SPAN));
    assert.deepEqual(
      fast.spans.map((s) => comparable(s, fast.events, ambientOf(fast))),
      sdk.spans.map((s) => comparable(s, sdk.events, ambientOf(sdk))),
    );
    const [plain, continued, unsampled, baggageOnly] = fast.events as [AuditEvent, AuditEvent, AuditEvent, AuditEvent];
    assert.equal(continued.otel_trace_id, PARENT_TRACE);
    assert.equal(unsampled.otel_trace_id, PARENT_TRACE);
    assert.match(unsampled.otel_span_id, /^[0-9a-f]{16}$/);
    assert.notEqual(baggageOnly.otel_trace_id, PARENT_TRACE);
    assert.equal(fast.spans.find((s) => s.span_id === continued.otel_span_id)?.parent_span_id, PARENT_SPAN);
    assert.ok(fast.spans[0]!.resource_attributes['service.name'] === 'gateway-a');
    if (withManager) {
      // The handler runs in the call's span context, with the client's baggage.
      assert.deepEqual(fast.seen.slice(0, 4), [
        { baggage: undefined, traceId: plain.otel_trace_id, spanId: plain.otel_span_id },
        { baggage: 'alice', traceId: PARENT_TRACE, spanId: continued.otel_span_id },
        { baggage: undefined, traceId: PARENT_TRACE, spanId: unsampled.otel_span_id },
        { baggage: 'bob', traceId: baggageOnly.otel_trace_id, spanId: baggageOnly.otel_span_id },
      ]);
      assert.deepEqual(fast.seen.map((s) => s.baggage), sdk.seen.map((s) => s.baggage));
    } else {
      assert.ok(fast.seen.every((s) => s.traceId === undefined), 'no context manager: no active span in the handler, as with the SDK span');
    }
  }
  t.diagnostic('compared 10 calls, both ways, with and without a context manager');
});

/** The outcome with its records and spans in the order of the calls (the worker's threads may send them in another). */
function inCallOrder(o: Outcome): Outcome {
  return {
    ...o,
    events: [...o.events].sort((a, b) => a.timestamp.localeCompare(b.timestamp)),
    spans: [...o.spans].sort((a, b) => Number(BigInt(a.start_time_unix_nano) - BigInt(b.start_time_unix_nano))),
  };
}

test('through the worker threads, where the ordinary calls are finished in the encoder thread: the same records and spans', { skip: brokers ? false : 'KAFKA_TEST_BROKERS is not set; run through `npm test`, which starts a broker' }, async (t) => {
  // Calls written into the columns posted to the worker (counted, so the test knows that path ran).
  let wired = 0;
  const add = ToolCallWriter.prototype.add;
  ToolCallWriter.prototype.add = function (this: ToolCallWriter, call) {
    const taken = add.call(this, call);
    if (taken) wired++;
    return taken;
  };
  // Calls taken from the pool that were calls before (given back once posted).
  let reused = 0;
  const take = ToolCallPool.prototype.take;
  ToolCallPool.prototype.take = function (this: ToolCallPool, ...args: Parameters<ToolCallPool['take']>) {
    if (this.size > 0) reused++;
    return take.apply(this, args);
  };
  t.after(() => {
    ToolCallWriter.prototype.add = add;
    ToolCallPool.prototype.take = take;
  });
  for (const withManager of [false, true]) {
    if (withManager) context.setGlobalContextManager(new AsyncLocalStorageContextManager());
    const sdk = inCallOrder(await run('sdk'));
    wired = 0;
    reused = 0;
    const worker = inCallOrder(await run('worker'));
    if (withManager) context.disable();

    // Plain, unsampled, baggage only, the two under the ambient span, except (with a context manager,
    // where the ambient span is active) the linked one; the others have a trace state or an error.
    assert.equal(wired, withManager ? 4 : 5, 'ordinary calls went to the worker as columns');
    assert.ok(reused >= 3, `later calls reuse the posted ones (${reused})`);
    assert.equal(worker.events.length, 10);
    assert.equal(new Set(worker.events.map((e) => e.event_id)).size, 10);
    assert.deepEqual(worker.events.map(comparableEvent), sdk.events.map(comparableEvent));
    assert.ok(worker.events.every((e) => e.gateway === 'gw-1'));
    assert.equal(worker.spans.length, 9, 'the unsampled call has no span');
    const ambientOf = (o: Outcome) => new Set(o.spans.map((s) => s.parent_span_id).filter((p) => p !== '' && p !== PARENT_SPAN));
    assert.deepEqual(
      worker.spans.map((s) => comparable(s, worker.events, ambientOf(worker))),
      sdk.spans.map((s) => comparable(s, sdk.events, ambientOf(sdk))),
    );
    const [plain, , unsampled] = worker.events as [AuditEvent, AuditEvent, AuditEvent];
    assert.equal(unsampled.otel_trace_id, PARENT_TRACE);
    assert.match(plain.otel_span_id, /^[0-9a-f]{16}$/);
    assert.match(plain.trace_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    if (withManager) assert.deepEqual(worker.seen.slice(0, 1), [{ baggage: undefined, traceId: plain.otel_trace_id, spanId: plain.otel_span_id }]);
  }
  t.diagnostic('compared 10 calls through the worker threads with the SDK path, with and without a context manager');
});

test('fastRouteOf: only a tracer feeding the collector alone, with the SDK defaults', () => {
  const { logger } = captureLogger();
  const publisher: Publisher = { publish: async () => {} };
  const collector = createCollector({ publisher, spoolDir: '/tmp/unused-tool-call-spans', logger });
  const alone = new BasicTracerProvider({ spanProcessors: [collector.spanProcessor] });
  assert.ok(fastRouteOf(alone.getTracer('s'), collector.spanProcessor));
  const two = new BasicTracerProvider({ spanProcessors: [collector.spanProcessor, new SimpleSpanProcessor(new InMemorySpanExporter())] });
  assert.equal(fastRouteOf(two.getTracer('s'), collector.spanProcessor), undefined);
  const sampler = new BasicTracerProvider({ sampler: new AlwaysOnSampler(), spanProcessors: [collector.spanProcessor] });
  assert.equal(fastRouteOf(sampler.getTracer('s'), collector.spanProcessor), undefined);
  const limits = new BasicTracerProvider({ spanLimits: { attributeValueLengthLimit: 64 }, spanProcessors: [collector.spanProcessor] });
  assert.equal(fastRouteOf(limits.getTracer('s'), collector.spanProcessor), undefined);
  assert.equal(fastRouteOf(trace.getTracer('noop'), collector.spanProcessor), undefined);
  void collector.shutdown();
});

test("toolCallSpans: 'sdk' keeps an SDK span per call even when the collector's processor is alone; by default the handler's active span is non-recording", async (t) => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager());
  t.after(() => context.disable());
  const recording: Record<string, boolean | undefined> = {};
  for (const mode of ['recorded', 'sdk'] as const) {
    const { logger } = captureLogger();
    const published: OutboundMessage[] = [];
    const publisher: Publisher = { publish: async (topic, messages) => void (topic === 'otlp_spans' && published.push(...messages)) };
    let provider: BasicTracerProvider | undefined;
    const late = { getTracer: (name: string, version?: string) => provider!.getTracer(name, version) };
    const collector = createCollector({ publisher, tracerProvider: late, spoolDir: await tempDir('tool-call-spans'), toolCallSpans: mode, logger });
    provider = new BasicTracerProvider({ spanProcessors: [collector.spanProcessor] });
    const server = new McpServer({ name: 'gateway', version: '1.0.0' });
    collector.instrumentServer(server);
    server.registerTool('t.ok', {}, async () => {
      recording[mode] = trace.getActiveSpan()?.isRecording();
      return { content: [{ type: 'text', text: 'fine' }] };
    });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 'c', version: '1' });
    await client.connect(clientSide);
    await client.callTool({ name: 't.ok', arguments: {} });
    await client.close();
    await provider.forceFlush();
    await collector.flush();
    assert.equal(published.flatMap((m) => decodeTraceRequest(m.value, 'protobuf', 'default').spans).filter((s) => s.name === TOOL_CALL_SPAN).length, 1, mode);
    await collector.shutdown();
  }
  assert.deepEqual(recording, { recorded: false, sdk: true });
});
