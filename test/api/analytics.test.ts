/**
 * The aggregate questions against the real embedded ClickHouse. A seeded fixture of ~3,000 calls over
 * five days (two tenants) goes into audit_events_v1: half before the rollup migrations (0008, 0009) ran,
 * so their backfill is tested, half after, through their materialized views. Every answer is compared
 * with the same number computed here in TypeScript from the records the test inserted: counts, sums,
 * shares, rates, distinct counts and costs exactly; percentiles within the sketch's error (below).
 * The range starts and ends mid-hour, so each answer combines daily rows, hourly rows and raw calls.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { createApi } from '../../api/app.ts';
import type { Caller } from '../../api/context.ts';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { callsSource } from '../../api/queries/rollup-plan.ts';
import { parseTimeRange } from '../../api/queries/params.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate, SQL_DIR } from '../../core/migrate.ts';
import { normalizeAuditRecord, toAuditRow } from '../../model/audit-event.ts';
import { epochNanos, formatRfc3339, parseRfc3339 } from '../../model/timestamp.ts';
import { recordingClient } from '../helpers/statements.ts';

// ---- fixture ------------------------------------------------------------------------------------------

const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** Midnight UTC five days ago: the fixture covers days 0-4 (inside every retention). */
const DAY0 = Math.floor(Date.now() / DAY) * DAY - 5 * DAY;
/** From day 0, 05:17:03.123456789 to day 3, 14:41:07.000000001: whole days, whole hours and raw calls at both ends. */
const FROM = formatRfc3339({ epochMs: DAY0 + 5 * HOUR + 17 * 60_000 + 3123, subMsNanos: 456_789 });
const TO = formatRfc3339({ epochMs: DAY0 + 3 * DAY + 14 * HOUR + 41 * 60_000 + 7000, subMsNanos: 1 });
const RANGE = { from: FROM, to: TO };

const AGENTS = ['planner', 'coder', 'reviewer', 'nightly-etl', ''];
const TOOLS = ['users.Users.Get', 'users.Users.List', 'billing.Invoices.List', 'billing.Invoices.Delete', 'repo.Files.Read', 'search.Search.Query', 'analytics.Reports.Generate'];
const ACCOUNTS = ['', 'alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory'];
const REASONS = ['missing scope', 'read-only token', 'rate limited'];
const SCOPES = ['users:read', 'billing:write', 'repo:write', 'search:admin'];

interface Call {
  tenant: string;
  ns: bigint;
  agent: string;
  tool: string;
  service: string;
  account: string;
  allowed: boolean;
  reason: string;
  scopes: string[];
  durationNs: bigint;
  error: string;
  /** Reported cost in nano-dollars; null when the call had no price. */
  costNanos: bigint | null;
  counted: boolean;
}

/** mulberry32: a small seeded generator, so a failure reproduces. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeCalls(): Call[] {
  const rnd = random(20261124);
  const pick = <T>(list: readonly T[]) => list[Math.floor(rnd() * list.length)]!;
  const calls: Call[] = [];
  for (let i = 0; i < 3600; i++) {
    // initech's calls span 22 days from 17 days before DAY0: ranges holding whole rollup weeks.
    const tenant = i >= 3000 ? 'initech' : i % 10 === 9 ? 'globex' : 'acme';
    let offsetMs = tenant === 'initech' ? Math.floor((rnd() * 22 - 17) * DAY) : Math.floor(rnd() * 5 * DAY);
    // Day 2, 12:00-18:00 is quiet: a gap the series must fill with zeros.
    if (offsetMs >= 2 * DAY + 12 * HOUR && offsetMs < 2 * DAY + 18 * HOUR) offsetMs += 6 * HOUR;
    const ns = BigInt(DAY0 + offsetMs) * 1_000_000n + BigInt(Math.floor(rnd() * 1_000_000));
    const tool = pick(TOOLS);
    const allowed = rnd() > 0.12;
    const failed = rnd() < 0.1;
    calls.push({
      tenant,
      ns,
      agent: pick(AGENTS),
      tool,
      service: tool.split('.')[0]!,
      account: pick(ACCOUNTS),
      allowed,
      reason: allowed ? '' : pick(REASONS),
      scopes: allowed ? [] : SCOPES.filter(() => rnd() < 0.5),
      durationNs: allowed ? BigInt(Math.floor(rnd() ** 3 * 3_000_000_000)) : 0n,
      // A denied call can carry an error too: its outcome is DENIED, and it counts as an error.
      error: failed ? 'upstream failed' : '',
      costNanos: rnd() < 0.7 ? BigInt(100_000 + Math.floor(rnd() * 50_000_000)) : null,
      // A second report of a call (sql/0005) is stored but never counted.
      counted: i % 97 !== 0,
    });
  }
  return calls;
}

const CALLS = makeCalls();

function row(call: Call, index: number) {
  const normalized = normalizeAuditRecord({
    tenant: call.tenant,
    trace_id: `trace-${index}`,
    timestamp: formatRfc3339({ epochMs: Number(call.ns / 1_000_000n), subMsNanos: Number(call.ns % 1_000_000n) }),
    tool: call.tool,
    allowed: call.allowed,
    agent: call.agent,
    duration: Number(call.durationNs),
    ...(call.account && { account_id: call.account }),
    ...(call.reason && { denied_reason: call.reason }),
    ...(call.scopes.length > 0 && { scopes_required: call.scopes }),
    ...(call.error && { error: call.error }),
    ...(call.costNanos !== null && { cost_usd: Number(call.costNanos) / 1e9 }),
  });
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return { ...toAuditRow(normalized.value), counted: call.counted ? 1 : 0 };
}

// ---- the independent computation ----------------------------------------------------------------------

interface Filter {
  agent?: string;
  service?: string;
  tool?: string;
  account?: string;
  outcome?: 'OK' | 'ERROR' | 'DENIED';
}

const nanos = (iso: string) => epochNanos(parseRfc3339(iso)!);
const outcomeOf = (c: Call) => (!c.allowed ? 'DENIED' : c.error ? 'ERROR' : 'OK');

function selected(tenant: string, range: { from: string; to: string }, filter: Filter = {}): Call[] {
  const from = nanos(range.from);
  const to = nanos(range.to);
  return CALLS.filter(
    (c) =>
      c.tenant === tenant &&
      c.counted &&
      c.ns >= from &&
      c.ns < to &&
      (filter.agent === undefined || c.agent === filter.agent) &&
      (filter.service === undefined || c.service === filter.service) &&
      (filter.tool === undefined || c.tool === filter.tool) &&
      (filter.account === undefined || c.account === filter.account) &&
      (filter.outcome === undefined || outcomeOf(c) === filter.outcome),
  );
}

function groupBy<K>(calls: Call[], key: (c: Call) => K): Map<K, Call[]> {
  const groups = new Map<K, Call[]>();
  for (const c of calls) groups.set(key(c), [...(groups.get(key(c)) ?? []), c]);
  return groups;
}

/** Nano-dollars → "d.dddddd", rounded half-even at the sixth decimal. */
function usd(nanoDollars: bigint): string {
  let micros = nanoDollars / 1000n;
  const rest = nanoDollars % 1000n;
  if (rest > 500n || (rest === 500n && micros % 2n === 1n)) micros += 1n;
  return `${micros / 1_000_000n}.${(micros % 1_000_000n).toString().padStart(6, '0')}`;
}

const cost = (calls: Call[]) => calls.reduce((sum, c) => sum + (c.costNanos ?? 0n), 0n);
const allowedDurations = (calls: Call[]) => calls.filter((c) => c.allowed).map((c) => Number(c.durationNs) / 1e6).sort((a, b) => a - b);
/** Mean of allowed calls in ms, rounded to the microsecond as the API rounds it. */
function avgMs(calls: Call[]): number | null {
  const allowed = calls.filter((c) => c.allowed);
  if (allowed.length === 0) return null;
  return Math.round(Number(allowed.reduce((s, c) => s + c.durationNs, 0n)) / allowed.length / 1000) / 1000;
}
const maxMs = (calls: Call[]) => Math.max(0, ...calls.filter((c) => c.allowed).map((c) => Math.round(Number(c.durationNs) / 1000) / 1000));

/**
 * The sketch's stated error (sql/0008: DDSketch, relative accuracy 0.01): a percentile is within 1% of
 * the exact value at its rank q·(n-1) (a rank either side allowed, plus the API's rounding to the
 * microsecond). Null exactly when there is no allowed call.
 */
function assertPercentile(actual: number | null, sortedMs: number[], q: number, what: string) {
  if (sortedMs.length === 0) return assert.equal(actual, null, what);
  assert.ok(actual !== null, `${what}: null`);
  const n = sortedMs.length;
  const lo = sortedMs[Math.max(0, Math.floor(q * (n - 1)) - 1)]! * 0.99 - 0.0005;
  const hi = sortedMs[Math.min(n - 1, Math.ceil(q * (n - 1)) + 1)]! * 1.01 + 0.0005;
  assert.ok(actual >= lo && actual <= hi, `${what}: ${actual} not within [${lo}, ${hi}] (n=${n})`);
}

// ---- harness ------------------------------------------------------------------------------------------

const dataDir = mkdtempSync(path.join(tmpdir(), 'analytics-test-'));
let clickhouse: ClickHouseClient;
let api: ReturnType<typeof createApi>;

const KEYS: KeyStore = {
  size: 3,
  lookup: (secret) => (/^key-(acme|globex|initech)$/.test(secret) ? ({ tenant: secret.slice(4), role: 'viewer', name: secret } satisfies Caller) : undefined),
};

interface GraphQLResponse {
  data?: Record<string, any> | null;
  errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
}

/** Through the API's request handler in process (yoga.fetch would need no server; createApi gives node:http). */
async function gql(query: string, variables: Record<string, unknown> = {}, tenant = 'acme'): Promise<GraphQLResponse> {
  const { createServer } = await import('node:http');
  const server = createServer(api.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as { port: number }).port;
    const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', authorization: `Bearer key-${tenant}` },
      body: JSON.stringify({ query, variables }),
    });
    return (await response.json()) as GraphQLResponse;
  } finally {
    server.close();
  }
}

async function data(query: string, variables: Record<string, unknown> = {}, tenant = 'acme'): Promise<Record<string, any>> {
  const result = await gql(query, variables, tenant);
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data!;
}

before(async () => {
  clickhouse = await openClickHouse({ database: 'analytics_test', dataDir });
  // The migrations before the rollups, then half of the calls, then the rest of the migrations (their
  // backfill copies that half), then the other half (through the new views).
  const early = path.join(dataDir, 'sql-early');
  for (const file of readdirSync(SQL_DIR).filter((f) => Number(f.slice(0, 4)) < 8)) cpSync(path.join(SQL_DIR, file), path.join(early, file));
  await migrate(clickhouse, { retentionDays: 3650, dir: early });
  const rows = CALLS.map(row);
  await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: rows.filter((_, i) => i % 2 === 0) });
  // The backfill copies rows ingested before the view's creation second.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await migrate(clickhouse, { retentionDays: 3650 });
  await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: rows.filter((_, i) => i % 2 === 1) });
  api = createApi({ clickhouse, logger: pino({ level: 'silent' }), keys: KEYS });
});

after(async () => {
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const FILTERS: Filter[] = [
  {},
  { agent: 'coder' },
  { agent: '' },
  { service: 'billing' },
  { tool: 'repo.Files.Read' },
  { account: 'alice' },
  { outcome: 'OK' },
  { outcome: 'ERROR' },
  { outcome: 'DENIED' },
  { agent: 'planner', tool: 'users.Users.Get' },
  { service: 'users', outcome: 'DENIED' },
  { account: 'bob', tool: 'search.Search.Query' },
  { account: 'carol', agent: 'reviewer', outcome: 'OK' },
];

// ---- the plan -----------------------------------------------------------------------------------------

test('the range is read from daily rows, 6-hour rows, hourly rows and raw calls', () => {
  const source = callsSource('acme', { range: parseTimeRange(RANGE), filter: {}, need: ['agent'] });
  assert.deepEqual(
    source.segments.map((s) => s.level?.table ?? 'audit_events_v1'),
    ['audit_events_v1', 'calls_6h_v1', 'calls_1d_v1', 'calls_6h_v1', 'calls_1h_v1', 'audit_events_v1'],
  );
  // Distinct accounts per agent: no hourly set, so the edges of whole days are raw.
  const accounts = callsSource('acme', { range: parseTimeRange(RANGE), filter: {}, need: ['agent', 'account'], keysOnly: true });
  assert.deepEqual(accounts.segments.map((s) => s.level?.table ?? 'audit_events_v1'), ['audit_events_v1', 'calls_1d_v1', 'audit_events_v1']);
  // The agent × account set has no duration sketches: metrics across agent and account come from raw calls.
  const metrics = callsSource('acme', { range: parseTimeRange(RANGE), filter: { agent: 'coder' }, need: ['account'] });
  assert.deepEqual(metrics.segments.map((s) => s.level?.table ?? 'audit_events_v1'), ['audit_events_v1']);
  // With an account filter, the account's own calls, whatever else is asked.
  const account = callsSource('acme', { range: parseTimeRange(RANGE), filter: { account: 'bob' }, need: ['tool'] });
  assert.deepEqual(account.segments.map((s) => s.level?.table), [undefined]);
  assert.match(account.sql, /FROM calls_by_account_v1/);
  assert.doesNotMatch(account.sql, /audit_events_v1|calls_1[dh]_v1/);
});

test('a range of several weeks reads whole weeks, and agrees with the calls', async () => {
  const range = {
    from: formatRfc3339({ epochMs: DAY0 - 16 * DAY + 3 * HOUR + 12_345, subMsNanos: 678 }),
    to: formatRfc3339({ epochMs: DAY0 + 4 * DAY + 30 * 60_000, subMsNanos: 0 }),
  };
  const source = callsSource('initech', { range: parseTimeRange(range), filter: {}, need: ['agent'] });
  assert.ok(source.segments.filter((s) => s.level?.table === 'calls_1w_v1').length === 1, JSON.stringify(source.segments.map((s) => s.level?.table)));
  const answer = await data(
    `query ($from: String, $to: String) {
      overview(from: $from, to: $to) { calls errors denials agents costUsd { amount } }
      agentActivity(from: $from, to: $to) { agent calls errors denials avgMs tools accounts costUsd { amount } }
      timeseries(metric: CALLS, from: $from, to: $to, step: "7d") { buckets series { values } }
    }`,
    range,
    'initech',
  );
  const calls = selected('initech', range);
  assert.ok(calls.length > 300);
  assert.deepEqual(answer.overview, {
    calls: calls.length,
    errors: calls.filter((c) => c.error).length,
    denials: calls.filter((c) => !c.allowed).length,
    agents: new Set(calls.map((c) => c.agent)).size,
    costUsd: { amount: usd(cost(calls)) },
  });
  assert.deepEqual(
    answer.agentActivity,
    [...groupBy(calls, (c) => c.agent)]
      .map(([agent, mine]) => ({
        agent,
        calls: mine.length,
        errors: mine.filter((c) => c.error).length,
        denials: mine.filter((c) => !c.allowed).length,
        avgMs: avgMs(mine),
        tools: new Set(mine.map((c) => c.tool)).size,
        accounts: new Set(mine.filter((c) => c.account).map((c) => c.account)).size,
        costUsd: { amount: usd(cost(mine)) },
      }))
      .sort((a, b) => b.calls - a.calls || (a.agent < b.agent ? -1 : 1)),
  );
  const week = 7 * DAY;
  const first = Math.floor(Number(nanos(range.from) / 1_000_000n) / week) * week;
  assert.deepEqual(
    answer.timeseries.series[0].values,
    answer.timeseries.buckets.map((_: string, i: number) => calls.filter((c) => c.ns >= BigInt(first + i * week) * 1_000_000n && c.ns < BigInt(first + (i + 1) * week) * 1_000_000n).length),
  );
});

// ---- the questions ------------------------------------------------------------------------------------

describe('overview', () => {
  const query = `query ($from: String, $to: String, $filter: AggregateFilter) {
    overview(from: $from, to: $to, filter: $filter) { calls errors denials agents p99Ms costUsd { amount micros currency } }
  }`;
  for (const filter of FILTERS) {
    test(`filter ${JSON.stringify(filter)}`, async () => {
      const { overview } = await data(query, { ...RANGE, filter });
      const calls = selected('acme', RANGE, filter);
      assert.ok(calls.length > 0 || Object.keys(filter).length > 1, 'the fixture has calls for this filter');
      const micros = usd(cost(calls));
      assert.deepEqual(
        { ...overview, p99Ms: undefined },
        {
          calls: calls.length,
          errors: calls.filter((c) => c.error).length,
          denials: calls.filter((c) => !c.allowed).length,
          agents: new Set(calls.map((c) => c.agent)).size,
          p99Ms: undefined,
          costUsd: { amount: micros, micros: micros.replace('.', '').replace(/^0+(?=\d)/, ''), currency: 'USD' },
        },
      );
      assertPercentile(overview.p99Ms, allowedDurations(calls), 0.99, 'p99');
    });
  }
});

describe('agentActivity', () => {
  const query = `query ($from: String, $to: String, $filter: AggregateFilter) {
    agentActivity(from: $from, to: $to, filter: $filter) {
      agent calls share errors denials errorRate avgMs p50Ms p95Ms p99Ms tools accounts costUsd { amount } firstSeen lastSeen
    }
  }`;
  for (const filter of FILTERS) {
    test(`filter ${JSON.stringify(filter)}`, async () => {
      const { agentActivity } = await data(query, { ...RANGE, filter });
      const calls = selected('acme', RANGE, filter);
      const expected = [...groupBy(calls, (c) => c.agent)]
        .map(([agent, mine]) => {
          const times = mine.map((c) => c.ns).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
          const iso = (ns: bigint) => formatRfc3339({ epochMs: Number(ns / 1_000_000n), subMsNanos: Number(ns % 1_000_000n) });
          return {
            agent,
            calls: mine.length,
            share: mine.length / calls.length,
            errors: mine.filter((c) => c.error).length,
            denials: mine.filter((c) => !c.allowed).length,
            errorRate: mine.filter((c) => c.error).length / mine.length,
            avgMs: avgMs(mine),
            tools: new Set(mine.map((c) => c.tool)).size,
            accounts: new Set(mine.filter((c) => c.account).map((c) => c.account)).size,
            costUsd: { amount: usd(cost(mine)) },
            firstSeen: iso(times[0]!),
            lastSeen: iso(times[times.length - 1]!),
          };
        })
        .sort((a, b) => b.calls - a.calls || (a.agent < b.agent ? -1 : 1));
      assert.deepEqual(
        agentActivity.map(({ p50Ms: _, p95Ms: __, p99Ms: ___, ...exact }: any) => exact),
        expected,
      );
      for (const a of agentActivity) {
        const durations = allowedDurations(calls.filter((c) => c.agent === a.agent));
        assertPercentile(a.p50Ms, durations, 0.5, `${a.agent} p50`);
        assertPercentile(a.p95Ms, durations, 0.95, `${a.agent} p95`);
        assertPercentile(a.p99Ms, durations, 0.99, `${a.agent} p99`);
      }
    });
  }

  test('the deprecated agents query answers the same calls', async () => {
    const [{ agentActivity }, { agents }] = await Promise.all([
      data(`query ($from: String, $to: String) { agentActivity(from: $from, to: $to) { agent calls errors denials p50Ms p99Ms costUsd { amount } } }`, RANGE),
      data(`query ($from: String, $to: String) { agents(from: $from, to: $to) { agent calls errors denials p50Ms p99Ms costUsd { amount } } }`, RANGE),
    ]);
    assert.deepEqual(agents, agentActivity);
  });
});

describe('topServices', () => {
  const query = `query ($from: String, $to: String, $filter: AggregateFilter, $limit: Int) {
    topServices(from: $from, to: $to, filter: $filter, limit: $limit) { service calls share errors costUsd { amount } }
  }`;
  for (const [filter, limit] of [[{}, 10], [{}, 2], [{ agent: 'coder' }, 10], [{ outcome: 'ERROR' }, 3], [{ account: 'dave' }, 10]] as Array<[Filter, number]>) {
    test(`filter ${JSON.stringify(filter)}, limit ${limit}`, async () => {
      const { topServices } = await data(query, { ...RANGE, filter, limit });
      const calls = selected('acme', RANGE, filter);
      const expected = [...groupBy(calls, (c) => c.service)]
        .map(([service, mine]) => ({ service, calls: mine.length, share: mine.length / calls.length, errors: mine.filter((c) => c.error).length, costUsd: { amount: usd(cost(mine)) } }))
        .sort((a, b) => b.calls - a.calls || (a.service < b.service ? -1 : 1))
        .slice(0, limit);
      assert.deepEqual(topServices, expected);
    });
  }
});

describe('slowestTools', () => {
  const query = `query ($from: String, $to: String, $filter: AggregateFilter, $limit: Int, $orderBy: ToolOrder) {
    slowestTools(from: $from, to: $to, filter: $filter, limit: $limit, orderBy: $orderBy) { tool service calls avgMs p50Ms p95Ms p99Ms maxMs errorRate }
  }`;
  const cases: Array<[Filter, 'AVG' | 'P50' | 'P95' | 'P99']> = [[{}, 'AVG'], [{}, 'P50'], [{}, 'P95'], [{}, 'P99'], [{ agent: 'reviewer' }, 'P99'], [{ account: 'erin' }, 'AVG'], [{ outcome: 'DENIED' }, 'P99']];
  for (const [filter, orderBy] of cases) {
    test(`filter ${JSON.stringify(filter)}, orderBy ${orderBy}`, async () => {
      const { slowestTools } = await data(query, { ...RANGE, filter, orderBy, limit: 100 });
      const calls = selected('acme', RANGE, filter);
      const byTool = groupBy(calls, (c) => c.tool);
      assert.deepEqual(slowestTools.map((t: any) => t.tool).sort(), [...byTool.keys()].sort());
      for (const t of slowestTools) {
        const mine = byTool.get(t.tool)!;
        assert.deepEqual(
          [t.service, t.calls, t.avgMs, t.maxMs, t.errorRate],
          [mine[0]!.service, mine.length, avgMs(mine), maxMs(mine), mine.filter((c) => c.error).length / mine.length],
          t.tool,
        );
        const durations = allowedDurations(mine);
        assertPercentile(t.p50Ms, durations, 0.5, `${t.tool} p50`);
        assertPercentile(t.p95Ms, durations, 0.95, `${t.tool} p95`);
        assertPercentile(t.p99Ms, durations, 0.99, `${t.tool} p99`);
      }
      // Ordered by the chosen latency, slowest first; tools without an allowed call last.
      const key = (t: any) => ({ AVG: t.avgMs, P50: t.p50Ms, P95: t.p95Ms, P99: t.p99Ms })[orderBy] ?? -Infinity;
      for (let i = 1; i < slowestTools.length; i++) assert.ok(key(slowestTools[i - 1]) >= key(slowestTools[i]), `order at ${i}`);
      if (orderBy === 'AVG') {
        const exact = [...byTool].sort(([, a], [, b]) => (avgMs(b) ?? -1) - (avgMs(a) ?? -1)).map(([tool]) => tool);
        assert.deepEqual(slowestTools.map((t: any) => t.tool), exact);
      }
    });
  }

  test('limit keeps the slowest', async () => {
    const all = (await data(query, { ...RANGE, limit: 100 })).slowestTools;
    const { slowestTools } = await data(query, { ...RANGE, limit: 3 });
    assert.deepEqual(slowestTools, all.slice(0, 3));
  });
});

describe('timeseries', () => {
  const query = `query ($metric: Metric!, $from: String, $to: String, $filter: AggregateFilter, $step: String, $groupBy: GroupBy, $top: Int) {
    timeseries(metric: $metric, from: $from, to: $to, filter: $filter, step: $step, groupBy: $groupBy, top: $top) {
      metric step stepSeconds buckets series { key other values }
    }
  }`;

  /** Bucket starts (epoch ms) aligned to the step, covering the range. */
  function bucketStarts(stepMs: number, range = RANGE): number[] {
    const from = Number(nanos(range.from) / 1_000_000n);
    const to = nanos(range.to);
    const starts: number[] = [];
    for (let b = Math.floor(from / stepMs) * stepMs; BigInt(b) * 1_000_000n < to; b += stepMs) starts.push(b);
    return starts;
  }

  type Value = (calls: Call[]) => number;
  const VALUES: Record<string, Value> = {
    CALLS: (calls) => calls.length,
    ERRORS: (calls) => calls.filter((c) => c.error).length,
    DENIALS: (calls) => calls.filter((c) => !c.allowed).length,
    COST: (calls) => Number(usd(cost(calls)).replace('.', '')),
    AVG_MS: (calls) => avgMs(calls) ?? 0,
  };

  function expectedSeries(metric: string, stepMs: number, calls: Call[], key: ((c: Call) => string) | undefined, top: number) {
    const starts = bucketStarts(stepMs);
    const perBucket = (mine: Call[]) => starts.map((b) => VALUES[metric]!(mine.filter((c) => c.ns >= BigInt(b) * 1_000_000n && c.ns < BigInt(b + stepMs) * 1_000_000n)));
    if (!key) return [{ key: null, other: false, values: perBucket(calls) }];
    const weight = metric === 'AVG_MS' ? VALUES.CALLS! : VALUES[metric]!;
    const ranked = [...groupBy(calls, key)]
      .map(([k, mine]) => ({ k, mine, w: weight(mine) }))
      .sort((a, b) => b.w - a.w || (a.k < b.k ? -1 : 1));
    const kept = ranked.slice(0, top).map((g) => ({ key: g.k, other: false, values: perBucket(g.mine) }));
    const rest = ranked.slice(top).flatMap((g) => g.mine);
    return rest.length > 0 ? [...kept, { key: null, other: true, values: perBucket(rest) }] : kept;
  }

  const cases: Array<{ metric: string; step: string; stepMs: number; groupBy: string; key?: (c: Call) => string; top?: number; filter?: Filter }> = [
    { metric: 'CALLS', step: '6h', stepMs: 6 * HOUR, groupBy: 'NONE' },
    { metric: 'CALLS', step: '1h', stepMs: HOUR, groupBy: 'AGENT', key: (c) => c.agent, top: 2 },
    { metric: 'ERRORS', step: '1d', stepMs: DAY, groupBy: 'SERVICE', key: (c) => c.service, top: 3 },
    { metric: 'DENIALS', step: '30m', stepMs: 30 * 60_000, groupBy: 'TOOL', key: (c) => c.tool, top: 2, filter: { agent: 'coder' } },
    { metric: 'COST', step: '12h', stepMs: 12 * HOUR, groupBy: 'ACCOUNT', key: (c) => c.account, top: 4 },
    { metric: 'AVG_MS', step: '3h', stepMs: 3 * HOUR, groupBy: 'AGENT', key: (c) => c.agent, top: 1, filter: { service: 'repo' } },
    { metric: 'CALLS', step: '2h', stepMs: 2 * HOUR, groupBy: 'TOOL', key: (c) => c.tool, top: 3, filter: { account: 'frank', outcome: 'OK' } },
    { metric: 'AVG_MS', step: '1d', stepMs: DAY, groupBy: 'ACCOUNT', key: (c) => c.account, top: 3, filter: { agent: 'planner' } },
  ];
  for (const c of cases) {
    test(`${c.metric} every ${c.step} by ${c.groupBy}${c.filter ? `, filter ${JSON.stringify(c.filter)}` : ''}`, async () => {
      const { timeseries } = await data(query, { ...RANGE, metric: c.metric, step: c.step, groupBy: c.groupBy, top: c.top ?? 5, filter: c.filter ?? {} });
      const starts = bucketStarts(c.stepMs);
      assert.equal(timeseries.step, c.step);
      assert.equal(timeseries.stepSeconds, c.stepMs / 1000);
      assert.deepEqual(timeseries.buckets, starts.map((b) => formatRfc3339({ epochMs: b, subMsNanos: 0 })));
      assert.deepEqual(timeseries.series, expectedSeries(c.metric, c.stepMs, selected('acme', RANGE, c.filter), c.key, c.top ?? 5));
    });
  }

  test('empty buckets are 0: the quiet afternoon of day 2', async () => {
    const { timeseries } = await data(query, { ...RANGE, metric: 'CALLS', step: '1h' });
    const quiet = starts(DAY0 + 2 * DAY + 12 * HOUR, 6, HOUR);
    for (const b of quiet) assert.equal(timeseries.series[0].values[timeseries.buckets.indexOf(b)], 0, b);
    assert.ok(timeseries.series[0].values.filter((v: number) => v > 0).length > 60);
  });

  test('P95_MS per bucket within the digest error, 0 without allowed calls', async () => {
    const { timeseries } = await data(query, { ...RANGE, metric: 'P95_MS', step: '12h' });
    const calls = selected('acme', RANGE);
    bucketStarts(12 * HOUR).forEach((b, i) => {
      const mine = calls.filter((c) => c.ns >= BigInt(b) * 1_000_000n && c.ns < BigInt(b + 12 * HOUR) * 1_000_000n);
      const durations = allowedDurations(mine);
      if (durations.length === 0) assert.equal(timeseries.series[0].values[i], 0);
      else assertPercentile(timeseries.series[0].values[i], durations, 0.95, `bucket ${i}`);
    });
  });

  test('without a step: at most 200 buckets, whole hours over a day', async () => {
    const { timeseries } = await data(query, { ...RANGE, metric: 'CALLS' });
    assert.equal(timeseries.step, '1h');
    assert.equal(timeseries.buckets.length, bucketStarts(HOUR).length);
    const short = { from: formatRfc3339({ epochMs: DAY0 + 10 * HOUR, subMsNanos: 0 }), to: formatRfc3339({ epochMs: DAY0 + 11 * HOUR, subMsNanos: 0 }) };
    const minutes = (await data(query, { ...short, metric: 'CALLS' })).timeseries;
    assert.equal(minutes.step, '1m');
    assert.equal(minutes.buckets.length, 60);
    assert.equal(minutes.series[0].values.reduce((a: number, b: number) => a + b, 0), selected('acme', short).length);
  });

  test('several metrics of one range, filter and step in one request: one statement, each series as asked alone', async () => {
    const metrics = ['CALLS', 'ERRORS', 'DENIALS', 'COST', 'AVG_MS', 'P95_MS'];
    const fields = metrics.map((m) => `${m.toLowerCase()}: timeseries(metric: ${m}, from: $from, to: $to, filter: $filter, step: "3h") { metric step buckets series { key other values } }`);
    const together = `query ($from: String, $to: String, $filter: AggregateFilter) {
      ${fields.join('\n      ')}
      daily: timeseries(metric: CALLS, from: $from, to: $to, filter: $filter, step: "1d") { step series { values } }
      byAgent: timeseries(metric: CALLS, from: $from, to: $to, filter: $filter, step: "3h", groupBy: AGENT, top: 2) { series { key other values } }
    }`;
    const filter = { service: 'repo' };
    // The statements each metric set sends, recorded by the API's own client.
    const { client: counting, sent } = recordingClient(clickhouse);
    const shared = api;
    api = createApi({ clickhouse: counting, logger: pino({ level: 'silent' }), keys: KEYS });
    let answer: Record<string, any>;
    try {
      answer = await data(together, { ...RANGE, filter });
    } finally {
      api = shared;
    }
    // Of each statement, the metrics it reads.
    const statements = sent.flatMap((query) => query.match(/\bv_[A-Z0-9_]+/g)?.join(',') ?? []);
    assert.deepEqual(statements, ['v_CALLS,v_ERRORS,v_DENIALS,v_COST,v_AVG_MS,v_P95_MS', 'v_CALLS'], 'one statement per range, filter and step');
    const calls = selected('acme', RANGE, filter);
    for (const metric of metrics) {
      const alone = (await data(query, { ...RANGE, metric, step: '3h', groupBy: 'NONE', filter })).timeseries;
      const batched = answer[metric.toLowerCase()];
      assert.deepEqual(batched, { metric, step: '3h', buckets: alone.buckets, series: alone.series }, metric);
      if (VALUES[metric]) assert.deepEqual(batched.series, expectedSeries(metric, 3 * HOUR, calls, undefined, 5), metric);
    }
    assert.deepEqual(answer.daily.series, expectedSeries('CALLS', DAY, calls, undefined, 5).map(({ values }) => ({ values })));
    assert.deepEqual(answer.byAgent.series, expectedSeries('CALLS', 3 * HOUR, calls, (c) => c.agent, 2));
  });

  function starts(first: number, n: number, stepMs: number): string[] {
    return Array.from({ length: n }, (_, i) => formatRfc3339({ epochMs: first + i * stepMs, subMsNanos: 0 }));
  }
});

describe('denials', () => {
  const query = `query ($from: String, $to: String, $filter: AggregateFilter, $step: String, $limit: Int) {
    denials(from: $from, to: $to, filter: $filter, step: $step, limit: $limit) {
      total byReason { key count } byAgent { key count } byTool { service tool count } byScope { key count } step buckets overTime
    }
  }`;
  const counts = (calls: Call[], key: (c: Call) => string[], limit: number) =>
    [...calls.flatMap((c) => key(c)).reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map<string, number>())]
      .map(([k, count]) => ({ key: k, count }))
      .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1))
      .slice(0, limit);

  for (const [filter, limit] of [[{}, 20], [{ agent: 'nightly-etl' }, 20], [{ service: 'billing', account: 'grace' }, 20], [{}, 2], [{ outcome: 'DENIED' }, 20]] as Array<[Filter, number]>) {
    test(`filter ${JSON.stringify(filter)}, limit ${limit}`, async () => {
      const { denials } = await data(query, { ...RANGE, filter, step: '1d', limit });
      const denied = selected('acme', RANGE, filter).filter((c) => !c.allowed);
      assert.ok(denied.length > 0);
      const days = [0, 1, 2, 3].map((d) => DAY0 + d * DAY);
      assert.deepEqual(denials, {
        total: denied.length,
        byReason: counts(denied, (c) => [c.reason], limit),
        byAgent: counts(denied, (c) => [c.agent], limit),
        byTool: counts(denied, (c) => [`${c.service} ${c.tool}`], limit).map(({ key, count }) => ({ service: key.split(' ')[0], tool: key.split(' ')[1], count })),
        byScope: counts(denied, (c) => c.scopes, limit),
        step: '1d',
        buckets: days.map((d) => formatRfc3339({ epochMs: d, subMsNanos: 0 })),
        overTime: days.map((d) => denied.filter((c) => c.ns >= BigInt(d) * 1_000_000n && c.ns < BigInt(d + DAY) * 1_000_000n).length),
      });
    });
  }

  test('an OK or ERROR outcome filter has no denials', async () => {
    const { denials } = await data(query, { ...RANGE, filter: { outcome: 'OK' }, step: '1d' });
    assert.deepEqual([denials.total, denials.byReason, denials.overTime], [0, [], [0, 0, 0, 0]]);
  });
});

// ---- tenants and arguments ----------------------------------------------------------------------------

test("another tenant's calls never appear, and its own answers are its own", async () => {
  const all = `query ($from: String, $to: String) {
    overview(from: $from, to: $to) { calls }
    agentActivity(from: $from, to: $to) { agent calls accounts }
    topServices(from: $from, to: $to) { service calls }
    slowestTools(from: $from, to: $to, limit: 100) { tool calls }
    timeseries(metric: CALLS, from: $from, to: $to, step: "1d") { series { values } }
    denials(from: $from, to: $to) { total }
  }`;
  for (const tenant of ['acme', 'globex']) {
    const answer = await data(all, RANGE, tenant);
    const calls = selected(tenant, RANGE);
    assert.equal(answer.overview.calls, calls.length, tenant);
    assert.equal(answer.agentActivity.reduce((n: number, a: any) => n + a.calls, 0), calls.length, tenant);
    for (const a of answer.agentActivity) {
      assert.equal(a.accounts, new Set(calls.filter((c) => c.agent === a.agent && c.account).map((c) => c.account)).size, `${tenant} ${a.agent}`);
    }
    assert.equal(answer.topServices.reduce((n: number, s: any) => n + s.calls, 0), calls.length, tenant);
    assert.equal(answer.slowestTools.reduce((n: number, s: any) => n + s.calls, 0), calls.length, tenant);
    assert.equal(answer.timeseries.series[0].values.reduce((n: number, v: number) => n + v, 0), calls.length, tenant);
    assert.equal(answer.denials.total, calls.filter((c) => !c.allowed).length, tenant);
  }
  // A tenant argument naming another tenant is refused.
  const refused = await gql('{ overview(tenant: "globex") { calls } }');
  assert.equal(refused.errors?.[0]?.extensions?.code, 'FORBIDDEN');
});

describe('bad arguments are BAD_USER_INPUT naming the argument', () => {
  const long = 'x'.repeat(257);
  const cases: Array<[string, string, Record<string, unknown>, RegExp]> = [
    ['filter.agent too long', 'query ($f: AggregateFilter) { agentActivity(filter: $f) { agent } }', { f: { agent: long } }, /^filter\.agent must be at most 256 characters$/],
    ['filter.account too long', 'query ($f: AggregateFilter) { topServices(filter: $f) { service } }', { f: { account: long } }, /^filter\.account must be at most 256 characters$/],
    ['step without a unit', '{ timeseries(metric: CALLS, step: "5") { step } }', {}, /^step must be a whole number and a unit/],
    ['step of 0', '{ denials(step: "0m") { total } }', {}, /^step must be a whole number and a unit/],
    ['too many buckets', `{ timeseries(metric: CALLS, from: "${FROM}", to: "${TO}", step: "1m") { step } }`, {}, /^step 1m makes \d+ buckets over this range; at most 500/],
    ['top 0', '{ timeseries(metric: CALLS, groupBy: AGENT, top: 0) { step } }', {}, /^top must be a whole number from 1 to 50, got 0$/],
    ['limit 0', '{ topServices(limit: 0) { service } }', {}, /^limit must be a whole number from 1 to 1000, got 0$/],
    ['from after to', `{ agentActivity(from: "${TO}", to: "${FROM}") { agent } }`, {}, /^from .* must be before to/],
    ['from not a date', '{ denials(from: "last week") { total } }', {}, /^from must be an ISO-8601 date-time/],
  ];
  for (const [name, query, variables, message] of cases) {
    test(name, async () => {
      const result = await gql(query, variables);
      assert.equal(result.errors?.length, 1, JSON.stringify(result));
      assert.match(result.errors![0]!.message, message);
      assert.equal(result.errors![0]!.extensions?.code, 'BAD_USER_INPUT');
    });
  }

  test('an unknown outcome is refused by the schema before anything runs', async () => {
    const inline = await gql('{ overview(filter: { outcome: MAYBE }) { calls } }');
    assert.equal(inline.data, undefined);
    assert.match(inline.errors![0]!.message, /Outcome/);
    assert.equal(inline.errors![0]!.extensions?.code, 'GRAPHQL_VALIDATION_FAILED');
    const variable = await gql('query ($f: AggregateFilter) { overview(filter: $f) { calls } }', { f: { outcome: 'MAYBE' } });
    assert.equal(variable.data, undefined);
    assert.match(variable.errors![0]!.message, /\$f.*outcome.*MAYBE/s);
  });

  test('filter values are data, never SQL', async () => {
    const { overview } = await data('query ($f: AggregateFilter) { overview(filter: $f) { calls } }', { f: { agent: "coder' OR 1=1 --" } });
    assert.equal(overview.calls, 0);
  });
});
