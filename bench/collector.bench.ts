/**
 * Collector benchmark (a script, not a test):
 *
 *   npx tsx bench/collector.bench.ts                 # starts a Kafka broker with scripts/kafka.mjs
 *   KAFKA_BROKERS=127.0.0.1:9092 npx tsx bench/collector.bench.ts
 *   node --expose-gc --import tsx bench/collector.bench.ts   # heap numbers after a full GC
 *   ... bench/collector.bench.ts --only=hot|calls|kafka      # one part
 *
 * 1. auditFunc hot path: time per call over 200k calls (publisher counting, the event loop turning
 *    every 1,000 calls so the background sender runs as in a live gateway).
 * 2. 10,000 concurrent tool calls through an MCP server over InMemoryTransport: latency with
 *    instrumentServer (collector → Kafka, plus a tracer provider feeding collector.spanProcessor) against
 *    the same server not instrumented. Steady state (10,000 always in flight, 1 s tool) is what the
 *    target is checked on; a burst of 10,000 at once is shown too. Heap idle and under load.
 * 3. Collector → Kafka records/s, against raw kafkajs sendBatch of the same messages with the same
 *    batch size, compression and producer settings, in the same run.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs/promises';
import { setImmediate as yieldLoop } from 'node:timers/promises';
import { performance as nodePerformance, type EventLoopUtilization } from 'node:perf_hooks';
import kafkajs from 'kafkajs';
import { pino } from 'pino';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { createCollector, type AuditRecord } from '../collector/index.ts';
import type { Publisher } from '../core/publisher.ts';
import { auditMessageKey } from '../core/publisher.ts';
import { normalizeAuditRecord } from '../model/audit-event.ts';
import { newEventId } from '../model/ids.ts';

const logger = pino({ level: 'warn' }, pino.destination(2));
const gc = (globalThis as { gc?: () => void }).gc;
const rows: [string, string, string, string][] = [];

function record(i: number): AuditRecord {
  return {
    trace_id: `5b3c7c1e-1111-4111-8111-${String(i).padStart(12, '0')}`,
    timestamp: new Date().toISOString(),
    tool: 'users.Users.Get',
    account_id: 'acct-1',
    scopes_required: ['users:read'],
    allowed: true,
    duration: 1_234_567,
    agent: `agent-${i % 8}`,
    agent_version: '1.0.0',
  };
}

const counting = (): Publisher & { count: number } => {
  const p = {
    count: 0,
    publish: async (_topic: string, messages: unknown[]) => {
      p.count += messages.length;
    },
  };
  return p;
};

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

const spoolDir = () => fs.mkdtemp(path.join(os.tmpdir(), 'collector-bench-'));
const us = (ns: number) => `${(ns / 1000).toFixed(2)} µs`;
const ms = (x: number) => `${x.toFixed(2)} ms`;
const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

// ---------------------------------------------------------------------------
// 1. auditFunc hot path

async function hotPath(): Promise<void> {
  const N = 200_000;
  const WARMUP = 20_000;
  const publisher = counting();
  const collector = createCollector({ publisher, spoolDir: await spoolDir(), queueMaxRecords: 300_000, batchMaxRecords: 1_000, logger });
  const records = Array.from({ length: N + WARMUP }, (_, i) => record(i));
  const samples = new Float64Array(N);
  const empty = new Float64Array(N);
  const noop = (_r: AuditRecord) => {};

  for (let i = 0; i < WARMUP; i++) {
    collector.auditFunc(records[N + i]!);
    if (i % 1000 === 999) await yieldLoop();
  }
  await collector.flush();
  for (let i = 0; i < N; i++) {
    const r = records[i]!;
    const t0 = process.hrtime.bigint();
    collector.auditFunc(r);
    samples[i] = Number(process.hrtime.bigint() - t0);
    if (i % 1000 === 999) await yieldLoop();
  }
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    noop(records[i]!);
    empty[i] = Number(process.hrtime.bigint() - t0);
  }
  await collector.flush();
  const stats = collector.stats();
  await collector.shutdown();
  if (stats.sent !== N + WARMUP || stats.dropped + stats.invalid + stats.spilled !== 0) throw new Error(`hot path lost records: ${JSON.stringify(stats)}`);

  const sorted = [...samples].sort((a, b) => a - b);
  const overhead = [...empty].sort((a, b) => a - b);
  const median = quantile(sorted, 0.5);
  const p99 = quantile(sorted, 0.99);
  rows.push(['auditFunc median (200k calls)', us(median), '≤ 5 µs', median <= 5_000 ? 'PASS' : 'FAIL']);
  rows.push(['auditFunc p99', us(p99), '≤ 50 µs', p99 <= 50_000 ? 'PASS' : 'FAIL']);
  rows.push(['auditFunc p99.9 / max', `${us(quantile(sorted, 0.999))} / ${us(sorted[sorted.length - 1]!)}`, '', '']);
  rows.push(['  (timer overhead median / p99)', `${us(quantile(overhead, 0.5))} / ${us(quantile(overhead, 0.99))}`, 'included above', '']);
}

// ---------------------------------------------------------------------------
// 2. 10,000 concurrent tool calls, instrumented vs not

interface LatencyRun {
  p50: number;
  p99: number;
  calls: number;
  /** Event-loop utilization of the gateway thread during the measured window. */
  elu?: number;
  heapBefore: number;
  heapAfter: number;
}

interface Gateway {
  client: Client;
  close(): Promise<void>;
}

/** An MCP server over InMemoryTransport whose tool awaits `toolMs`; instrumented: collector → Kafka, spans too. */
async function gateway(instrumented: boolean, toolMs: number, brokers: string): Promise<Gateway> {
  const server = new McpServer({ name: 'bench-gateway', version: '1.0.0' });
  let provider: BasicTracerProvider | undefined;
  let collector: ReturnType<typeof createCollector> | undefined;
  if (instrumented) {
    const late = { getTracer: (name: string, version?: string) => provider!.getTracer(name, version) };
    collector = createCollector({
      kafka: { brokers: [brokers], clientId: 'bench-gateway' },
      topics: { audit: `bench-calls-${randomBytes(3).toString('hex')}`, spans: `bench-spans-${randomBytes(3).toString('hex')}` },
      tracerProvider: late,
      spoolDir: await spoolDir(),
      queueMaxRecords: 50_000,
      spanProcessorConfig: { maxQueueSize: 16_384 },
      logger,
    });
    provider = new BasicTracerProvider({ spanProcessors: [collector.spanProcessor] });
    collector.instrumentServer(server);
  }
  server.registerTool('users.Users.Get', { description: 'get a user' }, async () => {
    await new Promise((resolve) => setTimeout(resolve, toolMs));
    return { content: [{ type: 'text', text: 'user 42: Ada Lovelace' }] };
  });
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  await server.connect(serverTransport);
  const client = new Client({ name: 'bench-agent', version: '1.0.0' });
  await client.connect(clientTransport);
  await client.callTool({ name: 'users.Users.Get', arguments: { id: 'warm-up' } });
  return {
    client,
    async close() {
      await client.close();
      if (collector) {
        await provider!.forceFlush();
        await collector.flush();
        const stats = collector.stats();
        if (stats.dropped + stats.failed + stats.invalid > 0) throw new Error(`instrumented run lost records: ${JSON.stringify(stats)}`);
        await collector.shutdown();
        await provider!.shutdown();
      }
    },
  };
}

/**
 * Steady state: 10,000 calls always in flight (each virtual agent calls again as soon as it is answered;
 * the tool takes 1 s, so 10,000 calls/s arrive, spread evenly). Latency is measured after a warm-up.
 */
async function steadyState(instrumented: boolean, brokers: string): Promise<LatencyRun> {
  const IN_FLIGHT = 10_000;
  const TOOL_MS = 1_000;
  const WARMUP_MS = 2_500;
  const MEASURE_MS = 5_000;
  const g = await gateway(instrumented, TOOL_MS, brokers);
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const latencies: number[] = [];
  const started = performance.now();
  const measureFrom = started + WARMUP_MS;
  const stopAt = measureFrom + MEASURE_MS;
  let heapAfter = 0;
  const agent = async (i: number) => {
    await new Promise((resolve) => setTimeout(resolve, (i / IN_FLIGHT) * TOOL_MS));
    for (let n = 0; performance.now() < stopAt; n++) {
      const t0 = performance.now();
      await g.client.callTool({ name: 'users.Users.Get', arguments: { id: `user-${i}-${n}` } });
      const t1 = performance.now();
      if (t0 >= measureFrom && t1 < stopAt) latencies.push(t1 - t0 - TOOL_MS);
    }
  };
  // At the end of the window, 10,000 calls are still in flight: live heap after a full GC.
  let eluStart: EventLoopUtilization | undefined;
  let elu = 0;
  const eluProbe = setTimeout(() => (eluStart = nodePerformance.eventLoopUtilization()), measureFrom - started);
  const heapProbe = setTimeout(() => {
    elu = nodePerformance.eventLoopUtilization(eluStart).utilization;
    gc?.();
    heapAfter = process.memoryUsage().heapUsed;
  }, stopAt - started);
  await Promise.all(Array.from({ length: IN_FLIGHT }, (_, i) => agent(i)));
  clearTimeout(heapProbe);
  clearTimeout(eluProbe);
  await g.close();
  const sorted = latencies.sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), calls: sorted.length, heapBefore, heapAfter, elu };
}

/** Burst: 10,000 calls sent at once to a tool that awaits 5 ms (a CPU-bound worst case). */
async function burst(instrumented: boolean, brokers: string): Promise<LatencyRun> {
  const CALLS = 10_000;
  const g = await gateway(instrumented, 5, brokers);
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const latencies = new Float64Array(CALLS);
  await Promise.all(
    Array.from({ length: CALLS }, async (_, i) => {
      const t0 = performance.now();
      await g.client.callTool({ name: 'users.Users.Get', arguments: { id: `user-${i}` } });
      latencies[i] = performance.now() - t0;
    }),
  );
  const heapAfter = process.memoryUsage().heapUsed;
  await g.close();
  const sorted = [...latencies].sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), calls: CALLS, heapBefore, heapAfter };
}

async function concurrency(brokers: string): Promise<void> {
  await burst(false, brokers); // warm-up of both paths
  await burst(true, brokers);
  const plain = await steadyState(false, brokers);
  const inst = await steadyState(true, brokers);
  const added = inst.p99 - plain.p99;
  rows.push(['10k in flight (1 s tool, 10k calls/s): p50 over 1 s, plain / instr.', `${ms(plain.p50)} / ${ms(inst.p50)}`, '', '']);
  rows.push(['10k in flight: p99 over 1 s, plain / instrumented', `${ms(plain.p99)} / ${ms(inst.p99)} (${plain.calls} / ${inst.calls} calls)`, '', '']);
  rows.push(['10k in flight: p99 added latency', ms(added), '≤ 1 ms', added <= 1 ? 'PASS' : 'FAIL']);
  rows.push(['10k in flight: gateway event-loop utilization', `${pct(plain.elu!)} plain / ${pct(inst.elu!)} instrumented`, '', '']);
  rows.push(['10k in flight: heap used, plain', `${mb(plain.heapBefore)} idle → ${mb(plain.heapAfter)} loaded`, gc ? 'both after a full GC' : 'no --expose-gc: with garbage', '']);
  rows.push(['10k in flight: heap used, instrumented', `${mb(inst.heapBefore)} idle → ${mb(inst.heapAfter)} loaded`, '', '']);
  const plainBurst = await burst(false, brokers);
  const instBurst = await burst(true, brokers);
  rows.push(['burst of 10k at once (5 ms tool): p99 plain / instr.', `${ms(plainBurst.p99)} / ${ms(instBurst.p99)}`, 'no target', `+${ms(instBurst.p99 - plainBurst.p99)}`]);
}

// ---------------------------------------------------------------------------
// 3. Collector → Kafka throughput vs raw kafkajs

interface KafkaScript {
  startBroker(): Promise<{ brokers: string }>;
  stopBroker(handle: { brokers: string }): Promise<void>;
}

async function createTopic(brokers: string, topic: string): Promise<void> {
  const admin = new kafkajs.Kafka({ clientId: 'bench-admin', brokers: [brokers], logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();
}

async function collectorThroughput(brokers: string, records: AuditRecord[], batch: number): Promise<number> {
  const topic = `bench-collector-${randomBytes(3).toString('hex')}`;
  await createTopic(brokers, topic);
  const collector = createCollector({
    kafka: { brokers: [brokers], clientId: 'bench-collector' },
    topics: { audit: topic },
    spoolDir: await spoolDir(),
    queueMaxRecords: 100_000,
    batchMaxRecords: batch,
    batchMaxWaitMs: 20,
    logger,
  });
  // Connect first, as the raw producer does.
  collector.auditFunc(record(-1));
  await collector.flush();
  const N = records.length;
  const started = performance.now();
  let i = 0;
  while (i < N) {
    // A gateway at full speed, with the queue kept under its spill mark (half of queueMaxRecords).
    if (collector.stats().queued < 40_000) {
      for (const end = Math.min(N, i + batch); i < end; i++) collector.auditFunc(records[i]!);
      await yieldLoop();
    } else {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  while (collector.stats().sent < N + 1) await new Promise((resolve) => setTimeout(resolve, 1));
  const elapsed = performance.now() - started;
  const stats = collector.stats();
  await collector.shutdown();
  if (stats.spilled + stats.dropped + stats.failed + stats.invalid !== 0) throw new Error(`throughput run did not send everything directly: ${JSON.stringify(stats)}`);
  return (N / elapsed) * 1000;
}

async function rawThroughput(brokers: string, records: AuditRecord[], batch: number): Promise<number> {
  const topic = `bench-raw-${randomBytes(3).toString('hex')}`;
  await createTopic(brokers, topic);
  // The same messages the collector sends, encoded beforehand: only sendBatch is timed.
  const messages = records.map((r) => {
    const parsed = normalizeAuditRecord({ ...r, event_id: newEventId() });
    if (!parsed.ok) throw new Error('bad bench record');
    return { key: auditMessageKey(parsed.value), value: Buffer.from(JSON.stringify(parsed.value)), headers: { tenant: parsed.value.tenant } };
  });
  const kafka = new kafkajs.Kafka({ clientId: 'bench-raw', brokers: [brokers], logLevel: kafkajs.logLevel.WARN });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
  await producer.connect();
  const started = performance.now();
  for (let i = 0; i < messages.length; i += batch) {
    await producer.sendBatch({
      topicMessages: [{ topic, messages: messages.slice(i, i + batch) }],
      acks: -1,
      compression: kafkajs.CompressionTypes.GZIP,
    });
  }
  const elapsed = performance.now() - started;
  await producer.disconnect();
  return (messages.length / elapsed) * 1000;
}

async function throughput(brokers: string): Promise<void> {
  const N = 200_000;
  const BATCH = 1_000;
  const records = Array.from({ length: N }, (_, i) => record(i));
  const collectorRuns: number[] = [];
  const rawRuns: number[] = [];
  await rawThroughput(brokers, records.slice(0, 20_000), BATCH); // warm-up: JIT, broker
  await collectorThroughput(brokers, records.slice(0, 20_000), BATCH);
  for (let r = 0; r < 2; r++) {
    rawRuns.push(await rawThroughput(brokers, records, BATCH));
    collectorRuns.push(await collectorThroughput(brokers, records, BATCH));
  }
  const best = (xs: number[]) => Math.max(...xs);
  const ratio = best(collectorRuns) / best(rawRuns);
  const fmt = (x: number) => `${Math.round(x).toLocaleString('en-US')} rec/s`;
  rows.push(['collector → Kafka (200k, batch 1000, gzip)', `${fmt(best(collectorRuns))} (runs: ${collectorRuns.map((x) => Math.round(x)).join(', ')})`, '≥ 50,000 rec/s', best(collectorRuns) >= 50_000 ? 'PASS' : 'FAIL']);
  rows.push(['raw kafkajs sendBatch (same messages)', `${fmt(best(rawRuns))} (runs: ${rawRuns.map((x) => Math.round(x)).join(', ')})`, '', '']);
  rows.push(['collector / raw', `${(ratio * 100).toFixed(1)} %`, '≥ 80 %', ratio >= 0.8 ? 'PASS' : 'FAIL']);
}

// ---------------------------------------------------------------------------

function printTable(): void {
  const header: [string, string, string, string] = ['measure', 'value', 'target', 'result'];
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}

async function main(): Promise<void> {
  console.error(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})${gc ? ', --expose-gc' : ''}`);
  let brokers = process.env.KAFKA_BROKERS?.split(',')[0];
  let script: KafkaScript | undefined;
  let handle: { brokers: string } | undefined;
  if (!brokers) {
    console.error('starting a Kafka broker (scripts/kafka.mjs)...');
    script = (await import(new URL('../scripts/kafka.mjs', import.meta.url).href)) as KafkaScript;
    handle = await script.startBroker();
    brokers = handle.brokers;
  }
  // `--only=hot|calls|kafka` runs one part.
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  try {
    if (!only || only === 'hot') {
      console.error('1/3 auditFunc hot path...');
      await hotPath();
    }
    if (!only || only === 'calls') {
      console.error(`2/3 10,000 concurrent tool calls (collector → Kafka at ${brokers})...`);
      await concurrency(brokers);
    }
    if (!only || only === 'kafka') {
      console.error(`3/3 collector → Kafka throughput...`);
      await throughput(brokers);
    }
  } finally {
    if (handle) await script!.stopBroker(handle);
  }
  printTable();
}

await main();
