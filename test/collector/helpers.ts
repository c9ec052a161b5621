/** Shared by the collector tests: temp dirs, a log-capturing logger, Kafka topics and a bounded consumer. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import kafkajs from 'kafkajs';
import '../../core/kafkajs-idle.mjs';
import { pino, type Logger } from 'pino';

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `${prefix}-`));
}

export interface CapturedLog {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger whose lines are kept in `lines` (parsed). */
export function captureLogger(level = 'info'): { logger: Logger; lines: CapturedLog[] } {
  const lines: CapturedLog[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line) as CapturedLog);
      done();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

export const suffix = () => randomBytes(4).toString('hex');

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${typeof what === 'function' ? what() : what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` until it returns true or `ms` pass. */
export async function waitFor(check: () => boolean, ms: number, what: string | (() => string)): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${typeof what === 'function' ? what() : what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function createTopic(brokers: string, topic: string, partitions = 1): Promise<void> {
  const admin = new kafkajs.Kafka({ clientId: `setup-${topic}`, brokers: [brokers], logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

export interface Consumed {
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
  partition: number;
  offset: string;
}

/** Reads `topic` from the beginning until `count` messages arrived (bounded by `ms`), then a short grace for extras. */
export async function consumeExactly(brokers: string, topic: string, count: number, ms = 60_000): Promise<Consumed[]> {
  const kafka = new kafkajs.Kafka({ clientId: `check-${topic}`, brokers: [brokers], logLevel: kafkajs.logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `check-${topic}-${suffix()}` });
  const out: Consumed[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let reached: () => void = () => {};
    const enough = new Promise<void>((resolve) => (reached = resolve));
    await consumer.run({
      eachMessage: async ({ message, partition }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) if (v !== undefined) headers[k] = String(v);
        out.push({ key: message.key?.toString() ?? null, value: message.value ?? Buffer.alloc(0), headers, partition, offset: message.offset });
        if (out.length >= count) reached();
      },
    });
    await withTimeout(enough, ms, () => `consume ${count} messages from ${topic} (got ${out.length})`);
    // Anything beyond `count` (duplicates) would arrive right behind.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  } finally {
    await consumer.disconnect();
  }
  return out;
}

export function goMicroRecord(i: number, agent = 'agent-a'): Record<string, unknown> {
  return {
    trace_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    timestamp: new Date().toISOString(),
    tool: 'users.Users.Get',
    account_id: 'acct-1',
    scopes_required: ['users:read'],
    allowed: true,
    duration: 1_000 + i,
    agent,
    agent_version: '1.0.0',
  };
}
