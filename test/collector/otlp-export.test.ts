/**
 * The gateway's spans reach the pipeline through `collector.spanProcessor` and, at the same time, any
 * OTLP backend through `@opentelemetry/exporter-trace-otlp-http` (here: our own receiver as that
 * backend), with go-micro's span name and attributes either way.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { createCollector } from '../../collector/index.ts';
import { createReceiver } from '../../collector/receiver.ts';
import type { OutboundMessage, Publisher } from '../../core/publisher.ts';
import { decodeTraceRequest } from '../../model/otlp.ts';
import { MCP_ATTR, TOOL_CALL_SPAN } from '../../model/span.ts';
import { captureLogger, tempDir, waitFor } from './helpers.ts';

function capturing(): Publisher & { got: { topic: string; messages: OutboundMessage[] }[] } {
  const got: { topic: string; messages: OutboundMessage[] }[] = [];
  return { got, publish: async (topic, messages) => void got.push({ topic, messages }) };
}

test('instrumented tool calls: spans to the pipeline and to an OTLP/HTTP backend at once', async (t) => {
  const { logger } = captureLogger();
  const backend = capturing();
  const receiver = createReceiver({ publisher: backend, logger, topics: { audit: 'a', spans: 's' }, maxBodyBytes: 1 << 20, maxRecords: 1000 });
  const server = http.createServer(receiver.handle).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;

  const pipeline = capturing();
  const collector = createCollector({ publisher: pipeline, spoolDir: await tempDir('otlp-export'), batchMaxWaitMs: 5, logger });
  const provider = new BasicTracerProvider({
    spanProcessors: [collector.spanProcessor, new BatchSpanProcessor(new OTLPTraceExporter({ url }), { scheduledDelayMillis: 10 })],
  });
  trace.setGlobalTracerProvider(provider); // what provider.register() does in a gateway
  t.after(() => trace.disable());

  const mcp = new McpServer({ name: 'gateway', version: '1.0.0' });
  collector.instrumentServer(mcp);
  mcp.registerTool('users.Users.Get', {}, async () => ({ content: [{ type: 'text', text: 'ok' }] }));
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await mcp.connect(serverSide);
  const client = new Client({ name: 'claude-desktop', version: '1.0.0' });
  await client.connect(clientSide);
  await client.callTool({ name: 'users.Users.Get', arguments: {} });
  await client.close();

  await provider.forceFlush();
  await collector.flush();
  await waitFor(() => backend.got.length > 0, 5_000, 'the OTLP/HTTP exporter reached the receiver');

  const viaPipeline = pipeline.got.filter((g) => g.topic === 'otlp_spans').flatMap((g) => g.messages);
  const viaBackend = backend.got.flatMap((g) => g.messages);
  const decode = (m: OutboundMessage) =>
    decodeTraceRequest(m.value, m.headers?.['content-type'] === 'application/json' ? 'json' : 'protobuf', 'default').spans;
  const a = viaPipeline.flatMap(decode).filter((s) => s.name === TOOL_CALL_SPAN);
  const b = viaBackend.flatMap(decode).filter((s) => s.name === TOOL_CALL_SPAN);
  assert.equal(a.length, 1);
  assert.equal(b.length, 1);
  assert.equal(a[0]!.span_id, b[0]!.span_id, 'the same span, both ways');
  assert.equal(a[0]!.kind, 'server');
  assert.equal(b[0]!.attributes[MCP_ATTR.toolName], 'users.Users.Get');
  assert.equal(b[0]!.attributes[MCP_ATTR.authAllowed], 'true');

  await collector.shutdown();
  await provider.shutdown();
});
