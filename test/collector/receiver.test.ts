// The receiver over real HTTP: a listening node:http server on an ephemeral loopback port, a fake
// publisher that records what it was given, OTLP bodies written by the OpenTelemetry SDK's own
// serializers.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import zlib from 'node:zlib';
import { pino } from 'pino';
import protobuf from 'protobufjs';
import { SpanKind } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { createReceiver, type ReceiverDeps } from '../../collector/receiver.ts';
import { authenticate, isLoopback } from '../../collector/receiver/auth.ts';
import { HttpError } from '../../collector/receiver/respond.ts';
import { BackpressureError, type OutboundMessage, type Publisher } from '../../core/publisher.ts';
import { normalizeAuditRecord, type AuditEvent } from '../../model/audit-event.ts';
import { decodeTraceRequest } from '../../model/otlp.ts';
import { createTimeWindow } from '../../model/time-window.ts';

const AUDIT_TOPIC = 'receiver-test-audit';
const SPANS_TOPIC = 'receiver-test-spans';

// ---- fixtures ---------------------------------------------------------------------------------------

/** Exactly as go-micro's gateway marshals an allowed `AuditRecord`. */
const GO_ALLOWED =
  '{"trace_id":"6f1c9b2e-3d4a-4f5b-8c6d-7e8f9a0b1c2d","timestamp":"2026-11-24T10:00:00.123456789Z","tool":"users.Users.Get",' +
  '"account_id":"acct-1","scopes_required":["users:read"],"allowed":true,"duration":1523000}';
/** A denied call: go-micro omits the empty fields. */
const GO_DENIED =
  '{"trace_id":"0b7d4c3a-9e8f-4a1b-b2c3-d4e5f6a7b8c9","timestamp":"2026-11-24T10:00:01Z","tool":"billing.Billing.Charge",' +
  '"allowed":false,"denied_reason":"missing token"}';

const ALLOWED_EVENT: AuditEvent = {
  v: 1,
  event_id: '01a20cff-7d7b-7684-aa0f-229cb57701ad',
  tenant: 'default',
  trace_id: '6f1c9b2e-3d4a-4f5b-8c6d-7e8f9a0b1c2d',
  timestamp: '2026-11-24T10:00:00.123456789Z',
  tool: 'users.Users.Get',
  service: 'users',
  account_id: 'acct-1',
  scopes_required: ['users:read'],
  allowed: true,
  denied_reason: '',
  duration: 1523000,
  error: '',
  agent: '',
  agent_version: '',
  session_id: '',
  gateway: '',
  transport: '',
  otel_trace_id: '',
  otel_span_id: '',
  request_bytes: 0,
  response_bytes: 0,
  cost_usd: null,
  attributes: {},
};

function eventOf(record: string, tenant = 'default'): AuditEvent {
  const result = normalizeAuditRecord(JSON.parse(record), { tenant });
  assert.ok(result.ok);
  return result.value;
}

function record(i: number): string {
  return JSON.stringify({
    trace_id: `trace-${i}`,
    timestamp: `2026-11-24T10:00:${String(i % 60).padStart(2, '0')}.000000001Z`,
    tool: 'users.Users.Get',
    allowed: true,
  });
}

const exporter = new InMemorySpanExporter();
const tracer = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'go-micro-gateway' }),
  spanProcessors: [new SimpleSpanProcessor(exporter)],
}).getTracer('go-micro.dev/v6/gateway/mcp', '6.0.0');

/** Finished SDK spans with these names (an empty name makes a span the decoder refuses). */
function makeSpans(names: string[]): ReadableSpan[] {
  exporter.reset();
  for (const name of names) {
    tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: { 'mcp.tool.name': 'users.Users.Get', 'mcp.auth.allowed': true } }).end();
  }
  return exporter.getFinishedSpans();
}
const protobufBody = (spans: ReadableSpan[]) => Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);
const jsonBody = (spans: ReadableSpan[]) => Buffer.from(JsonTraceSerializer.serializeRequest(spans)!);

/** `google.rpc.Status`, decoded independently of the receiver's writer. */
const RpcStatus = protobuf.Root.fromJSON({
  nested: { Status: { fields: { code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 } } } },
}).lookupType('Status');

// ---- harness ----------------------------------------------------------------------------------------

interface Published {
  topic: string;
  messages: OutboundMessage[];
}

interface Harness {
  url: string;
  published: Published[];
  logs: Array<Record<string, unknown>>;
}

type Options = Partial<ReceiverDeps> & { host?: string; wrap?: (handle: http.RequestListener) => http.RequestListener };

async function startReceiver(t: TestContext, options: Options = {}): Promise<Harness> {
  const published: Published[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const publisher: Publisher = {
    async publish(topic, messages) {
      published.push({ topic, messages });
    },
  };
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const { host = '127.0.0.1', wrap = (h) => h, ...deps } = options;
  const receiver = createReceiver({
    publisher,
    logger,
    topics: { audit: AUDIT_TOPIC, spans: SPANS_TOPIC },
    maxBodyBytes: 1024 * 1024,
    maxRecords: 100,
    ...deps,
  });
  const server = http.createServer(wrap(receiver.handle));
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  const { port } = server.address() as AddressInfo;
  return { url: `http://${host}:${port}`, published, logs };
}

function post(url: string, body: string | Buffer, headers: Record<string, string>): Promise<Response> {
  return fetch(url, { method: 'POST', body: typeof body === 'string' ? body : new Uint8Array(body), headers });
}

const postAudit = (h: Harness, body: string | Buffer, headers: Record<string, string> = {}) =>
  post(`${h.url}/v1/audit`, body, { 'content-type': 'application/json', ...headers });

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** node:http, for bodies the server answers before reading them: write errors after the answer are expected. */
function rawRequest(url: string, headers: Record<string, string | number>, write: (req: http.ClientRequest) => void): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE' && error.code !== 'ECONNRESET') reject(error);
    });
    write(req);
  });
}

// ---- POST /v1/audit ---------------------------------------------------------------------------------

test('audit: one go-micro record is validated, normalized and published with its key', async (t) => {
  const h = await startReceiver(t);
  const res = await postAudit(h, GO_ALLOWED);
  assert.equal(res.status, 202);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.deepEqual(await res.json(), { accepted: 1 });
  assert.equal(h.published.length, 1);
  assert.equal(h.published[0]!.topic, AUDIT_TOPIC);
  assert.equal(h.published[0]!.messages.length, 1);
  const message = h.published[0]!.messages[0]!;
  assert.equal(message.key, 'default/');
  assert.equal(message.headers, undefined);
  assert.deepEqual(JSON.parse(message.value.toString()), ALLOWED_EVENT);
});

test('audit: a denied go-micro record with only the non-empty fields', async (t) => {
  const h = await startReceiver(t);
  const res = await postAudit(h, GO_DENIED, { 'content-type': 'application/json; charset=utf-8' });
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), { accepted: 1 });
  const event = JSON.parse(h.published[0]!.messages[0]!.value.toString());
  assert.deepEqual(event, eventOf(GO_DENIED));
  assert.equal(event.event_id, '01a20cff-80e8-7003-bd22-01a9424fe34c');
  assert.equal(event.timestamp, '2026-11-24T10:00:01.000000000Z');
  assert.equal(event.allowed, false);
  assert.equal(event.denied_reason, 'missing token');
  assert.equal(event.account_id, '');
  assert.deepEqual(event.scopes_required, []);
  assert.equal(event.duration, 0);
  assert.equal(event.service, 'billing');
});

test('audit: a JSON array is one publish call, one message per record, in input order', async (t) => {
  const h = await startReceiver(t);
  const res = await postAudit(h, `[${GO_ALLOWED},${GO_DENIED},${record(7)}]`);
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), { accepted: 3 });
  assert.equal(h.published.length, 1);
  assert.deepEqual(
    h.published[0]!.messages.map((m) => JSON.parse(m.value.toString())),
    [ALLOWED_EVENT, eventOf(GO_DENIED), eventOf(record(7))],
  );
  assert.deepEqual(h.published[0]!.messages.map((m) => m.key), ['default/', 'default/', 'default/']);
});

test('audit: an empty array is accepted and publishes nothing', async (t) => {
  const h = await startReceiver(t);
  const res = await postAudit(h, '[]');
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), { accepted: 0 });
  assert.equal(h.published.length, 0);
});

test('audit: NDJSON, one record per non-empty line, under both content types', async (t) => {
  const h = await startReceiver(t);
  for (const type of ['application/x-ndjson', 'application/jsonl']) {
    const res = await postAudit(h, `${GO_ALLOWED}\r\n\n${GO_DENIED}\n  \n`, { 'content-type': type });
    assert.equal(res.status, 202, type);
    assert.deepEqual(await res.json(), { accepted: 2 });
  }
  assert.equal(h.published.length, 2);
  for (const p of h.published) {
    assert.deepEqual(p.messages.map((m) => JSON.parse(m.value.toString())), [ALLOWED_EVENT, eventOf(GO_DENIED)]);
  }
});

test('audit: an NDJSON line that is not JSON is a rejected record at its index; the others are published', async (t) => {
  const h = await startReceiver(t);
  const res = await postAudit(h, `${GO_ALLOWED}\n\n{"trace_id": oops}\n${GO_DENIED}\n`, { 'content-type': 'application/x-ndjson' });
  assert.equal(res.status, 400);
  const answer = await res.json();
  // The parser's own wording follows the JavaScript engine; the product promises the index and what is wrong.
  assert.match(answer.rejected[0].errors[0].message, /^line is not valid JSON: \S/);
  answer.rejected[0].errors[0].message = 'line is not valid JSON: …';
  assert.deepEqual(answer, {
    error: '1 of 3 records rejected (see "rejected"); the other 2 were accepted',
    accepted: 2,
    rejected: [{ index: 1, errors: [{ path: '', message: 'line is not valid JSON: …' }] }],
  });
  assert.equal(h.published.length, 1);
  assert.deepEqual(h.published[0]!.messages.map((m) => JSON.parse(m.value.toString())), [ALLOWED_EVENT, eventOf(GO_DENIED)]);
});

test('audit: a mixed batch answers 400 naming each bad index, field and reason, and publishes the good ones', async (t) => {
  const h = await startReceiver(t);
  const bad = '{"trace_id":"t-2","timestamp":"yesterday","allowed":"yes"}';
  const res = await postAudit(h, `[${GO_ALLOWED},${bad},${GO_DENIED},42,{"trace_id":"t-5","timestamp":"2026-11-24T10:00:00Z","tool":"x","allowed":true,"duration":-1}]`);
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), {
    error: '3 of 5 records rejected (see "rejected"); the other 2 were accepted',
    accepted: 2,
    rejected: [
      {
        index: 1,
        errors: [
          { path: 'timestamp', message: 'must be an RFC 3339 timestamp, e.g. 2026-11-24T10:00:00.123456789Z' },
          { path: 'tool', message: 'Invalid input: expected string, received undefined' },
          { path: 'allowed', message: 'must be true or false' },
        ],
      },
      { index: 3, errors: [{ path: '', message: 'Invalid input: expected object, received number' }] },
      { index: 4, errors: [{ path: 'duration', message: 'must not be negative' }] },
    ],
  });
  assert.equal(h.published.length, 1);
  assert.deepEqual(h.published[0]!.messages.map((m) => JSON.parse(m.value.toString())), [ALLOWED_EVENT, eventOf(GO_DENIED)]);
});

test('audit: a record stamped before the retention window or beyond the allowed clock skew is refused, naming timestamp and the window', async (t) => {
  const now = Date.UTC(2026, 10, 24, 10, 30, 0);
  const h = await startReceiver(t, { timeWindow: createTimeWindow({ retentionDays: 90, maxClockSkewSeconds: 300 }, () => now) });
  const at = (timestamp: string) => JSON.stringify({ ...JSON.parse(GO_ALLOWED), timestamp });
  const res = await postAudit(h, `[${at('1970-01-01T00:00:00Z')},${GO_ALLOWED},${at('2099-01-01T00:00:00Z')},${at('2026-11-24T10:35:00Z')},${at('2026-11-24T10:35:00.000000001Z')}]`);
  assert.equal(res.status, 400);
  const window = 'accepted from 2026-08-26T10:30:00Z to 2026-11-24T10:35:00Z; send the time of the call, from a synchronized clock';
  assert.deepEqual(await res.json(), {
    error: '3 of 5 records rejected (see "rejected"); the other 2 were accepted',
    accepted: 2,
    rejected: [
      { index: 0, errors: [{ path: 'timestamp', message: `1970-01-01T00:00:00.000000000Z is before the retention window (RETENTION_DAYS=90); ${window}` }] },
      { index: 2, errors: [{ path: 'timestamp', message: `2099-01-01T00:00:00.000000000Z is more than 300 s ahead of the server's clock (MAX_CLOCK_SKEW_S); ${window}` }] },
      { index: 4, errors: [{ path: 'timestamp', message: `2026-11-24T10:35:00.000000001Z is more than 300 s ahead of the server's clock (MAX_CLOCK_SKEW_S); ${window}` }] },
    ],
  });
  assert.deepEqual(
    h.published[0]!.messages.map((m) => JSON.parse(m.value.toString()).timestamp),
    ['2026-11-24T10:00:00.123456789Z', '2026-11-24T10:35:00.000000000Z'],
  );
});

test('audit: when every record is bad, 400 with accepted 0 and nothing published', async (t) => {
  const h = await startReceiver(t);
  const res = await postAudit(h, '[{"tool":""}]');
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), {
    error: '1 of 1 records rejected (see "rejected")',
    accepted: 0,
    rejected: [
      {
        index: 0,
        errors: [
          { path: 'trace_id', message: 'Invalid input: expected string, received undefined' },
          { path: 'timestamp', message: 'Invalid input: expected string, received undefined' },
          { path: 'tool', message: 'must not be empty' },
          { path: 'allowed', message: 'must be true or false' },
        ],
      },
    ],
  });
  assert.equal(h.published.length, 0);
});

test('audit: a body that is not JSON, not a record, or empty is a 400 with a clear message', async (t) => {
  const h = await startReceiver(t);
  // After "not valid JSON: " comes the parser's own reason, worded by the JavaScript engine (newer V8s
  // add "(line 2 column 1)"); the product promises the prefix, the reason and the NDJSON hint.
  const reason = String.raw`\S[^;]*`;
  const cases: Array<[string, RegExp]> = [
    ['{"trace_id":', new RegExp(`^the body is not valid JSON: ${reason}$`)],
    [
      `${GO_ALLOWED}\n${GO_DENIED}`,
      new RegExp(`^the body is not valid JSON: ${reason}; for one record per line, send Content-Type: application/x-ndjson$`),
    ],
    ['"hello"', /^the body must be a JSON object \(one audit record\) or an array of them, not string$/],
    ['null', /^the body must be a JSON object \(one audit record\) or an array of them, not null$/],
    ['  ', /^the body is empty; send a JSON audit record or an array of them$/],
  ];
  for (const [body, error] of cases) {
    const res = await postAudit(h, body);
    assert.equal(res.status, 400, body);
    const answer = await res.json();
    assert.deepEqual(Object.keys(answer), ['error'], body);
    assert.match(answer.error, error, body);
  }
  assert.equal(h.published.length, 0);
});

test('audit: gzip, deflate (zlib) and raw deflate bodies are decompressed', async (t) => {
  const h = await startReceiver(t);
  const body = `[${GO_ALLOWED},${GO_DENIED}]`;
  const encoded: Array<[string, Buffer]> = [
    ['gzip', zlib.gzipSync(body)],
    ['x-gzip', zlib.gzipSync(body)],
    ['deflate', zlib.deflateSync(body)],
    ['deflate', zlib.deflateRawSync(body)],
    ['identity', Buffer.from(body)],
  ];
  for (const [encoding, bytes] of encoded) {
    const res = await postAudit(h, bytes, { 'content-encoding': encoding });
    assert.equal(res.status, 202, encoding);
    assert.deepEqual(await res.json(), { accepted: 2 });
  }
  assert.equal(h.published.length, 5);
  for (const p of h.published) {
    assert.deepEqual(p.messages.map((m) => JSON.parse(m.value.toString())), [ALLOWED_EVENT, eventOf(GO_DENIED)]);
  }
});

test('audit: a gzip bomb (tiny compressed, huge inflated) is a 413 without inflating it all', async (t) => {
  const h = await startReceiver(t, { maxBodyBytes: 64 * 1024 });
  const bomb = zlib.gzipSync(Buffer.alloc(50 * 1024 * 1024, 0x20));
  assert.ok(bomb.length < 64 * 1024, `the bomb is ${bomb.length} bytes compressed`);
  const res = await postAudit(h, bomb, { 'content-encoding': 'gzip' });
  assert.equal(res.status, 413);
  assert.deepEqual(await res.json(), {
    error: 'request body too large: it inflates to over the limit of 65536 bytes (RECEIVER_MAX_BODY_BYTES); send smaller batches',
    limit: 65536,
  });
  assert.equal(h.published.length, 0);
});

test('audit: a corrupt gzip body is a 400', async (t) => {
  const h = await startReceiver(t);
  const truncated = zlib.gzipSync(`[${GO_ALLOWED}]`).subarray(0, 20);
  const res = await postAudit(h, truncated, { 'content-encoding': 'gzip' });
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { error: 'the body is not valid gzip data: unexpected end of file' });
  const res2 = await postAudit(h, Buffer.from('not gzip at all'), { 'content-encoding': 'gzip' });
  assert.equal(res2.status, 400);
  assert.deepEqual(await res2.json(), { error: 'the body is not valid gzip data: incorrect header check' });
  assert.equal(h.published.length, 0);
});

test('audit: a body over maxBodyBytes is a 413, by Content-Length before reading, or while streaming', async (t) => {
  const h = await startReceiver(t, { maxBodyBytes: 1000 });
  const declared = await rawRequest(`${h.url}/v1/audit`, { 'content-type': 'application/json', 'content-length': 50_000_000 }, (req) => {
    req.write('['); // and never the rest: the answer must not wait for 50 MB
  });
  assert.equal(declared.status, 413);
  assert.equal(declared.headers.connection, 'close');
  assert.deepEqual(JSON.parse(declared.body.toString()), {
    error: 'request body too large: its Content-Length is over the limit of 1000 bytes (RECEIVER_MAX_BODY_BYTES); send smaller batches',
    limit: 1000,
  });

  // Chunked, no Content-Length: the receiver counts as it reads, answers at the limit and stops reading.
  let written = 0;
  const streamed = await rawRequest(`${h.url}/v1/audit`, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, (req) => {
    const chunk = Buffer.alloc(600, 0x20);
    const timer = setInterval(() => {
      if (req.destroyed || written > 10_000_000) return clearInterval(timer);
      req.write(chunk);
      written += chunk.length;
    }, 1);
    req.on('close', () => clearInterval(timer));
  });
  assert.equal(streamed.status, 413);
  assert.equal(streamed.headers.connection, 'close');
  assert.deepEqual(JSON.parse(streamed.body.toString()), {
    error: 'request body too large: it is over the limit of 1000 bytes (RECEIVER_MAX_BODY_BYTES); send smaller batches',
    limit: 1000,
  });
  assert.ok(written < 64 * 1024, `the client could write ${written} bytes before the receiver closed the connection`);
  assert.equal(h.published.length, 0);
});

test('audit: a client that disconnects mid-body does not hurt the receiver', async (t) => {
  const h = await startReceiver(t);
  await new Promise<void>((resolve) => {
    const req = http.request(`${h.url}/v1/audit`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': 10_000 },
    });
    req.on('error', () => resolve());
    req.write(`[${GO_ALLOWED},`, () => setTimeout(() => req.destroy(), 50));
  });
  const health = await fetch(`${h.url}/healthz`);
  assert.equal(health.status, 200);
  const res = await postAudit(h, GO_ALLOWED);
  assert.equal(res.status, 202);
  assert.equal(h.published.length, 1);
  assert.equal(h.logs.filter((l) => l['level'] === 50).length, 0);
});

test('audit: more than maxRecords records (array or NDJSON) is a 413 naming the limit', async (t) => {
  const h = await startReceiver(t, { maxRecords: 3 });
  const records = [0, 1, 2, 3].map(record);
  const error = 'too many records: 4 in one request, over the limit of 3 (RECEIVER_MAX_RECORDS); send smaller batches';
  const array = await postAudit(h, `[${records.join(',')}]`);
  assert.equal(array.status, 413);
  assert.deepEqual(await array.json(), { error, limit: 3 });
  const ndjson = await postAudit(h, records.join('\n'), { 'content-type': 'application/x-ndjson' });
  assert.equal(ndjson.status, 413);
  assert.deepEqual(await ndjson.json(), { error, limit: 3 });
  const atLimit = await postAudit(h, `[${records.slice(0, 3).join(',')}]`);
  assert.equal(atLimit.status, 202);
  assert.deepEqual(await atLimit.json(), { accepted: 3 });
  assert.equal(h.published.length, 1);
});

test('audit: an unknown or missing Content-Type is a 415 naming the accepted ones', async (t) => {
  const h = await startReceiver(t);
  const accepted = ['application/json', 'application/x-ndjson', 'application/jsonl'];
  const plain = await postAudit(h, GO_ALLOWED, { 'content-type': 'text/plain' });
  assert.equal(plain.status, 415);
  assert.deepEqual(await plain.json(), {
    error: 'unsupported Content-Type "text/plain"; use application/json, application/x-ndjson or application/jsonl',
    accepted,
  });
  const missing = await fetch(`${h.url}/v1/audit`, { method: 'POST', body: Buffer.from(GO_ALLOWED) });
  assert.equal(missing.status, 415);
  assert.deepEqual(await missing.json(), {
    error: 'missing Content-Type; use application/json, application/x-ndjson or application/jsonl',
    accepted,
  });
  assert.equal(h.published.length, 0);
});

test('audit: an unknown Content-Encoding is a 415', async (t) => {
  const h = await startReceiver(t);
  const res = await postAudit(h, GO_ALLOWED, { 'content-encoding': 'br' });
  assert.equal(res.status, 415);
  assert.deepEqual(await res.json(), {
    error: 'unsupported Content-Encoding "br"; use gzip, deflate or none',
    accepted: ['gzip', 'deflate', 'identity'],
  });
  assert.equal(h.published.length, 0);
});

// ---- auth -------------------------------------------------------------------------------------------

test('auth: with tokens configured, a missing or unknown bearer token is a 401 with WWW-Authenticate', async (t) => {
  const h = await startReceiver(t, { tokens: new Map([['tok-acme', 'acme']]) });
  const none = await postAudit(h, GO_ALLOWED);
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer');
  assert.deepEqual(await none.json(), { error: 'missing bearer token: send Authorization: Bearer <token>' });

  const basic = await postAudit(h, GO_ALLOWED, { authorization: 'Basic dXNlcjpwYXNz' });
  assert.equal(basic.status, 401);
  assert.equal(basic.headers.get('www-authenticate'), 'Bearer');

  const wrong = await postAudit(h, GO_ALLOWED, { authorization: 'Bearer tok-globex' });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
  assert.deepEqual(await wrong.json(), { error: 'unknown bearer token' });

  const traces = await post(`${h.url}/v1/traces`, jsonBody(makeSpans(['a'])), { 'content-type': 'application/json' });
  assert.equal(traces.status, 401);
  assert.equal(traces.headers.get('www-authenticate'), 'Bearer');
  assert.equal(h.published.length, 0);
});

test('auth: the token names the tenant; a record claiming another tenant is rejected', async (t) => {
  const h = await startReceiver(t, { tokens: new Map([['tok-acme', 'acme'], ['tok-globex', 'globex']]) });
  const own = JSON.stringify({ ...JSON.parse(GO_DENIED), tenant: 'acme', agent: 'claude' });
  const other = JSON.stringify({ ...JSON.parse(GO_DENIED), tenant: 'globex' });
  const res = await postAudit(h, `[${GO_ALLOWED},${other},${own}]`, { authorization: 'bearer tok-acme' });
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), {
    error: '1 of 3 records rejected (see "rejected"); the other 2 were accepted',
    accepted: 2,
    rejected: [{ index: 1, errors: [{ path: 'tenant', message: 'must be the sender\'s own tenant "acme"' }] }],
  });
  const messages = h.published[0]!.messages;
  assert.deepEqual(messages.map((m) => m.key), ['acme/', 'acme/claude']);
  assert.deepEqual(
    messages.map((m) => JSON.parse(m.value.toString())),
    [eventOf(GO_ALLOWED, 'acme'), eventOf(own, 'acme')],
  );
  assert.equal(JSON.parse(messages[0]!.value.toString()).tenant, 'acme');
});

test('auth: with no tokens, a non-loopback sender gets 403 telling it to configure INGEST_TOKENS', async (t) => {
  const h = await startReceiver(t, {
    wrap: (handle) => (req, res) => {
      Object.defineProperty(req.socket, 'remoteAddress', { value: '203.0.113.7', configurable: true });
      handle(req, res);
    },
  });
  const res = await postAudit(h, GO_ALLOWED);
  assert.equal(res.status, 403);
  assert.deepEqual(await res.json(), {
    error:
      'no ingest tokens are configured, so only this machine may send (you are 203.0.113.7); ' +
      'configure INGEST_TOKENS=token=tenant,... and send Authorization: Bearer <token>',
  });
  assert.equal(h.published.length, 0);
});

test('auth: isLoopback and authenticate decide exactly', () => {
  for (const a of ['127.0.0.1', '127.255.0.9', '::1', '::ffff:127.0.0.1', '::FFFF:127.1.2.3']) assert.equal(isLoopback(a), true, a);
  for (const a of [undefined, '', '128.0.0.1', '10.0.0.1', '::2', '::ffff:10.0.0.1', '1127.0.0.1', 'fe80::1', '0.0.0.0']) {
    assert.equal(isLoopback(a), false, String(a));
  }
  assert.equal(authenticate(undefined, '127.0.0.1', undefined), 'default');
  assert.equal(authenticate('Bearer whatever', '::1', new Map()), 'default');
  assert.throws(() => authenticate(undefined, '10.1.2.3', undefined), (e: unknown) => e instanceof HttpError && e.status === 403);
  const tokens = new Map([['t1', 'acme']]);
  assert.equal(authenticate('Bearer t1', '10.1.2.3', tokens), 'acme');
  assert.equal(authenticate('bearer   t1 ', '10.1.2.3', tokens), 'acme');
  assert.throws(() => authenticate('Bearer t1', '127.0.0.1', new Map([['t2', 'x']])), (e: unknown) => e instanceof HttpError && e.status === 401);
  assert.throws(() => authenticate('Bearer', '127.0.0.1', tokens), (e: unknown) => e instanceof HttpError && e.status === 401);
});

// ---- back-pressure and failures ----------------------------------------------------------------------

test('back-pressure: BackpressureError is a 503 with Retry-After; nothing is lost silently', async (t) => {
  const publisher: Publisher = {
    async publish() {
      throw new BackpressureError(6.2);
    },
  };
  const h = await startReceiver(t, { publisher });
  const res = await postAudit(h, `[${GO_ALLOWED}]`);
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '7');
  assert.deepEqual(await res.json(), { error: 'the pipeline is full; retry later', retryAfterSeconds: 7 });

  const otlp = await post(`${h.url}/v1/traces`, protobufBody(makeSpans(['a'])), { 'content-type': 'application/x-protobuf' });
  assert.equal(otlp.status, 503);
  assert.equal(otlp.headers.get('retry-after'), '7');
  assert.equal(otlp.headers.get('content-type'), 'application/x-protobuf');
  assert.deepEqual(RpcStatus.toObject(RpcStatus.decode(new Uint8Array(await otlp.arrayBuffer()))), {
    code: 14,
    message: 'the pipeline is full; retry later',
  });
  assert.equal(h.logs.filter((l) => l['msg'] === 'publisher is full; answering 503 until it drains').length, 1);
});

test('back-pressure: any other publish error is a 503 too, and is logged', async (t) => {
  const publisher: Publisher = {
    async publish() {
      throw new Error('KafkaJSNumberOfRetriesExceeded');
    },
  };
  const h = await startReceiver(t, { publisher });
  const res = await postAudit(h, GO_ALLOWED);
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '5');
  assert.deepEqual(await res.json(), { error: 'the pipeline is unavailable; retry later', retryAfterSeconds: 5 });
  const logged = h.logs.filter((l) => l['msg'] === 'publish failed; answered 503');
  assert.equal(logged.length, 1);
  assert.equal(logged[0]!['level'], 50);
  assert.equal((logged[0]!['err'] as { message: string }).message, 'KafkaJSNumberOfRetriesExceeded');
  assert.equal(logged[0]!['topic'], AUDIT_TOPIC);
});

test('a bug in a handler still gets an answer (500) and is logged', async (t) => {
  const topics = {
    get audit(): string {
      throw new TypeError('simulated bug');
    },
    spans: SPANS_TOPIC,
  };
  const h = await startReceiver(t, { topics });
  const res = await postAudit(h, GO_ALLOWED);
  assert.equal(res.status, 500);
  assert.deepEqual(await res.json(), { error: 'internal error' });
  const logged = h.logs.filter((l) => l['msg'] === 'receiver handler failed');
  assert.equal(logged.length, 1);
  assert.equal((logged[0]!['err'] as { message: string }).message, 'simulated bug');
  const health = await fetch(`${h.url}/healthz`);
  assert.equal(health.status, 200);
});

// ---- POST /v1/traces --------------------------------------------------------------------------------

test('traces: OTLP protobuf from the SDK serializer is published as the original bytes; 200 with an empty response', async (t) => {
  const h = await startReceiver(t);
  const body = protobufBody(makeSpans(['mcp.tool.call', 'mcp.tool.call', 'db.query']));
  const res = await post(`${h.url}/v1/traces`, body, { 'content-type': 'application/x-protobuf' });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/x-protobuf');
  const answer = new Uint8Array(await res.arrayBuffer());
  assert.equal(answer.length, 0);
  assert.deepEqual(ProtobufTraceSerializer.deserializeResponse(answer), {});
  assert.equal(h.published.length, 1);
  assert.equal(h.published[0]!.topic, SPANS_TOPIC);
  assert.equal(h.published[0]!.messages.length, 1);
  const message = h.published[0]!.messages[0]!;
  assert.equal(message.key, 'default');
  assert.deepEqual(message.headers, { tenant: 'default', 'content-type': 'application/x-protobuf' });
  assert.equal(Buffer.compare(message.value, body), 0);
  assert.equal(decodeTraceRequest(message.value, 'protobuf', 'default').spans.length, 3);
});

test('traces: OTLP JSON from the SDK serializer, gzip-compressed, with a token', async (t) => {
  const h = await startReceiver(t, { tokens: new Map([['tok-acme', 'acme']]) });
  const body = jsonBody(makeSpans(['mcp.tool.call', 'mcp.tool.call']));
  const res = await post(`${h.url}/v1/traces`, zlib.gzipSync(body), {
    'content-type': 'application/json',
    'content-encoding': 'gzip',
    authorization: 'Bearer tok-acme',
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(await res.text(), '{}');
  const message = h.published[0]!.messages[0]!;
  assert.equal(message.key, 'acme');
  assert.deepEqual(message.headers, { tenant: 'acme', 'content-type': 'application/json' });
  assert.equal(message.value.toString(), body.toString());
});

test('traces: partial success lists the rejected spans; the request is still published once', async (t) => {
  const h = await startReceiver(t);
  const spans = makeSpans(['mcp.tool.call', '', 'mcp.tool.call', '']);
  const partialSuccess = {
    rejectedSpans: 2,
    errorMessage: '2 span(s) rejected: span 1: name: must not be empty; span 3: name: must not be empty',
  };

  const pb = await post(`${h.url}/v1/traces`, protobufBody(spans), { 'content-type': 'application/x-protobuf' });
  assert.equal(pb.status, 200);
  const decoded = ProtobufTraceSerializer.deserializeResponse(new Uint8Array(await pb.arrayBuffer()));
  assert.deepEqual({ ...decoded.partialSuccess, rejectedSpans: Number(decoded.partialSuccess?.rejectedSpans) }, partialSuccess);

  const json = await post(`${h.url}/v1/traces`, jsonBody(spans), { 'content-type': 'application/json' });
  assert.equal(json.status, 200);
  assert.deepEqual(await json.json(), { partialSuccess });
  assert.equal(h.published.length, 2);
});

test('traces: partial success names the first five rejections and counts the rest', async (t) => {
  const h = await startReceiver(t);
  const res = await post(`${h.url}/v1/traces`, jsonBody(makeSpans(['', '', '', '', '', '', ''])), { 'content-type': 'application/json' });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {
    partialSuccess: {
      rejectedSpans: 7,
      errorMessage:
        '7 span(s) rejected: span 0: name: must not be empty; span 1: name: must not be empty; span 2: name: must not be empty; ' +
        'span 3: name: must not be empty; span 4: name: must not be empty; and 2 more',
    },
  });
  assert.equal(h.published.length, 0, 'no valid span: nothing is published');
});

test('traces: an undecodable body is a 400: google.rpc.Status for protobuf, JSON for JSON', async (t) => {
  const h = await startReceiver(t);
  const pb = await post(`${h.url}/v1/traces`, Buffer.from('garbage here'), { 'content-type': 'application/x-protobuf' });
  assert.equal(pb.status, 400);
  assert.equal(pb.headers.get('content-type'), 'application/x-protobuf');
  assert.deepEqual(RpcStatus.toObject(RpcStatus.decode(new Uint8Array(await pb.arrayBuffer()))), {
    code: 3,
    message: 'invalid OTLP request: not a protobuf ExportTraceServiceRequest (invalid wire type 7 at offset 1)',
  });

  const json = await post(`${h.url}/v1/traces`, Buffer.from('garbage here'), { 'content-type': 'application/json' });
  assert.equal(json.status, 400);
  assert.equal(json.headers.get('content-type'), 'application/json');
  assert.deepEqual(await json.json(), {
    error: 'invalid OTLP request: not OTLP/JSON (Unexpected token \'g\', "garbage here" is not valid JSON)',
  });
  assert.equal(h.published.length, 0);
});

test('traces: more spans than maxRecords is a 413; wrong content type or encoding a 415', async (t) => {
  const h = await startReceiver(t, { maxRecords: 2 });
  const pb = await post(`${h.url}/v1/traces`, protobufBody(makeSpans(['a', 'b', 'c'])), { 'content-type': 'application/x-protobuf' });
  assert.equal(pb.status, 413);
  assert.deepEqual(RpcStatus.toObject(RpcStatus.decode(new Uint8Array(await pb.arrayBuffer()))), {
    code: 3,
    message: 'too many spans: 3 in one request, over the limit of 2 (RECEIVER_MAX_RECORDS); export smaller batches',
  });
  const json = await post(`${h.url}/v1/traces`, jsonBody(makeSpans(['a', 'b', 'c'])), { 'content-type': 'application/json' });
  assert.equal(json.status, 413);
  assert.deepEqual(await json.json(), {
    error: 'too many spans: 3 in one request, over the limit of 2 (RECEIVER_MAX_RECORDS); export smaller batches',
    limit: 2,
  });
  const type = await post(`${h.url}/v1/traces`, '{}', { 'content-type': 'application/x-ndjson' });
  assert.equal(type.status, 415);
  assert.deepEqual(await type.json(), {
    error: 'unsupported Content-Type "application/x-ndjson"; use application/x-protobuf or application/json',
    accepted: ['application/x-protobuf', 'application/json'],
  });
  const encoding = await post(`${h.url}/v1/traces`, protobufBody(makeSpans(['a'])), {
    'content-type': 'application/x-protobuf',
    'content-encoding': 'zstd',
  });
  assert.equal(encoding.status, 415);
  assert.deepEqual(RpcStatus.toObject(RpcStatus.decode(new Uint8Array(await encoding.arrayBuffer()))), {
    code: 3,
    message: 'unsupported Content-Encoding "zstd"; use gzip, deflate or none',
  });
  assert.equal(h.published.length, 0);
});

test('traces: a gzip bomb is a 413 as well', async (t) => {
  const h = await startReceiver(t, { maxBodyBytes: 32 * 1024 });
  const res = await post(`${h.url}/v1/traces`, zlib.gzipSync(Buffer.alloc(10 * 1024 * 1024)), {
    'content-type': 'application/json',
    'content-encoding': 'gzip',
  });
  assert.equal(res.status, 413);
  assert.deepEqual(await res.json(), {
    error: 'request body too large: it inflates to over the limit of 32768 bytes (RECEIVER_MAX_BODY_BYTES); send smaller batches',
    limit: 32768,
  });
});

// ---- routing ----------------------------------------------------------------------------------------

test('routing: healthz, 404 for unknown paths, 405 with Allow for wrong methods', async (t) => {
  const h = await startReceiver(t, { tokens: new Map([['tok', 'acme']]) });
  const health = await fetch(`${h.url}/healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'ok' });
  const head = await fetch(`${h.url}/healthz`, { method: 'HEAD' });
  assert.equal(head.status, 200);

  const missing = await fetch(`${h.url}/v1/logs`, { method: 'POST', body: '{}' });
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), {
    error: 'no such endpoint /v1/logs; the receiver serves POST /v1/audit, POST /v1/traces and GET /healthz',
  });

  const get = await fetch(`${h.url}/v1/audit?x=1`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');
  assert.deepEqual(await get.json(), { error: 'GET is not allowed on /v1/audit; use POST' });

  const put = await fetch(`${h.url}/healthz`, { method: 'PUT', body: '' });
  assert.equal(put.status, 405);
  assert.equal(put.headers.get('allow'), 'GET, HEAD');

  const traces = await fetch(`${h.url}/v1/traces`, { method: 'DELETE' });
  assert.equal(traces.status, 405);
  assert.equal(traces.headers.get('allow'), 'POST');
});
