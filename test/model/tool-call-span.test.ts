// Tool-call facts from MCP server spans written with OpenTelemetry's MCP semantic conventions by the real
// SDK (test/helpers/semconv-spans.ts), through the same OTLP decoding the receiver and the ingest use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpanKind } from '@opentelemetry/api';
import { decodeTraceRequest } from '../../model/otlp.ts';
import { toolCallFromSpan } from '../../model/tool-call-span.ts';
import { otlpJson, otlpProtobuf, recordSemconvSpans } from '../helpers/semconv-spans.ts';

const START = Date.UTC(2026, 11, 1, 9, 30, 0, 250);

const spans = recordSemconvSpans('weather-mcp', [
  { tool: 'get-weather', startMs: START, durationMs: 12, session: 'sess-1', agent: 'trip-planner' },
  { tool: 'get-weather', startMs: START + 1000, durationMs: 3, session: 'sess-1', error: { type: 'tool_error', message: 'city not found' } },
  { tool: 'get-forecast', startMs: START + 2000, durationMs: 7, error: { type: '-32602', message: 'Invalid params' }, extra: { 'network.transport': 'pipe', 'network.protocol.name': '' } },
  // Not facts: the client's span of a call (its server reports it), and a call of another method.
  { tool: 'get-weather', startMs: START + 3000, durationMs: 20, kind: SpanKind.CLIENT },
  { tool: '', startMs: START + 4000, durationMs: 1, method: 'tools/list' },
]);

for (const encoding of ['protobuf', 'json'] as const) {
  test(`semconv tools/call server spans become tool-call facts (OTLP ${encoding})`, () => {
    const body = encoding === 'protobuf' ? otlpProtobuf(spans) : otlpJson(spans);
    const decoded = decodeTraceRequest(body, encoding, 'acme');
    assert.equal(decoded.spans.length, 5);
    const facts = decoded.spans.map(toolCallFromSpan).filter((f) => f !== undefined);
    const ids = spans.map((s) => s.spanContext());
    assert.deepEqual(
      facts.map((f) => ({ ...f, event_id: undefined })),
      [
        {
          event_id: undefined, tenant: 'acme', timestamp: '2026-12-01 09:30:00.250000000',
          trace_id: ids[0]!.traceId, tool: 'get-weather', service: 'get-weather', account_id: '', scopes_required: [],
          allowed: 1, denied_reason: '', duration_ns: 12_000_000, error: '', is_error: 0,
          agent: 'trip-planner', agent_version: '', session_id: 'sess-1', gateway: 'weather-mcp', transport: 'http',
          otel_trace_id: ids[0]!.traceId, otel_span_id: ids[0]!.spanId, request_bytes: 0, response_bytes: 0,
          cost_usd: null, attributes: {}, source: 'span',
        },
        {
          event_id: undefined, tenant: 'acme', timestamp: '2026-12-01 09:30:01.250000000',
          trace_id: ids[1]!.traceId, tool: 'get-weather', service: 'get-weather', account_id: '', scopes_required: [],
          allowed: 1, denied_reason: '', duration_ns: 3_000_000, error: 'city not found', is_error: 1,
          agent: '', agent_version: '', session_id: 'sess-1', gateway: 'weather-mcp', transport: 'http',
          otel_trace_id: ids[1]!.traceId, otel_span_id: ids[1]!.spanId, request_bytes: 0, response_bytes: 0,
          cost_usd: null, attributes: {}, source: 'span',
        },
        {
          event_id: undefined, tenant: 'acme', timestamp: '2026-12-01 09:30:02.250000000',
          trace_id: ids[2]!.traceId, tool: 'get-forecast', service: 'get-forecast', account_id: '', scopes_required: [],
          allowed: 1, denied_reason: '', duration_ns: 7_000_000, error: 'Invalid params', is_error: 1,
          agent: '', agent_version: '', session_id: '', gateway: 'weather-mcp', transport: 'stdio',
          otel_trace_id: ids[2]!.traceId, otel_span_id: ids[2]!.spanId, request_bytes: 0, response_bytes: 0,
          cost_usd: null, attributes: {}, source: 'span',
        },
      ],
    );
    assert.equal(new Set(facts.map((f) => f.event_id)).size, 3);
  });
}

test('error.type alone marks a failed call; gen_ai.tool.name before mcp.tool.name, mcp.transport before network.*', () => {
  const [span] = recordSemconvSpans('gw', [{ tool: 'x', startMs: START, durationMs: 1, extra: { 'error.type': 'timeout', 'mcp.tool.name': 'legacy', 'mcp.transport': 'stdio' } }]);
  const [row] = decodeTraceRequest(otlpProtobuf([span!]), 'protobuf', 't').spans;
  const fact = toolCallFromSpan(row!)!;
  assert.deepEqual([fact.tool, fact.error, fact.is_error, fact.transport], ['x', 'timeout', 1, 'stdio']);
});
