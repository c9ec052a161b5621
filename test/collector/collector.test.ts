// The collector against the real broker of the test run (KAFKA_TEST_BROKERS): every record reported
// through auditFunc reaches the audit topic exactly once, validated and in order.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { createCollector } from '../../collector/index.ts';
import { normalizeAuditRecord } from '../../model/audit-event.ts';
import { newEventId } from '../../model/ids.ts';
import { captureLogger, consumeExactly, createTopic, goMicroRecord, suffix, tempDir } from './helpers.ts';
import { processThreads, SCHED_IDLE, SCHED_OTHER } from './thread-scheduling.ts';

const brokers = process.env.KAFKA_TEST_BROKERS;
const SKIP = brokers ? false : 'KAFKA_TEST_BROKERS is not set; run through `npm test`, which starts a broker';

test('collector: N records through auditFunc arrive exactly once on the audit topic', { skip: SKIP }, async () => {
  const N = 5_000;
  const id = suffix();
  const topic = `collector-audit-${id}`;
  await createTopic(brokers!, topic, 3);
  const { logger, lines } = captureLogger();
  const collector = createCollector({
    kafka: { brokers: [brokers!], clientId: `collector-test-${id}` },
    tenant: 'acme',
    gateway: 'gw-1',
    topics: { audit: topic },
    spoolDir: await tempDir('collector-basic'),
    batchMaxRecords: 500,
    batchMaxWaitMs: 20,
    logger,
  });

  // Half the records bring their own event id (our extension), half are plain go-micro records.
  const explicit = new Map<string, number>();
  for (let i = 0; i < N; i++) {
    const record = goMicroRecord(i, `agent-${i % 4}`);
    if (i % 2 === 0) {
      const eventId = newEventId();
      explicit.set(eventId, i);
      collector.auditFunc({ ...record, event_id: eventId } as never);
    } else {
      collector.auditFunc(record as never);
    }
  }
  collector.auditFunc({ tool: 'x' } as never); // invalid: caught by the quick check
  collector.auditFunc({ ...goMicroRecord(0), duration: -5 } as never); // invalid: caught by the full validation

  await collector.flush();
  const consumed = await consumeExactly(brokers!, topic, N);
  await collector.shutdown();

  assert.equal(consumed.length, N, 'exactly N messages, no duplicates');
  const events = consumed.map((m) => {
    const parsed = normalizeAuditRecord(JSON.parse(m.value.toString()));
    assert.ok(parsed.ok, 'every message is a valid audit record');
    assert.equal(m.key, `acme/${parsed.value.agent}`);
    assert.equal(m.headers['tenant'], 'acme');
    return parsed.value;
  });
  const eventIds = new Set(events.map((e) => e.event_id));
  assert.equal(eventIds.size, N, 'event ids are unique');
  for (const eventId of explicit.keys()) assert.ok(eventIds.has(eventId), `event ${eventId} delivered`);
  for (const e of events) {
    assert.match(e.event_id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'UUIDv7');
    assert.equal(e.tenant, 'acme');
    assert.equal(e.gateway, 'gw-1');
  }
  assert.deepEqual(new Set(events.map((e) => e.duration - 1_000)), new Set(Array.from({ length: N }, (_, i) => i)));

  // Per key (tenant/agent) the records keep the order they were reported in.
  const byKey = new Map<string, number[]>();
  for (const e of events) byKey.set(e.agent, [...(byKey.get(e.agent) ?? []), e.duration]);
  for (const [agent, durations] of byKey) assert.deepEqual(durations, [...durations].sort((a, b) => a - b), `order of ${agent}`);

  assert.deepEqual(collector.stats(), { queued: 0, sent: N, spilled: 0, dropped: 0, failed: 0, invalid: 2, spooledBytes: 0, spooledRecords: 0 });
  assert.equal(lines.filter((l) => /invalid audit record/.test(l.msg)).length, 1, 'invalid records are warned about once');
  assert.equal(lines.filter((l) => l.level >= 50).length, 0, `no errors logged (the worker thread ran): ${JSON.stringify(lines.filter((l) => l.level >= 50))}`);
});

const linux = fs.existsSync('/proc/thread-self');
const chrt = linux && spawnSync('chrt', ['--version']).status === 0;

for (const threadPriority of [undefined, 'low'] as const) {
  test(`collector: threadPriority ${threadPriority ?? 'unset (idle)'} schedules its two threads so; the gateway thread and libuv's pool keep theirs`, { skip: !linux && 'no /proc/thread-self' }, async () => {
    const before = processThreads();
    const { logger, lines } = captureLogger('debug');
    // Nothing listens on port 9: the threads start all the same, and retry.
    const collector = createCollector({ kafka: { brokers: ['127.0.0.1:9'] }, spoolDir: await tempDir('collector-priority'), shutdownTimeoutMs: 1_000, threadPriority, logger });
    try {
      // Each thread logs once it has set its own scheduling.
      const started = () => lines.filter((l) => /^the collector's (Kafka|encoder) thread started$/.test(l.msg));
      for (let waited = 0; started().length < 2 && waited < 20_000; waited += 50) await sleep(50);
      const asked = threadPriority ?? 'idle';
      const idle = asked === 'idle' && chrt;
      const got = idle ? 'idle' : 'low';
      assert.deepEqual(started().map((l) => ({ msg: l.msg, threadPriority: l.threadPriority, asked: l.asked })).sort((a, b) => a.msg.localeCompare(b.msg)), [
        { msg: "the collector's encoder thread started", threadPriority: got, asked },
        { msg: "the collector's Kafka thread started", threadPriority: got, asked },
      ]);
      const own = processThreads().filter((t) => !before.some((b) => b.tid === t.tid) && t.name.startsWith('mcp-collector'));
      assert.deepEqual(own.map((t) => t.name).sort(), ['mcp-collector', 'mcp-collector-e'], 'the Kafka thread and the encoder (names cut at 15 chars)');
      for (const t of own) assert.deepEqual({ name: t.name, policy: t.policy, nice: t.nice }, { name: t.name, policy: idle ? SCHED_IDLE : SCHED_OTHER, nice: Math.max(10, os.getPriority()) });
      for (const t of before.filter((b) => !b.name.startsWith('mcp-collector'))) {
        const now = processThreads().find((x) => x.tid === t.tid);
        if (now) assert.deepEqual(now, t, `thread ${t.name} (${t.tid}) unchanged`);
      }
    } finally {
      await collector.shutdown();
    }
  });
}

test('collector: a threadPriority that is not idle, low or normal is refused, naming it', async () => {
  const spoolDir = await tempDir('collector-priority');
  assert.throws(() => createCollector({ kafka: { brokers: ['127.0.0.1:9'] }, spoolDir, threadPriority: 'lowest' as never }), {
    name: 'RangeError',
    message: 'createCollector: threadPriority must be one of idle, low, normal, got "lowest"',
  });
});
