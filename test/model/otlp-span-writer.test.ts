// writeTraceRequest against the OpenTelemetry serializer (encodeTraceRequest) on spans made by the real
// SDK: the same bytes, and the same rows when decoded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { context, SpanKind, SpanStatusCode, trace, TraceFlags } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { decodeTraceRequest, encodeTraceRequest } from '../../model/otlp.ts';
import { writeTraceRequest } from '../../model/otlp-span-writer.ts';

test('writeTraceRequest writes what the OpenTelemetry serializer writes', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'gateway', 'process.pid': 4242, 'host.arch': 'amd64', ratio: 0.25, negative: -7, big: 2 ** 40, flag: true, list: ['a', 'b'] }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('scope-a', '1.2.3', { schemaUrl: 'https://opentelemetry.io/schemas/1.41.0' });
  const remote = trace.setSpanContext(context.active(), {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    traceFlags: TraceFlags.SAMPLED,
    traceState: new TraceState('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'),
    isRemote: true,
  });
  const linked = tracer.startSpan('POST /mcp');
  const a = tracer.startSpan('mcp.tool.call', { kind: SpanKind.SERVER, attributes: { 'mcp.tool.name': 'x.Y.Z', 'mcp.auth.allowed': true, count: 3, 'mcp.auth.scopes_required': ['s:1', 'ü—✓'] }, links: [{ context: linked.spanContext() }] }, remote);
  a.setAttribute('error.type', 'tool_error');
  a.recordException(Object.assign(new Error('database is down'), { code: 'E42' }));
  a.setStatus({ code: SpanStatusCode.ERROR, message: 'database is down: ' + 'long '.repeat(60) });
  a.end();
  const b = tracer.startSpan('root', { kind: SpanKind.INTERNAL });
  b.setStatus({ code: SpanStatusCode.OK });
  b.end();
  linked.end();

  const spans = exporter.getFinishedSpans().filter((s) => s.instrumentationScope.name === 'scope-a');
  assert.equal(spans.length, 3);
  const ours = writeTraceRequest(spans);
  const theirs = encodeTraceRequest(spans);
  assert.deepEqual(decodeTraceRequest(ours, 'protobuf', 't'), decodeTraceRequest(theirs, 'protobuf', 't'));
  assert.equal(Buffer.compare(ours, Buffer.from(theirs)), 0, 'the same bytes');
  assert.equal(decodeTraceRequest(ours, 'protobuf', 't').spans.length, 3);

  // Larger than one byte of length at every level: a request of many spans.
  const many = Array.from({ length: 200 }, () => spans).flat();
  assert.equal(Buffer.compare(writeTraceRequest(many), Buffer.from(encodeTraceRequest(many))), 0);
});

test('writeTraceRequest writes texts and lengths at their one-byte borders as the serializer does', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer('borders');
  const attributes: Record<string, string> = {};
  // Values from 100 to 140 chars: their AnyValue and KeyValue lengths cross 127/128 bytes, and so do
  // the texts themselves; some ASCII, some with a non-ASCII char at the start, in the middle or at the
  // end (longer in bytes than in chars), and lone surrogates (which UTF-8 writes as U+FFFD).
  const odd = ['é', '✓', '😀', '\ud800', '\udfff'];
  for (let n = 100; n <= 140; n++) {
    attributes[`ascii.${n}`] = 'a'.repeat(n);
    const c = odd[n % odd.length]!;
    attributes[`first.${n}`] = c + 'b'.repeat(n - c.length);
    attributes[`middle.${n}`] = 'c'.repeat(n >> 1) + c + 'c'.repeat(n - (n >> 1) - c.length);
    attributes[`last.${n}`] = 'd'.repeat(n - c.length) + c;
  }
  attributes['k'.repeat(127)] = '';
  attributes['ü'.repeat(64)] = 'x';
  tracer.startSpan('borders', { attributes }).end();
  tracer.startSpan('ü'.repeat(127)).end();
  const spans = exporter.getFinishedSpans();
  assert.equal(Buffer.compare(writeTraceRequest(spans), Buffer.from(encodeTraceRequest(spans))), 0);
});
