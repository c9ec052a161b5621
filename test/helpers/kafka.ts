/** Test helpers for the real broker: unique names, a producer, and waiting for a group to catch up. */
import { randomUUID } from 'node:crypto';
import { createKafka, createKafkaPublisher, type Kafka, type KafkaPublisher } from '../../core/kafka.ts';
import { createLogger } from '../../core/logger.ts';
import { auditMessageKey } from '../../core/publisher.ts';
import { normalizeAuditRecord, type AuditEvent } from '../../model/audit-event.ts';

export const brokers = process.env.KAFKA_TEST_BROKERS?.split(',');
export const quiet = createLogger('silent');

export function unique(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export function kafkaFor(list: string[] = brokers!): Kafka {
  return createKafka({ brokers: list, clientId: unique('test'), logger: quiet });
}

export function publisherFor(kafka: Kafka): KafkaPublisher {
  return createKafkaPublisher(kafka, { logger: quiet });
}

/** A go-micro-shaped call, normalized as the collector would put it on the topic. */
export function auditEvent(i: number, tenant = 'default'): AuditEvent {
  const r = normalizeAuditRecord({
    trace_id: `trace-${i}`,
    timestamp: new Date(Date.UTC(2026, 10, 24, 10, Math.floor(i / 1000) % 60, i % 60)).toISOString(),
    tool: ['users.Users.Get', 'billing.Billing.Charge', 'search.Docs.Query'][i % 3]!,
    allowed: i % 10 !== 0,
    ...(i % 10 === 0 ? { denied_reason: 'missing scope' } : { duration: 1_000_000 + i }),
    agent: `agent-${i % 5}`,
    tenant,
    cost_usd: 0.001,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.value;
}

export function auditMessages(events: AuditEvent[]) {
  return events.map((e) => ({ key: auditMessageKey(e), value: Buffer.from(JSON.stringify(e)) }));
}

export async function createTopics(kafka: Kafka, topics: string[], partitions = 3): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: partitions })), waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

/** Waits until the group has committed every message of the topics (bounded). */
export async function waitForCommitted(kafka: Kafka, groupId: string, topics: string[], deadlineMs = 60_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const deadline = Date.now() + deadlineMs;
  try {
    for (;;) {
      let behind = 0;
      for (const topic of topics) {
        const high = await admin.fetchTopicOffsets(topic);
        const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
        for (const p of high) {
          const c = committed?.partitions.find((x) => x.partition === p.partition);
          const done = c && c.offset !== '-1' ? BigInt(c.offset) : 0n;
          behind += Number(BigInt(p.high) - done);
        }
      }
      if (behind === 0) return;
      if (Date.now() > deadline) throw new Error(`group ${groupId} still ${behind} messages behind after ${deadlineMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await admin.disconnect();
  }
}

/** Every message on a topic from the beginning (bounded wait for `expected`). */
export async function readTopic(kafka: Kafka, topic: string, expected: number, deadlineMs = 30_000) {
  const consumer = kafka.consumer({ groupId: unique('reader') });
  const out: { key: string | null; value: Buffer; headers: Record<string, string> }[] = [];
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(Array.isArray(v) ? v[0] : v);
      out.push({ key: message.key?.toString() ?? null, value: message.value ?? Buffer.alloc(0), headers });
    },
  });
  const deadline = Date.now() + deadlineMs;
  while (out.length < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 300)); // and nothing more
  await consumer.disconnect();
  return out;
}
