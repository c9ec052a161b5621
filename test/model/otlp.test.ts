import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import protobuf from 'protobufjs';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { decodeTraceRequest, encodeTraceRequest, OtlpDecodeError, toSpanInsertRow } from '../../model/otlp.ts';
import { ExportTraceServiceRequest } from '../../model/otlp-proto.ts';
import { MCP_ATTR, SPAN_LIMITS, TOOL_CALL_SPAN, type SpanRow } from '../../model/span.ts';

const TENANT = 'acme';
const utf8 = (text: string) => new TextEncoder().encode(text);
const json = (value: unknown) => utf8(JSON.stringify(value));

/** A go-micro style tool call (server span), its handler (child, error, event, link), from real SDK spans. */
function recordSpans(): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'mcp-gateway', 'deployment.environment': 'test' }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('go-micro.dev/v6/gateway/mcp', '6.0.0');
  const server = tracer.startSpan(TOOL_CALL_SPAN, {
    kind: SpanKind.SERVER,
    startTime: [1763978400, 123456789],
    attributes: {
      [MCP_ATTR.toolName]: 'users.Users.Get',
      [MCP_ATTR.transport]: 'http',
      [MCP_ATTR.accountId]: 'acct-42',
      [MCP_ATTR.traceId]: 'req-7f3a',
      [MCP_ATTR.authAllowed]: true,
      [MCP_ATTR.scopesRequired]: ['users:read', 'tools:call'],
      [MCP_ATTR.rateLimited]: false,
      'mcp.tool.args_bytes': 512,
      'mcp.cost_usd': 0.25,
    },
  });
  const child = tracer.startSpan(
    'users.Users.Get',
    { startTime: [1763978400, 200000000], links: [{ context: server.spanContext(), attributes: { 'link.kind': 'caller' } }] },
    trace.setSpan(ROOT_CONTEXT, server),
  );
  child.addEvent('exception', { 'exception.type': 'NotFound', 'exception.message': 'user 7 not found' }, [1763978400, 250000001]);
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'user 7 not found' });
  child.end([1763978400, 300000000]);
  server.end([1763978400, 375000001]);
  return exporter.getFinishedSpans();
}

const spans = recordSpans();
const [childSpan, serverSpan] = spans as [ReadableSpan, ReadableSpan];

const resourceAttributes = { 'service.name': 'mcp-gateway', 'deployment.environment': 'test' };
const common = {
  tenant: TENANT,
  trace_id: serverSpan.spanContext().traceId,
  service: 'mcp-gateway',
  scope_name: 'go-micro.dev/v6/gateway/mcp',
  scope_version: '6.0.0',
};

const expectedRows: SpanRow[] = [
  {
    ...common,
    span_id: childSpan.spanContext().spanId,
    parent_span_id: serverSpan.spanContext().spanId,
    name: 'users.Users.Get',
    kind: 'internal',
    start_time_unix_nano: '1763978400200000000',
    duration_ns: '100000000',
    status_code: 'error',
    status_message: 'user 7 not found',
    attributes: {},
    resource_attributes: resourceAttributes,
    events: [
      {
        time_unix_nano: '1763978400250000001',
        name: 'exception',
        attributes: { 'exception.type': 'NotFound', 'exception.message': 'user 7 not found' },
      },
    ],
  },
  {
    ...common,
    span_id: serverSpan.spanContext().spanId,
    parent_span_id: '',
    name: 'mcp.tool.call',
    kind: 'server',
    start_time_unix_nano: '1763978400123456789',
    duration_ns: '251543212',
    status_code: 'unset',
    status_message: '',
    attributes: {
      'mcp.tool.name': 'users.Users.Get',
      'mcp.transport': 'http',
      'mcp.account.id': 'acct-42',
      'mcp.trace_id': 'req-7f3a',
      'mcp.auth.allowed': 'true',
      'mcp.auth.scopes_required': '["users:read","tools:call"]',
      'mcp.rate_limited': 'false',
      'mcp.tool.args_bytes': '512',
      'mcp.cost_usd': '0.25',
    },
    resource_attributes: resourceAttributes,
    events: [],
  },
];

function assertExpectedRows(result: ReturnType<typeof decodeTraceRequest>) {
  assert.deepEqual(result, { spans: expectedRows, rejected: [] });
}

describe('decodeTraceRequest: spans from the OpenTelemetry JS SDK', () => {
  test('protobuf, as ProtobufTraceSerializer (OTLP/HTTP exporter, Collector otlp_proto) writes it', () => {
    assertExpectedRows(decodeTraceRequest(ProtobufTraceSerializer.serializeRequest(spans)!, 'protobuf', TENANT));
  });

  test('OTLP/JSON, as JsonTraceSerializer writes it', () => {
    assertExpectedRows(decodeTraceRequest(JsonTraceSerializer.serializeRequest(spans)!, 'json', TENANT));
  });

  test('encodeTraceRequest writes what decodeTraceRequest reads', () => {
    assertExpectedRows(decodeTraceRequest(encodeTraceRequest(spans), 'protobuf', TENANT));
  });

  test('every field the SDK serializer writes is in our schema with its field number and wire type', () => {
    // protobufjs keeps a field whose number or wire type does not match the schema as `$unknowns`.
    const reader = protobuf.Reader.create(ProtobufTraceSerializer.serializeRequest(spans)!);
    reader.discardUnknown = false;
    const message = ExportTraceServiceRequest.decode(reader);
    const unknown: string[] = [];
    const walk = (value: unknown, at: string): void => {
      if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${at}.${i}`));
      else if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
        if ('$unknowns' in value) unknown.push(at);
        for (const [k, v] of Object.entries(value)) walk(v, `${at}.${k}`);
      }
    };
    walk(message, 'request');
    assert.deepEqual(unknown, []);

    // And the values come back as the SDK holds them, down to the fields we do not flatten.
    const object = ExportTraceServiceRequest.toObject(message, { longs: String, bytes: String }) as any;
    const child = object.resourceSpans[0].scopeSpans[0].spans[0];
    const hex = (b64: string) => Buffer.from(b64, 'base64').toString('hex');
    assert.equal(hex(child.traceId), childSpan.spanContext().traceId);
    assert.equal(hex(child.parentSpanId), serverSpan.spanContext().spanId);
    assert.equal(child.kind, 1);
    assert.equal(child.endTimeUnixNano, '1763978400300000000');
    assert.equal(child.flags, 0x101); // sampled | has-is-remote
    assert.deepEqual(child.status, { message: 'user 7 not found', code: 2 });
    assert.equal(hex(child.links[0].spanId), serverSpan.spanContext().spanId);
    assert.deepEqual(child.links[0].attributes, [{ key: 'link.kind', value: { stringValue: 'caller' } }]);
    assert.equal(child.links[0].flags, 0x101);
    const server = object.resourceSpans[0].scopeSpans[0].spans[1];
    const attribute = (key: string) => server.attributes.find((a: any) => a.key === key).value;
    assert.deepEqual(attribute('mcp.tool.args_bytes'), { intValue: '512' });
    assert.deepEqual(attribute('mcp.cost_usd'), { doubleValue: 0.25 });
    assert.deepEqual(attribute('mcp.auth.allowed'), { boolValue: true });
  });
});

/** One span in OTLP/JSON; `overrides` replace its fields. */
function jsonSpan(overrides: Record<string, unknown> = {}) {
  return {
    traceId: '5b8efff798038103d269b633813fc60c',
    spanId: 'eee19b7ec3c1b174',
    name: 'tools/call',
    kind: 2,
    startTimeUnixNano: '1700000000000000000',
    endTimeUnixNano: '1700000000000001000',
    ...overrides,
  };
}

const jsonRequest = (...spanList: unknown[]) => ({
  resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ scope: { name: 's' }, spans: spanList }] }],
});

describe('decodeTraceRequest: OTLP/JSON as other SDKs write it', () => {
  test('uppercase hex ids, base64 ids, enum names, 64-bit numbers, snake_case names, zero parent', () => {
    const body = utf8(`{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"billing"}}]},
      "scopeSpans":[{"scope":{"name":"swift"},"spans":[
        {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"0000000000000000",
         "name":"a","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":1700000000123456789,"endTimeUnixNano":1700000000123456999,
         "status":{"code":"STATUS_CODE_OK"}},
        {"traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"7uGbfsPBsXQ=","parent_span_id":"7uGbfsPBsXQ",
         "name":"b","kind":5,"start_time_unix_nano":"18446744073709551614","endTimeUnixNano":"18446744073709551615",
         "status":{"code":2,"message":"boom"},
         "attributes":[
           {"key":"i","value":{"intValue":9007199254740993}},
           {"key":"s","value":{"intValue":"-42"}},
           {"key":"d","value":{"doubleValue":"NaN"}},
           {"key":"inf","value":{"doubleValue":"-Infinity"}},
           {"key":"bytes","value":{"bytesValue":"AAEC"}},
           {"key":"kv","value":{"kvlistValue":{"values":[{"key":"x","value":{"arrayValue":{"values":[{"intValue":"1"},{"boolValue":false},{}]}}}]}}},
           {"key":"empty","value":{}},
           {"key":"","value":{"stringValue":"no key"}}]},
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"c",
         "startTimeUnixNano":"1700000000000000500","endTimeUnixNano":"1700000000000000000"}]}]}]}`);
    const { spans: rows, rejected } = decodeTraceRequest(body, 'json', TENANT);
    assert.deepEqual(rejected, []);
    assert.deepEqual(
      rows.map((r) => [r.trace_id, r.span_id, r.parent_span_id, r.kind, r.status_code, r.start_time_unix_nano, r.duration_ns, r.service]),
      [
        ['5b8efff798038103d269b633813fc60c', 'eee19b7ec3c1b174', '', 'client', 'ok', '1700000000123456789', '210', 'billing'],
        ['5b8efff798038103d269b633813fc60c', 'eee19b7ec3c1b174', 'eee19b7ec3c1b174', 'consumer', 'error', '18446744073709551614', '1', 'billing'],
        // end before start: duration 0, never negative; no kind: unspecified
        ['5b8efff798038103d269b633813fc60c', 'eee19b7ec3c1b175', '', 'unspecified', 'unset', '1700000000000000500', '0', 'billing'],
      ],
    );
    assert.deepEqual(rows[1]!.attributes, {
      i: '9007199254740993',
      s: '-42',
      d: 'NaN',
      inf: '-Infinity',
      bytes: 'AAEC',
      kv: '{"x":[1,false,null]}',
      empty: '',
    });
    assert.equal(rows[1]!.status_message, 'boom');
  });

  test('a span with a 5-hex-digit span id is rejected with its index and path; the others are kept', () => {
    const body = {
      resourceSpans: [
        { scopeSpans: [{ spans: [jsonSpan()] }] },
        { scopeSpans: [{ spans: [] }, { spans: [jsonSpan({ spanId: 'eee19b7ec3c1b175' }), jsonSpan({ spanId: 'abcde' })] }] },
      ],
    };
    const { spans: rows, rejected } = decodeTraceRequest(json(body), 'json', TENANT);
    assert.deepEqual(rows.map((r) => r.span_id), ['eee19b7ec3c1b174', 'eee19b7ec3c1b175']);
    assert.deepEqual(rejected, [{ index: 2, issues: [{ path: 'span_id', message: 'must be 16 lowercase hex digits' }] }]);
  });

  test('structurally invalid spans are rejected, each issue with its path', () => {
    const body = jsonRequest(
      jsonSpan({ traceId: '00000000000000000000000000000000' }),
      jsonSpan({ name: '' }),
      jsonSpan({ kind: 'SPAN_KIND_SEVER' }),
      jsonSpan({ startTimeUnixNano: '-1', events: [{ timeUnixNano: 'soon', name: 'e' }] }),
      jsonSpan({ attributes: { not: 'a list' } }),
      'not a span',
    );
    const { spans: rows, rejected } = decodeTraceRequest(json(body), 'json', TENANT);
    assert.equal(rows.length, 0);
    assert.deepEqual(rejected, [
      { index: 0, issues: [{ path: 'trace_id', message: 'must not be all zeros' }] },
      { index: 1, issues: [{ path: 'name', message: 'must not be empty' }] },
      { index: 2, issues: [{ path: 'kind', message: 'must be one of SPAN_KIND_UNSPECIFIED … SPAN_KIND_CONSUMER or 0–5' }] },
      {
        index: 3,
        issues: [
          { path: 'start_time_unix_nano', message: 'must be an unsigned 64-bit count of nanoseconds' },
          { path: 'events.0.time_unix_nano', message: 'must be an unsigned 64-bit count of nanoseconds' },
        ],
      },
      { index: 4, issues: [{ path: 'attributes', message: 'must be an array of key-value pairs' }] },
      { index: 5, issues: [{ path: '', message: 'must be an object' }] },
    ]);
  });

  test('spans over the limits are truncated to them, not rejected', () => {
    const many = Array.from({ length: SPAN_LIMITS.attributes + 10 }, (_, i) => ({ key: `k${i}`, value: { stringValue: 'v' } }));
    const body = jsonRequest(
      jsonSpan({
        name: 'n'.repeat(SPAN_LIMITS.nameLength + 1),
        attributes: [{ key: 'long', value: { stringValue: 'x'.repeat(SPAN_LIMITS.attributeValueLength - 1) + '😀' } }, ...many],
        events: Array.from({ length: SPAN_LIMITS.events + 1 }, () => ({ timeUnixNano: '1', name: 'e' })),
        status: { code: 2, message: 'm'.repeat(SPAN_LIMITS.statusMessageLength + 1) },
      }),
    );
    const { spans: [row], rejected } = decodeTraceRequest(json(body), 'json', TENANT);
    assert.deepEqual(rejected, []);
    assert.equal(row!.name.length, SPAN_LIMITS.nameLength);
    assert.equal(Object.keys(row!.attributes).length, SPAN_LIMITS.attributes);
    assert.equal(Object.keys(row!.attributes).at(-1), `k${SPAN_LIMITS.attributes - 2}`); // the first N, in order
    assert.equal(row!.attributes['long'], 'x'.repeat(SPAN_LIMITS.attributeValueLength - 1)); // no half surrogate pair
    assert.equal(row!.events.length, SPAN_LIMITS.events);
    assert.equal(row!.status_message.length, SPAN_LIMITS.statusMessageLength);
  });

  test('resource without service.name: empty service', () => {
    const { spans: [row] } = decodeTraceRequest(json(jsonRequest(jsonSpan())), 'json', TENANT);
    assert.equal(row!.service, '');
    assert.equal(row!.scope_name, 's');
  });
});

describe('decodeTraceRequest: whole bodies it cannot decode', () => {
  test('garbage bytes are not protobuf', () => {
    assert.throws(() => decodeTraceRequest(utf8('this is not protobuf'), 'protobuf', TENANT), OtlpDecodeError);
    const truncated = ProtobufTraceSerializer.serializeRequest(spans)!.subarray(0, 40);
    assert.throws(() => decodeTraceRequest(truncated, 'protobuf', TENANT), /not a protobuf ExportTraceServiceRequest/);
  });

  test('bad JSON and wrong top-level shapes', () => {
    assert.throws(() => decodeTraceRequest(utf8('{"resourceSpans": ['), 'json', TENANT), OtlpDecodeError);
    assert.throws(() => decodeTraceRequest(new Uint8Array([0x7b, 0xff, 0x7d]), 'json', TENANT), OtlpDecodeError);
    assert.throws(() => decodeTraceRequest(utf8('[]'), 'json', TENANT), /must be a JSON object/);
    assert.throws(
      () => decodeTraceRequest(utf8('{"resourceSpans":{}}'), 'json', TENANT),
      (e: unknown) => e instanceof OtlpDecodeError && e.path === 'resourceSpans' && e.message === 'resourceSpans: must be an array',
    );
    assert.throws(
      () => decodeTraceRequest(json({ resourceSpans: [{ scopeSpans: [{ spans: 3 }] }] }), 'json', TENANT),
      { name: 'OtlpDecodeError', message: 'resourceSpans.0.scopeSpans.0.spans: must be an array' },
    );
  });

  test('an empty request has no spans', () => {
    const none = { spans: [], rejected: [] };
    assert.deepEqual(decodeTraceRequest(new Uint8Array(), 'protobuf', TENANT), none);
    assert.deepEqual(decodeTraceRequest(encodeTraceRequest([]), 'protobuf', TENANT), none);
    assert.deepEqual(decodeTraceRequest(utf8('{}'), 'json', TENANT), none);
    assert.deepEqual(decodeTraceRequest(utf8('{"resourceSpans":[]}'), 'json', TENANT), none);
  });
});

describe('toSpanInsertRow into ClickHouse spans_v1 (embedded chDB)', () => {
  // One chDB path per process: this file uses this one directory.
  const dir = mkdtempSync(path.join(tmpdir(), 'otlp-test-chdb-'));
  let clickhouse: ClickHouseClient;

  before(async () => {
    // chdb types its connection against its own copy of @clickhouse/client-common.
    clickhouse = createClient({ connection: createChdbConnection({ path: dir }) as never });
    await clickhouse.command({
      query: `CREATE TABLE spans_v1 (
        tenant String, trace_id String, span_id String, parent_span_id String, name String,
        kind LowCardinality(String), service LowCardinality(String), scope_name String, scope_version String,
        start_time DateTime64(9, 'UTC'), duration_ns UInt64,
        status_code LowCardinality(String), status_message String,
        attributes Map(String, String), resource_attributes Map(String, String),
        events Array(Tuple(time DateTime64(9, 'UTC'), name String, attributes Map(String, String)))
      ) ENGINE = MergeTree ORDER BY (tenant, start_time)`,
    });
  });

  after(async () => {
    await clickhouse?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the row maps start time to DateTime64(9) text and events to named tuples', () => {
    const row = decodeTraceRequest(encodeTraceRequest(spans), 'protobuf', TENANT).spans[0]!;
    const { start_time_unix_nano: _start, ...rest } = row;
    assert.deepEqual(toSpanInsertRow(row), {
      ...rest,
      start_time: '2025-11-24 10:00:00.200000000',
      duration_ns: 100000000,
      events: [
        {
          time: '2025-11-24 10:00:00.250000001',
          name: 'exception',
          attributes: { 'exception.type': 'NotFound', 'exception.message': 'user 7 not found' },
        },
      ],
    });
  });

  test('rows insert as JSONEachRow and nanoseconds survive the round trip', async () => {
    const huge = decodeTraceRequest(
      json(jsonRequest(jsonSpan({ spanId: 'eee19b7ec3c1b179', startTimeUnixNano: '0', endTimeUnixNano: '18446744073709551615' }))),
      'json',
      TENANT,
    ).spans;
    const rows = [...decodeTraceRequest(encodeTraceRequest(spans), 'protobuf', TENANT).spans, ...huge];
    assert.equal(toSpanInsertRow(huge[0]!).duration_ns, '18446744073709551615');
    await clickhouse.insert({ table: 'spans_v1', format: 'JSONEachRow', values: rows.map(toSpanInsertRow) });

    const result = await clickhouse.query({
      query: `SELECT span_id, toString(toUnixTimestamp64Nano(start_time)) AS start_ns, toString(duration_ns) AS duration,
                     kind, status_code, attributes, resource_attributes['service.name'] AS service,
                     arrayMap(e -> (toString(toUnixTimestamp64Nano(e.time)), e.name, e.attributes), events) AS events
              FROM spans_v1 WHERE tenant = {tenant:String} ORDER BY start_time`,
      query_params: { tenant: TENANT },
      format: 'JSONEachRow',
    });
    const back = await result.json<Record<string, unknown>>();
    assert.deepEqual(
      back.map((r) => [r['span_id'], r['start_ns'], r['duration'], r['kind'], r['status_code'], r['service']]),
      [
        ['eee19b7ec3c1b179', '0', '18446744073709551615', 'server', 'unset', ''],
        [serverSpan.spanContext().spanId, '1763978400123456789', '251543212', 'server', 'unset', 'mcp-gateway'],
        [childSpan.spanContext().spanId, '1763978400200000000', '100000000', 'internal', 'error', 'mcp-gateway'],
      ],
    );
    assert.deepEqual(back[1]!['attributes'], expectedRows[1]!.attributes);
    assert.deepEqual(back[2]!['events'], [
      ['1763978400250000001', 'exception', { 'exception.type': 'NotFound', 'exception.message': 'user 7 not found' }],
    ]);
  });
});
