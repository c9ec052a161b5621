/**
 * Bytes the gateway's thread allocates per tool call for instrumentServer (a script, not a test):
 *
 *   npm run bench -- collector-alloc
 *
 * The same McpServer, plain and instrumented (collector in its default worker-thread mode, plus a
 * tracer provider feeding collector.spanProcessor), its `tools/call` handler called directly (so the
 * calls are ended by their handler's promise, the path of calls not dispatched by the SDK's Protocol;
 * collector.bench.ts's latency rows measure the bytes of calls ended at their response), 100
 * calls per turn of the event loop (as requests arriving from sockets are: the collector's work that
 * waits for a later turn runs between them), 10,000 per window, rounds alternating plain / instrumented. A window's allocation is the growth of
 * the heap from a full GC to the end of the window (the span processor's exports included), with a
 * young generation large enough that no GC runs inside a window (a window in which one ran is measured
 * again). Added per call = instrumented − plain, as median and spread over the rounds.
 *
 * The plain handler's own allocation per call swings by ±5% from window to window, in a pattern that
 * repeats every few windows (also with V8's --predictable, and with two plain gateways against each
 * other: ±300 B per call between them), so one round's difference is noisy: hence many rounds, and the
 * mean and the quartiles beside the median.
 *
 * Kafka is not needed: the records go to the collector's worker threads either way (the broker given
 * is unreachable, so they wait in the spool), which is all the gateway's thread does with them. Each
 * window starts with the collector's queues empty (`flush`, before the GC): the spool is slower than
 * the calls, and a window that filled the queue would measure the calls whose records are dropped.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { pino } from 'pino';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { createCollector, type Collector } from '../collector/index.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const CALLS = 10_000;
const ROUNDS = 15;

/** Start times of the GCs observed (delivered after the fact). */
const gcTimes: number[] = [];
new PerformanceObserver((list) => list.getEntries().forEach((e) => gcTimes.push(e.startTime))).observe({ entryTypes: ['gc'] });

type Handler = (request: unknown, extra: unknown) => Promise<unknown>;

interface Gateway {
  call: Handler;
  /** Resolves when everything reported so far is in the spool. */
  settle(): Promise<void>;
  dropped(): number;
  stop(): Promise<void>;
}

async function gateway(instrumented: boolean): Promise<Gateway> {
  const server = new McpServer({ name: 'bench-gateway', version: '1.0.0' });
  let provider: BasicTracerProvider | undefined;
  let collector: Collector | undefined;
  if (instrumented) {
    const late = { getTracer: (name: string, version?: string) => provider!.getTracer(name, version) };
    collector = createCollector({
      kafka: { brokers: ['127.0.0.1:9'], clientId: 'bench-gateway' },
      tracerProvider: late,
      spoolDir: fs.mkdtempSync(path.join(os.tmpdir(), 'collector-alloc-')),
      queueMaxRecords: 50_000,
      spanProcessorConfig: { maxQueueSize: 16_384 },
      logger: pino({ level: 'silent' }),
    });
    provider = new BasicTracerProvider({ spanProcessors: [collector.spanProcessor] });
    collector.instrumentServer(server);
  }
  server.registerTool('users.Users.Get', { description: 'get a user' }, async () => ({ content: [{ type: 'text', text: 'user 42: Ada Lovelace' }] }));
  const handlers = (server.server as unknown as { _requestHandlers: Map<string, Handler> })._requestHandlers;
  const call = handlers.get('tools/call')!;
  return {
    call,
    settle: async () => void (await collector?.flush()),
    dropped: () => collector?.stats().dropped ?? 0,
    stop: async () => {
      await provider?.shutdown();
      await collector?.shutdown();
    },
  };
}

/** Bytes allocated per call over one window, or undefined if a GC ran inside it. */
async function window({ call, settle }: Gateway, first: number): Promise<number | undefined> {
  const requests = Array.from({ length: CALLS }, (_, i) => ({
    method: 'tools/call',
    params: { name: 'users.Users.Get', arguments: {} },
    extra: { requestId: first + i, sessionId: 'session-1', signal: new AbortController().signal, sendNotification: async () => {}, sendRequest: async () => ({}) },
  }));
  await settle();
  gc();
  await nextTurn();
  const start = performance.now();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < CALLS; i += 100) {
    await Promise.all(requests.slice(i, i + 100).map((r) => call(r, r.extra)));
    await nextTurn();
  }
  for (let i = 0; i < 5; i++) await nextTurn(); // the span processor's exports of this window
  const after = process.memoryUsage().heapUsed;
  const end = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 20)); // GC entries are delivered asynchronously
  return gcTimes.some((t) => t >= start && t <= end) ? undefined : (after - before) / CALLS;
}

async function main(): Promise<void> {
  const plain = await gateway(false);
  const inst = await gateway(true);
  // Warm-up: JIT, the SDK's and the collector's lazy state.
  for (let i = 0; i < 3; i++) {
    await window(plain, i * CALLS);
    await window(inst, i * CALLS);
  }
  const added: number[] = [];
  const plainPerCall: number[] = [];
  for (let round = 0, tries = 0; round < ROUNDS && tries < ROUNDS * 4; tries++) {
    const a = await window(plain, 10_000 + tries * CALLS);
    const b = await window(inst, 10_000 + tries * CALLS);
    if (a === undefined || b === undefined) continue;
    plainPerCall.push(a);
    added.push(b - a);
    round++;
  }
  const dropped = inst.dropped();
  await plain.stop();
  await inst.stop();
  const sorted = [...added].sort((x, y) => x - y);
  const at = (q: number) => Math.round(sorted[Math.round(q * (sorted.length - 1))]!);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const mean = added.reduce((sum, x) => sum + x, 0) / added.length;
  const plainSorted = [...plainPerCall].sort((x, y) => x - y).map(Math.round);
  console.log(`rounds: ${added.length} × ${CALLS} calls (plain, instrumented alternating); load average ${os.loadavg()[0]!.toFixed(2)}`);
  console.log(`records dropped by the collector: ${dropped}${dropped > 0 ? ' (the windows that dropped them measured less than a call costs)' : ''}`);
  console.log(`plain handler: median ${plainSorted[Math.floor(plainSorted.length / 2)]} B per call (min ${plainSorted[0]}, max ${plainSorted.at(-1)})`);
  console.log(
    `added by instrumentServer: median ${Math.round(median)} B per call (quartiles ${at(0.25)}–${at(0.75)}, min ${at(0)}, max ${at(1)}, mean ${Math.round(mean)}); target ≤ 1024 B: ${median <= 1024 ? 'PASS' : 'FAIL'}`,
  );
  process.exit(0);
}

await main();
