/**
 * Collector benchmark (a script, not a test):
 *
 *   npm run bench -- collector                      # starts a Kafka broker with scripts/kafka.mjs
 *   KAFKA_BROKERS=127.0.0.1:9092 npx tsx bench/collector.bench.ts
 *   ... bench/collector.bench.ts --only=hot|calls|kafka      # one part
 *   ... bench/collector.bench.ts --only=calls --tool-ms=5000 # one row of the latency table
 *   ... bench/collector.bench.ts --only=calls --tool-ms=1000 --control=mem:0.4  # plain beside a control load
 *
 * 1. auditFunc hot path: time per call over 200k calls (publisher counting, the event loop turning
 *    every 1,000 calls so the background sender runs as in a live gateway).
 * 2. Tool calls through an MCP server over InMemoryTransport, with instrumentServer (collector → Kafka,
 *    plus a tracer provider feeding collector.spanProcessor) against the same server without it:
 *    - CPU per call, measured on the gateway thread (and on the rest of the process), 0 ms tool;
 *    - 10,000 calls always in flight, for tool durations of 10 s, 5 s and 1 s (1,000, 2,000 and 10,000
 *      calls/s), in rounds of a plain run and an instrumented one, plain first in odd rounds and
 *      instrumented first in even ones (ABBA, `--repeat=N` rounds, default 4): the latency in the
 *      gateway (a request's arrival to its response's send, minus the tool's own duration) at p50
 *      and p99, and end to end; the bytes the gateway thread allocated per call (v8.GCProfiler over
 *      the window); the gateway's event-loop utilization; how long its thread waited for a core (the
 *      kernel's run-queue wait), beside the CPU of the process's other threads and of the broker when
 *      it runs here; its GC pauses, also by kind (scavenges, with the bytes each kept, and
 *      mark-compacts), which set the p99; heap used (after a full GC) idle, with 10,000 calls in
 *      flight, and after shutdown. `--control=mem:0.4` runs the plain
 *      gateway beside a load of that kind and share (`startControlLoad`).
 *    Targets (issue 15), at 10,000 calls/s: instrumented p99 ≤ 1.1 × plain p99 (all rounds' calls
 *    pooled; each round's ratio and their spread shown; the verdict is marked not conclusive when the
 *    collector-off p99 moves by more than the 10 % margin from round to round), and ≤ 1 KB allocated
 *    per call added by the collector (median over the rounds, with the spread). npm run bench --
 *    collector-alloc measures the bytes more finely, without GC in its windows. The target row's rounds
 *    also run the plain gateway beside raw kafkajs sending the same messages the collector would
 *    (`startRawDelivery`), between the other two runs: the raw limit of delivery, and the instrumented
 *    p99 against it.
 * 3. Collector → Kafka records/s, against raw kafkajs sendBatch (kafkajs as installed: with
 *    patches/) of the same messages with the same batch size (1,000), partitioner, compression (gzip,
 *    at the collector's level), acks (-1) and idempotent producer, in the same run, alternating; CPU
 *    per record of each thread group.
 *
 * The machine's load average is printed: on a shared 2-core machine other processes move every number.
 * Each round's line also gives each window's steal time (from /proc/stat: the hypervisor running
 * something else while this machine's CPUs wanted to run), so a window it slowed shows it.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as yieldLoop, setTimeout as sleep } from 'node:timers/promises';
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver, performance as nodePerformance, type EventLoopUtilization } from 'node:perf_hooks';
import { isMainThread, MessageChannel, parentPort, Worker, workerData, type MessagePort } from 'node:worker_threads';
import v8 from 'node:v8';
import { promisify } from 'node:util';
import vm from 'node:vm';
import zlib from 'node:zlib';
import kafkajs from 'kafkajs';
import { pino } from 'pino';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { createCollector, type AuditRecord, type Collector } from '../collector/index.ts';
import { COLLECTOR_GZIP_LEVEL, gzipInCallingThread } from '../core/kafka.ts';
import { DefaultPartitioner } from '../core/kafka-partitioner.ts';
import { auditMessageKey, type Publisher } from '../core/publisher.ts';
import { normalizeAuditRecord } from '../model/audit-event.ts';
import { newEventId } from '../model/ids.ts';
import { lowerThreadPriority, startCollectorThread, startWorker } from '../collector/worker-thread.ts';
import type { SpoolRecord } from '../collector/spool-format.ts';
import { ToolCallWriter } from '../collector/tool-call-wire.ts';
import { printTable, type Row } from './table.ts';
import { callEncoder, collectorRoute, recordedCall } from './tool-calls.ts';

// 'error': kafkajs warns on every idempotent producer about the collector's short retry budget (core/kafka.ts).
const logger = pino({ level: 'error' }, pino.destination(2));
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const rows: Row[] = [];
const details: string[] = [];
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

const us = (ns: number) => `${(ns / 1000).toFixed(2)} µs`;
const ms = (x: number) => `${x.toFixed(2)} ms`;
const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const perSecond = (x: number) => `${Math.round(x).toLocaleString('en-US')}/s`;
/** NaN for an empty list (a window in which no call completed). */
const quantile = (sorted: ArrayLike<number>, q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!);
const spoolDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'collector-bench-'));
const heapAfterGc = () => (gc(), process.memoryUsage().heapUsed);

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

// ---------------------------------------------------------------------------
// CPU time per thread (Linux /proc; elsewhere the whole process counts as the main thread)

interface CpuSample {
  main: number;
  rest: number;
  broker: number;
  /** Milliseconds this thread was ready to run but waited for a core (the kernel's run-queue wait). */
  mainWaited: number;
  /** Milliseconds the hypervisor ran something else while this machine's CPUs wanted to run (steal). */
  steal: number;
}

/** CPU milliseconds of this thread (the gateway's), of the process's other threads, and of the broker JVM. */
function cpuNow(brokerPid?: number): CpuSample {
  const ticks = (stat: string) => {
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, 100 Hz
  };
  try {
    let all = 0;
    let main = 0;
    for (const tid of fs.readdirSync('/proc/self/task')) {
      try {
        const t = ticks(fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8'));
        all += t;
        if (Number(tid) === process.pid) main = t;
      } catch {
        // the thread ended meanwhile
      }
    }
    let broker = 0;
    try {
      if (brokerPid) broker = ticks(fs.readFileSync(`/proc/${brokerPid}/stat`, 'utf8'));
    } catch {
      broker = 0;
    }
    let mainWaited = 0;
    try {
      // schedstat: ns on a core, ns waiting on a run queue, time slices.
      mainWaited = Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
    } catch {
      mainWaited = 0;
    }
    let steal = 0;
    try {
      // The first line of /proc/stat: cpu user nice system idle iowait irq softirq steal …, in 1/100 s.
      steal = Number(fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/)[8]) * 10;
    } catch {
      steal = 0;
    }
    return { main, rest: all - main, broker, mainWaited, steal };
  } catch {
    const { user, system } = process.cpuUsage();
    return { main: (user + system) / 1000, rest: 0, broker: 0, mainWaited: 0, steal: 0 };
  }
}

const cpuSince = (start: CpuSample, end: CpuSample): CpuSample => ({
  main: end.main - start.main,
  rest: end.rest - start.rest,
  broker: end.broker - start.broker,
  mainWaited: end.mainWaited - start.mainWaited,
  steal: end.steal - start.steal,
});

/** The broker's JVM, when it runs on this machine. */
let brokerPid: number | undefined;

/**
 * The pid of the broker `scripts/kafka.mjs start` recorded, when it serves KAFKA_BROKERS: its CPU is
 * counted too, as it shares this machine's cores with the gateway (a deployment's broker would not).
 */
function brokerPidFromState(): number | undefined {
  try {
    const state = JSON.parse(fs.readFileSync(new URL('../.cache/kafka/broker.json', import.meta.url), 'utf8')) as { brokers: string; pid: number };
    return process.env.KAFKA_BROKERS?.split(',').includes(state.brokers) ? state.pid : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// 1. auditFunc hot path

const counting = (): Publisher & { count: number } => {
  const p = {
    count: 0,
    publish: async (_topic: string, messages: unknown[]) => {
      p.count += messages.length;
    },
  };
  return p;
};

async function hotPath(): Promise<void> {
  const N = 200_000;
  const WARMUP = 20_000;
  const collector = createCollector({ publisher: counting(), spoolDir: spoolDir(), queueMaxRecords: 300_000, batchMaxRecords: 1_000, logger });
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

  const sorted = samples.sort();
  const overhead = empty.sort();
  rows.push(['auditFunc median (200k calls)', us(quantile(sorted, 0.5)), '≤ 5 µs', verdict(quantile(sorted, 0.5) <= 5_000)]);
  rows.push(['auditFunc p99', us(quantile(sorted, 0.99)), '≤ 50 µs', verdict(quantile(sorted, 0.99) <= 50_000)]);
  rows.push(['auditFunc p99.9 / max', `${us(quantile(sorted, 0.999))} / ${us(sorted[sorted.length - 1]!)}`, '', '']);
  rows.push(['  (timer overhead median / p99, included above)', `${us(quantile(overhead, 0.5))} / ${us(quantile(overhead, 0.99))}`, '', '']);
}

// ---------------------------------------------------------------------------
// 2. Tool calls, instrumented vs not. The agents (an MCP client) run in a thread of their own and reach
// the gateway through a MessagePort transport, as a network client would: the gateway thread's CPU,
// heap, GC pauses and event loop are the MCP server's and the collector's only.

/**
 * An MCP transport over a MessagePort; messages sent in one turn of the event loop travel together.
 * On the server side it can time each tools/call from its request's arrival to its response's send:
 * the latency the gateway itself adds, without the client thread's.
 */
class PortTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private outbox: JSONRPCMessage[] = [];
  private flushing = false;
  private readonly arrivals = new Map<string | number, number>();

  constructor(private readonly port: MessagePort, private readonly timing?: (start: number, end: number) => void) {}

  async start(): Promise<void> {
    this.port.on('message', (messages: JSONRPCMessage[]) => {
      for (const message of messages) {
        const id = (message as { id?: string | number }).id;
        if (this.timing && id !== undefined && 'method' in message && message.method === 'tools/call') this.arrivals.set(id, performance.now());
        this.onmessage?.(message);
      }
    });
  }

  async send(message: JSONRPCMessage): Promise<void> {
    const id = (message as { id?: string | number }).id;
    if (this.timing && id !== undefined && !('method' in message)) {
      const start = this.arrivals.get(id);
      if (start !== undefined) {
        this.arrivals.delete(id);
        this.timing(start, performance.now());
      }
    }
    this.outbox.push(message);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      const batch = this.outbox;
      this.outbox = [];
      this.port.postMessage(batch);
    });
  }

  async close(): Promise<void> {
    this.port.close();
    this.onclose?.();
  }
}

/** What the client thread does: keep `inFlight` calls going, or make `calls` calls `inFlight` at a time. */
interface ClientSpec {
  role: 'mcp-client';
  port: MessagePort;
  toolMs: number;
  inFlight: number;
  /** Steady state: calls measured between warm-up and its end. Count: this many calls after 5,000 warm-up ones. */
  mode: 'steady' | 'count' | 'burst';
  warmupMs?: number;
  measureMs?: number;
  calls?: number;
}

type FromClient = { type: 'window'; phase: 'start' | 'end' } | { type: 'done'; latencies: Float64Array; completed: number };

async function runClient(spec: ClientSpec): Promise<void> {
  const parent = parentPort!;
  const client = new Client({ name: 'bench-agent', version: '1.0.0' });
  await client.connect(new PortTransport(spec.port));
  const call = (id: string) => client.callTool({ name: 'users.Users.Get', arguments: { id } }, undefined, { timeout: 600_000 });
  await call('warm-up');
  const latencies: number[] = [];
  let completed = 0;
  if (spec.mode === 'steady') {
    const started = performance.now();
    const measureFrom = started + spec.warmupMs!;
    const stopAt = measureFrom + spec.measureMs!;
    const markers = [
      setTimeout(() => parent.postMessage({ type: 'window', phase: 'start' } satisfies FromClient), measureFrom - started),
      setTimeout(() => parent.postMessage({ type: 'window', phase: 'end' } satisfies FromClient), stopAt - started),
    ];
    await Promise.all(
      Array.from({ length: spec.inFlight }, async (_, i) => {
        await sleep((i / spec.inFlight) * spec.toolMs);
        for (let n = 0; performance.now() < stopAt; n++) {
          const t0 = performance.now();
          await call(`user-${i}-${n}`);
          const t1 = performance.now();
          if (t1 >= measureFrom && t1 < stopAt) completed++;
          if (t0 >= measureFrom && t1 < stopAt) latencies.push(t1 - t0 - spec.toolMs);
        }
      }),
    );
    markers.forEach(clearTimeout);
  } else {
    const run = async (n: number, keep: boolean) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: spec.inFlight }, async () => {
          while (next < n) {
            const t0 = performance.now();
            await call(`user-${next++}`);
            if (keep) latencies.push(performance.now() - t0 - spec.toolMs);
          }
        }),
      );
    };
    if (spec.mode === 'count') await run(5_000, false);
    parent.postMessage({ type: 'window', phase: 'start' } satisfies FromClient);
    await run(spec.calls!, true);
    completed = spec.calls!;
    parent.postMessage({ type: 'window', phase: 'end' } satisfies FromClient);
  }
  await client.close();
  const sorted = Float64Array.from(latencies).sort();
  parent.postMessage({ type: 'done', latencies: sorted, completed } satisfies FromClient, [sorted.buffer]);
}

/** What the gateway thread saw between the client's window markers. */
interface Window {
  /** End to end, measured by the client, minus the tool's duration (ms, sorted). */
  latencies: Float64Array;
  /** In the gateway: from the request's arrival to the response's send, minus the tool's duration (ms, sorted). */
  gatewayLatencies: Float64Array;
  completed: number;
  /** The window's length (ms). */
  windowMs: number;
  elu: number;
  cpu: CpuSample;
  /** Event-loop delay p99 (ms). */
  loopDelayP99: number;
  /** GC pauses of every kind; of scavenges (young generation) and mark-compacts (the whole heap) alone. */
  gc: Pauses;
  scavenges: Pauses;
  markCompacts: Pauses;
  /** Bytes a scavenge kept, on average: left in the young generation or promoted to the old one. */
  survivedPerScavenge: number;
  /** Bytes the gateway thread allocated in the window (GCProfiler: heap growth between and around its GCs). */
  allocated: number;
  /** tools/call responses the gateway sent in the window. */
  responses: number;
  heapIdle: number;
  /** At the end of the window (steady state: 10,000 calls still in flight), after a full GC. */
  heapLoaded: number;
  heapAfter: number;
}

/** GC pauses in a window: their total ms per second of window, and the longest. */
interface Pauses {
  msPerSecond: number;
  longestMs: number;
}

/**
 * `--control=mem:0.4` (or `cpu:0.4`): the plain runs of the latency rows get two threads at nice 10
 * (as the collector's own threads), together busy for that share of a core, doing what the collector's
 * threads stand for: streaming memory (`mem`, 1 MB copies through 64 MB buffers) or computing in the
 * cache (`cpu`). The instrumented runs are unchanged. With the share set to the CPU the collector adds
 * off the gateway thread (the "other threads" row), it separates what any such work beside the
 * gateway does to its pauses from what the collector's own work on the gateway thread does.
 */
const CONTROL = controlArg(process.argv.find((a) => a.startsWith('--control=')));

function controlArg(arg: string | undefined): RegExpExecArray | null {
  if (arg === undefined) return null;
  const match = /^--control=(mem|cpu)(?::(0?\.\d+|1(?:\.0*)?))?$/.exec(arg);
  if (!match) throw new Error(`${arg}: expected --control=mem or --control=cpu, optionally with a share of a core in (0, 1], as in --control=mem:0.4`);
  return match;
}

function startControlLoad(): Worker[] {
  if (!CONTROL) return [];
  const share = Number(CONTROL[2] ?? 0.4) / 2;
  const work =
    CONTROL[1] === 'mem'
      ? 'const src = Buffer.alloc(64 << 20, 1), dst = Buffer.alloc(64 << 20); let at = 0; const step = () => { src.copy(dst, at, at, at + (1 << 20)); at = (at + (1 << 20)) % (64 << 20); };'
      : 'let x = 0; const step = () => { for (let i = 0; i < 1000; i++) x = (x * 31 + i) | 0; };';
  const code = `
    const fs = require('node:fs'), os = require('node:os');
    os.setPriority(Number(fs.readlinkSync('/proc/thread-self').split('/').pop()), 10);
    ${work}
    const tick = () => { const end = performance.now() + 10 * ${share}; while (performance.now() < end) step(); setTimeout(tick, 10 * ${1 - share}); };
    tick();`;
  return [0, 1].map(() => new Worker(code, { eval: true }));
}

/**
 * The raw limit of the collector's delivery, a third run in each round of the target row: the plain
 * gateway beside the Kafka traffic the collector makes of its calls, sent by raw kafkajs from bytes
 * encoded beforehand. One thread set up as the collector's Kafka thread (its default scheduling, the
 * same young generation, gzip level 1 in the thread, an idempotent producer, acks -1) sends each
 * call's audit record and a 64-span message per 64 calls as the calls come, in batches as the
 * collector's sender makes them (up to BATCH records, or what 200 ms gathered). What producing the
 * same messages costs the gateway, with nothing encoded per call and nothing on the gateway's thread.
 */
interface RawDeliverySpec {
  role: 'raw-delivery';
  brokers: string;
  topics: { audit: string; spans: string };
  callsPerSecond: number;
}

async function startRawDelivery(brokers: string, callsPerSecond: number): Promise<Worker> {
  const topics = { audit: `bench-raw-calls-${randomBytes(3).toString('hex')}`, spans: `bench-raw-spans-${randomBytes(3).toString('hex')}` };
  await createTopic(brokers, topics.audit);
  await createTopic(brokers, topics.spans);
  const spec: RawDeliverySpec = { role: 'raw-delivery', brokers, topics, callsPerSecond };
  const worker = startCollectorThread(new URL(import.meta.url), { workerData: spec, name: 'bench-raw' });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  return worker;
}

/** The messages of `count` calls as the collector's encoder makes them: their audit records, and their spans' messages. */
function encodedCalls(topics: { audit: string; spans: string }, count: number): { audits: SpoolRecord[]; spans: SpoolRecord[] } {
  const route = collectorRoute();
  const writer = new ToolCallWriter(count);
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const fields = { transport: 'port', client: { name: 'bench-agent', version: '1.0.0' }, requestId: i + 2, durationMs: 1000 + Math.random(), requestBytes: 120, responseBytes: 110 };
    writer.add(recordedCall(route, start + i / 10, fields));
  }
  const { records: audits, spans } = callEncoder(topics)(writer.take());
  if (audits.length !== count || spans.length !== 1) throw new Error(`raw delivery: ${audits.length} records and ${spans.length} span messages of ${count} calls`);
  return { audits, spans };
}

/** The raw delivery's thread: sends the calls' messages as they come, at most BATCH records a request, one request at a time. */
async function runRawDelivery(spec: RawDeliverySpec): Promise<void> {
  lowerThreadPriority();
  gzipInCallingThread();
  const SAMPLE = 64;
  const { audits, spans } = encodedCalls(spec.topics, SAMPLE);
  const kafka = new kafkajs.Kafka({ clientId: 'bench-raw-delivery', brokers: [spec.brokers], logLevel: kafkajs.logLevel.WARN });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: DefaultPartitioner });
  await producer.connect();
  parentPort!.postMessage('ready');
  const started = performance.now();
  let made = 0;
  let lastSend = started;
  for (;;) {
    const due = Math.floor(((performance.now() - started) / 1000) * spec.callsPerSecond);
    // As the collector's sender: a batch when BATCH calls wait, or when its oldest has waited 200 ms.
    if (due - made >= BATCH || (due > made && performance.now() - lastSend >= 200)) {
      const n = Math.min(BATCH, due - made);
      const messages = Array.from({ length: n }, (_, k) => audits[(made + k) % SAMPLE]!);
      const spanMessages = Array.from({ length: Math.floor((made + n) / SAMPLE) - Math.floor(made / SAMPLE) }, () => spans[0]!);
      made += n;
      lastSend = performance.now();
      const topicMessages = [{ topic: spec.topics.audit, messages }];
      if (spanMessages.length > 0) topicMessages.push({ topic: spec.topics.spans, messages: spanMessages });
      await producer.sendBatch({ topicMessages, acks: -1, compression: kafkajs.CompressionTypes.GZIP });
    } else {
      await sleep(5);
    }
  }
}

/** Mean bytes kept per scavenge, from a GCProfiler's record: the young generation after it, plus the old generation's growth in it. */
function survivedPerScavenge(profile: GcProfile | undefined): number {
  const used = (spaces: { spaceName: string; spaceUsedSize: number }[], name: string) => spaces.find((x) => x.spaceName === name)?.spaceUsedSize ?? 0;
  let kept = 0;
  let scavenges = 0;
  for (const gcRun of profile?.statistics ?? []) {
    if (gcRun.gcType !== 'Scavenge') continue;
    scavenges++;
    const before = gcRun.beforeGC.heapSpaceStatistics;
    const after = gcRun.afterGC.heapSpaceStatistics;
    kept += used(after, 'new_space') + used(after, 'old_space') - used(before, 'old_space');
  }
  return scavenges === 0 ? 0 : kept / scavenges;
}

/** The parts of a `v8.GCProfiler` record read here. */
interface GcProfile {
  statistics: {
    gcType: string;
    beforeGC: { heapStatistics: { usedHeapSize: number }; heapSpaceStatistics: { spaceName: string; spaceUsedSize: number }[] };
    afterGC: { heapStatistics: { usedHeapSize: number }; heapSpaceStatistics: { spaceName: string; spaceUsedSize: number }[] };
  }[];
}

/**
 * An MCP server whose tool awaits `toolMs`, driven by the client thread; instrumented: collector →
 * Kafka, spans too. With `rawDelivery`, a plain server beside the raw delivery of its calls' messages
 * (startRawDelivery), in the place of any `--control` load.
 */
async function drive(instrumented: boolean, brokers: string, spec: Omit<ClientSpec, 'role' | 'port'>, rawDelivery = false): Promise<Window> {
  const server = new McpServer({ name: 'bench-gateway', version: '1.0.0' });
  let provider: BasicTracerProvider | undefined;
  let collector: Collector | undefined;
  if (instrumented) {
    const late = { getTracer: (name: string, version?: string) => provider!.getTracer(name, version) };
    const topics = { audit: `bench-calls-${randomBytes(3).toString('hex')}`, spans: `bench-spans-${randomBytes(3).toString('hex')}` };
    await createTopic(brokers, topics.audit);
    await createTopic(brokers, topics.spans);
    collector = createCollector({
      kafka: { brokers: [brokers], clientId: 'bench-gateway' },
      topics,
      tracerProvider: late,
      spoolDir: spoolDir(),
      queueMaxRecords: 50_000,
      spanProcessorConfig: { maxQueueSize: 16_384 },
      logger,
    });
    provider = new BasicTracerProvider({ spanProcessors: [collector.spanProcessor] });
    collector.instrumentServer(server);
  }
  server.registerTool('users.Users.Get', { description: 'get a user' }, async () => {
    if (spec.toolMs > 0) await sleep(spec.toolMs);
    return { content: [{ type: 'text', text: 'user 42: Ada Lovelace' }] };
  });
  const controlLoad = rawDelivery
    ? [await startRawDelivery(brokers, (spec.inFlight / spec.toolMs) * 1000)]
    : !instrumented && spec.mode === 'steady'
      ? startControlLoad()
      : [];
  const channel = new MessageChannel();
  let windowStart = Infinity;
  let windowEnd = Infinity;
  const gatewayLatencies: number[] = [];
  /** Responses to tools/call sent in the window, whenever their request arrived: the calls its allocations paid for. */
  let responses = 0;
  const timing = (start: number, end: number) => {
    if (end >= windowStart && end < windowEnd) responses++;
    if (start >= windowStart && end < windowEnd) gatewayLatencies.push(end - start - spec.toolMs);
  };
  await server.connect(new PortTransport(channel.port1, timing));
  const heapIdle = heapAfterGc();

  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  const gcPauses: number[] = [];
  const byKind = { scavenges: [] as number[], markCompacts: [] as number[] };
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcPauses.push(entry.duration);
      const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) byKind.scavenges.push(entry.duration);
      else if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) byKind.markCompacts.push(entry.duration);
    }
  });
  let eluStart: EventLoopUtilization | undefined;
  let cpuStart: CpuSample | undefined;
  const result = { elu: 0, cpu: { main: 0, rest: 0, broker: 0, mainWaited: 0, steal: 0 } as CpuSample, windowMs: 1, heapLoaded: 0, allocated: 0, survivedPerScavenge: 0 };
  const allocation = new v8.GCProfiler();
  let heapAtStart = 0;

  const clientSpec: ClientSpec = { ...spec, role: 'mcp-client', port: channel.port2 };
  const worker = startWorker(new URL(import.meta.url), { workerData: clientSpec, transferList: [channel.port2], name: 'bench-agents' });
  const done = await new Promise<{ latencies: Float64Array; completed: number }>((resolve, reject) => {
    worker.on('error', reject);
    worker.on('exit', (code) => reject(new Error(`the client thread exited (${code}) before it was done`)));
    worker.on('message', (message: FromClient) => {
      if (message.type === 'done') return resolve(message);
      if (message.phase === 'start') {
        windowStart = performance.now();
        eluStart = nodePerformance.eventLoopUtilization();
        cpuStart = cpuNow(brokerPid);
        loopDelay.enable();
        gcObserver.observe({ entryTypes: ['gc'] });
        heapAtStart = v8.getHeapStatistics().used_heap_size;
        allocation.start();
      } else {
        const profile = allocation.stop() as GcProfile | undefined;
        result.allocated = allocatedSince(heapAtStart, profile);
        result.survivedPerScavenge = survivedPerScavenge(profile);
        windowEnd = performance.now();
        result.windowMs = windowEnd - windowStart;
        result.elu = nodePerformance.eventLoopUtilization(eluStart).utilization;
        result.cpu = cpuSince(cpuStart!, cpuNow(brokerPid));
        loopDelay.disable();
        gcObserver.disconnect();
        result.heapLoaded = heapAfterGc();
      }
    });
  });
  await worker.terminate();
  await Promise.all(controlLoad.map((load) => load.terminate()));
  if (collector) {
    await provider!.forceFlush();
    await collector.flush();
    const stats = collector.stats();
    if (stats.dropped + stats.failed + stats.invalid > 0) throw new Error(`instrumented run lost records: ${JSON.stringify(stats)}`);
    await collector.shutdown();
    await provider!.shutdown();
  }
  await server.close();
  return {
    latencies: done.latencies,
    gatewayLatencies: Float64Array.from(gatewayLatencies).sort(),
    completed: done.completed,
    windowMs: result.windowMs,
    elu: result.elu,
    cpu: result.cpu,
    loopDelayP99: loopDelay.percentile(99) / 1e6,
    gc: pausesOf(gcPauses),
    scavenges: pausesOf(byKind.scavenges),
    markCompacts: pausesOf(byKind.markCompacts),
    survivedPerScavenge: result.survivedPerScavenge,
    allocated: result.allocated,
    responses,
    heapIdle,
    heapLoaded: result.heapLoaded,
    heapAfter: heapAfterGc(),
  };

  function pausesOf(pauses: number[]): Pauses {
    return { msPerSecond: pauses.reduce((a, b) => a + b, 0) / (result.windowMs / 1000), longestMs: Math.max(0, ...pauses) };
  }
}

/**
 * Bytes allocated since `heapAtStart`, from a GCProfiler's record of the GCs meanwhile: the growth of the
 * used heap up to each GC, from the end of the previous one, and after the last one up to now.
 */
function allocatedSince(heapAtStart: number, profile: GcProfile | undefined): number {
  let allocated = 0;
  let from = heapAtStart;
  for (const gcRun of profile?.statistics ?? []) {
    allocated += Math.max(0, gcRun.beforeGC.heapStatistics.usedHeapSize - from);
    from = gcRun.afterGC.heapStatistics.usedHeapSize;
  }
  return allocated + Math.max(0, v8.getHeapStatistics().used_heap_size - from);
}

/** The row whose first runs also report the heap: 10,000 in flight with 5 s tools, 2,000 calls/s. */
const HEAP_TOOL_MS = 5_000;
/**
 * Tool duration, measured window; 10,000 in flight, after a warm-up of one tool duration plus 2 s. The
 * target's row (1 s tools) measures 20 s: its p99 is set by the gateway's longest GC pauses, and in a
 * 6 s window one pause more or less moved a run's p99 by half.
 */
const TOOL_DURATIONS: [toolMs: number, measureMs: number][] = [
  [10_000, 20_000],
  [5_000, 15_000],
  [1_000, 20_000],
];
/** `--tool-ms=5000` runs only those rows; `--repeat=N` measures each row N times (plain, instrumented, ...). */
const toolMsArg = process.argv.find((a) => a.startsWith('--tool-ms='))?.slice('--tool-ms='.length).split(',').map(Number);
const REPEAT = Number(process.argv.find((a) => a.startsWith('--repeat='))?.slice('--repeat='.length) ?? 4);
/** The row of the issue's targets: 10,000 in flight at 10,000 calls/s. */
const TARGET_TOOL_MS = 1_000;

async function concurrency(brokers: string): Promise<void> {
  const count = { toolMs: 0, inFlight: 100, mode: 'count', calls: 30_000 } as const;
  await drive(false, brokers, count); // warm-up of both paths
  await drive(true, brokers, count);
  const plainCpu = await drive(false, brokers, count);
  const instCpu = await drive(true, brokers, count);
  const perCall = (w: Window, which: 'main' | 'rest') => (w.cpu[which] * 1000) / w.completed;
  rows.push([
    'CPU per instrumented call, gateway thread (0 ms tool, 100 in flight)',
    `${(perCall(instCpu, 'main') - perCall(plainCpu, 'main')).toFixed(1)} µs (${perCall(plainCpu, 'main').toFixed(1)} plain → ${perCall(instCpu, 'main').toFixed(1)})`,
    '',
    '',
  ]);
  rows.push([
    '  CPU per call, the process\'s other threads',
    `${(perCall(instCpu, 'rest') - perCall(plainCpu, 'rest')).toFixed(1)} µs (${perCall(plainCpu, 'rest').toFixed(1)} → ${perCall(instCpu, 'rest').toFixed(1)}; agents, collector, GC, zlib)`,
    'off the gateway loop',
    '',
  ]);

  details.push(`10,000 calls in flight: latency beyond the tool's own duration (ms), plain vs instrumented, ${REPEAT} rounds of a plain run and an instrumented one, plain first in odd rounds (ABBA).`);
  details.push('In the gateway: from a request\'s arrival to its response\'s send. End to end: as the client thread measures it (adds its own event loop and GC).');
  details.push('| tool | calls/s | run | in the gateway p50 / p99: plain | instrumented | added | end to end p99: plain / instr. / added | gateway ELU | gateway CPU µs/call | gateway waited for a core ms/s | other threads / broker CPU ms/s | loop delay p99 ms | GC pauses ms/s, longest ms | of which scavenges | of which mark-compacts | calls | p99 ratio | gateway thread B allocated per call |');
  details.push('|------|---------|-----|----------------------------------|--------------|-------|-----------------------------------------|-------------|---------------------|--------------------------------|---------------------------------|-------------------|----------------------------|--------------------|------------------------|-------|-----------|-------------------------------------|');
  const pair = (a: string, b: string) => `${a} / ${b}`;
  const pauses = (x: Pauses) => `${x.msPerSecond.toFixed(1)}, ${x.longestMs.toFixed(1)}`;
  /** Milliseconds (of CPU, or of waiting) per second of the window. */
  const msPerWindowSecond = (w: Window, msTotal: number) => msTotal / (w.windowMs / 1000);
  const perWindowSecond = (w: Window, msTotal: number) => msPerWindowSecond(w, msTotal).toFixed(0);
  const p50p99 = (x: Float64Array) => pair(quantile(x, 0.5).toFixed(2), quantile(x, 0.99).toFixed(2));
  for (const [toolMs, measureMs] of TOOL_DURATIONS.filter(([t]) => !toolMsArg || toolMsArg.includes(t))) {
    const spec = { toolMs, inFlight: 10_000, mode: 'steady', warmupMs: toolMs + 2_000, measureMs } as const;
    const rate = perSecond(10_000_000 / toolMs);
    const added: number[] = [];
    const addedEndToEnd: number[] = [];
    /** Per round: p99 in the gateway, instrumented / plain; bytes the gateway thread allocated per call, added. */
    const ratios: number[] = [];
    const bytesAdded: number[] = [];
    const windows = { plain: [] as Window[], inst: [] as Window[], raw: [] as Window[] };
    // The target row also runs the raw limit of delivery (startRawDelivery), between the other two.
    const withRaw = toolMs === TARGET_TOOL_MS;
    for (let run = 1; run <= REPEAT; run++) {
      // Odd rounds run plain first, even rounds instrumented first (ABBA): whatever a run leaves to the
      // next one (the broker's work on what it was sent, the heap) falls on both sides alike.
      const plainFirst = run % 2 === 1;
      const first = await drive(!plainFirst, brokers, spec);
      const raw = withRaw ? await drive(false, brokers, spec, true) : undefined;
      const second = await drive(plainFirst, brokers, spec);
      const [plain, inst] = plainFirst ? [first, second] : [second, first];
      const [p, i] = [plain.gatewayLatencies, inst.gatewayLatencies];
      const rawNote = raw ? `; beside the raw delivery ${quantile(raw.gatewayLatencies, 0.99).toFixed(2)} ms` : '';
      // A window the hypervisor slowed (running something else while this machine's CPUs wanted to) shows it.
      const steal = [plain, inst, ...(raw ? [raw] : [])].map((w) => ((w.cpu.steal * 1000) / w.windowMs).toFixed(0)).join(' / ');
      const stealNote = `; steal ms/s, ${raw ? 'plain / instr. / raw' : 'plain / instr.'}: ${steal}`;
      console.error(`  ${toolMs / 1000} s tool, round ${run} (${plainFirst ? 'plain first' : 'instrumented first'}): p99 in the gateway ${quantile(p, 0.99).toFixed(2)} → ${quantile(i, 0.99).toFixed(2)} ms${rawNote}; calls ${p.length} / ${i.length} (end to end ${plain.latencies.length} / ${inst.latencies.length}); load ${os.loadavg()[0]!.toFixed(1)}${stealNote}`);
      windows.plain.push(plain);
      windows.inst.push(inst);
      if (raw) windows.raw.push(raw);
      added.push(quantile(i, 0.99) - quantile(p, 0.99));
      ratios.push(quantile(i, 0.99) / quantile(p, 0.99));
      const perResponse = (w: Window) => w.allocated / Math.max(1, w.responses);
      bytesAdded.push(perResponse(inst) - perResponse(plain));
      addedEndToEnd.push(quantile(inst.latencies, 0.99) - quantile(plain.latencies, 0.99));
      details.push(
        `| ${[
          `${toolMs / 1000} s`,
          rate,
          String(run),
          p50p99(p),
          p50p99(i),
          pair((quantile(i, 0.5) - quantile(p, 0.5)).toFixed(2), added[added.length - 1]!.toFixed(2)),
          `${quantile(plain.latencies, 0.99).toFixed(2)} / ${quantile(inst.latencies, 0.99).toFixed(2)} / ${addedEndToEnd[addedEndToEnd.length - 1]!.toFixed(2)}`,
          pair(pct(plain.elu), pct(inst.elu)),
          pair(((plain.cpu.main * 1000) / plain.completed).toFixed(1), ((inst.cpu.main * 1000) / inst.completed).toFixed(1)),
          pair(perWindowSecond(plain, plain.cpu.mainWaited), perWindowSecond(inst, inst.cpu.mainWaited)),
          `${perWindowSecond(plain, plain.cpu.rest)}, ${perWindowSecond(plain, plain.cpu.broker)} / ${perWindowSecond(inst, inst.cpu.rest)}, ${perWindowSecond(inst, inst.cpu.broker)}`,
          pair(plain.loopDelayP99.toFixed(2), inst.loopDelayP99.toFixed(2)),
          pair(pauses(plain.gc), pauses(inst.gc)),
          pair(pauses(plain.scavenges), pauses(inst.scavenges)),
          pair(pauses(plain.markCompacts), pauses(inst.markCompacts)),
          pair(String(p.length), String(i.length)),
          `${(ratios.at(-1)!).toFixed(2)}`,
          pair(String(Math.round(perResponse(plain))), String(Math.round(perResponse(inst)))),
        ].join(' | ')} |`,
      );
      if (toolMs === HEAP_TOOL_MS && run === 1) {
        const perInFlight = (inst.heapLoaded - inst.heapIdle - (plain.heapLoaded - plain.heapIdle)) / 10_000;
        rows.push(['heap used (full GC), plain: idle → 10k in flight → shut down', `${mb(plain.heapIdle)} → ${mb(plain.heapLoaded)} → ${mb(plain.heapAfter)}`, '', '']);
        rows.push(['heap used (full GC), instrumented: idle → 10k in flight → shut down', `${mb(inst.heapIdle)} → ${mb(inst.heapLoaded)} → ${mb(inst.heapAfter)}`, 'bounded', `+${Math.round(perInFlight)} B per call in flight`]);
      }
    }
    // p99 of all runs' calls together: one long window, steadier than any single run against GC pauses.
    const all = (runs: Window[], of: (w: Window) => Float64Array) => {
      const out = new Float64Array(runs.reduce((n, w) => n + of(w).length, 0));
      let at = 0;
      for (const w of runs) (out.set(of(w), at), (at += of(w).length));
      return out.sort();
    };
    const inGateway = (w: Window) => w.gatewayLatencies;
    const endToEnd = (w: Window) => w.latencies;
    const [plainAll, instAll] = [all(windows.plain, inGateway), all(windows.inst, inGateway)];
    const pooledAdded = quantile(instAll, 0.99) - quantile(plainAll, 0.99);
    const pooledEndToEnd = quantile(all(windows.inst, endToEnd), 0.99) - quantile(all(windows.plain, endToEnd), 0.99);
    const pooledRatio = quantile(instAll, 0.99) / quantile(plainAll, 0.99);
    const sortedRatios = [...ratios].sort((a, b) => a - b);
    const sortedBytes = [...bytesAdded].sort((a, b) => a - b);
    const median = (xs: number[]) => xs[Math.floor(xs.length / 2)]!;
    // The issue's targets are for 10,000 calls/s; the slower rows are shown against the same bounds.
    const judged = toolMs === TARGET_TOOL_MS;
    // What the same measurement gives when nothing differs: the collector-off runs against each other.
    const plainP99s = windows.plain.map((w) => quantile(w.gatewayLatencies, 0.99));
    const noiseSpread = Math.max(...plainP99s) - Math.min(...plainP99s);
    // A verdict on a 10 % margin says little when the collector-off p99 itself moves by more than 10 %
    // from round to round: the verdict stands, with that said beside it.
    const noiseShare = noiseSpread / quantile(plainAll, 0.99);
    const inconclusive = noiseShare > 0.1 ? ` (not conclusive: the collector-off p99 moved by ${(noiseShare * 100).toFixed(0)} % of itself run to run)` : '';
    const p99Verdict = verdict(pooledRatio <= 1.1) + inconclusive;
    rows.push([
      `10k in flight, ${toolMs / 1000} s tool = ${rate}: p99 in the gateway, instrumented / plain`,
      `${pooledRatio.toFixed(2)} (${quantile(plainAll, 0.99).toFixed(2)} → ${quantile(instAll, 0.99).toFixed(2)} ms, all ${REPEAT} rounds' calls; round by round ${ratios.map((x) => x.toFixed(2)).join(', ')}: median ${median(sortedRatios).toFixed(2)}, ${sortedRatios[0]!.toFixed(2)}–${sortedRatios.at(-1)!.toFixed(2)})`,
      '≤ 1.1',
      judged ? p99Verdict : '',
    ]);
    const mean = (runs: Window[], of: (w: Window) => number) => runs.reduce((sum, w) => sum + of(w), 0) / runs.length;
    const perSec = (of: (w: Window) => number) => (w: Window) => msPerWindowSecond(w, of(w));
    if (windows.raw.length > 0) {
      // The same rule with the raw delivery in the place of each side: what delivering these messages at
      // all costs the gateway on this machine, and the collector against that.
      const rawAll = all(windows.raw, inGateway);
      const byRound = (over: Window[], under: Window[]) => over.map((w, k) => (quantile(w.gatewayLatencies, 0.99) / quantile(under[k]!.gatewayLatencies, 0.99)).toFixed(2)).join(', ');
      rows.push([
        '  the raw limit: plain beside raw kafkajs sending the same messages / plain',
        `${(quantile(rawAll, 0.99) / quantile(plainAll, 0.99)).toFixed(2)} (${quantile(plainAll, 0.99).toFixed(2)} → ${quantile(rawAll, 0.99).toFixed(2)} ms; round by round ${byRound(windows.raw, windows.plain)})`,
        '',
        '',
      ]);
      rows.push([
        '  instrumented / the raw limit',
        `${(quantile(instAll, 0.99) / quantile(rawAll, 0.99)).toFixed(2)} (round by round ${byRound(windows.inst, windows.raw)})`,
        '',
        '',
      ]);
      rows.push([
        '  cores beside the raw delivery (ms per s of window)',
        `gateway thread waited for a core ${mean(windows.raw, perSec((w) => w.cpu.mainWaited)).toFixed(0)}; gateway thread ran ${mean(windows.raw, perSec((w) => w.cpu.main)).toFixed(0)}; the process's other threads ${mean(windows.raw, perSec((w) => w.cpu.rest)).toFixed(0)}; broker ${brokerPid ? mean(windows.raw, perSec((w) => w.cpu.broker)).toFixed(0) : 'not on this machine'} (mean of ${REPEAT} rounds)`,
        '',
        '',
      ]);
    }
    rows.push([
      `  bytes allocated per call on the gateway thread, added by the collector`,
      `median ${Math.round(median(sortedBytes))} B (${Math.round(sortedBytes[0]!)}–${Math.round(sortedBytes.at(-1)!)} over ${REPEAT} rounds)`,
      '≤ 1024 B',
      judged ? verdict(median(sortedBytes) <= 1024) : '',
    ]);
    rows.push([
      `  p99 added in the gateway`,
      `${ms(pooledAdded)} (run by run: ${added.map((x) => x.toFixed(2)).join(', ')})`,
      '',
      '',
    ]);
    rows.push([`  same, end to end (client thread on the same 2 cores)`, `${ms(pooledEndToEnd)} (run by run: ${addedEndToEnd.map((x) => x.toFixed(2)).join(', ')})`, '', '']);
    // The same p99s with the tool's own time put back: the whole call as the gateway serves it. Not the
    // target's measure (it divides the latency the gateway adds, so a long tool cannot hide it).
    const whole = (x: number) => x + toolMs;
    rows.push([
      `  whole call in the gateway (tool included), instrumented / plain`,
      `${(whole(quantile(instAll, 0.99)) / whole(quantile(plainAll, 0.99))).toFixed(3)} (p99 ${ms(whole(quantile(plainAll, 0.99)))} → ${ms(whole(quantile(instAll, 0.99)))})`,
      '',
      '',
    ]);
    rows.push([
      '  noise floor: collector-off p99, run to run',
      `${Math.min(...plainP99s).toFixed(2)} – ${Math.max(...plainP99s).toFixed(2)} ms (spread ${noiseSpread.toFixed(2)} ms)`,
      '',
      '',
    ]);
    // Where the p99 comes from: the gateway's GC pauses, by kind, as the mean of the rounds.
    const change = (of: (w: Window) => number, digits = 1) => `${mean(windows.plain, of).toFixed(digits)} → ${mean(windows.inst, of).toFixed(digits)}`;
    rows.push([
      `  GC pauses in the gateway, plain → instrumented${CONTROL ? ` (plain beside the ${CONTROL[1]} control load)` : ''}`,
      `scavenges ${change((w) => w.scavenges.msPerSecond)} ms/s, longest ${change((w) => w.scavenges.longestMs, 0)} ms, ${change((w) => w.survivedPerScavenge / 1048576)} MB kept by each; mark-compacts ${change((w) => w.markCompacts.msPerSecond)} ms/s, longest ${change((w) => w.markCompacts.longestMs, 0)} ms (mean of ${REPEAT} rounds)`,
      '',
      '',
    ]);
    // Where else it can come from: the gateway thread ready to run but without a core, while the
    // collector's threads, the agents' thread and the broker (here on the same cores) run.
    rows.push([
      '  cores, plain → instrumented (ms per s of window)',
      `gateway thread waited for a core ${change(perSec((w) => w.cpu.mainWaited), 0)}; gateway thread ran ${change(perSec((w) => w.cpu.main), 0)}; the process's other threads ${change(perSec((w) => w.cpu.rest), 0)}; broker ${brokerPid ? change(perSec((w) => w.cpu.broker), 0) : 'not on this machine'} (mean of ${REPEAT} rounds)`,
      '',
      '',
    ]);
  }
  const burst = { toolMs: 5, inFlight: 10_000, mode: 'burst', calls: 10_000 } as const;
  const plainBurst = quantile((await drive(false, brokers, burst)).latencies, 0.99);
  const instBurst = quantile((await drive(true, brokers, burst)).latencies, 0.99);
  rows.push(['burst of 10k calls at once (5 ms tool): p99 plain → instrumented', `${ms(plainBurst)} → ${ms(instBurst)}`, 'no target', `+${ms(instBurst - plainBurst)}`]);
}

// ---------------------------------------------------------------------------
// 3. Collector → Kafka throughput vs raw kafkajs

const BATCH = 1_000;
const gzipAsync = promisify(zlib.gzip);
const gunzipAsync = promisify(zlib.gunzip);

async function createTopic(brokers: string, topic: string): Promise<void> {
  const admin = new kafkajs.Kafka({ clientId: 'bench-admin', brokers: [brokers], logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();
}

interface ThroughputRun {
  rate: number;
  cpu: CpuSample;
}

async function collectorThroughput(brokers: string, records: AuditRecord[]): Promise<ThroughputRun> {
  const topic = `bench-collector-${randomBytes(3).toString('hex')}`;
  await createTopic(brokers, topic);
  const collector = createCollector({
    kafka: { brokers: [brokers], clientId: 'bench-collector' },
    topics: { audit: topic },
    spoolDir: spoolDir(),
    queueMaxRecords: 100_000,
    batchMaxRecords: BATCH,
    batchMaxWaitMs: 20,
    logger,
  });
  // Connect first, as the raw producer does.
  collector.auditFunc(record(-1));
  await collector.flush();
  const N = records.length;
  const cpuStart = cpuNow(brokerPid);
  const started = performance.now();
  let i = 0;
  while (i < N) {
    // A gateway at full speed, with the queue kept under its spill mark (half of queueMaxRecords).
    if (collector.stats().queued < 40_000) {
      for (const end = Math.min(N, i + BATCH); i < end; i++) collector.auditFunc(records[i]!);
      await yieldLoop();
    } else {
      await sleep(1);
    }
  }
  while (collector.stats().sent < N + 1) await sleep(1);
  const elapsed = performance.now() - started;
  const cpu = cpuSince(cpuStart, cpuNow(brokerPid));
  const stats = collector.stats();
  await collector.shutdown();
  if (stats.spilled + stats.dropped + stats.failed + stats.invalid !== 0) throw new Error(`throughput run did not send everything directly: ${JSON.stringify(stats)}`);
  return { rate: (N / elapsed) * 1000, cpu };
}

async function rawThroughput(brokers: string, records: AuditRecord[]): Promise<ThroughputRun> {
  const topic = `bench-raw-${randomBytes(3).toString('hex')}`;
  await createTopic(brokers, topic);
  // The same messages the collector sends, encoded beforehand: only sendBatch is timed.
  const messages = records.map((r) => {
    const parsed = normalizeAuditRecord({ ...r, event_id: newEventId() });
    if (!parsed.ok) throw new Error('bad bench record');
    return { key: auditMessageKey(parsed.value), value: Buffer.from(JSON.stringify(parsed.value)), headers: { tenant: parsed.value.tenant } };
  });
  const kafka = new kafkajs.Kafka({ clientId: 'bench-raw', brokers: [brokers], logLevel: kafkajs.logLevel.WARN });
  // The collector's producer settings (core/kafka.ts) and gzip level; compressed in libuv's thread pool, as kafkajs does.
  kafkajs.CompressionCodecs[kafkajs.CompressionTypes.GZIP] = () => ({
    compress: (encoder: { buffer: Buffer }) => gzipAsync(encoder.buffer, { level: COLLECTOR_GZIP_LEVEL }),
    decompress: (buffer: Buffer) => gunzipAsync(buffer),
  });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: DefaultPartitioner });
  await producer.connect();
  const cpuStart = cpuNow(brokerPid);
  const started = performance.now();
  for (let i = 0; i < messages.length; i += BATCH) {
    await producer.sendBatch({ topicMessages: [{ topic, messages: messages.slice(i, i + BATCH) }], acks: -1, compression: kafkajs.CompressionTypes.GZIP });
  }
  const elapsed = performance.now() - started;
  const cpu = cpuSince(cpuStart, cpuNow(brokerPid));
  await producer.disconnect();
  return { rate: (messages.length / elapsed) * 1000, cpu };
}

async function throughput(brokers: string): Promise<void> {
  const N = 200_000;
  const records = Array.from({ length: N }, (_, i) => record(i));
  await rawThroughput(brokers, records.slice(0, 20_000)); // warm-up: JIT, broker
  await collectorThroughput(brokers, records.slice(0, 20_000));
  const raw: ThroughputRun[] = [];
  const collector: ThroughputRun[] = [];
  for (let r = 0; r < 3; r++) {
    raw.push(await rawThroughput(brokers, records));
    collector.push(await collectorThroughput(brokers, records));
  }
  const best = (runs: ThroughputRun[]) => runs.reduce((a, b) => (b.rate > a.rate ? b : a));
  const [bestCollector, bestRaw] = [best(collector), best(raw)];
  const ratio = bestCollector.rate / bestRaw.rate;
  const list = (runs: ThroughputRun[]) => runs.map((x) => Math.round(x.rate).toLocaleString('en-US')).join(', ');
  const cpu = (run: ThroughputRun, main: string, rest: string) =>
    `${main} ${((run.cpu.main * 1000) / N).toFixed(1)} + ${rest} ${((run.cpu.rest * 1000) / N).toFixed(1)}${brokerPid ? ` + broker ${((run.cpu.broker * 1000) / N).toFixed(1)}` : ''} µs`;
  rows.push([`collector → Kafka (200k, batch ${BATCH}, gzip, acks -1, idempotent)`, `${perSecond(bestCollector.rate)} (runs: ${list(collector)})`, '≥ 50,000/s', verdict(bestCollector.rate >= 50_000)]);
  rows.push(['raw kafkajs sendBatch, same messages and settings', `${perSecond(bestRaw.rate)} (runs: ${list(raw)})`, '', '']);
  rows.push(['collector / raw (best run of each)', `${(ratio * 100).toFixed(1)} % (run by run: ${collector.map((c, k) => `${((c.rate / raw[k]!.rate) * 100).toFixed(0)} %`).join(', ')})`, '≥ 80 %', verdict(ratio >= 0.8)]);
  rows.push(['  CPU per record, collector (best run)', cpu(bestCollector, 'gateway thread', 'collector threads, GC, zlib'), '', '']);
  rows.push(['  CPU per record, raw (best run)', cpu(bestRaw, 'kafkajs thread', 'GC, zlib'), '', '']);
}

// ---------------------------------------------------------------------------

interface KafkaScript {
  startBroker(): Promise<{ brokers: string; pid: number }>;
  stopBroker(handle: { brokers: string }): Promise<void>;
}

async function main(): Promise<void> {
  const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average at start ${load()}`);
  let brokers = process.env.KAFKA_BROKERS?.split(',')[0];
  let script: KafkaScript | undefined;
  let handle: { brokers: string; pid: number } | undefined;
  if (!brokers) {
    console.error('starting a Kafka broker (scripts/kafka.mjs)...');
    script = (await import(new URL('../scripts/kafka.mjs', import.meta.url).href)) as KafkaScript;
    handle = await script.startBroker();
    brokers = handle.brokers;
  }
  brokerPid = handle?.pid ?? brokerPidFromState();
  // `--only=hot|calls|kafka` runs one part.
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  try {
    if (!only || only === 'hot') {
      console.error('1/3 auditFunc hot path...');
      await hotPath();
    }
    if (!only || only === 'calls') {
      console.error(`2/3 tool calls, 10,000 in flight (collector → Kafka at ${brokers})...`);
      await concurrency(brokers);
    }
    if (!only || only === 'kafka') {
      console.error('3/3 collector → Kafka throughput...');
      await throughput(brokers);
    }
  } finally {
    if (handle) await script!.stopBroker(handle);
  }
  console.log(`load average at end ${load()}`);
  printTable(rows);
  if (details.length > 0) console.log(`\n${details.join('\n')}`);
}

if (isMainThread) await main();
else if ((workerData as { role: string }).role === 'raw-delivery') await runRawDelivery(workerData as RawDeliverySpec);
else await runClient(workerData as ClientSpec);
