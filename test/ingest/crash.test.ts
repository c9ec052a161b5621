/**
 * The ingest as a separate service (`ROLES=ingest`) through failures: a worker killed with SIGKILL in
 * the middle of the stream and restarted, and the broker restarted mid-stream. Counts are exact in the
 * raw table and in the rollups afterwards: an insert the killed worker did not see return is sent again
 * from its journal when the next one starts (ingest/insert-journal.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openClickHouse } from '../../core/clickhouse.ts';
import type { Kafka, KafkaPublisher } from '../../core/kafka.ts';
import { startBroker, startBrokerProcess, stopBroker, stopBrokerProcess, type BrokerHandle } from '../../scripts/kafka.mjs';
import { auditEvent, auditMessages, createTopics, kafkaFor, publisherFor, unique, waitForCommitted } from '../helpers/kafka.ts';
import { metric, startProduct, type Product } from '../helpers/product.ts';

const skip = process.env.KAFKA_TEST_BROKERS ? false : 'KAFKA_TEST_BROKERS is not set (run the suite with npm test)';

describe('ingest service through crashes', { skip }, () => {
  let broker: BrokerHandle;
  let kafka: Kafka;
  let publisher: KafkaPublisher;
  const running = new Set<Product>();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'crash-'));

  before(async () => {
    broker = await startBroker();
    kafka = kafkaFor([broker.brokers]);
    publisher = publisherFor(kafka);
  });
  after(async () => {
    for (const p of running) p.child.kill('SIGKILL');
    await publisher?.disconnect();
    if (broker) await stopBroker(broker);
  });

  async function ingest(topics: { audit: string; spans: string }, groupId: string): Promise<Product> {
    const product = await startProduct({
      ROLES: 'ingest',
      KAFKA_BROKERS: broker.brokers,
      KAFKA_AUDIT_TOPIC: topics.audit,
      KAFKA_SPANS_TOPIC: topics.spans,
      KAFKA_GROUP_ID: groupId,
      DATA_DIR: dataDir,
      BATCH_MAX_ROWS: '1000',
      BATCH_MAX_WAIT_MS: '200',
      RETENTION_DAYS: '3650', // the records (helpers/kafka.ts) are stamped 2026-11-24: inside the window for ten years
    });
    running.add(product);
    return product;
  }

  async function stop(product: Product, signal: NodeJS.Signals): Promise<number | null> {
    product.child.kill(signal);
    const code = await product.exited;
    running.delete(product);
    return code;
  }

  it('is exact after a SIGKILL mid-stream and after a broker restart mid-stream', async () => {
    // 1. A worker killed mid-stream, and a new one in its place.
    const a = { audit: unique('audit'), spans: unique('spans') };
    const groupA = unique('group');
    const tenantA = unique('killed');
    await createTopics(kafka, [a.audit, a.spans]);
    await publisher.publish(a.audit, auditMessages(Array.from({ length: 30_000 }, (_, i) => auditEvent(i, tenantA))));
    let worker = await ingest(a, groupA);
    const deadline = Date.now() + 60_000;
    while ((await metric(worker.port, 'ingest_rows_total')) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const storedBeforeKill = await metric(worker.port, 'ingest_rows_total');
    assert.ok(storedBeforeKill > 0 && storedBeforeKill < 30_000, `killed mid-stream (${storedBeforeKill} rows stored)`);
    assert.equal(await stop(worker, 'SIGKILL'), null);
    worker = await ingest(a, groupA);
    await waitForCommitted(kafka, groupA, [a.audit, a.spans], 120_000);

    // 2. The broker restarted while records are being produced and ingested.
    const b = { audit: unique('audit'), spans: unique('spans') };
    const groupB = unique('group');
    const tenantB = unique('broker');
    await createTopics(kafka, [b.audit, b.spans]);
    assert.equal(await stop(worker, 'SIGTERM'), 0);
    worker = await ingest(b, groupB);
    let sent = 0;
    for (let batch = 0; batch < 20; batch++) {
      if (batch === 6) {
        await stopBrokerProcess(broker);
        await new Promise((r) => setTimeout(r, 1500));
        await startBrokerProcess(broker);
      }
      const events = Array.from({ length: 500 }, (_, k) => auditEvent(batch * 500 + k, tenantB));
      for (let attempt = 0; ; attempt++) {
        try {
          await publisher.publish(b.audit, auditMessages(events));
          break;
        } catch (error) {
          if (attempt > 30) throw error; // same events again: the ingest dedups on event_id
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      sent += events.length;
    }
    await waitForCommitted(kafka, groupB, [b.audit, b.spans], 120_000);
    assert.equal(await stop(worker, 'SIGTERM'), 0, worker.logs().slice(-2000));

    const clickhouse = await openClickHouse({ database: 'mcp_analytics', dataDir });
    try {
      for (const [tenant, expected] of [[tenantA, 30_000], [tenantB, sent]] as const) {
        const q = async (sql: string) =>
          Number((await (await clickhouse.query({ query: sql, query_params: { tenant }, format: 'JSONEachRow' })).json<{ n: string }>())[0]!.n);
        assert.equal(await q('SELECT count() AS n FROM audit_events_v1 FINAL WHERE tenant = {tenant:String}'), expected, `${tenant} raw`);
        assert.equal(await q('SELECT sum(calls) AS n FROM tool_calls_1m_v1 WHERE tenant = {tenant:String}'), expected, `${tenant} rollup calls`);
        assert.equal(await q('SELECT sum(denials) AS n FROM tool_calls_1m_v1 WHERE tenant = {tenant:String}'), expected / 10, `${tenant} rollup denials`);
      }
    } finally {
      await clickhouse.close();
    }
  });
});
