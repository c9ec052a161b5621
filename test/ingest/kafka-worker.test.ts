/**
 * The ingest over the real broker and the embedded engine: exact counts in the raw table and in the
 * rollups after poison messages, a ClickHouse outage, and rebalances between two workers.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import type { Kafka, KafkaPublisher } from '../../core/kafka.ts';
import { migrate } from '../../core/migrate.ts';
import { createClickHouseWriter, type ClickHouseWriter } from '../../ingest/clickhouse-writer.ts';
import { createDeadLetterTopic, DEAD_LETTER_HEADERS } from '../../ingest/dead-letter-topic.ts';
import { listTopicDeadLetters, replayTopicDeadLetters } from '../../ingest/dead-letters.ts';
import { createKafkaWorker, type KafkaWorker } from '../../ingest/kafka-worker.ts';
import { createPipeline } from '../../ingest/pipeline.ts';
import {
  auditEvent, auditMessages, brokers, createTopics, kafkaFor, publisherFor, quiet, readTopic, unique, waitForCommitted,
} from '../helpers/kafka.ts';

const skip = brokers ? false : 'KAFKA_TEST_BROKERS is not set (run the suite with npm test)';

describe('Kafka ingest worker', { skip }, () => {
  let clickhouse: ClickHouseClient;
  let kafka: Kafka;
  let publisher: KafkaPublisher;

  before(async () => {
    clickhouse = await openClickHouse({ database: 'kafka_ingest_test', dataDir: mkdtempSync(path.join(os.tmpdir(), 'kafka-ingest-')) });
    await migrate(clickhouse, { retentionDays: 3650 });
    kafka = kafkaFor();
    publisher = publisherFor(kafka);
  });
  after(async () => {
    await publisher?.disconnect();
    await clickhouse?.close();
  });

  function setup(writer: ClickHouseWriter = createClickHouseWriter(clickhouse)) {
    const topics = { audit: unique('audit'), spans: unique('spans'), deadLetter: unique('dlq') };
    const groupId = unique('group');
    const worker = () =>
      createKafkaWorker({
        kafka,
        pipeline: createPipeline({ writer, deadLetters: createDeadLetterTopic(publisher, topics.deadLetter), topics, logger: quiet }),
        groupId,
        topics: [topics.audit, topics.spans],
        batch: { maxRows: 2000, maxWaitMs: 200 },
        logger: quiet,
      });
    return { topics, groupId, worker };
  }

  async function counts(tenant: string) {
    const q = async (sql: string) =>
      Number((await (await clickhouse.query({ query: sql, query_params: { tenant }, format: 'JSONEachRow' })).json<{ n: string }>())[0]!.n);
    return {
      raw: await q('SELECT count() AS n FROM audit_events_v1 FINAL WHERE tenant = {tenant:String}'),
      stored: await q('SELECT count() AS n FROM audit_events_v1 WHERE tenant = {tenant:String}'),
      calls: await q('SELECT sum(calls) AS n FROM tool_calls_1m_v1 WHERE tenant = {tenant:String}'),
      denials: await q('SELECT sum(denials) AS n FROM tool_calls_1m_v1 WHERE tenant = {tenant:String}'),
    };
  }

  it('stores every record once and dead-letters poison with its bytes, coordinates and reason', async () => {
    const { topics, groupId, worker } = setup();
    const tenant = unique('poison');
    await createTopics(kafka, [topics.audit, topics.spans]);
    const events = Array.from({ length: 5000 }, (_, i) => auditEvent(i, tenant));
    const messages = auditMessages(events);
    const poison = [
      { key: 'p1', value: Buffer.from('{"trace_id": "x", "timestamp": ') },
      { key: 'p2', value: Buffer.from(JSON.stringify({ ...events[0], tenant, timestamp: 'yesterday' })) },
    ];
    await publisher.publish(topics.audit, [...messages.slice(0, 2500), ...poison, ...messages.slice(2500)]);
    await publisher.publish(topics.spans, [{ key: tenant, value: Buffer.from('not protobuf at all'), headers: { tenant } }]);

    const w = worker();
    await w.start();
    await waitForCommitted(kafka, groupId, [topics.audit, topics.spans]);
    await w.stop();

    assert.deepEqual(await counts(tenant), { raw: 5000, stored: 5000, calls: 5000, denials: 500 });
    const letters = await readTopic(kafka, topics.deadLetter, 3);
    assert.equal(letters.length, 3);
    const byKey = new Map(letters.map((l) => [l.key, l]));
    assert.equal(byKey.get('p1')!.value.toString(), '{"trace_id": "x", "timestamp": ');
    assert.match(byKey.get('p1')!.headers[DEAD_LETTER_HEADERS.reason]!, /^not JSON/);
    assert.match(byKey.get('p2')!.headers[DEAD_LETTER_HEADERS.reason]!, /timestamp: must be an RFC 3339 timestamp/);
    assert.equal(byKey.get('p2')!.headers[DEAD_LETTER_HEADERS.topic], topics.audit);
    assert.match(byKey.get('p2')!.headers[DEAD_LETTER_HEADERS.offset]!, /^\d+$/);
    assert.match(byKey.get(tenant)!.headers[DEAD_LETTER_HEADERS.reason]!, /not an OTLP ExportTraceServiceRequest/);
    assert.equal(byKey.get(tenant)!.headers.tenant, tenant);
  });

  it('lists dead letters and replays each once, after a fix, back through the ingest', async () => {
    const { topics, groupId, worker } = setup();
    const tenant = unique('replay');
    await createTopics(kafka, [topics.audit, topics.spans, topics.deadLetter]);
    // As an older, stricter version would have left them: valid records on the dead-letter topic.
    const events = Array.from({ length: 3 }, (_, i) => auditEvent(i, tenant));
    await publisher.publish(
      topics.deadLetter,
      auditMessages(events).map((m, i) => ({
        ...m,
        headers: {
          [DEAD_LETTER_HEADERS.topic]: topics.audit,
          [DEAD_LETTER_HEADERS.partition]: '0',
          [DEAD_LETTER_HEADERS.offset]: String(40 + i),
          [DEAD_LETTER_HEADERS.reason]: i === 2 ? 'other reason' : 'agent: too long',
          [DEAD_LETTER_HEADERS.at]: '2026-11-24T10:00:00.000Z',
        },
      })),
    );
    const listed = (await listTopicDeadLetters(kafka, topics.deadLetter, groupId)).sort((x, y) => Number(x.offset) - Number(y.offset));
    assert.deepEqual(listed.map((e) => [e.topic, e.offset, e.reason, e.encoding]), [
      [topics.audit, '40', 'agent: too long', 'utf8'],
      [topics.audit, '41', 'agent: too long', 'utf8'],
      [topics.audit, '42', 'other reason', 'utf8'],
    ]);
    assert.deepEqual(JSON.parse(listed[0]!.value), JSON.parse(JSON.stringify(events[0])));

    const w = worker();
    await w.start();
    const onlyTooLong = (e: { reason: string }) => e.reason.includes('too long');
    assert.deepEqual(await replayTopicDeadLetters(kafka, publisher, topics.deadLetter, groupId, onlyTooLong), { replayed: 2, skipped: 1 });
    assert.deepEqual(await replayTopicDeadLetters(kafka, publisher, topics.deadLetter, groupId), { replayed: 0, skipped: 0 });
    await waitForCommitted(kafka, groupId, [topics.audit, topics.spans]);
    await w.stop();
    assert.deepEqual(await counts(tenant), { raw: 2, stored: 2, calls: 2, denials: 1 });
  });

  it('ingests spans as the OpenTelemetry Collector\'s Kafka exporter writes them (otlp_proto, no headers)', async () => {
    const { topics, groupId, worker } = setup();
    await createTopics(kafka, [topics.audit, topics.spans]);
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'otelcol-fed-gateway' }),
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const tracer = provider.getTracer('go-micro.dev/v6/gateway/mcp');
    const mcpTraceId = unique('mcp-trace');
    const call = tracer.startSpan('mcp.tool.call', {
      kind: SpanKind.SERVER,
      attributes: {
        'mcp.tool.name': 'orders.Orders.Ship',
        'mcp.transport': 'http',
        'mcp.trace_id': mcpTraceId,
        'mcp.account.id': 'acct-otelcol',
        'mcp.auth.allowed': true,
      },
    });
    const child = tracer.startSpan('db.query', {}, trace.setSpan(ROOT_CONTEXT, call));
    child.end();
    call.setStatus({ code: SpanStatusCode.OK });
    call.end();
    await provider.forceFlush();
    const body = ProtobufTraceSerializer.serializeRequest(exporter.getFinishedSpans())!;
    await publisher.publish(topics.spans, [{ key: null, value: Buffer.from(body) }]);

    const w = worker();
    await w.start();
    await waitForCommitted(kafka, groupId, [topics.audit, topics.spans]);
    await w.stop();

    const traceId = call.spanContext().traceId;
    const spans = await (
      await clickhouse.query({
        query: 'SELECT name, kind, service, parent_span_id FROM spans_v1 FINAL WHERE tenant = {tenant:String} AND trace_id = {trace:String} ORDER BY name',
        query_params: { tenant: 'default', trace: traceId },
        format: 'JSONEachRow',
      })
    ).json();
    assert.deepEqual(spans, [
      { name: 'db.query', kind: 'internal', service: 'otelcol-fed-gateway', parent_span_id: call.spanContext().spanId },
      { name: 'mcp.tool.call', kind: 'server', service: 'otelcol-fed-gateway', parent_span_id: '' },
    ]);
    const calls = await (
      await clickhouse.query({
        query: 'SELECT tool, account_id, gateway, source FROM audit_events_v1 FINAL WHERE tenant = {tenant:String} AND trace_id = {trace:String}',
        query_params: { tenant: 'default', trace: mcpTraceId },
        format: 'JSONEachRow',
      })
    ).json();
    assert.deepEqual(calls, [{ tool: 'orders.Orders.Ship', account_id: 'acct-otelcol', gateway: 'otelcol-fed-gateway', source: 'span' }]);
  });

  it('pauses and commits nothing while ClickHouse fails, then stores everything once', async () => {
    const real = createClickHouseWriter(clickhouse);
    let failUntil = Number.POSITIVE_INFINITY;
    let failures = 0;
    const flaky: ClickHouseWriter = {
      async writeAudit(rows) {
        if (Date.now() < failUntil) {
          failures++;
          throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' });
        }
        return real.writeAudit(rows);
      },
      writeSpans: (rows) => real.writeSpans(rows),
    };
    const { topics, groupId, worker } = setup(flaky);
    const tenant = unique('outage');
    await createTopics(kafka, [topics.audit, topics.spans]);
    await publisher.publish(topics.audit, auditMessages(Array.from({ length: 3000 }, (_, i) => auditEvent(i, tenant))));

    const w = worker();
    await w.start();
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok(failures >= 2, `inserts were attempted and failed (${failures})`);
    const admin = kafka.admin();
    await admin.connect();
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topics.audit] });
    await admin.disconnect();
    assert.deepEqual(committed!.partitions.map((p) => p.offset), ['-1', '-1', '-1'], 'nothing committed during the outage');
    assert.deepEqual(await counts(tenant), { raw: 0, stored: 0, calls: 0, denials: 0 });

    failUntil = 0; // ClickHouse is back
    await waitForCommitted(kafka, groupId, [topics.audit, topics.spans]);
    await w.stop();
    assert.deepEqual(await counts(tenant), { raw: 3000, stored: 3000, calls: 3000, denials: 300 });
  });

  it('shares partitions between two workers; rebalances lose and double nothing', async () => {
    const { topics, groupId, worker } = setup();
    const tenant = unique('rebalance');
    await createTopics(kafka, [topics.audit, topics.spans], 4);
    const total = 20_000;
    const produce = (async () => {
      for (let i = 0; i < total; i += 500) {
        await publisher.publish(topics.audit, auditMessages(Array.from({ length: 500 }, (_, k) => auditEvent(i + k, tenant))));
        await new Promise((r) => setTimeout(r, 40));
      }
    })();

    const first: KafkaWorker = worker();
    await first.start();
    await new Promise((r) => setTimeout(r, 700));
    const second = worker();
    await second.start(); // rebalance: partitions split between the two
    await new Promise((r) => setTimeout(r, 1200));
    await first.stop(); // rebalance: the second takes everything, mid-stream
    await produce;
    await waitForCommitted(kafka, groupId, [topics.audit, topics.spans]);
    await second.stop();

    assert.deepEqual(await counts(tenant), { raw: total, stored: total, calls: total, denials: total / 10 });
  });
});
