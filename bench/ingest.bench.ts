/**
 * Ingest benchmark (a script, not a test): Kafka → ingest worker → ClickHouse, against the raw limits
 * measured in the same run, on the same messages, on the same machine.
 *
 *   npm run bench ingest                                          # with the worker's Node flags (scripts/bench.mjs)
 *   node --max-semi-space-size=64 --import tsx bench/ingest.bench.ts   # the same; starts a Kafka broker (scripts/kafka.mjs)
 *   KAFKA_BROKERS=127.0.0.1:9092 node --import tsx bench/ingest.bench.ts
 *   ... bench/ingest.bench.ts --records 300000 --rate 5000 --seconds 20 --fresh-max-wait-ms 1000 [--verbose]
 *
 * ClickHouse is the embedded engine (chDB, in this process) in a fresh temporary directory, migrated.
 *
 * 1. Sustained throughput: N go-micro-shaped audit events (test/helpers/kafka.ts auditEvent, normalized
 *    as the collector puts them on the topic) are produced beforehand to a fresh 6-partition topic
 *    (idempotent, gzip, acks -1: the collector's settings); then `createKafkaWorker` with the real
 *    pipeline and writer (maxRows: BATCH_MAX_ROWS or its default, maxWaitMs 1000) is timed from joining its
 *    group to the commit that covers every partition's last offset.
 * 2. Raw limits, on the same messages: (a) kafkajs consuming them with the worker's consumer settings
 *    and an eachBatch that only resolves offsets; (b) one ClickHouse insert of the same rows (AuditRow
 *    objects via toAuditRow, encoded as the writer encodes them, inserted by the writer's statement with
 *    a deduplication token) into a fresh copy of audit_events_v1 with copies of every materialized view
 *    it feeds, directly or through a view's table, and their tables attached. Each is run 3 times and
 *    its median run kept; raw limit = the slower.
 * 3. Freshness: the collector (createCollector with its own Kafka producer, default worker thread)
 *    gets `auditFunc` calls at a steady rate for a while, with a worker running; a poller queries the
 *    table every 50 ms and each record's latency is from its auditFunc call to the end of the first poll
 *    that returned it (sequence numbers ride in trace_id).
 *
 * Every wait is bounded; the broker and the temporary directory are removed at the end.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { createCollector, type Collector } from '../collector/index.ts';
import { openClickHouse, type ClickHouseClient } from '../core/clickhouse.ts';
import { loadConfig } from '../core/config.ts';
import { createKafka, createKafkaPublisher, type Kafka } from '../core/kafka.ts';
import { migrate } from '../core/migrate.ts';
import { auditInsertBody, insertAuditBody } from '../ingest/audit-insert.ts';
import { createClickHouseWriter } from '../ingest/clickhouse-writer.ts';
import { decodeBatch } from '../ingest/decode.ts';
import { createKafkaWorker, FETCH_LIMITS, type KafkaWorker } from '../ingest/kafka-worker.ts';
import type { InboundMessage } from '../ingest/messages.ts';
import { createPipeline, type Pipeline } from '../ingest/pipeline.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRow } from '../model/audit-event.ts';
import { auditEvent, auditMessages, createTopics, unique } from '../test/helpers/kafka.ts';
import { printTable, type Row } from './table.ts';

const { values: args } = parseArgs({
  options: {
    records: { type: 'string', default: '300000' },
    rate: { type: 'string', default: '5000' },
    seconds: { type: 'string', default: '20' },
    'fresh-max-wait-ms': { type: 'string', default: '1000' },
    verbose: { type: 'boolean', default: false },
  },
});
const N = Number(args.records);
const WARMUP = Math.min(20_000, N);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const FRESH_MAX_WAIT_MS = Number(args['fresh-max-wait-ms']);
const PARTITIONS = 6;
/** The product's batch size (BATCH_MAX_ROWS, or its default), and a one-second wait. */
const BATCH = { maxRows: loadConfig({ BATCH_MAX_ROWS: process.env.BATCH_MAX_ROWS }).batch.maxRows, maxWaitMs: 1000 };
const POLL_MS = 50;
const WORKER_DEADLINE_MS = 200_000;
const BENCH_DEADLINE_MS = 9 * 60_000;

const logger = pino({ level: 'warn' }, pino.destination(2));
/** The worker's insert journal, under the bench's temporary directory (set in main). */
let journalDir = '';
const rows: Row[] = [];
const notes: string[] = [];
/** Workers and collectors still running: stopped (bounded) before ClickHouse is closed, whatever happened. */
const stoppers = new Set<() => Promise<void>>();
const progress = (message: string) => console.error(`[${(performance.now() / 1000).toFixed(1)} s] ${message}`);

const fmtRate = (x: number) => `${Math.round(x).toLocaleString('en-US')} rec/s`;
const fmtInt = (x: number) => Math.round(x).toLocaleString('en-US');
const ms = (x: number) => `${x.toFixed(0)} ms`;
const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
const pass = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

function quantile(sorted: Float64Array | number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

async function until(what: string, deadlineMs: number, done: () => boolean | Promise<boolean>, everyMs = 20): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (!(await done())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function scalar(clickhouse: ClickHouseClient, query: string, query_params: Record<string, unknown> = {}): Promise<number> {
  const [row] = await (await clickhouse.query({ query, query_params, format: 'JSONEachRow' })).json<{ n: string | number }>();
  return Number(row?.n ?? 0);
}

/** Broker JVM started by this bench, for its CPU use (Linux /proc). */
let brokerPid: number | undefined;
const CLOCK_TICKS = 100; // USER_HZ

/** Busy CPU seconds of the whole machine, and of the broker, from /proc (undefined elsewhere). */
function machineCpu(): { machine: number; broker: number } | undefined {
  try {
    const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
    const [user, nice, system, , , irq, softirq, steal] = fields.map(Number) as number[];
    const machine = (user! + nice! + system! + irq! + softirq! + steal!) / CLOCK_TICKS;
    let broker = 0;
    if (brokerPid) {
      const stat = readFileSync(`/proc/${brokerPid}/stat`, 'utf8');
      const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      broker = (Number(after[11]) + Number(after[12])) / CLOCK_TICKS; // utime, stime
    }
    return { machine, broker };
  } catch {
    return undefined;
  }
}

/**
 * CPU over a phase: this process's event loop and cores (chDB and the collector's worker thread run in
 * it), the broker's cores, and what the rest of the machine used meanwhile (other work skews the run).
 */
function meter() {
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const m0 = machineCpu();
  const t0 = performance.now();
  return () => {
    const elu: EventLoopUtilization = performance.eventLoopUtilization(elu0);
    const cpu = process.cpuUsage(cpu0);
    const m1 = machineCpu();
    const wall = (performance.now() - t0) / 1000;
    const own = (cpu.user + cpu.system) / 1e6 / wall;
    let text = `main thread ${pct(elu.utilization)}, process ${own.toFixed(2)} cores`;
    if (m0 && m1) {
      const broker = (m1.broker - m0.broker) / wall;
      const others = Math.max(0, (m1.machine - m0.machine) / wall - own - broker);
      text += `${brokerPid ? `, broker ${broker.toFixed(2)}` : ''}, other processes ${others.toFixed(2)}`;
    }
    return text;
  };
}

// ---------------------------------------------------------------------------
// The real pipeline, with timings taken around it (nothing in ingest/ is changed)

interface Profile {
  batches: number;
  messages: number;
  processMs: number;
  processMaxMs: number;
  smallestBatch: number;
  largestBatch: number;
  decodeMs: number;
  reportsMs: number;
  callsMs: number;
  insertMs: number;
  /** Wall time with at least one of the writer's statements running (the embedded engine runs one at a time). */
  engineBusyMs: number;
  /** The writer's statements running now, and since when at least one has been. */
  engineRunning: number;
  engineBusySince: number;
  /** When the writer's latest statement to settle did (see timedClient). */
  lastSettledAt: number;
  /** performance.now() of the first decode, and of the end of the first store (0 before). */
  firstDecodeAt: number;
  firstStoredAt: number;
  firstBatchSize: number;
}

const newProfile = (): Profile => ({ batches: 0, messages: 0, processMs: 0, processMaxMs: 0, smallestBatch: Infinity, largestBatch: 0, decodeMs: 0, reportsMs: 0, callsMs: 0, insertMs: 0, engineBusyMs: 0, engineRunning: 0, engineBusySince: 0, lastSettledAt: 0, firstDecodeAt: 0, firstStoredAt: 0, firstBatchSize: 0 });

/**
 * The writer's client, timing each look-up (query and reading its rows) and each insert by its own
 * time on the engine: the engine's one connection runs statements one at a time, in the order they
 * were sent, so a statement runs from its call or from the end of the one before it, whichever is later
 * (timed from its call, a look-up sent while the batch before it inserts would count that insert too).
 */
function timedClient(client: ClickHouseClient, profile: Profile): ClickHouseClient {
  const running = async <T>(statement: () => Promise<T>, kind: 'reportsMs' | 'callsMs' | 'insertMs' | undefined): Promise<T> => {
    const called = performance.now();
    if (profile.engineRunning++ === 0) profile.engineBusySince = called;
    try {
      return await statement();
    } finally {
      const settled = performance.now();
      if (kind) profile[kind] += settled - Math.max(called, profile.lastSettledAt);
      profile.lastSettledAt = settled;
      if (--profile.engineRunning === 0) profile.engineBusyMs += settled - profile.engineBusySince;
    }
  };
  return new Proxy(client, {
    get(target, prop) {
      if (prop === 'query') {
        return async (params: Parameters<ClickHouseClient['query']>[0]) => {
          // The calls' look-up reads audit_events_v1 too, by the event ids it found in call_reports_v2.
          const kind = params.query.includes('FROM call_reports_v2') ? 'callsMs' : params.query.includes('FROM audit_events_v1') ? 'reportsMs' : undefined;
          const rowsRead = await running(async () => (await target.query(params)).json(), kind);
          return { json: async () => rowsRead };
        };
      }
      if (prop === 'exec') {
        // The writer's inserts (INSERT … FORMAT with the encoded body).
        return async (params: Parameters<ClickHouseClient['exec']>[0]) => running(() => target.exec(params), 'insertMs');
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

function instrumentedPipeline(clickhouse: ClickHouseClient, topics: { audit: string; spans: string }, profile: Profile) {
  // With its insert journal, as `npm run ingest` runs it (bin/start.ts).
  const writer = createClickHouseWriter(timedClient(clickhouse, profile), { journalDir });
  const deadLettered = { count: 0 };
  const inner = createPipeline({
    writer,
    deadLetters: { send: async (letters) => void (deadLettered.count += letters.length) },
    topics,
    logger,
  });
  /** Decode time of each batch, until it is stored (the worker decodes a batch while the one before is stored). */
  const decodeTimes = new WeakMap<object, number>();
  const pipeline: Pipeline = {
    async decode(messages) {
      const started = performance.now();
      if (profile.firstDecodeAt === 0) profile.firstDecodeAt = started;
      const decoded = await inner.decode(messages);
      const took = performance.now() - started;
      profile.decodeMs += took;
      decodeTimes.set(decoded, took);
      return decoded;
    },
    async store(decoded) {
      const before = { ...profile };
      const started = performance.now();
      const outcome = await inner.store(decoded);
      const took = performance.now() - started;
      const { length } = decoded.messages;
      if (profile.firstStoredAt === 0) (profile.firstStoredAt = started + took), (profile.firstBatchSize = length);
      if (args.verbose) {
        const d = (k: keyof Profile) => (profile[k] - before[k]).toFixed(0);
        progress(`  batch of ${fmtInt(length)}: decoded over ${(decodeTimes.get(decoded) ?? 0).toFixed(0)} ms; stored in ${took.toFixed(0)} ms = look-ups ${d('reportsMs')} + ${d('callsMs')} + insert ${d('insertMs')} (with the statements of batches stored at once that ended meanwhile)`);
      }
      profile.batches++;
      profile.messages += length;
      profile.processMs += took;
      profile.processMaxMs = Math.max(profile.processMaxMs, took);
      profile.smallestBatch = Math.min(profile.smallestBatch, length);
      profile.largestBatch = Math.max(profile.largestBatch, length);
      return outcome;
    },
    async process(messages) {
      return this.store(await this.decode(messages));
    },
  };
  return { pipeline, deadLettered };
}

interface WorkerRun {
  worker: KafkaWorker;
  /** performance.now() of the group join. */
  joined: Promise<number>;
  /** performance.now() of the commit that covered every partition's high watermark. */
  committedAll: (high: Map<number, bigint>) => Promise<number>;
  /** Messages committed so far (offsets are per partition from 0: no transactions on these topics). */
  committedCount: () => number;
}

/** A worker whose consumer reports its group join and its commits to the bench. */
function observedWorker(kafka: Kafka, pipeline: Pipeline, topics: string[], batch: { maxRows: number; maxWaitMs: number }): WorkerRun {
  let onJoin: (at: number) => void = () => {};
  const joined = new Promise<number>((resolve) => (onJoin = resolve));
  const committed = new Map<number, bigint>();
  let onCommit: () => void = () => {};
  const observed = Object.assign(Object.create(kafka) as Kafka, {
    consumer(config: Parameters<Kafka['consumer']>[0]) {
      const consumer = kafka.consumer(config);
      consumer.on(consumer.events.GROUP_JOIN, () => onJoin(performance.now()));
      consumer.on(consumer.events.COMMIT_OFFSETS, (event) => {
        for (const t of event.payload.topics) {
          if (t.topic !== topics[0]) continue;
          for (const p of t.partitions) committed.set(Number(p.partition), BigInt(p.offset));
        }
        onCommit();
      });
      return consumer;
    },
  });
  const worker = createKafkaWorker({ kafka: observed, pipeline, groupId: unique('bench-ingest'), topics, batch, logger });
  return {
    worker,
    joined,
    committedAll: (high) =>
      new Promise<number>((resolve) => {
        onCommit = () => {
          if ([...high].every(([p, h]) => (committed.get(p) ?? 0n) >= h)) resolve(performance.now());
        };
        onCommit();
      }),
    committedCount: () => [...committed.values()].reduce((sum, offset) => sum + Number(offset), 0),
  };
}

async function highWatermarks(kafka: Kafka, topic: string): Promise<Map<number, bigint>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
  } finally {
    await admin.disconnect();
  }
}

// ---------------------------------------------------------------------------
// 1. Throughput of the ingest worker

async function produce(kafka: Kafka, topic: string, messages: { key: string; value: Buffer }[]): Promise<number> {
  const publisher = createKafkaPublisher(kafka, { logger });
  await publisher.connect();
  const started = performance.now();
  for (let i = 0; i < messages.length; i += 5_000) await publisher.send(topic, messages.slice(i, i + 5_000));
  const took = performance.now() - started;
  await publisher.disconnect();
  return (messages.length / took) * 1000;
}

async function ingestThroughput(kafka: Kafka, clickhouse: ClickHouseClient, topic: string, count: number, tenant: string) {
  const spans = unique('bench-spans');
  await createTopics(kafka, [spans], 1);
  const high = await highWatermarks(kafka, topic);
  const profile = newProfile();
  const { pipeline, deadLettered } = instrumentedPipeline(clickhouse, { audit: topic, spans }, profile);
  const run = observedWorker(kafka, pipeline, [topic, spans], BATCH);
  const done = run.committedAll(high);
  const usage = meter();
  stoppers.add(run.worker.stop);
  await run.worker.start();
  const joinedAt = await run.joined;
  const ticker = setInterval(() => progress(`  worker: ${fmtInt(profile.messages)} records stored in ${profile.batches} batches`), 5_000);
  // Bounded: past the deadline the rate is what was committed by then, and the run is marked.
  const doneAt = await Promise.race([done, sleep(WORKER_DEADLINE_MS).then(() => undefined)]);
  clearInterval(ticker);
  const timedOut = doneAt === undefined;
  const endAt = doneAt ?? performance.now();
  const committed = timedOut ? run.committedCount() : count;
  const cpu = usage();
  if (timedOut) progress(`  worker: deadline of ${WORKER_DEADLINE_MS / 1000} s reached with ${fmtInt(committed)} of ${fmtInt(count)} committed; stopping it (it stores what it holds first)`);
  stoppers.delete(run.worker.stop);
  await run.worker.stop();
  const seconds = (endAt - joinedAt) / 1000;
  // Steady state: what was committed after the first batch, from the end of its store to the last commit.
  const steady = (committed - profile.firstBatchSize) / ((endAt - profile.firstStoredAt) / 1000);
  const startup = { toFirstDecodeMs: profile.firstDecodeAt - joinedAt, toFirstStoredMs: profile.firstStoredAt - joinedAt };
  const stored = await scalar(clickhouse, 'SELECT count() AS n FROM audit_events_v1 WHERE tenant = {tenant:String}', { tenant });
  const calls = await scalar(clickhouse, 'SELECT sum(calls) AS n FROM tool_calls_1m_v1 WHERE tenant = {tenant:String}', { tenant });
  return { rate: committed / seconds, seconds, steady, startup, timedOut, committed, profile, cpu, stored, calls, deadLetters: deadLettered.count };
}

// ---------------------------------------------------------------------------
// 2. Raw limits

/** kafkajs with the worker's consumer settings, an eachBatch that only resolves offsets. */
async function rawConsume(kafka: Kafka, topic: string, count: number) {
  const consumer = kafka.consumer({
    groupId: unique('bench-raw'),
    sessionTimeout: 30_000,
    heartbeatInterval: 3_000,
    rebalanceTimeout: 60_000,
    ...FETCH_LIMITS,
    maxWaitTimeInMs: Math.min(BATCH.maxWaitMs, 500),
  });
  let joinedAt = 0;
  let doneAt = 0;
  let seen = 0;
  consumer.on(consumer.events.GROUP_JOIN, () => (joinedAt = performance.now()));
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const usage = meter();
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
        seen += batch.messages.length;
        resolveOffset(batch.lastOffset());
        if (seen >= count && doneAt === 0) doneAt = performance.now();
        await heartbeat();
      },
    });
    await until(`kafkajs to consume ${count} messages`, 120_000, () => doneAt > 0, 5);
    return { rate: count / ((doneAt - joinedAt) / 1000), seconds: (doneAt - joinedAt) / 1000, cpu: usage() };
  } finally {
    await consumer.disconnect();
  }
}

/**
 * audit_events_v1, every materialized view fed from it or from a table such a view writes to (the
 * rollups of rollups), and those tables: what one insert into audit_events_v1 makes the engine do.
 * Views in the order they are found, each followed (in `tables`) by the table it writes to.
 */
async function auditTables(clickhouse: ClickHouseClient): Promise<{ tables: string[]; views: string[] }> {
  const catalog = await (
    await clickhouse.query({
      query: 'SELECT name, dependencies_table AS views, create_table_query AS ddl FROM system.tables WHERE database = currentDatabase()',
      format: 'JSONEachRow',
    })
  ).json<{ name: string; views: string[]; ddl: string }>();
  const byName = new Map(catalog.map((t) => [t.name, t]));
  const tables = ['audit_events_v1'];
  const views: string[] = [];
  for (let i = 0; i < tables.length; i++) {
    for (const view of byName.get(tables[i]!)?.views ?? []) {
      if (views.includes(view)) continue;
      views.push(view);
      // CREATE MATERIALIZED VIEW db.view TO db.target (columns) AS SELECT ...
      const ddl = byName.get(view)?.ddl ?? '';
      const target = /^CREATE MATERIALIZED VIEW \S+ TO (?:[^\s.]+\.)?([^\s(]+)/.exec(ddl)?.[1];
      if (!target) throw new Error(`materialized view ${view} names no table it writes to: ${ddl.slice(0, 200)}`);
      if (!tables.includes(target)) tables.push(target);
    }
  }
  return { tables, views };
}

/**
 * A fresh copy of audit_events_v1 and of every table its views feed (auditTables), with the views
 * attached: exact DDL, so one insert does what the writer's inserts make the engine do.
 */
async function copyOfAuditTables(clickhouse: ClickHouseClient, suffix: string): Promise<{ events: string; rollup: string; views: number }> {
  const { tables, views } = await auditTables(clickhouse);
  const names = [...tables, ...views];
  const rename = (sql: string) => sql.replace(new RegExp(`\\b(${names.join('|')})\\b`, 'g'), `$1_${suffix}`);
  for (const name of names) {
    const [row] = await (await clickhouse.query({ query: `SHOW CREATE TABLE ${name}`, format: 'JSONEachRow' })).json<{ statement: string }>();
    await clickhouse.command({ query: rename(row!.statement) });
  }
  return { events: `audit_events_v1_${suffix}`, rollup: `tool_calls_1m_v1_${suffix}`, views: views.length };
}

interface Measured {
  rate: number;
  seconds: number;
  cpu: string;
}

/** Runs of each raw limit; the limit is the median run's rate. */
const RAW_RUNS = 3;

function medianRun<T extends Measured>(runs: T[]): T {
  return [...runs].sort((a, b) => a.rate - b.rate)[Math.floor(runs.length / 2)]!;
}

/** One insert of every row, as the writer sends its inserts (JSONCompactEachRow, with a deduplication token); encoding included. */
async function rawInsert(clickhouse: ClickHouseClient, auditRows: AuditRow[], suffix: string) {
  const { events, rollup, views } = await copyOfAuditTables(clickhouse, suffix);
  const token = createHash('sha256').update(auditRows.map((r) => r.event_id).join('\n')).digest('hex');
  const usage = meter();
  const started = performance.now();
  await insertAuditBody(clickhouse, events, auditInsertBody(auditRows), token);
  const seconds = (performance.now() - started) / 1000;
  const cpu = usage();
  const stored = await scalar(clickhouse, `SELECT count() AS n FROM ${events}`);
  const calls = await scalar(clickhouse, `SELECT sum(calls) AS n FROM ${rollup}`);
  if (stored !== auditRows.length || calls !== auditRows.length) throw new Error(`raw insert stored ${stored} rows, ${calls} calls in the rollup`);
  return { rate: auditRows.length / seconds, seconds, cpu, views };
}

/** Waits (bounded) until ClickHouse has no merges running, so one phase's merges don't bill the next. */
async function settle(clickhouse: ClickHouseClient): Promise<void> {
  const started = performance.now();
  await until('merges to finish', 15_000, async () => (await scalar(clickhouse, 'SELECT count() AS n FROM system.merges')) === 0, 200).catch(() => {});
  progress(`  merges settled in ${ms(performance.now() - started)}`);
}

// ---------------------------------------------------------------------------
// 3. Freshness

async function freshness(kafka: Kafka, clickhouse: ClickHouseClient, brokers: string[], spoolDir: string) {
  const tenant = 'bench-freshness';
  const topics = { audit: unique('bench-fresh'), spans: unique('bench-fresh-spans') };
  await createTopics(kafka, [topics.audit], PARTITIONS);
  await createTopics(kafka, [topics.spans], 1);
  const profile = newProfile();
  const { pipeline } = instrumentedPipeline(clickhouse, topics, profile);
  const run = observedWorker(kafka, pipeline, [topics.audit, topics.spans], { maxRows: BATCH.maxRows, maxWaitMs: FRESH_MAX_WAIT_MS });
  stoppers.add(run.worker.stop);
  await run.worker.start();
  await run.joined;
  let collector: Collector | undefined;
  try {
    collector = createCollector({ kafka: { brokers, clientId: 'bench-fresh' }, topics, tenant, spoolDir, queueMaxRecords: 50_000, logger });
    stoppers.add(collector.shutdown);
    const record = (traceId: string, i: number) => ({
      trace_id: traceId,
      timestamp: new Date(),
      tool: ['users.Users.Get', 'billing.Billing.Charge', 'search.Docs.Query'][i % 3]!,
      account_id: `acct-${i % 97}`,
      scopes_required: ['users:read'],
      allowed: i % 10 !== 0,
      ...(i % 10 === 0 ? { denied_reason: 'missing scope' } : { duration: 1_000_000 + i }),
      agent: `agent-${i % 16}`,
    });
    const count = (prefix: string) =>
      scalar(clickhouse, 'SELECT count() AS n FROM audit_events_v1 WHERE tenant = {tenant:String} AND startsWith(trace_id, {prefix:String})', { tenant, prefix });

    // Warm-up: the collector's worker thread and producer, the worker's first batches.
    for (let i = 0; i < 500; i++) collector.auditFunc(record(`warm-${i}`, i));
    await until('warm-up records to be visible', 60_000, async () => (await count('warm-')) === 500, 100);

    const total = Math.round(RATE * SECONDS);
    const sentAt = new Float64Array(total);
    const seenAt = new Float64Array(total);
    let seen = 0;
    let since = '1970-01-01 00:00:00.000';
    let polls = 0;
    let polling = true;
    const poll = async () => {
      const [r] = await (
        await clickhouse.query({
          query: `SELECT groupArray(toUInt32(substring(trace_id, 7))) AS seqs, toString(max(ingested_at)) AS hi
                  FROM audit_events_v1
                  WHERE tenant = {tenant:String} AND startsWith(trace_id, 'fresh-') AND ingested_at >= {since:DateTime64(3, 'UTC')}`,
          query_params: { tenant, since },
          format: 'JSONEachRow',
        })
      ).json<{ seqs: number[]; hi: string }>();
      const at = performance.now();
      polls++;
      if (!r || r.seqs.length === 0) return;
      since = r.hi;
      for (const s of r.seqs) {
        if (seenAt[s] === 0) {
          seenAt[s] = at;
          seen++;
        }
      }
    };
    const poller = (async () => {
      while (polling) {
        const started = performance.now();
        await poll();
        await sleep(Math.max(0, POLL_MS - (performance.now() - started)));
      }
    })();

    const usage = meter();
    const t0 = performance.now();
    let next = 0;
    while (next < total) {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE));
      for (; next < due; next++) {
        const r = record(`fresh-${next}`, next);
        sentAt[next] = performance.now();
        collector.auditFunc(r);
      }
      await sleep(10);
    }
    const producedFor = (performance.now() - t0) / 1000;
    await until('every fresh record to be visible', 30_000, () => seen === total, 50).catch((error: Error) => notes.push(error.message));
    polling = false;
    await poller;
    const cpu = usage();

    const latencies: number[] = [];
    for (let s = 0; s < total; s++) if (seenAt[s]! > 0) latencies.push(seenAt[s]! - sentAt[s]!);
    latencies.sort((a, b) => a - b);
    const stats = collector.stats();
    return { total, seen, producedFor, latencies, profile, cpu, polls, stats };
  } finally {
    if (collector) stoppers.delete(collector.shutdown);
    stoppers.delete(run.worker.stop);
    await collector?.shutdown();
    await run.worker.stop();
  }
}

// ---------------------------------------------------------------------------
// In-process CPU cost of the pipeline's JavaScript steps, on the same messages

function cpuCosts(messages: { key: string; value: Buffer }[], topic: string) {
  const inbound: InboundMessage[] = messages.map((m, i) => ({ topic, partition: 0, offset: String(i), key: Buffer.from(m.key), value: m.value, headers: {} }));
  const take = inbound.slice(0, Math.min(100_000, inbound.length));
  const perRecord = (step: () => void) => {
    step(); // warm
    const started = performance.now();
    step();
    return ((performance.now() - started) * 1000) / take.length;
  };
  let sink = 0;
  const parse = perRecord(() => {
    for (const m of take) sink += (JSON.parse(m.value.toString('utf8')) as { v: number }).v;
  });
  const validate = perRecord(() => {
    for (const m of take) sink += normalizeAuditRecord(JSON.parse(m.value.toString('utf8'))).ok ? 1 : 0;
  });
  let decodedRows: AuditRow[] = [];
  const decode = perRecord(() => {
    decodedRows = [];
    for (let i = 0; i < take.length; i += BATCH.maxRows) {
      for (const a of decodeBatch(take.slice(i, i + BATCH.maxRows), { audit: topic, spans: '-' }).audit) decodedRows.push(a.row);
    }
  });
  // The insert body the writer builds from the rows before it reaches the engine.
  const serialize = perRecord(() => {
    sink += auditInsertBody(decodedRows).length;
  });
  if (sink < 0) console.log(sink);
  return { parse, validate, decode, serialize, n: take.length };
}

// ---------------------------------------------------------------------------

function profileLine(name: string, p: Profile, wallMs: number): string {
  const per = (x: number) => (p.batches === 0 ? 0 : x / p.batches);
  const rowsPerBatch = per(p.messages);
  return (
    `profile, ${name}: ${p.batches} batches of ${fmtInt(rowsPerBatch)} rows on average (${fmtInt(p.smallestBatch)} to ${fmtInt(p.largestBatch)}); per batch: ` +
    `decode+validate over ${per(p.decodeMs).toFixed(1)} ms (in slices, between the store's steps), ` +
    `dedup look-ups ${per(p.reportsMs).toFixed(1)} ms (event_id) + ${per(p.callsMs).toFixed(1)} ms (calls by trace_id, folded reports), ` +
    `insert ${per(p.insertMs).toFixed(1)} ms (each its own time on the engine, from its call or the end of the statement before it); ` +
    `a statement of the writer running ${pct(p.engineBusyMs / wallMs)} of the wall time; ` +
    `pipeline.store total ${per(p.processMs).toFixed(1)} ms (max ${p.processMaxMs.toFixed(0)}), ` +
    `${pct(p.processMs / wallMs)} of the wall time (decoding the next batch overlaps it; the rest: Kafka fetch + decode in kafkajs, batching wait)`
  );
}

async function main(): Promise<void> {
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  progress(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${fmtInt(N)} records, load average before start ${load}`);
  notes.push(`machine: ${os.cpus().length} CPUs, load average before the bench started: ${load} (other work on the machine skews every number)`);
  const flags = process.execArgv.filter((a) => a.startsWith('--max-semi-space-size'));
  notes.push(
    flags.length > 0
      ? `node flags: ${flags.join(' ')}, as \`npm run ingest\` runs the worker`
      : 'node flags: none; `npm run ingest` runs the worker with --max-semi-space-size=64 (npm run bench passes it here too)',
  );
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ingest-bench-'));
  journalDir = path.join(dir, 'insert-journal');
  let brokers = process.env.KAFKA_BROKERS?.split(',');
  let stopBroker: (() => Promise<void>) | undefined;
  let clickhouse: ClickHouseClient | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      for (const stop of stoppers) await Promise.race([stop().catch(() => {}), sleep(15_000)]);
      await clickhouse?.close().catch(() => {});
      await stopBroker?.().catch((error) => console.error('could not stop the broker:', error));
      rmSync(dir, { recursive: true, force: true });
    })());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void cleanup().finally(() => process.exit(130)));
  setTimeout(() => {
    console.error(`bench still running after ${BENCH_DEADLINE_MS / 1000} s: giving up`);
    void cleanup().finally(() => process.exit(1));
  }, BENCH_DEADLINE_MS).unref();

  try {
    if (!brokers) {
      progress('starting a Kafka broker (scripts/kafka.mjs)...');
      const script = await import('../scripts/kafka.mjs');
      const handle = await script.startBroker();
      stopBroker = () => script.stopBroker(handle);
      brokers = [handle.brokers];
      brokerPid = handle.pid;
    }
    clickhouse = await openClickHouse({ database: 'ingest_bench', dataDir: dir });
    await migrate(clickhouse, { retentionDays: 3650 });
    const kafka = createKafka({ brokers, clientId: 'ingest-bench', logger });

    progress(`encoding ${fmtInt(N + WARMUP)} audit events...`);
    // Fixed tenants (the database is fresh), so the partitioning is the same in every run; 64 agents
    // rather than the helper's 5, so the tenant/agent keys spread over all the partitions.
    const tenant = 'bench-throughput';
    const warmTenant = 'bench-warm-up';
    const events = (count: number, t: string) => Array.from({ length: count }, (_, i) => ({ ...auditEvent(i, t), agent: `agent-${i % 64}` }));
    const messages = auditMessages(events(N, tenant));
    const warmMessages = auditMessages(events(WARMUP, warmTenant));
    const toRow = (m: { value: Buffer }) => {
      const r = normalizeAuditRecord(JSON.parse(m.value.toString('utf8')));
      if (!r.ok) throw new Error('bench event does not validate');
      return toAuditRow(r.value);
    };
    const topic = unique('bench-audit');
    const warmTopic = unique('bench-warm');
    await createTopics(kafka, [topic, warmTopic], PARTITIONS);
    progress(`producing to ${topic} (${PARTITIONS} partitions, idempotent, gzip, acks -1)...`);
    await produce(kafka, warmTopic, warmMessages);
    const produceRate = await produce(kafka, topic, messages);
    const high = await highWatermarks(kafka, topic);
    notes.push(`messages per partition: ${[...high.values()].map((h) => fmtInt(Number(h))).join(', ')}`);

    progress(`warm-up on ${fmtInt(WARMUP)} records: kafkajs, ClickHouse insert, worker...`);
    await rawConsume(kafka, warmTopic, WARMUP);
    await rawInsert(clickhouse, warmMessages.map(toRow), 'warm');
    await ingestThroughput(kafka, clickhouse, warmTopic, WARMUP, warmTenant);
    await settle(clickhouse);

    // Each raw limit is measured RAW_RUNS times and its median run taken: one sample of the insert
    // spread from 68k to 118k rec/s over a day's runs, more than the ingest's own spread.
    progress(`raw limit (a): kafkajs consume only, ${RAW_RUNS} runs...`);
    const consumeRuns: Measured[] = [];
    for (let run = 0; run < RAW_RUNS; run++) {
      consumeRuns.push(await rawConsume(kafka, topic, N));
      progress(`  ${fmtRate(consumeRuns.at(-1)!.rate)}`);
    }
    progress(`raw limit (b): one ClickHouse insert, ${RAW_RUNS} runs...`);
    const auditRows = messages.map(toRow);
    const insertRuns: Array<Measured & { views: number }> = [];
    for (let run = 0; run < RAW_RUNS; run++) {
      insertRuns.push(await rawInsert(clickhouse, auditRows, `raw${run}`));
      progress(`  ${fmtRate(insertRuns.at(-1)!.rate)}`);
      await settle(clickhouse);
    }
    const consumed = medianRun(consumeRuns);
    const inserted = medianRun(insertRuns);

    progress('ingest worker...');
    const ingest = await ingestThroughput(kafka, clickhouse, topic, N, tenant);
    progress(`  ${fmtRate(ingest.rate)}`);
    await settle(clickhouse);

    progress(`freshness: ${fmtInt(RATE)} records/s for ${SECONDS} s through the collector...`);
    const fresh = await freshness(kafka, clickhouse, brokers, path.join(dir, 'spool'));

    progress('in-process CPU costs...');
    const costs = cpuCosts(messages, topic);

    // ---- the table
    const limit = Math.min(consumed.rate, inserted.rate);
    const ratio = ingest.rate / limit;
    const limitBy = consumed.rate <= inserted.rate ? 'kafkajs consume' : 'ClickHouse insert';
    const ingestValue = ingest.timedOut
      ? `${fmtRate(ingest.rate)} (only ${fmtInt(ingest.committed)} committed by the ${WORKER_DEADLINE_MS / 1000} s deadline)`
      : `${fmtRate(ingest.rate)} (${ingest.seconds.toFixed(2)} s)`;
    rows.push([`ingest worker, Kafka → ClickHouse (${fmtInt(N)} records, ${PARTITIONS} partitions)`, ingestValue, '≥ 50,000 rec/s', pass(!ingest.timedOut && ingest.rate >= 50_000)]);
    // BATCH_MAX_ROWS is documented as "rows per ClickHouse insert, at most".
    rows.push(['  largest batch given to the pipeline', fmtInt(ingest.profile.largestBatch), `≤ ${fmtInt(BATCH.maxRows)} (maxRows)`, pass(ingest.profile.largestBatch <= BATCH.maxRows)]);
    rows.push(['  stored: raw rows / rollup calls / dead letters', `${fmtInt(ingest.stored)} / ${fmtInt(ingest.calls)} / ${ingest.deadLetters}`, `${fmtInt(N)} / ${fmtInt(N)} / 0`, pass(ingest.stored === N && ingest.calls === N && ingest.deadLetters === 0)]);
    rows.push([
      '  steady state: from the end of the first batch\'s store to the last commit',
      `${fmtRate(ingest.steady)} (group join → first batch taken ${ms(ingest.startup.toFirstDecodeMs)}, → first batch stored ${ms(ingest.startup.toFirstStoredMs)})`,
      '',
      '',
    ]);
    const runs = (all: Measured[]) => all.map((r) => fmtInt(r.rate)).join(', ');
    rows.push([`raw (a): kafkajs consume only, same messages and settings (median of ${RAW_RUNS})`, `${fmtRate(consumed.rate)} (${consumed.seconds.toFixed(2)} s; runs: ${runs(consumeRuns)})`, '', '']);
    rows.push([`raw (b): ClickHouse, one insert of the same rows (+ its ${inserted.views} views) (median of ${RAW_RUNS})`, `${fmtRate(inserted.rate)} (${inserted.seconds.toFixed(2)} s; runs: ${runs(insertRuns)})`, '', '']);
    rows.push(['raw limit = slower of (a), (b)', `${fmtRate(limit)} (${limitBy})`, '', '']);
    rows.push(['ingest / raw limit', pct(ratio), '≥ 50 %', pass(ratio >= 0.5)]);
    const q = (x: number) => (fresh.latencies.length ? quantile(fresh.latencies, x) : Number.NaN);
    const freshName = `freshness, auditFunc → visible in a query (${fmtInt(fresh.total)} records)`;
    rows.push([`${freshName}: p50`, ms(q(0.5)), '', '']);
    rows.push(['  freshness p99', ms(q(0.99)), '≤ 2000 ms', pass(q(0.99) <= 2000 && fresh.seen === fresh.total)]);
    rows.push(['  freshness max', ms(fresh.latencies.at(-1) ?? Number.NaN), '', '']);
    rows.push(['  records visible / produced', `${fmtInt(fresh.seen)} / ${fmtInt(fresh.total)} at ${fmtRate(fresh.total / fresh.producedFor)}`, 'all', pass(fresh.seen === fresh.total)]);
    printTable(rows);
    for (const n of notes) console.log(n);

    console.log(`\nsettings: worker batch maxRows ${fmtInt(BATCH.maxRows)} / maxWaitMs ${BATCH.maxWaitMs} (throughput), ${FRESH_MAX_WAIT_MS} (freshness); consumer fetch wait ${Math.min(FRESH_MAX_WAIT_MS, 500)} ms, ${FETCH_LIMITS.maxBytesPerPartition / 1024} KiB/partition, ${FETCH_LIMITS.maxBytes / 1024 / 1024} MiB/fetch (worker and raw consumer alike).`);
    console.log(`freshness: collector.auditFunc on a 10 ms timer (its own Kafka producer in its worker thread, batch 1,000 records / 200 ms, gzip, acks -1) → ${PARTITIONS} partitions → worker; poll every ${POLL_MS} ms (${fmtInt(fresh.polls)} polls), a record counts as visible at the end of the first poll that returned it; collector sent ${fmtInt(fresh.stats.sent)}, spilled ${fresh.stats.spilled}, dropped ${fresh.stats.dropped}.`);
    console.log(`pre-produce: ${fmtRate(produceRate)} (publisher, batches of 5,000). throughput from group join to the commit covering every partition.`);
    console.log(`cpu (cores = CPU seconds per second): worker: ${ingest.cpu}; kafkajs only: ${consumed.cpu}; one insert: ${inserted.cpu}; freshness: ${fresh.cpu}.`);
    console.log(profileLine('throughput', ingest.profile, ingest.seconds * 1000));
    console.log(profileLine('freshness', fresh.profile, fresh.producedFor * 1000));
    console.log(
      `in process, ${fmtInt(costs.n)} of the same messages: JSON.parse ${costs.parse.toFixed(1)} µs/rec; + normalizeAuditRecord (zod) ${costs.validate.toFixed(1)} µs/rec; ` +
        `decodeBatch (parse + fast-path validation + toAuditRow) ${costs.decode.toFixed(1)} µs/rec; JSON.stringify of rows for the insert body ${costs.serialize.toFixed(1)} µs/rec.`,
    );
  } finally {
    await cleanup();
  }
}

await main();
process.exit(0);
