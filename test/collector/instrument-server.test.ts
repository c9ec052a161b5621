// instrumentServer with a real MCP SDK client and server over InMemoryTransport: every tools/call becomes
// one audit record (agent from clientInfo, tool, duration, error, denial, sizes) and one `mcp.tool.call`
// span with go-micro's attributes; the gateway's spans reach the spans topic through spanProcessor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_TOOL_NAME,
  ATTR_JSONRPC_REQUEST_ID,
  ATTR_MCP_METHOD_NAME,
  ATTR_MCP_SESSION_ID,
  ATTR_RPC_RESPONSE_STATUS_CODE,
  GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL,
  MCP_METHOD_NAME_VALUE_TOOLS_CALL,
} from '@opentelemetry/semantic-conventions/incubating';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { CallToolRequestSchema, ListToolsRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import { createCollector, ToolDeniedError, TOOL_DENIED_CODE, type Collector } from '../../collector/index.ts';
import type { OutboundMessage, Publisher } from '../../core/publisher.ts';
import { normalizeAuditRecord, type AuditEvent } from '../../model/audit-event.ts';
import { decodeTraceRequest } from '../../model/otlp.ts';
import { MCP_ATTR, MCP_EXT_ATTR, TOOL_CALL_SPAN } from '../../model/span.ts';
import { AsyncLocalStorageContextManager } from '../../demo/tracing.ts';
import { captureLogger, tempDir } from './helpers.ts';

const CLIENT_INFO = { name: 'claude-code', version: '2.1.0' };
const PARENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN = '00f067aa0ba902b7';

interface Harness {
  collector: Collector;
  memory: InMemorySpanExporter;
  provider: BasicTracerProvider;
  published: Map<string, OutboundMessage[]>;
  client: Client;
}

async function harness(server: McpServer | Server, register: () => void, sessionId?: string): Promise<Harness> {
  const published = new Map<string, OutboundMessage[]>();
  const publisher: Publisher = {
    publish: async (topic, messages) => void published.set(topic, [...(published.get(topic) ?? []), ...messages]),
  };
  const memory = new InMemorySpanExporter();
  const { logger } = captureLogger();
  // The provider needs the collector's processor, and the collector a provider: one is looked up late.
  let provider: BasicTracerProvider | undefined;
  const lateProvider = { getTracer: (name: string, version?: string) => provider!.getTracer(name, version) };
  const collector = createCollector({ publisher, tracerProvider: lateProvider, spoolDir: await tempDir('instrument'), tenant: 'acme', batchMaxWaitMs: 5, logger });
  provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory), collector.spanProcessor] });

  collector.instrumentServer(server);
  register(); // tools registered after instrumentServer are audited too
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  if (sessionId) serverTransport.sessionId = sessionId;
  await server.connect(serverTransport);
  const client = new Client(CLIENT_INFO);
  await client.connect(clientTransport);
  return { collector, memory, provider, published, client };
}

async function auditEvents(h: Harness): Promise<AuditEvent[]> {
  await h.collector.flush();
  return (h.published.get('mcp-audit') ?? []).map((m) => {
    const parsed = normalizeAuditRecord(JSON.parse(m.value.toString()));
    assert.ok(parsed.ok);
    return parsed.value;
  });
}

const spanFor = (h: Harness, event: AuditEvent): ReadableSpan => {
  const span = h.memory.getFinishedSpans().find((s) => s.spanContext().spanId === event.otel_span_id);
  assert.ok(span, `span of ${event.tool}`);
  return span;
};

const bytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

test('instrumentServer (McpServer): audit records and mcp.tool.call spans for ok, error, isError and denied calls', async () => {
  const server = new McpServer({ name: 'gateway', version: '1.0.0' });
  const h = await harness(
    server,
    () => {
      server.registerTool('blog.Blog.Read', { inputSchema: { id: z.string() } }, async ({ id }) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return { content: [{ type: 'text', text: `post ${id}: ${'lorem '.repeat(20)}` }] };
      });
      server.registerTool('blog.Blog.Fail', {}, async () => {
        throw new Error('database is down');
      });
      server.registerTool('blog.Blog.Soft', {}, async () => ({ content: [{ type: 'text', text: 'secret result text' }], isError: true }));
      server.registerTool('blog.Blog.Create', {}, async () => {
        throw new ToolDeniedError('insufficient scopes', { scopesRequired: ['blog:write'] });
      });
      server.registerTool('blog.Blog.Spam', {}, async () => {
        throw new McpError(TOOL_DENIED_CODE, 'slow down', { reason: 'rate limited', rateLimited: true });
      });
    },
    'session-42',
  );

  const args = { id: 'p-1' };
  const okResult = await h.client.callTool({
    name: 'blog.Blog.Read',
    arguments: args,
    _meta: { traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01` },
  });
  const failResult = await h.client.callTool({ name: 'blog.Blog.Fail', arguments: {} });
  assert.equal(failResult.isError, true, 'McpServer turns the thrown error into an isError result');
  await h.client.callTool({ name: 'blog.Blog.Soft', arguments: {} });
  await h.client.callTool({ name: 'blog.Blog.Create', arguments: {} });
  await h.client.callTool({ name: 'blog.Blog.Spam', arguments: {} });

  const events = await auditEvents(h);
  assert.deepEqual(events.map((e) => e.tool), ['blog.Blog.Read', 'blog.Blog.Fail', 'blog.Blog.Soft', 'blog.Blog.Create', 'blog.Blog.Spam']);
  const [ok, fail, soft, denied, limited] = events as [AuditEvent, AuditEvent, AuditEvent, AuditEvent, AuditEvent];

  for (const e of events) {
    assert.equal(e.agent, 'claude-code');
    assert.equal(e.agent_version, '2.1.0');
    assert.equal(e.session_id, 'session-42');
    assert.equal(e.transport, 'memory');
    assert.equal(e.tenant, 'acme');
    assert.match(e.trace_id, /^[0-9a-f-]{36}$/, 'a fresh UUID per call');
    assert.match(e.otel_trace_id, /^[0-9a-f]{32}$/);
    assert.ok(e.duration > 0);
    assert.ok(Math.abs(Date.parse(`${e.timestamp.slice(0, 23)}Z`) - Date.now()) < 60_000, 'timestamp of the call');
  }
  assert.equal(new Set(events.map((e) => e.trace_id)).size, events.length);

  assert.equal(ok.allowed, true);
  assert.equal(ok.error, '');
  assert.ok(ok.duration >= 5_000_000, `duration ${ok.duration} ns covers the 5 ms tool`);
  assert.equal(ok.request_bytes, bytes(args));
  assert.equal(ok.response_bytes, bytes(okResult));
  assert.equal(ok.otel_trace_id, PARENT_TRACE, 'trace context from _meta.traceparent');

  assert.equal(fail.allowed, true);
  assert.equal(fail.error, 'database is down', 'the thrown message, not the result text');
  assert.equal(soft.error, 'the tool returned an error result (isError: true)');
  assert.ok(!JSON.stringify(events).includes('secret result text'), 'results are never stored');
  assert.ok(!JSON.stringify(events).includes('p-1'), 'arguments are never stored');

  assert.equal(denied.allowed, false);
  assert.equal(denied.denied_reason, 'insufficient scopes');
  assert.deepEqual(denied.scopes_required, ['blog:write']);
  assert.equal(denied.error, '');
  assert.equal(limited.allowed, false);
  assert.equal(limited.denied_reason, 'rate limited');

  // Spans, as go-micro names them.
  const okSpan = spanFor(h, ok);
  assert.equal(okSpan.name, TOOL_CALL_SPAN);
  assert.equal(okSpan.kind, SpanKind.SERVER);
  assert.equal(okSpan.spanContext().traceId, PARENT_TRACE);
  assert.equal(okSpan.parentSpanContext?.spanId, PARENT_SPAN);
  assert.deepEqual(okSpan.attributes, {
    [MCP_ATTR.toolName]: 'blog.Blog.Read',
    [MCP_ATTR.transport]: 'memory',
    [MCP_ATTR.traceId]: ok.trace_id,
    [MCP_ATTR.authAllowed]: true,
    // Ours, so that a span alone names the agent (model/tool-call-span.ts).
    [MCP_EXT_ATTR.clientName]: 'claude-code',
    [MCP_EXT_ATTR.clientVersion]: '2.1.0',
    [MCP_EXT_ATTR.sessionId]: 'session-42',
    // OpenTelemetry's MCP conventions, beside go-micro's names (names from @opentelemetry/semantic-conventions).
    [ATTR_MCP_METHOD_NAME]: MCP_METHOD_NAME_VALUE_TOOLS_CALL,
    [ATTR_GEN_AI_TOOL_NAME]: 'blog.Blog.Read',
    [ATTR_GEN_AI_OPERATION_NAME]: GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL,
    [ATTR_JSONRPC_REQUEST_ID]: '1',
  });
  assert.equal(ATTR_MCP_SESSION_ID, MCP_EXT_ATTR.sessionId);
  assert.equal(okSpan.status.code, SpanStatusCode.OK);

  const failSpan = spanFor(h, fail);
  assert.equal(failSpan.status.code, SpanStatusCode.ERROR);
  assert.equal(failSpan.status.message, 'database is down');
  assert.equal(failSpan.events[0]?.name, 'exception');
  // McpServer answered the thrown error with an isError result: the conventions' `tool_error`.
  assert.equal(failSpan.attributes[ATTR_ERROR_TYPE], 'tool_error');
  assert.equal(spanFor(h, soft).attributes[ATTR_ERROR_TYPE], 'tool_error');

  const deniedSpan = spanFor(h, denied);
  assert.equal(deniedSpan.attributes[MCP_ATTR.authAllowed], false);
  assert.equal(deniedSpan.attributes[MCP_ATTR.authDeniedReason], 'insufficient scopes');
  assert.deepEqual(deniedSpan.attributes[MCP_ATTR.scopesRequired], ['blog:write']);
  assert.equal(deniedSpan.status.code, SpanStatusCode.ERROR);
  assert.equal(deniedSpan.attributes[ATTR_ERROR_TYPE], String(TOOL_DENIED_CODE));
  assert.equal(deniedSpan.attributes[ATTR_RPC_RESPONSE_STATUS_CODE], String(TOOL_DENIED_CODE));
  assert.equal(spanFor(h, limited).attributes[MCP_ATTR.rateLimited], true);

  // The same spans reach the spans topic through collector.spanProcessor, tenant in a header.
  await h.provider.forceFlush();
  await h.collector.flush();
  const spanMessages = h.published.get('otlp_spans') ?? [];
  assert.ok(spanMessages.length >= 1);
  assert.equal(spanMessages[0]!.headers?.['tenant'], 'acme');
  const rows = spanMessages.flatMap((m) => decodeTraceRequest(m.value, 'protobuf', 'acme').spans);
  assert.equal(rows.filter((r) => r.name === TOOL_CALL_SPAN).length, 5);
  assert.equal(rows.find((r) => r.span_id === ok.otel_span_id)?.attributes[MCP_ATTR.toolName], 'blog.Blog.Read');

  await h.client.close();
  await h.collector.shutdown();
  await h.provider.shutdown();
});

test('instrumentServer (low-level Server): handlers set after instrumenting are wrapped; thrown denials and errors', async () => {
  const server = new Server({ name: 'gateway', version: '1.0.0' }, { capabilities: { tools: {} } });
  const h = await harness(server, () => {
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [] }));
    server.setRequestHandler(CallToolRequestSchema, async (request) => {
      if (request.params.name === 'deny') throw new ToolDeniedError('policy', { scopesRequired: ['admin'] });
      if (request.params.name === 'boom') throw new Error('kaput');
      return { content: [{ type: 'text', text: 'fine' }] };
    });
  });

  await h.client.callTool({ name: 'echo', arguments: { text: 'hello' } });
  await assert.rejects(h.client.callTool({ name: 'deny', arguments: {} }), (error: McpError) => error.code === TOOL_DENIED_CODE);
  await assert.rejects(h.client.callTool({ name: 'boom', arguments: {} }), /kaput/);

  const [echo, deny, boom] = (await auditEvents(h)) as [AuditEvent, AuditEvent, AuditEvent];
  assert.equal(echo.tool, 'echo');
  assert.equal(echo.agent, 'claude-code');
  assert.equal(echo.request_bytes, bytes({ text: 'hello' }));
  assert.equal(echo.session_id, '');
  assert.equal(deny.allowed, false);
  assert.equal(deny.denied_reason, 'policy');
  assert.deepEqual(deny.scopes_required, ['admin']);
  assert.equal(boom.error, 'kaput');
  assert.equal(boom.response_bytes, 0);
  assert.equal(spanFor(h, boom).status.message, 'kaput');
  // The low-level Server answers a thrown Error with JSON-RPC's internal error: its code is the error.type.
  assert.equal(spanFor(h, boom).attributes[ATTR_ERROR_TYPE], '-32603');
  assert.equal(spanFor(h, echo).attributes[ATTR_ERROR_TYPE], undefined);

  // Instrumenting twice does not audit twice.
  h.collector.instrumentServer(server);
  await h.client.callTool({ name: 'echo', arguments: {} });
  assert.equal((await auditEvents(h)).length, 4);

  await h.client.close();
  await h.collector.shutdown();
  await h.provider.shutdown();
});

test("instrumentServer continues the client's trace from params._meta: traceparent, tracestate and baggage; the active span is linked", async (t) => {
  // What a gateway's tracing setup installs (demo/tracing.ts), so that context.with reaches the handler.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager());
  t.after(() => context.disable());
  const server = new McpServer({ name: 'gateway', version: '1.0.0' });
  const seen: { baggage?: string; traceId?: string; spanId?: string }[] = [];
  const h = await harness(server, () => {
    server.registerTool('echo', {}, async () => {
      const active = context.active();
      seen.push({
        baggage: propagation.getBaggage(active)?.getEntry('userId')?.value,
        traceId: trace.getSpanContext(active)?.traceId,
        spanId: trace.getSpanContext(active)?.spanId,
      });
      return { content: [{ type: 'text', text: 'ok' }] };
    });
  });

  const meta = {
    traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01`,
    tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE',
    baggage: 'userId=alice,isProduction=false',
  };
  await h.client.callTool({ name: 'echo', arguments: {}, _meta: meta });
  // Baggage alone: the call has no remote parent, but the handler still sees the baggage.
  await h.client.callTool({ name: 'echo', arguments: {}, _meta: { baggage: 'userId=bob' } });
  await h.client.callTool({ name: 'echo', arguments: {} });

  const [withParent, baggageOnly, plain] = (await auditEvents(h)) as [AuditEvent, AuditEvent, AuditEvent];
  const span = spanFor(h, withParent);
  assert.equal(span.spanContext().traceId, PARENT_TRACE);
  assert.equal(span.parentSpanContext?.spanId, PARENT_SPAN);
  assert.equal(span.parentSpanContext?.isRemote, true);
  assert.equal(span.spanContext().traceState?.serialize(), meta.tracestate);
  assert.deepEqual(seen[0], { baggage: 'alice', traceId: PARENT_TRACE, spanId: withParent.otel_span_id }, 'the handler runs in the call span, with the baggage');
  assert.equal(withParent.otel_trace_id, PARENT_TRACE);

  assert.notEqual(baggageOnly.otel_trace_id, PARENT_TRACE);
  assert.equal(spanFor(h, baggageOnly).parentSpanContext, undefined);
  assert.deepEqual(seen[1], { baggage: 'bob', traceId: baggageOnly.otel_trace_id, spanId: baggageOnly.otel_span_id });
  assert.deepEqual(seen[2], { baggage: undefined, traceId: plain.otel_trace_id, spanId: plain.otel_span_id });

  // A span active when the request arrives (say, the transport's HTTP span) becomes a link, not the parent.
  const tracer = h.provider.getTracer('transport');
  const ambient = tracer.startSpan('POST /mcp');
  const low = server.server as unknown as { _requestHandlers: Map<string, (request: unknown, extra: unknown) => Promise<unknown>> };
  await context.with(trace.setSpan(context.active(), ambient), () =>
    low._requestHandlers.get('tools/call')!({ method: 'tools/call', params: { name: 'echo', arguments: {}, _meta: meta } }, { requestId: 9, signal: new AbortController().signal, sendNotification: async () => {}, sendRequest: async () => ({}) }),
  );
  ambient.end();
  const linked = (await auditEvents(h))[3]!;
  const linkedSpan = spanFor(h, linked);
  assert.equal(linkedSpan.spanContext().traceId, PARENT_TRACE);
  assert.deepEqual(linkedSpan.links.map((l) => l.context.spanId), [ambient.spanContext().spanId]);
  assert.equal(linkedSpan.attributes[ATTR_JSONRPC_REQUEST_ID], '9');
  assert.deepEqual(span.links, []);

  await h.client.close();
  await h.collector.shutdown();
  await h.provider.shutdown();
});

test("instrumentServer: a tool sees the same enumerable keys of its `extra` as without it", async () => {
  const keysSeen = async (instrument: boolean) => {
    const server = new McpServer({ name: 'gateway', version: '1.0.0' });
    let seen: (string | symbol)[] = [];
    const register = () =>
      server.registerTool('blog.Blog.Keys', {}, async (extra) => {
        seen = Reflect.ownKeys({ ...extra });
        throw new Error('and fails, so that the execution is read');
      });
    if (instrument) {
      const h = await harness(server, register);
      await h.client.callTool({ name: 'blog.Blog.Keys', arguments: {} });
      const [event] = await auditEvents(h);
      assert.equal(event?.error, 'and fails, so that the execution is read');
      await h.client.close();
      await h.collector.shutdown();
      await h.provider.shutdown();
    } else {
      register();
      const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
      await server.connect(serverTransport);
      const client = new Client(CLIENT_INFO);
      await client.connect(clientTransport);
      await client.callTool({ name: 'blog.Blog.Keys', arguments: {} });
      await client.close();
    }
    return seen;
  };
  const plain = await keysSeen(false);
  assert.ok(plain.length > 0);
  assert.deepEqual(await keysSeen(true), plain);
});

test('instrumentServer ends a call at its response, and a cancelled or cut-off call when its handler settles', async () => {
  const server = new McpServer({ name: 'gateway', version: '1.0.0' });
  const waiting: (() => void)[] = [];
  const h = await harness(server, () => {
    server.registerTool('slow', {}, async () => {
      await new Promise<void>((resolve) => waiting.push(resolve));
      return { content: [{ type: 'text', text: 'done' }] };
    });
    server.registerTool('fails', {}, async () => {
      throw new TypeError('bad input');
    });
  });
  const transport = (server.server as unknown as { transport: object }).transport;
  /** Until n calls are inside the slow tool. */
  const reached = async (n: number) => {
    while (waiting.length < n) await new Promise((resolve) => setImmediate(resolve));
  };
  const released = async (n: number) => {
    await reached(n);
    await new Promise((resolve) => setTimeout(resolve, 30));
    waiting.splice(0).forEach((resolve) => resolve());
  };

  // Answered: ended by its response (the transport's send is hooked by the first call).
  const answered = h.client.callTool({ name: 'slow', arguments: {} });
  await released(1);
  await answered;
  assert.ok(Object.hasOwn(transport, 'send'), "the server's transport reports its responses");

  // A tool that throws: McpServer answers isError; the record has the thrown error.
  await h.client.callTool({ name: 'fails', arguments: {} });

  // Cancelled by the client: no response is sent, the call is audited when its handler settles.
  const abort = new AbortController();
  const cancelled = h.client.callTool({ name: 'slow', arguments: {} }, undefined, { signal: abort.signal });
  await reached(1);
  abort.abort('the agent gave up');
  await assert.rejects(cancelled);
  await released(1);

  // The connection closes under two calls in flight: each is audited when its handler settles.
  const cut = [h.client.callTool({ name: 'slow', arguments: {} }), h.client.callTool({ name: 'slow', arguments: {} })];
  await reached(2);
  await h.client.close();
  await Promise.allSettled(cut);
  await released(2);
  await new Promise((resolve) => setTimeout(resolve, 10));

  const events = await auditEvents(h);
  assert.deepEqual(
    events.map((e) => [e.tool, e.allowed, e.error]),
    [
      ['slow', true, ''],
      ['fails', true, 'bad input'],
      ['slow', true, ''],
      ['slow', true, ''],
      ['slow', true, ''],
    ],
  );
  for (const e of events.filter((x) => x.tool === 'slow')) assert.ok(e.duration >= 25e6, `a held call's duration is its handler's (${e.duration} ns)`);
  const failed = spanFor(h, events[1]!);
  assert.equal(failed.events[0]?.attributes?.['exception.type'], 'TypeError', 'the error thrown, not one rebuilt from the response');
  await h.collector.shutdown();
  await h.provider.shutdown();
});

test('instrumentServer: a transport whose send cannot be hooked still has every call audited', async () => {
  const server = new McpServer({ name: 'gateway', version: '1.0.0' });
  const { logger } = captureLogger();
  const published: OutboundMessage[] = [];
  const collector = createCollector({ publisher: { publish: async (topic, messages) => void (topic === 'mcp-audit' && published.push(...messages)) }, spoolDir: await tempDir('instrument'), batchMaxWaitMs: 5, logger });
  collector.instrumentServer(server);
  server.registerTool('echo', {}, async () => ({ content: [{ type: 'text', text: 'ok' }] }));
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  const send = serverTransport.send.bind(serverTransport);
  Object.defineProperty(serverTransport, 'send', { value: send, writable: false, configurable: false });
  await server.connect(serverTransport);
  const client = new Client(CLIENT_INFO);
  await client.connect(clientTransport);
  for (let i = 0; i < 3; i++) await client.callTool({ name: 'echo', arguments: {} });
  assert.equal(serverTransport.send, send, 'left as it was');
  await collector.flush();
  assert.equal(published.length, 3);
  await client.close();
  await collector.shutdown();
});
