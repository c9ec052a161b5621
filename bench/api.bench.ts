/**
 * API benchmark (a script, not a test): the read API over HTTP against issue 11's targets, each query
 * beside the same answer computed on the raw table (plain SQL over audit_events_v1) in the same run.
 *
 *   npm run bench api
 *   BENCH_EVENTS=1000000 npm run bench api                    # a smaller data set (its own cache)
 *   BENCH_DATA_FROM=/work/benchdata/10m npm run bench api      # build the cache by copying this directory
 *   BENCH_DATA_DIR=/tmp/my-copy npm run bench api             # use (and migrate) this directory as it is
 *   BENCH_REQUESTS=200 BENCH_CLIENTS=4 BENCH_BUDGET_S=480 npm run bench api
 *   BENCH_CONNECTIONS=1 npm run bench api                     # the API's engine connections (default: its read concurrency and background lane)
 *   BENCH_ONLY=trace,auditLog npm run bench api                # only these operations (by name or GraphQL field)
 *   BENCH_STATEMENTS=1 npm run bench api                      # also each operation's engine statements, timed by kind
 *   BENCH_SETTLE=0 npm run bench api                          # time requests while the warm-up's background fills still run
 *
 * Data: bench/data/generate-events.ts's data set (BENCH_EVENTS, default 10,000,000 events over 30 days),
 * cached under .cache/bench/ keyed by the generator's version, N and the migrations in sql/; built in a
 * child process (or copied from BENCH_DATA_FROM) when missing. Ranges end where the data set ends, but for the
 * "to now" rows (the last 7 days up to the moment of each request).
 *
 * The API: createApi with a key store of one viewer key of the data set's biggest tenant (acme, 80% of
 * the rows), on a node:http server on loopback, in this process with the embedded engine (chDB allows one
 * process per data directory, and the raw statements need the same engine), with the Node flags
 * `npm start` gives the API (scripts/bench.mjs). CLIENTS concurrent clients, in a process of their own
 * (http-clients.ts), send REQUESTS requests per operation (each with its own id or page where the
 * operation takes one), after one warm-up request; an operation stops sending after OP_BUDGET_MS, and operations not started
 * BENCH_BUDGET_S (480) after the first are reported as skipped. The raw statements run the same way on
 * the engine directly, capped at RAW_BUDGET_MS. RSS is this process's: the API and the embedded engine.
 * After the operations, the floors: the API answering `me` (no statement), and FLOOR's statements alone.
 *
 * Operations are the table OPERATIONS below; BENCH_ONLY (comma-separated) keeps those whose name or GraphQL field
 * it lists, e.g. `BENCH_ONLY='trace,auditLog first page (connection)'`; a name that matches none is an error. Each is checked against the API's schema (introspection):
 * a field or argument that does not exist yet prints `n/a (not in this schema)`; the selection is every
 * field of the answer's type (no arguments needed, 3 levels deep), so it follows the schema as it grows.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  buildClientSchema,
  getIntrospectionQuery,
  getNamedType,
  isEnumType,
  isInterfaceType,
  isLeafType,
  isNonNullType,
  isObjectType,
  isUnionType,
  parse,
  validate,
  type GraphQLField,
  type GraphQLOutputType,
  type GraphQLSchema,
  type IntrospectionQuery,
} from 'graphql';
import { pino } from 'pino';
import { BACKGROUND_READS, createApi, DEFAULT_READ_LIMITS } from '../api/app.ts';
import type { KeyStore } from '../api/plugins/use-auth.ts';
import { CONDITIONS, pageSql, RECENT, recentWindowStart } from '../api/queries/audit-log.ts';
import { CALL_LIMIT, callsAndSpansSql, callsSql, SPAN_LIMIT, spansSql } from '../api/queries/trace.ts';
import { openClickHouse, type ClickHouseClient } from '../core/clickhouse.ts';
import { loadConfig } from '../core/config.ts';
import { migrate } from '../core/migrate.ts';
import { formatClickHouse } from '../model/timestamp.ts';
import { cachedDataSet, readDataset } from './data/dataset-cache.ts';
import { DEFAULT_EVENTS } from './data/generate-events.ts';
import { ClientProcess, drive, GraphQLClient, type Timing } from './http-clients.ts';
import { timeStatements } from './statement-timings.ts';

const EVENTS = Number(process.env.BENCH_EVENTS ?? DEFAULT_EVENTS);
// p99 is the value below which 99% of the requests answered: of 40 requests that is the slowest one, so
// one pause of the machine decided it; of 200, the second slowest.
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 200);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? DEFAULT_READ_LIMITS.concurrency + BACKGROUND_READS);
/** The raw limit's and the floors' connections: the API's request reads at once. */
const DIRECT_CONNECTIONS = DEFAULT_READ_LIMITS.concurrency;
/** Print each operation's statements (count, p50 / p99 / total ms per kind) after its API timings. */
const STATEMENTS = process.env.BENCH_STATEMENTS === '1';
/**
 * Warm means the warm-up request's background work (closed-bucket fills, started after its answer) has
 * ended before the timed requests start; BENCH_SETTLE=0 times them while it runs. The warm-up request's
 * own time (a first look: no cache entry) is printed either way.
 */
const SETTLE = process.env.BENCH_SETTLE !== '0';
/** Wall-time cap of one operation's timed requests (API), and of its raw statements. */
const OP_BUDGET_MS = 10_000;
const RAW_BUDGET_MS = 6_000;
/** Operations not started within this long of the first are reported as skipped (the bench stays bounded). */
const TOTAL_BUDGET_MS = Number(process.env.BENCH_BUDGET_S ?? 480) * 1000;
/** Walking the audit log to its 50th page (to get that page's cursor) gives up after this. */
const WALK_BUDGET_MS = 30_000;
const PAGE_SIZE = 50;
const TENANT = 'acme';
const DAY_MS = 86_400_000;

const progress = (message: string) => console.error(`[${(performance.now() / 1000).toFixed(1)} s] ${message}`);

// ---------------------------------------------------------------------------
// What is measured

/** An id-bearing call of the data set (one with a 3-span trace in spans_v1). */
interface Sample {
  eventId: string;
  traceId: string;
  otelTraceId: string;
  sessionId: string;
}

export interface Context {
  /** End of the data set (exclusive), epoch ms. */
  end: number;
  samples: Sample[];
  /** The cursor that asks for page 50 of the 30-day audit log; undefined when it could not be had. */
  page50After?: string;
  page50Problem?: string;
}

/** A GraphQL enum value in an argument list (written bare). */
class Enum {
  constructor(readonly value: string) {}
}
/** An input object argument, e.g. the audit log's `filter: { from, to }`. */
class Input {
  constructor(readonly fields: Record<string, Arg>) {}
}

type Arg = string | number | Enum | Input;

interface Raw {
  /** Runs the plain-SQL equivalent of request i. */
  run(clickhouse: ClickHouseClient, ctx: Context, i: number): Promise<unknown>;
}

interface Operation {
  name: string;
  field: string;
  args(ctx: Context, i: number): Record<string, Arg> | string;
  /** p99 target, ms; undefined when issue 11 sets none. */
  targetMs?: number;
  raw: Raw;
}

const iso = (ms: number) => new Date(ms).toISOString();
const nanos = (ms: number) => (BigInt(ms) * 1_000_000n).toString();
const range = (days: number) => (ctx: Context) => ({ from: iso(ctx.end - days * DAY_MS), to: iso(ctx.end) });
/** The last `days` days up to this moment: a range still open, as a dashboard asks by default. */
const openRange = (days: number) => () => {
  const now = Date.now();
  return { from: iso(now - days * DAY_MS), to: iso(now) };
};
const sample = (ctx: Context, i: number) => ctx.samples[i % ctx.samples.length]!;

const IN_RANGE = `tenant = {tenant:String} AND timestamp >= fromUnixTimestamp64Nano({from_ns:Int64}) AND timestamp < fromUnixTimestamp64Nano({to_ns:Int64})`;

/** A raw statement over a range of days ending at the data set's end (or, `open`, now). */
function rawRange(days: number, sql: string, extra: Record<string, unknown> = {}, open = false): Raw {
  return {
    run: (clickhouse, ctx) => {
      const end = open ? Date.now() : ctx.end;
      return rows(clickhouse, sql, { tenant: TENANT, from_ns: nanos(end - days * DAY_MS), to_ns: nanos(end), ...extra });
    },
  };
}

const RAW_SQL = {
  overview: `SELECT count() AS calls, countIf(is_error) AS errors, countIf(NOT allowed) AS denials, uniqExact(agent) AS agents,
    quantileIf(0.99)(duration_ns, allowed) AS p99, sum(ifNull(cost_usd, 0)) AS cost FROM audit_events_v1 WHERE ${IN_RANGE}`,
  agents: `SELECT agent, count() AS calls, calls / sum(calls) OVER () AS share, countIf(is_error) AS errors, countIf(NOT allowed) AS denials,
    avgIf(duration_ns, allowed) AS avg, quantilesIf(0.5, 0.95, 0.99)(duration_ns, allowed) AS q, uniqExact(tool) AS tools,
    uniqExact(account_id) AS accounts, sum(ifNull(cost_usd, 0)) AS cost, min(timestamp) AS first, max(timestamp) AS last
    FROM audit_events_v1 WHERE ${IN_RANGE} GROUP BY agent ORDER BY calls DESC`,
  topServices: `SELECT service, count() AS calls, calls / sum(calls) OVER () AS share, countIf(is_error) AS errors, sum(ifNull(cost_usd, 0)) AS cost
    FROM audit_events_v1 WHERE ${IN_RANGE} GROUP BY service ORDER BY calls DESC LIMIT 10`,
  slowestTools: (orderBy: string) => `SELECT tool, any(service) AS service, count() AS calls, avgIf(duration_ns, allowed) AS avg,
    quantilesIf(0.5, 0.95, 0.99)(duration_ns, allowed) AS q, max(duration_ns) AS max, countIf(is_error) / calls AS error_rate
    FROM audit_events_v1 WHERE ${IN_RANGE} GROUP BY tool ORDER BY ${orderBy} DESC LIMIT 10`,
  /** Calls per bucket per service, the top 5 services by calls and the rest as `other`. */
  timeseries: `SELECT toStartOfInterval(timestamp, toIntervalSecond({step:UInt32})) AS bucket,
    if(service IN (SELECT service FROM audit_events_v1 WHERE ${IN_RANGE} GROUP BY service ORDER BY count() DESC LIMIT 5), service, 'other') AS grp,
    count() AS calls FROM audit_events_v1 WHERE ${IN_RANGE} GROUP BY bucket, grp ORDER BY bucket, grp`,
  denials: `SELECT denied_reason, agent, tool, scope, toStartOfHour(timestamp) AS hour, count() AS denials
    FROM audit_events_v1 LEFT ARRAY JOIN scopes_required AS scope WHERE ${IN_RANGE} AND NOT allowed
    GROUP BY GROUPING SETS ((denied_reason), (agent), (tool), (scope), (hour))`,
  page: `SELECT * FROM audit_events_v1 WHERE ${IN_RANGE} ORDER BY timestamp DESC, event_id DESC LIMIT {limit:UInt32} OFFSET {offset:UInt32}`,
};

/** The trace look-ups on the raw tables: the call(s) by one id, then their spans. */
function rawTrace(by: 'trace_id' | 'otel_trace_id'): Raw {
  return {
    async run(clickhouse, ctx, i) {
      const s = sample(ctx, i);
      const id = by === 'trace_id' ? s.traceId : s.otelTraceId;
      const calls = await rows(clickhouse, `SELECT * FROM audit_events_v1 WHERE tenant = {tenant:String} AND ${by} = {id:String}`, { tenant: TENANT, id });
      const otel = [...new Set(calls.map((c) => String(c.otel_trace_id)).filter(Boolean))];
      return rows(clickhouse, 'SELECT * FROM spans_v1 WHERE tenant = {tenant:String} AND trace_id IN {ids:Array(String)} ORDER BY start_time', { tenant: TENANT, ids: otel });
    },
  };
}

/** Aggregates over the last `days` days of the data set: every one has the same target. */
function aggregates(days: number): Operation[] {
  const targetMs = days <= 7 ? 100 : 250;
  const r = range(days);
  const step = days <= 7 ? 3600 : 7200; // ≤ 500 points, as the API would choose
  return [
    { name: `overview ${days} d`, field: 'overview', args: r, targetMs, raw: rawRange(days, RAW_SQL.overview) },
    { name: `agents ${days} d`, field: 'agents', args: r, targetMs, raw: rawRange(days, RAW_SQL.agents) },
    { name: `agentActivity ${days} d`, field: 'agentActivity', args: r, targetMs, raw: rawRange(days, RAW_SQL.agents) },
    { name: `topServices ${days} d`, field: 'topServices', args: (c) => ({ ...r(c), limit: 10 }), targetMs, raw: rawRange(days, RAW_SQL.topServices) },
    { name: `slowestTools ${days} d`, field: 'slowestTools', args: (c) => ({ ...r(c), limit: 10 }), targetMs, raw: rawRange(days, RAW_SQL.slowestTools('q[3]')) },
    { name: `slowestTools(orderBy: AVG) ${days} d`, field: 'slowestTools', args: (c) => ({ ...r(c), limit: 10, orderBy: new Enum('AVG') }), targetMs, raw: rawRange(days, RAW_SQL.slowestTools('avg')) },
    {
      name: `timeseries(CALLS by SERVICE) ${days} d`,
      field: 'timeseries',
      args: (c) => ({ ...r(c), metric: new Enum('CALLS'), groupBy: new Enum('SERVICE'), top: 5 }),
      targetMs,
      raw: rawRange(days, RAW_SQL.timeseries, { step }),
    },
    { name: `denials ${days} d`, field: 'denials', args: r, targetMs, raw: rawRange(days, RAW_SQL.denials) },
  ];
}

/**
 * The dashboard's first questions over the last 7 days up to now, a range still open on every request:
 * its end is read raw (the calls of the last minute are still arriving) and its answer is not kept.
 */
function openAggregates(): Operation[] {
  const r = openRange(7);
  const targetMs = 100;
  return [
    { name: 'overview 7 d to now', field: 'overview', args: r, targetMs, raw: rawRange(7, RAW_SQL.overview, {}, true) },
    { name: 'agentActivity 7 d to now', field: 'agentActivity', args: r, targetMs, raw: rawRange(7, RAW_SQL.agents, {}, true) },
    {
      name: 'timeseries(CALLS by SERVICE) 7 d to now',
      field: 'timeseries',
      args: () => ({ ...r(), metric: new Enum('CALLS'), groupBy: new Enum('SERVICE'), top: 5 }),
      targetMs,
      raw: rawRange(7, RAW_SQL.timeseries, { step: 3600 }, true),
    },
  ];
}

/** Everything measured, in the order printed. Issue 11 "What can be asked" names the queries. */
export const OPERATIONS: Operation[] = [
  ...aggregates(7),
  ...aggregates(30),
  ...openAggregates(),
  {
    name: 'auditLog first page (connection)',
    field: 'auditLog',
    args: (c) => ({ filter: new Input(range(30)(c)), first: PAGE_SIZE }),
    targetMs: 50,
    raw: rawRange(30, RAW_SQL.page, { limit: PAGE_SIZE, offset: 0 }),
  },
  {
    name: 'auditLog 50th page (connection)',
    field: 'auditLog',
    args: (c) => {
      if (c.page50After === undefined) return c.page50Problem ?? 'no cursor for page 50';
      return { filter: new Input(range(30)(c)), first: PAGE_SIZE, after: c.page50After };
    },
    targetMs: 50,
    raw: rawRange(30, RAW_SQL.page, { limit: PAGE_SIZE, offset: 49 * PAGE_SIZE }),
  },

  {
    name: 'auditEvent(id)',
    field: 'auditEvent',
    args: (c, i) => ({ id: sample(c, i).eventId }),
    raw: { run: (ch, c, i) => rows(ch, 'SELECT * FROM audit_events_v1 WHERE tenant = {tenant:String} AND event_id = {id:UUID}', { tenant: TENANT, id: sample(c, i).eventId }) },
  },
  { name: 'trace(id) by gateway trace id', field: 'trace', args: (c, i) => ({ id: sample(c, i).traceId }), targetMs: 50, raw: rawTrace('trace_id') },
  { name: 'trace(id) by OpenTelemetry id', field: 'trace', args: (c, i) => ({ id: sample(c, i).otelTraceId }), targetMs: 50, raw: rawTrace('otel_trace_id') },
  {
    name: 'session(id)',
    field: 'session',
    args: (c, i) => ({ id: sample(c, i).sessionId }),
    raw: { run: (ch, c, i) => rows(ch, 'SELECT * FROM audit_events_v1 WHERE tenant = {tenant:String} AND session_id = {id:String} ORDER BY timestamp', { tenant: TENANT, id: sample(c, i).sessionId }) },
  },
];

/** Statements sent straight to the engine, without the API: see FLOOR. */
export interface FloorRow {
  name: string;
  /** Statements one request sends, in turn. */
  statements: number;
  run(clickhouse: ClickHouseClient, ctx: Context, i: number): Promise<unknown>;
}

/**
 * The engine alone: no API, no GraphQL, no HTTP, the same clients sending statements through the API's
 * connections. What a request of that many statements in turn cannot go below on this machine at this
 * concurrency, printed so that the targets can be read against it: trace(id) is the third row (by a
 * gateway trace id) or the fourth (by an OpenTelemetry id) plus the API's own work, and the audit log's
 * first page the fifth. The statements are the product's own (trace.ts, audit-log.ts).
 */
export const FLOOR: FloorRow[] = [
  { name: 'SELECT 1', statements: 1, run: (ch) => rows(ch, 'SELECT 1 SETTINGS max_threads = 1', {}) },
  {
    name: 'a point read: the calls under one id (calls_by_id_v1)',
    statements: 1,
    run: (ch, c, i) => rows(ch, callsSql(false), { tenant: TENANT, ids: [sample(c, i).traceId], limit: CALL_LIMIT }),
  },
  {
    name: 'two point reads in turn: those calls, then their spans (trace_spans_v1)',
    statements: 2,
    async run(ch, c, i) {
      await rows(ch, callsSql(false), { tenant: TENANT, ids: [sample(c, i).traceId], limit: CALL_LIMIT });
      return rows(ch, spansSql(false), { tenant: TENANT, traceIds: [sample(c, i).otelTraceId], limit: SPAN_LIMIT });
    },
  },
  {
    name: 'two point reads in one statement: the calls and spans of one OpenTelemetry id (UNION ALL)',
    statements: 1,
    run: (ch, c, i) =>
      rows(ch, callsAndSpansSql(), { tenant: TENANT, ids: [sample(c, i).otelTraceId], traceIds: [sample(c, i).otelTraceId], callLimit: CALL_LIMIT, spanLimit: SPAN_LIMIT }),
  },
  {
    name: "a page read: the audit log's first page, the newest rows of its range's last hour, markers included (audit_timeline_v1)",
    statements: 1,
    run: (ch, c) => firstPage(ch, c),
  },
];

/**
 * The first read of the audit log's first page over the 30 days (as the operation asks it), as
 * audit-log.ts sends it: one row more than the page, from the hour before the range's end.
 */
function firstPage(clickhouse: ClickHouseClient, ctx: Context): Promise<Record<string, unknown>[]> {
  const at = (ms: number) => formatClickHouse({ epochMs: ms, subMsNanos: 0 });
  const [from, to] = [at(ctx.end - 30 * DAY_MS), at(ctx.end)];
  return rows(clickhouse, pageSql([CONDITIONS.from, CONDITIONS.to, RECENT]), { tenant: TENANT, from, to, windowStart: recentWindowStart(to, from), limit: PAGE_SIZE + 1 });
}

/**
 * The operations `only` (BENCH_ONLY: comma-separated operation names or GraphQL fields) selects, in
 * table order; all of them when it is unset or blank. A name that selects nothing throws, listing the names.
 */
export function selectOperations(only: string | undefined, operations: readonly Operation[] = OPERATIONS): Operation[] {
  const names = (only ?? '').split(',').map((n) => n.trim()).filter(Boolean);
  if (names.length === 0) return [...operations];
  const unknown = names.filter((n) => !operations.some((op) => op.name === n || op.field === n));
  if (unknown.length) {
    throw new Error(`BENCH_ONLY: no operation named ${unknown.map((n) => JSON.stringify(n)).join(', ')}; names: ${operations.map((op) => op.name).join(', ')}; fields: ${[...new Set(operations.map((op) => op.field))].join(', ')}`);
  }
  return operations.filter((op) => names.includes(op.name) || names.includes(op.field));
}

// ---------------------------------------------------------------------------
// Data set

/** The data directory to use: see bench/data/dataset-cache.ts. */
function dataDir(): Promise<string> {
  return cachedDataSet(EVENTS, progress);
}

async function rows(clickhouse: ClickHouseClient, query: string, query_params: Record<string, unknown>): Promise<Record<string, unknown>[]> {
  return (await clickhouse.query({ query, query_params, format: 'JSONEachRow' })).json<Record<string, unknown>>();
}

async function loadSamples(clickhouse: ClickHouseClient): Promise<Sample[]> {
  const found = await rows(
    clickhouse,
    `SELECT toString(event_id) AS eventId, trace_id AS traceId, otel_trace_id AS otelTraceId, session_id AS sessionId
     FROM audit_events_v1
     WHERE tenant = {tenant:String} AND otel_trace_id IN (SELECT trace_id FROM spans_v1 WHERE tenant = {tenant:String})
     ORDER BY sipHash64(event_id) LIMIT 64`,
    { tenant: TENANT },
  );
  if (found.length === 0) throw new Error(`the data set has no call of tenant ${TENANT} with spans: was it built by bench/data/generate-events.ts?`);
  return found as unknown as Sample[];
}

// ---------------------------------------------------------------------------
// GraphQL documents

function argText(args: Record<string, Arg>): string {
  return Object.keys(args).length ? `(${argList(args)})` : '';
}

function argList(args: Record<string, Arg>): string {
  return Object.entries(args)
    .map(([k, v]) => `${k}: ${v instanceof Enum ? v.value : v instanceof Input ? `{ ${argList(v.fields)} }` : JSON.stringify(v)}`)
    .join(', ');
}

/** Every field of `type` that needs no argument, `depth` levels down, skipping types already on the path. */
function selectAll(type: GraphQLOutputType, depth: number, path: Set<string> = new Set()): string {
  const named = getNamedType(type);
  if (isLeafType(named)) return '';
  if (!isObjectType(named) || depth === 0) return isObjectType(named) || isInterfaceType(named) || isUnionType(named) ? '{ __typename }' : '';
  const inner = new Set([...path, named.name]);
  const fields: string[] = [];
  for (const f of Object.values(named.getFields()) as GraphQLField<unknown, unknown>[]) {
    if (f.args.some((a) => isNonNullType(a.type) && a.defaultValue === undefined)) continue;
    const sub = getNamedType(f.type);
    if (isLeafType(sub)) fields.push(f.name);
    else if (isObjectType(sub) && !inner.has(sub.name) && depth > 1) fields.push(`${f.name} ${selectAll(f.type, depth - 1, inner)}`);
  }
  return `{ ${fields.length ? fields.join(' ') : '__typename'} }`;
}

/** The request for operation `op`'s call i, or why this schema cannot take it. */
export function document(schema: GraphQLSchema | undefined, op: Operation, ctx: Context, i: number): { query: string } | { na: string } {
  const args = op.args(ctx, i);
  if (typeof args === 'string') return { na: args };
  if (!schema) return { query: `{ r: ${op.field}${argText(args)} { __typename } }` };
  const field = schema.getQueryType()?.getFields()[op.field];
  if (!field) return { na: 'not in this schema' };
  const missing = Object.keys(args).filter((a) => !field.args.some((x) => x.name === a));
  if (missing.length) return { na: `not in this schema: no argument ${missing.join(', ')}` };
  for (const [name, value] of Object.entries(args)) {
    const t = getNamedType(field.args.find((x) => x.name === name)!.type);
    if (value instanceof Enum && (!isEnumType(t) || !t.getValue(value.value))) return { na: `not in this schema: ${name} has no value ${value.value}` };
  }
  const query = `{ r: ${op.field}${argText(args)} ${selectAll(field.type, 3)} }`;
  const errors = validate(schema, parse(query));
  if (errors.length) return { na: `not in this schema: ${errors[0]!.message}` };
  return { query };
}

/**
 * Operation `op`'s requests: call 0's document built and checked by `document`, then each call's with
 * its own arguments and that selection. Built and validated per call, the selection took the thread
 * that also serves the API (the clients run in its process) and counted as the API's CPU.
 */
export function requests(schema: GraphQLSchema | undefined, op: Operation, ctx: Context): { query: (i: number) => string } | { na: string } {
  const checked = document(schema, op, ctx, 0);
  if ('na' in checked) return checked;
  const field = schema?.getQueryType()?.getFields()[op.field];
  const selection = field ? selectAll(field.type, 3) : '{ __typename }';
  return {
    query: (i) => {
      const args = op.args(ctx, i);
      if (typeof args === 'string') throw new Error(args);
      return `{ r: ${op.field}${argText(args)} ${selection} }`;
    },
  };
}

/** Tables the raw-record reads look rows up in by key: their part counts are printed (sql/0023). */
const POINT_READ_TABLES = ['audit_timeline_v1', 'audit_lookup_v1', 'calls_by_id_v1', 'trace_spans_v1'];
const MERGE_WAIT_MS = 10 * 60_000;

/**
 * Waits (up to MERGE_WAIT_MS) for the merges and mutations the engine runs at start to end, so none
 * runs while requests are timed: a data set whose months have been idle for an hour has them merged
 * into one part each (sql/0023) the first time it is opened after that, and a migration may leave a
 * mutation running (sql/0022). Prints what it waited and the parts.
 */
async function settleMerges(clickhouse: ClickHouseClient): Promise<void> {
  const started = performance.now();
  const merging = async () =>
    Number(
      (
        await rows(
          clickhouse,
          `SELECT (SELECT count() FROM system.merges WHERE database = currentDatabase())
                + (SELECT count() FROM system.mutations WHERE database = currentDatabase() AND NOT is_done) AS n`,
          {},
        )
      )[0]?.n,
    ) !== 0;
  // The engine schedules its merges within seconds of opening the tables.
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  while ((await merging()) && performance.now() - started < MERGE_WAIT_MS) await new Promise((resolve) => setTimeout(resolve, 2_000));
  const parts = await rows(
    clickhouse,
    'SELECT table, count() AS n FROM system.parts WHERE active AND database = currentDatabase() AND table IN {tables:Array(String)} GROUP BY table ORDER BY table',
    { tables: POINT_READ_TABLES },
  );
  progress(
    `engine merges and mutations settled after ${((performance.now() - started) / 1000).toFixed(0)} s${(await merging()) ? ' (still merging: gave up waiting)' : ''}; parts: ${parts.map((p) => `${p.table} ${p.n}`).join(', ')}`,
  );
}

async function introspect(client: GraphQLClient): Promise<GraphQLSchema | undefined> {
  try {
    return buildClientSchema((await client.request(getIntrospectionQuery())) as unknown as IntrospectionQuery);
  } catch (error) {
    progress(`introspection failed (${(error as Error).message}): every operation is tried as written`);
    return undefined;
  }
}

/** The cursor of page 50 of the 30-day audit log, walking pages 1-49 (bounded). */
async function walkToPage50(client: GraphQLClient, schema: GraphQLSchema | undefined, ctx: Context): Promise<void> {
  const field = schema?.getQueryType()?.getFields().auditLog;
  if (!field?.args.some((a) => a.name === 'after')) {
    ctx.page50Problem = 'not in this schema: no argument after';
    return;
  }
  const deadline = performance.now() + WALK_BUDGET_MS;
  let after: string | undefined;
  for (let page = 1; page < 50; page++) {
    if (performance.now() > deadline) {
      ctx.page50Problem = `walking to page 50 took over ${WALK_BUDGET_MS / 1000} s (reached page ${page})`;
      return;
    }
    const args: Record<string, Arg> = { filter: new Input(range(30)(ctx)), first: PAGE_SIZE };
    if (after !== undefined) args.after = after;
    try {
      const data = await client.request(`{ r: auditLog${argText(args)} { pageInfo { hasNextPage endCursor } } }`);
      const info = (data.r as { pageInfo: { hasNextPage: boolean; endCursor: string | null } }).pageInfo;
      if (!info.hasNextPage || !info.endCursor) {
        ctx.page50Problem = `the audit log ended at page ${page}`;
        return;
      }
      after = info.endCursor;
    } catch (error) {
      ctx.page50Problem = `walking to page 50 failed: ${(error as Error).message}`;
      return;
    }
  }
  ctx.page50After = after;
}

// ---------------------------------------------------------------------------
// Timing

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * q) - 1)]!;
}

function summary(t: Timing): { p50: number; p99: number } | undefined {
  if (t.times.length === 0) return undefined;
  const sorted = [...t.times].sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) };
}

/** Busy CPU seconds of the whole machine (Linux /proc/stat; undefined elsewhere). */
function machineBusy(): number | undefined {
  try {
    const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
    const [user, nice, system, , , irq, softirq, steal] = fields.map(Number) as number[];
    return (user! + nice! + system! + irq! + softirq! + steal!) / 100; // USER_HZ
  } catch {
    return undefined;
  }
}

const ms = (x: number) => `${x < 10 ? x.toFixed(1) : Math.round(x).toLocaleString('en-US')}`;
const mib = (bytes: number) => `${Math.round(bytes / 1024 / 1024).toLocaleString('en-US')} MiB`;

function printColumns(header: string[], body: string[][]): void {
  const all = [header, ...body];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of body) console.log(line(r));
}

/**
 * The floors under the operations: the API over HTTP answering without a statement (`me`, sent by the
 * clients' process as every operation is), then FLOOR's rows, timed as the raw statements are.
 */
async function floors(clickhouse: ClickHouseClient, ctx: Context, clients: ClientProcess, client: GraphQLClient): Promise<string[][]> {
  const out: string[][] = [];
  const timed = async (name: string, statements: number, run: () => Promise<Timing>) => {
    progress(`floor: ${name}`);
    const cpuBefore = process.cpuUsage();
    const timing = await run();
    const cpu = process.cpuUsage(cpuBefore);
    const s = summary(timing);
    const perRequest = timing.times.length ? ms((cpu.user + cpu.system) / 1000 / (timing.times.length + 1 + CLIENTS)) : '—';
    out.push([name, String(statements), s ? `${ms(s.p50)} / ${ms(s.p99)} (n=${timing.times.length})` : `— ${timing.error ?? ''}`, perRequest]);
  };
  await timed('the API over HTTP, no statement: { me { tenant } }', 0, () => clients.drive(client, CLIENTS, REQUESTS, OP_BUDGET_MS, () => '{ me { tenant } }'));
  for (const row of FLOOR) await timed(`the engine alone: ${row.name}`, row.statements, () => drive(CLIENTS, REQUESTS, RAW_BUDGET_MS, (i) => row.run(clickhouse, ctx, i)));
  return out;
}

/** One operation's statements by kind: count, p50 / p99 / total of their engine times. */
function printStatements(name: string, byLabel: Map<string, number[]>, requests: number[]): void {
  const lines = [...byLabel].map(([label, times]) => {
    const sorted = [...times].sort((a, b) => a - b);
    const total = times.reduce((a, b) => a + b, 0);
    return `    ${String(times.length).padStart(4)}× ${ms(quantile(sorted, 0.5)).padStart(6)} / ${ms(quantile(sorted, 0.99)).padStart(6)} ms, total ${ms(total).padStart(6)}  ${label}`;
  });
  console.error(`  requests of ${name} in the order they ended (ms): ${requests.map((t) => ms(t)).join(' ')}`);
  console.error(`  statements of ${name} (n× p50 / p99, engine time incl. its connection's line):\n${lines.join('\n')}`);
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const operations = selectOperations(process.env.BENCH_ONLY);
  const dir = await dataDir();
  // Bounded whatever happens once the data set is there: operations stop starting after TOTAL_BUDGET_MS.
  const watchdog = setTimeout(() => {
    console.error(`api bench: over ${TOTAL_BUDGET_MS / 60_000 + 4} minutes, giving up`);
    process.exit(1);
  }, TOTAL_BUDGET_MS + 4 * 60_000);
  watchdog.unref();
  // As bin/start.ts opens the API's client: a connection per read sent at once, the requests' and the
  // background lane's (BENCH_CONNECTIONS to compare). The raw limit and the floors go straight to
  // connections of their own, as many as the requests' reads at once.
  const clickhouse = await openClickHouse({ database: 'mcp_analytics', dataDir: dir, connections: CONNECTIONS });
  const direct = await openClickHouse({ database: 'mcp_analytics', dataDir: dir, connections: DIRECT_CONNECTIONS });
  let server: Server | undefined;
  const clients = new ClientProcess();
  try {
    const migrated = await migrate(clickhouse, { retentionDays: loadConfig({}).retentionDays });
    if (migrated.applied.length) progress(`migrated ${dir}: ${migrated.applied.join(', ')}`);
    await settleMerges(clickhouse);
    const dataset = readDataset(dir);
    const end = dataset ? Date.parse(dataset.end) : Date.now();
    const ctx: Context = { end, samples: await loadSamples(clickhouse) };
    progress(`data set ${dir}: ${dataset?.events.toLocaleString('en-US') ?? '?'} events, ${iso(end - 30 * DAY_MS)} to ${iso(end)}; tenant ${TENANT}: ${dataset?.perTenant[TENANT]?.toLocaleString('en-US') ?? '?'}`);

    const secret = randomBytes(32).toString('base64url');
    const keys: KeyStore = { size: 1, lookup: (s) => (s === secret ? { tenant: TENANT, role: 'viewer', name: 'bench' } : undefined) };
    const timings = STATEMENTS ? timeStatements(clickhouse) : undefined;
    const api = createApi({ clickhouse: timings?.client ?? clickhouse, logger: pino({ level: 'warn' }, pino.destination(2)), keys });
    server = createServer((req, res) => api.handle(req, res));
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const client = new GraphQLClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`, secret);
    const schema = await introspect(client);
    if (operations.some((op) => op.name.startsWith('auditLog 50th page'))) await walkToPage50(client, schema, ctx);

    const rssStart = process.memoryUsage.rss();
    let rssMax = rssStart;
    const table: string[][] = [];
    let failed = 0;
    const opsStarted = performance.now();
    const cpuStarted = process.cpuUsage();
    const loadStarted = machineBusy();
    for (const op of operations) {
      const doc = requests(schema, op, ctx);
      const target = op.targetMs === undefined ? '—' : `p99 ≤ ${op.targetMs} ms`;
      if ('na' in doc) {
        table.push([op.name, '', `n/a (${doc.na})`, '', '', '', '', target, 'n/a']);
        continue;
      }
      if (performance.now() - opsStarted > TOTAL_BUDGET_MS) {
        table.push([op.name, '', `skipped (the bench's ${TOTAL_BUDGET_MS / 1000} s were spent)`, '', '', '', '', target, 'n/a']);
        continue;
      }
      progress(op.name);
      timings?.take();
      const cpuBefore = process.cpuUsage();
      const apiTiming = await clients.drive(client, CLIENTS, REQUESTS, OP_BUDGET_MS, (i) => doc.query(i), SETTLE ? () => api.settled() : undefined);
      const apiCpu = process.cpuUsage(cpuBefore);
      rssMax = Math.max(rssMax, process.memoryUsage.rss());
      if (timings) printStatements(op.name, timings.take(), apiTiming.times);
      const rawTiming = await drive(CLIENTS, REQUESTS, RAW_BUDGET_MS, (i) => op.raw.run(direct, ctx, i));
      rssMax = Math.max(rssMax, process.memoryUsage.rss());
      const a = summary(apiTiming);
      const r = summary(rawTiming);
      const apiText = a ? `${ms(a.p50)} / ${ms(a.p99)} (n=${apiTiming.times.length})` : '—';
      const firstText = apiTiming.first === undefined ? '—' : ms(apiTiming.first);
      // This process's CPU (API and engine) per timed request, warm-up and its fills included: what a
      // request costs, less skewed by other work on the machine than its latency. The clients' is apart.
      const perRequest = (cpuMs: number | undefined) => (apiTiming.times.length && cpuMs !== undefined ? ms(cpuMs / apiTiming.times.length) : '—');
      const cpuText = `${perRequest((apiCpu.user + apiCpu.system) / 1000)} (clients ${perRequest(apiTiming.clientCpuMs)})`;
      const rawText = r ? `${ms(r.p50)} / ${ms(r.p99)} (n=${rawTiming.times.length})` : `— ${rawTiming.error ?? ''}`;
      const ratio = a && r ? `×${(a.p50 / r.p50).toFixed(2)} / ×${(a.p99 / r.p99).toFixed(2)}` : '';
      let result = 'info';
      if (apiTiming.error) result = `FAIL (${apiTiming.error.slice(0, 120)})`;
      else if (op.targetMs !== undefined && a) result = a.p99 <= op.targetMs ? 'PASS' : 'FAIL';
      if (apiTiming.error) failed++;
      table.push([op.name, firstText, apiText, cpuText, rawText, ratio, mib(process.memoryUsage.rss()), target, result]);
      progress(`  ${table.at(-1)!.join(' | ')}`);
    }
    const wall = (performance.now() - opsStarted) / 1000;
    const cpu = process.cpuUsage(cpuStarted);
    const ownCores = (cpu.user + cpu.system) / 1e6 / wall;
    const loadEnded = machineBusy();

    console.log(
      `\nAPI over HTTP (${CLIENTS} concurrent clients, ${CONNECTIONS} engine connections, ${DEFAULT_READ_LIMITS.threads} thread(s) per API read (API_READ_THREADS), ${REQUESTS} requests per operation after 1 warm-up ` +
        `(its time: API first)${SETTLE ? ' and its background fills' : ', not waiting for its background fills'} and 1 untimed request per client, each capped at ${OP_BUDGET_MS / 1000} s) vs the raw table ` +
        `(plain SQL on audit_events_v1, same clients and count, on ${DIRECT_CONNECTIONS} engine connections of its own, capped at ${RAW_BUDGET_MS / 1000} s); tenant ${TENANT}, ranges ending ${iso(end)}; times in ms\n`,
    );
    printColumns(['operation', 'API first', 'API p50 / p99', 'CPU/request', 'raw p50 / p99', 'API/raw p50 / p99', 'RSS', 'target', 'result'], table);
    console.log(
      `\nThe floors under the rows above, the same ${CLIENTS} concurrent clients and ${REQUESTS} requests after 1 warm-up: the API answering without a ` +
        `statement (over HTTP from the clients' process); the engine alone (no API and no HTTP: each request's statements in turn, straight to ` +
        `${DIRECT_CONNECTIONS} engine connections, as many as the API's request reads at once, capped at ${RAW_BUDGET_MS / 1000} s). CPU is this process's per request\n`,
    );
    printColumns(['request', 'statements', 'p50 / p99', 'CPU/request'], await floors(direct, ctx, clients, client));
    console.log(
      `\nCPU over the operations (${wall.toFixed(0)} s): this process ${ownCores.toFixed(2)} cores` +
        (loadStarted && loadEnded ? `, the rest of the machine ${Math.max(0, (loadEnded - loadStarted) / wall - ownCores).toFixed(2)} of ${os.cpus().length} cores (other work skews the times)` : ''),
    );
    console.log(`RSS of the API process (the API and the embedded ClickHouse engine; the clients run in a process of their own): ${mib(rssStart)} before the operations, ${mib(rssMax)} at most, ${mib(process.memoryUsage.rss())} at the end.`);
    // A target missed is a FAIL row; an operation that answered an error fails the run.
    if (failed) process.exitCode = 1;
  } finally {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server?.closeAllConnections();
    await clients.close();
    await clickhouse.close();
    await direct.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
