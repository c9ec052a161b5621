// The HTTP publisher against the real receiver (createReceiver over node:http on a loopback port, with
// an in-memory publisher behind it): what arrives, how each kind of failure is classified, and the
// collector feeding a receiver through it, including across a receiver outage (the spool).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SpanKind } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { pino } from 'pino';
import { createCollector, type AuditRecord } from '../../collector/index.ts';
import { createHttpPublisher, HttpPublishError } from '../../collector/http-publisher.ts';
import { createReceiver, type ReceiverDeps } from '../../collector/receiver.ts';
import { PublishError } from '../../core/kafka.ts';
import { BackpressureError, type OutboundMessage, type Publisher } from '../../core/publisher.ts';
import { normalizeAuditRecord, type AuditEvent } from '../../model/audit-event.ts';
import { decodeTraceRequest, encodeTraceRequest } from '../../model/otlp.ts';
import { captureLogger, goMicroRecord, tempDir, waitFor } from './helpers.ts';

const TOPICS = { audit: 'mcp-audit', spans: 'otlp_spans' };

interface Harness {
  url: string;
  port: number;
  /** What the receiver published, by topic. */
  published: Map<string, OutboundMessage[]>;
  /** Content-Encoding and Content-Type of every request the receiver got. */
  requests: { path: string; type: string; encoding: string }[];
}

interface ReceiverOptions extends Partial<ReceiverDeps> {
  port?: number;
}

async function startReceiver(t: TestContext, options: ReceiverOptions = {}): Promise<Harness> {
  const published = new Map<string, OutboundMessage[]>();
  const requests: Harness['requests'] = [];
  const publisher: Publisher = {
    async publish(topic, messages) {
      published.set(topic, [...(published.get(topic) ?? []), ...messages]);
    },
  };
  const { port: wanted = 0, ...deps } = options;
  const receiver = createReceiver({
    publisher,
    logger: pino({ level: 'silent' }),
    topics: TOPICS,
    maxBodyBytes: 1024 * 1024,
    maxRecords: 1000,
    ...deps,
  });
  const server = http.createServer((req, res) => {
    requests.push({ path: req.url ?? '', type: req.headers['content-type'] ?? '', encoding: req.headers['content-encoding'] ?? '' });
    receiver.handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(wanted, '127.0.0.1', resolve));
  t.after(() => closeServer(server));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port, published, requests };
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await closeServer(server);
  return port;
}

/** Audit messages exactly as the collector's sender hands them over (collector/prepare.ts). */
function auditMessages(count: number, agent = 'agent-a'): { messages: OutboundMessage[]; events: AuditEvent[] } {
  const events = Array.from({ length: count }, (_, i) => {
    const result = normalizeAuditRecord({ ...goMicroRecord(i, agent), event_id: undefined }, { tenant: 'default' });
    assert.ok(result.ok);
    return result.value;
  });
  const messages = events.map((e) => ({ key: `default/${agent}`, value: Buffer.from(JSON.stringify(e)), headers: { tenant: 'default' } }));
  return { messages, events };
}

const received = (h: Harness): AuditEvent[] => (h.published.get(TOPICS.audit) ?? []).map((m) => JSON.parse(m.value.toString()) as AuditEvent);

async function rejects<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${type.name}, but it resolved`);
}

test('an audit batch arrives intact, as NDJSON, gzipped above 1 KB', async (t) => {
  const h = await startReceiver(t);
  const publisher = createHttpPublisher({ url: h.url });

  const big = auditMessages(50);
  await publisher.publish(TOPICS.audit, big.messages);
  assert.deepEqual(received(h), big.events, 'every field of every record, in order');
  assert.deepEqual(h.requests, [{ path: '/v1/audit', type: 'application/x-ndjson', encoding: 'gzip' }]);

  const small = auditMessages(1, 'agent-b');
  await publisher.publish(TOPICS.audit, small.messages);
  assert.deepEqual(received(h).slice(50), small.events);
  assert.deepEqual(h.requests[1], { path: '/v1/audit', type: 'application/x-ndjson', encoding: '' });

  // A value with raw newlines (pretty-printed JSON) still travels as one NDJSON line.
  const pretty = auditMessages(1, 'agent-c');
  await publisher.publish(TOPICS.audit, [{ ...pretty.messages[0]!, value: Buffer.from(JSON.stringify(pretty.events[0], null, 2)) }]);
  assert.deepEqual(received(h).slice(51), pretty.events);

  await publisher.publish(TOPICS.audit, []);
  assert.equal(h.requests.length, 3, 'an empty batch sends nothing');
  assert.deepEqual(publisher.stats(), { requests: 3, rejected: 0, rejectedSpans: 0 });
});

test('spans arrive: one POST /v1/traces per message, the protobuf bytes unchanged', async (t) => {
  const h = await startReceiver(t);
  const publisher = createHttpPublisher({ url: `${h.url}/` });
  const memory = new InMemorySpanExporter();
  const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory)] }).getTracer('test');
  tracer.startSpan('mcp.tool.call', { kind: SpanKind.SERVER, attributes: { 'mcp.tool.name': 'users.Users.Get' } }).end();
  const first = Buffer.from(encodeTraceRequest(memory.getFinishedSpans()));
  memory.reset();
  tracer.startSpan('db.query').end();
  tracer.startSpan('http.get').end();
  const second = Buffer.from(encodeTraceRequest(memory.getFinishedSpans()));

  const headers = { tenant: 'default', 'content-type': 'application/x-protobuf' };
  await publisher.publish(TOPICS.spans, [
    { key: null, value: first, headers },
    { key: null, value: second, headers },
  ]);
  const spans = h.published.get(TOPICS.spans) ?? [];
  assert.deepEqual(
    spans.map((m) => m.value),
    [first, second],
  );
  assert.deepEqual(
    spans.map((m) => decodeTraceRequest(m.value, 'protobuf', 'default').spans.map((s) => s.name)),
    [['mcp.tool.call'], ['db.query', 'http.get']],
  );
  assert.deepEqual(
    h.requests.map((r) => [r.path, r.type]),
    [
      ['/v1/traces', 'application/x-protobuf'],
      ['/v1/traces', 'application/x-protobuf'],
    ],
  );
});

test('a 503 from the receiver is a BackpressureError with its Retry-After', async (t) => {
  const full: Publisher = {
    async publish() {
      throw new BackpressureError(7);
    },
  };
  const h = await startReceiver(t, { publisher: full });
  const publisher = createHttpPublisher({ url: h.url });
  const error = await rejects(publisher.publish(TOPICS.audit, auditMessages(3).messages), BackpressureError);
  assert.equal(error.retryAfterSeconds, 7);
  assert.ok(!(error instanceof PublishError), 'the sender treats anything but a permanent PublishError as retryable');
});

test('an unreachable receiver, or one that does not answer in time, is a retryable error', async (t) => {
  const publisher = createHttpPublisher({ url: `http://127.0.0.1:${await closedPort()}` });
  const refused = await rejects(publisher.publish(TOPICS.audit, auditMessages(1).messages), HttpPublishError);
  assert.equal(refused.retryable, true);
  assert.equal(refused.status, undefined);
  assert.match(refused.message, /did not answer.*ECONNREFUSED/);

  const silent = http.createServer(() => {}); // reads the request, never answers
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => closeServer(silent));
  const slow = createHttpPublisher({ url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, timeoutMs: 200 });
  const started = Date.now();
  const timedOut = await rejects(slow.publish(TOPICS.spans, [{ key: null, value: Buffer.of(1) }]), HttpPublishError);
  assert.equal(timedOut.retryable, true);
  assert.match(timedOut.message, /timed out/);
  assert.ok(Date.now() - started < 5_000);
});

test('a bad token is a permanent error carrying the receiver message; the right one is accepted', async (t) => {
  const h = await startReceiver(t, { tokens: new Map([['s3cret', 'acme']]) });
  const wrong = createHttpPublisher({ url: h.url, token: 'guess' });
  const error = await rejects(wrong.publish(TOPICS.audit, auditMessages(1).messages), HttpPublishError);
  assert.equal(error.retryable, false);
  assert.equal(error.status, 401);
  assert.match(error.message, /401: unknown bearer token/);
  const none = await rejects(createHttpPublisher({ url: h.url }).publish(TOPICS.spans, [{ key: null, value: Buffer.of() }]), HttpPublishError);
  assert.equal(none.retryable, false);
  assert.equal(none.status, 401);
  assert.match(none.message, /401: missing bearer token/, 'the google.rpc.Status message of an OTLP protobuf answer');

  const right = createHttpPublisher({ url: h.url, token: 's3cret' });
  const record = normalizeAuditRecord(goMicroRecord(1), { tenant: 'acme' });
  assert.ok(record.ok);
  await right.publish(TOPICS.audit, [{ key: null, value: Buffer.from(JSON.stringify(record.value)) }]);
  assert.equal(received(h)[0]?.tenant, 'acme');
});

test('records the receiver refuses: a partial refusal resolves and is reported, a whole one is permanent', async (t) => {
  const h = await startReceiver(t);
  const { logger, lines } = captureLogger();
  const publisher = createHttpPublisher({ url: h.url, logger });
  const bad = { key: null, value: Buffer.from('{"trace_id":"t","tool":"users.Users.Get","allowed":true,"timestamp":"yesterday"}') };

  const { messages, events } = auditMessages(2);
  await publisher.publish(TOPICS.audit, [messages[0]!, bad, messages[1]!]);
  assert.deepEqual(received(h), events, 'the good records were accepted');
  assert.deepEqual(publisher.stats(), { requests: 1, rejected: 1, rejectedSpans: 0 });
  const warning = lines.find((l) => l.msg.startsWith('the receiver refused some audit records'));
  assert.ok(warning, 'the refusal is logged');
  assert.equal(warning['rejected'], 1);
  assert.match(String(warning['reason']), /^#1 timestamp: /);

  const error = await rejects(publisher.publish(TOPICS.audit, [bad, bad]), HttpPublishError);
  assert.equal(error.retryable, false);
  assert.equal(error.status, 400);
  assert.match(error.message, /refused all 2 audit records: #0 timestamp/);

  const garbage = await rejects(publisher.publish(TOPICS.spans, [{ key: null, value: Buffer.from('not protobuf') }]), HttpPublishError);
  assert.equal(garbage.retryable, false);
  assert.equal(garbage.status, 400);
  assert.match(garbage.message, /400: invalid OTLP request/);

  // A span without a name is refused, the rest of its request kept (OTLP partial success).
  const memory = new InMemorySpanExporter();
  const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory)] }).getTracer('test');
  tracer.startSpan('mcp.tool.call').end();
  tracer.startSpan('').end();
  await publisher.publish(TOPICS.spans, [{ key: null, value: Buffer.from(encodeTraceRequest(memory.getFinishedSpans())) }]);
  assert.equal(h.published.get(TOPICS.spans)?.length, 1);
  assert.deepEqual(publisher.stats(), { requests: 2, rejected: 1, rejectedSpans: 1 });
  const spanWarning = lines.find((l) => l.msg === 'the receiver refused some spans; they are dropped');
  assert.equal(spanWarning?.['rejectedSpans'], 1);
  assert.match(String(spanWarning?.['errorMessage']), /^1 span\(s\) rejected: span 1: name/);
});

test('an unknown topic is a permanent error; a bad URL is refused at once', async () => {
  const publisher = createHttpPublisher({ url: 'http://127.0.0.1:1', topics: { audit: 'a', spans: 's' } });
  const error = await rejects(publisher.publish('mcp-audit', auditMessages(1).messages), HttpPublishError);
  assert.equal(error.retryable, false);
  assert.match(error.message, /no receiver endpoint for topic "mcp-audit"/);
  assert.throws(() => createHttpPublisher({ url: 'localhost:4318' }), /absolute http\(s\) URL/);
  assert.throws(() => createHttpPublisher({ url: 'ftp://example.com' }), /absolute http\(s\) URL/);
});

test('createCollector with the HTTP publisher: every auditFunc record and span reaches the receiver', async (t) => {
  const h = await startReceiver(t);
  const { logger } = captureLogger();
  const collector = createCollector({
    publisher: createHttpPublisher({ url: h.url }),
    spoolDir: await tempDir('http-publisher'),
    batchMaxRecords: 100,
    batchMaxWaitMs: 10,
    logger,
  });
  t.after(() => collector.shutdown());
  const tracer = new BasicTracerProvider({ spanProcessors: [collector.spanProcessor] }).getTracer('gateway');

  const count = 250;
  for (let i = 0; i < count; i++) collector.auditFunc(goMicroRecord(i, `agent-${i % 5}`) as unknown as AuditRecord);
  tracer.startSpan('mcp.tool.call').end();
  await collector.spanProcessor.forceFlush();
  await collector.flush();

  const events = received(h);
  assert.equal(events.length, count);
  assert.equal(new Set(events.map((e) => e.event_id)).size, count);
  assert.deepEqual(new Set(events.map((e) => e.trace_id)), new Set(Array.from({ length: count }, (_, i) => String(goMicroRecord(i)['trace_id']))));
  assert.equal(h.published.get(TOPICS.spans)?.length, 1);
  assert.deepEqual(collector.stats(), { queued: 0, sent: count + 1, spilled: 0, dropped: 0, failed: 0, invalid: 0, spooledBytes: 0, spooledRecords: 0 });
});

test('createCollector with the HTTP publisher: records reported while the receiver is down arrive once it is up', async (t) => {
  const port = await closedPort();
  const { logger } = captureLogger();
  const collector = createCollector({
    publisher: createHttpPublisher({ url: `http://127.0.0.1:${port}` }),
    spoolDir: await tempDir('http-publisher-outage'),
    batchMaxWaitMs: 10,
    retryMaxMs: 300,
    logger,
  });
  t.after(() => collector.shutdown());

  const count = 40;
  for (let i = 0; i < count; i++) collector.auditFunc(goMicroRecord(i) as unknown as AuditRecord);
  await collector.flush();
  assert.equal(collector.stats().spilled, count, 'the refused batch went to the spool');

  const h = await startReceiver(t, { port });
  await waitFor(() => received(h).length >= count, 10_000, () => `spooled records at the receiver (${received(h).length} of ${count})`);
  // flush() waits for records to be sent or spooled, not for the spool's replay: the receiver can have
  // the replayed batch before its answer reaches the collector.
  await waitFor(() => collector.stats().sent === count, 10_000, () => `replay acknowledged (${JSON.stringify(collector.stats())})`);
  assert.equal(received(h).length, count);
  assert.equal(collector.stats().spooledRecords, 0);
});
