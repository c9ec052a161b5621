// The collector through a Kafka outage, with a broker of its own (scripts/kafka.mjs) that the test stops
// and starts again: records spill to the disk spool and are all delivered, in order per key, when the
// broker is back, also by a new collector process that finds the spool left by the previous one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createCollector, type Collector } from '../../collector/index.ts';
import { normalizeAuditRecord, type AuditEvent } from '../../model/audit-event.ts';
import { newEventId } from '../../model/ids.ts';
import { captureLogger, consumeExactly, createTopic, goMicroRecord, suffix, tempDir, waitFor } from './helpers.ts';

interface BrokerHandle {
  brokers: string;
}
interface KafkaScript {
  startBroker(): Promise<BrokerHandle>;
  stopBroker(handle: BrokerHandle): Promise<void>;
  stopBrokerProcess(handle: BrokerHandle, options?: { signal?: string }): Promise<void>;
  startBrokerProcess(handle: BrokerHandle): Promise<void>;
}

const SKIP = process.env.KAFKA_TEST_BROKERS ? false : 'KAFKA_TEST_BROKERS is not set; run through `npm test`, which starts a broker';

let script: KafkaScript;
let broker: BrokerHandle | undefined;

before(async () => {
  if (SKIP) return;
  script = (await import(new URL('../../scripts/kafka.mjs', import.meta.url).href)) as KafkaScript;
  broker = await script.startBroker();
});

after(async () => {
  if (broker) await script.stopBroker(broker);
});

function collectorFor(topic: string, spoolDir: string, logger = captureLogger().logger, thread: 'worker' | 'gateway' = 'worker'): Collector {
  return createCollector({
    thread,
    kafka: { brokers: [broker!.brokers], clientId: `outage-${topic}` },
    tenant: 'acme',
    topics: { audit: topic },
    spoolDir,
    batchMaxRecords: 100,
    batchMaxWaitMs: 20,
    retryMaxMs: 1_000,
    logger,
  });
}

const decode = (value: Buffer): AuditEvent => {
  const parsed = normalizeAuditRecord(JSON.parse(value.toString()));
  assert.ok(parsed.ok);
  return parsed.value;
};

test('collector: broker stopped mid-stream → records spill to the spool → broker back → all delivered in order per key', { skip: SKIP }, async () => {
  const N = 6_000;
  const topic = `outage-${suffix()}`;
  await createTopic(broker!.brokers, topic, 3);
  const { logger, lines } = captureLogger();
  const collector = collectorFor(topic, await tempDir('collector-outage'), logger);

  let next = 0;
  const report = async (until: number) => {
    while (next < until) {
      for (let k = 0; k < 40 && next < until; k++, next++) {
        collector.auditFunc({ ...goMicroRecord(next, `agent-${next % 5}`), event_id: newEventId(), duration: next } as never);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  await report(2_000);
  await collector.flush();
  const stopping = script.stopBrokerProcess(broker!);
  await report(4_000); // during and after the shutdown of the broker
  await stopping;
  await report(N);
  await collector.flush();
  const during = collector.stats();
  assert.ok(during.spilled > 0 && during.spooledRecords > 0, `records spilled while the broker was down: ${JSON.stringify(during)}`);
  assert.equal(during.dropped, 0);

  await script.startBrokerProcess(broker!);
  await waitFor(() => collector.stats().sent >= N, 120_000, () => `all sent (${JSON.stringify(collector.stats())})`);
  const consumed = await consumeExactly(broker!.brokers, topic, N, 120_000);
  await collector.shutdown();

  const events = consumed.map((m) => decode(m.value));
  const seen = new Set(events.map((e) => e.duration));
  assert.equal(seen.size, N, 'every record delivered');
  assert.equal(consumed.length, N, `no duplicates (got ${consumed.length - N} extra)`);
  const byKey = new Map<string, number[]>();
  for (const e of events) byKey.set(e.agent, [...(byKey.get(e.agent) ?? []), e.duration]);
  for (const [agent, order] of byKey) assert.deepEqual(order, [...order].sort((a, b) => a - b), `order of ${agent}`);

  const final = collector.stats();
  assert.equal(final.spooledRecords, 0);
  assert.equal(final.spooledBytes, 0);
  assert.equal(final.failed + final.dropped + final.invalid, 0);
  assert.equal(lines.filter((l) => /Kafka is unreachable/.test(l.msg)).length, 1, 'the outage is warned about once');
});

test('collector: restarted with a non-empty spool → the new collector delivers it exactly once', { skip: SKIP }, async () => {
  const N = 1_000;
  const topic = `restart-${suffix()}`;
  await createTopic(broker!.brokers, topic, 1);
  const spoolDir = await tempDir('collector-restart');
  await script.stopBrokerProcess(broker!);

  // A runs its sender in the gateway thread, B in the worker: the spool is the same either way.
  const a = collectorFor(topic, spoolDir, undefined, 'gateway');
  const expected: string[] = [];
  for (let i = 0; i < N; i++) {
    const eventId = newEventId();
    expected.push(eventId);
    a.auditFunc({ ...goMicroRecord(i), event_id: eventId, duration: i } as never);
  }
  await a.flush();
  await a.shutdown();
  assert.deepEqual({ ...a.stats(), spooledBytes: 0 }, { queued: 0, sent: 0, spilled: N, dropped: 0, failed: 0, invalid: 0, spooledBytes: 0, spooledRecords: N });
  assert.ok((await fs.readdir(spoolDir)).some((f) => f.endsWith('.seg')), 'collector A left its spool');

  await script.startBrokerProcess(broker!);
  const b = collectorFor(topic, spoolDir);
  await waitFor(() => b.stats().sent === N, 120_000, () => `collector B sent the spool (${JSON.stringify(b.stats())})`);
  const consumed = await consumeExactly(broker!.brokers, topic, N, 60_000);
  await b.shutdown();

  assert.equal(consumed.length, N, 'exactly N');
  assert.deepEqual(consumed.map((m) => decode(m.value).event_id), expected, 'the same records, in order');
  assert.deepEqual((await fs.readdir(spoolDir)).filter((f) => f.endsWith('.seg')), [], 'the spool is empty once delivered');
});
