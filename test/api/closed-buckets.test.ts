/**
 * The aggregates' cache of closed time buckets (api/queries/closed-buckets.ts): every aggregate answers
 * the same with it as without it, on the fill and on the hits; a call written late into a cached hour
 * shows at once; a lost entry is noticed; hours still receiving writes are not cached; one tenant's
 * entries never answer another's question.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { queryAgentActivity } from '../../api/queries/agent-activity.ts';
import { cacheGuard, createClosedBucketCache, NO_CACHE, type ClosedBuckets } from '../../api/queries/closed-buckets.ts';
import type { AggregateFilter } from '../../api/queries/filter.ts';
import { queryOverview } from '../../api/queries/overview.ts';
import { parseTimeRange } from '../../api/queries/params.ts';
import { querySlowestTools } from '../../api/queries/slowest-tools.ts';
import { buckets } from '../../api/queries/step.ts';
import { queryTimeseries } from '../../api/queries/timeseries.ts';
import { queryTopServices } from '../../api/queries/top-services.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { createClickHouseWriter } from '../../ingest/clickhouse-writer.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput } from '../../model/audit-event.ts';
import { formatClickHouse, formatRfc3339 } from '../../model/timestamp.ts';
import { recordingClient } from '../helpers/statements.ts';

const MS = 1_000_000;
const HOUR = 3_600_000;
const iso = (ms: number) => formatRfc3339({ epochMs: ms, subMsNanos: 0 });
/** A range of 30 hours ending 40 minutes into the current hour's predecessor: whole hours and two partial ones. */
const END = Math.floor(Date.now() / HOUR) * HOUR - HOUR + 40 * 60_000;
const RANGE = parseTimeRange({ from: iso(END - 30 * HOUR), to: iso(END) });

const AGENTS = ['claude-desktop', 'cursor', 'planner'];
const TOOLS = ['users.Users.Get', 'users.Users.List', 'payments.Payments.Refund', 'billing.Invoices.List'];

interface Sent {
  tenant: string;
  at: number;
  agent: string;
  tool: string;
  account: string;
  allowed: boolean;
  error: boolean;
}

const sent: Sent[] = [];
function record(s: Sent, i: number): AuditRecordInput {
  return {
    tenant: s.tenant,
    trace_id: `t-${i}-${s.at}`,
    timestamp: iso(s.at),
    tool: s.tool,
    agent: s.agent,
    account_id: s.account,
    allowed: s.allowed,
    ...(s.allowed ? { duration: (5 + (i % 40) * 7) * MS } : { denied_reason: 'missing scope', scopes_required: ['payments:write'] }),
    ...(s.error ? { error: 'upstream timeout' } : {}),
    cost_usd: (i % 3) * 0.001,
  };
}

function toRow(input: AuditRecordInput) {
  const normalized = normalizeAuditRecord(input);
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return toAuditRow(normalized.value, 'audit');
}

const dataDir = mkdtempSync(path.join(tmpdir(), 'closed-buckets-'));
let clickhouse: ClickHouseClient;
let write: (records: Sent[]) => Promise<void>;

before(async () => {
  clickhouse = await openClickHouse({ database: 'closed_buckets_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  const writer = createClickHouseWriter(clickhouse);
  write = async (records) => {
    const start = sent.length;
    sent.push(...records);
    await writer.writeAudit(records.map((s, i) => toRow(record(s, start + i))));
  };
  const records: Sent[] = [];
  // Every 7 minutes over 32 hours, so the range's edges and whole hours all hold calls.
  for (let at = END - 31 * HOUR - 13 * 60_000, i = 0; at < END + HOUR; at += 7 * 60_000, i++) {
    records.push({
      tenant: i % 5 === 0 ? 'globex' : 'acme',
      at,
      agent: AGENTS[i % AGENTS.length]!,
      tool: TOOLS[(i * 7) % TOOLS.length]!,
      account: `acct-${i % 6}`,
      allowed: i % 11 !== 0,
      error: i % 13 === 0,
    });
  }
  await write(records);
});

after(async () => {
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const QUESTIONS: Array<[string, (cache: ClosedBuckets, tenant: string, filter: AggregateFilter) => Promise<unknown>]> = [
  ['overview', (c, t, f) => queryOverview(clickhouse, t, RANGE, f, c)],
  ['agentActivity', (c, t, f) => queryAgentActivity(clickhouse, t, RANGE, f, { tools: true, accounts: true }, c)],
  ['topServices', (c, t, f) => queryTopServices(clickhouse, t, RANGE, f, 10, c)],
  ['slowestTools', (c, t, f) => querySlowestTools(clickhouse, t, RANGE, f, 10, 'P99', c)],
  ['slowestTools AVG', (c, t, f) => querySlowestTools(clickhouse, t, RANGE, f, 10, 'AVG', c)],
  ['timeseries calls by service', (c, t, f) => queryTimeseries(clickhouse, t, RANGE, f, 'CALLS', buckets(RANGE, 3600), 'SERVICE', 2, c)],
  ['timeseries p95 by agent, 2 h', (c, t, f) => queryTimeseries(clickhouse, t, RANGE, f, 'P95_MS', buckets(RANGE, 7200), 'AGENT', 5, c)],
  ['timeseries cost, 10 min', (c, t, f) => queryTimeseries(clickhouse, t, RANGE, f, 'COST', buckets(RANGE, 600), 'NONE', 5, c)],
];
const FILTERS: AggregateFilter[] = [{}, { agent: 'cursor' }, { outcome: 'DENIED' }, { account: 'acct-2' }, { service: 'users', tool: 'users.Users.Get' }];

/** Calls per agent in the range, computed from what the test sent. */
function expectedCalls(tenant: string): Map<string, number> {
  const from = END - 30 * HOUR;
  const calls = new Map<string, number>();
  for (const s of sent) if (s.tenant === tenant && s.at >= from && s.at < END) calls.set(s.agent, (calls.get(s.agent) ?? 0) + 1);
  return calls;
}

test('every aggregate answers the same with the cache (fill and hits) as without it, under every filter', async () => {
  const cache = createClosedBucketCache({ settleSeconds: 0 });
  for (const filter of FILTERS) {
    for (const [name, ask] of QUESTIONS) {
      const plain = await ask(NO_CACHE, 'acme', filter);
      assert.deepEqual(await ask(cache, 'acme', filter), plain, `${name} ${JSON.stringify(filter)}: first, while the entries fill`);
      await cache.settled();
      assert.deepEqual(await ask(cache, 'acme', filter), plain, `${name} ${JSON.stringify(filter)}: hit`);
    }
  }
  const stats = cache.stats();
  assert.ok(stats.fills > 0 && stats.hits > 0, JSON.stringify(stats));
  assert.equal(stats.stale, 0);
  assert.equal(stats.failed, 0);

  const activity = await queryAgentActivity(clickhouse, 'acme', RANGE, {}, { tools: true, accounts: true }, cache);
  assert.deepEqual(new Map(activity.map((a) => [a.agent, a.calls])), expectedCalls('acme'));
});

test("agentActivity reads an open range's edges once, with every key, and counts the tools and accounts seen only there; an ended range reads none", async () => {
  // A range with raw seconds at both ends; a tool and an account that only those seconds hold.
  const from = END - 3 * HOUR + 20_000;
  const to = END - HOUR + 25_000;
  const range = parseTimeRange({ from: iso(from), to: iso(to) });
  const call = (at: number, agent: string, tool: string, account: string): Sent => ({ tenant: 'edges', at, agent, tool, account, allowed: true, error: false });
  await write([
    call(from - 5_000, 'cursor', 'outside.Before.Get', 'acct-before'),
    call(from + 5_000, 'cursor', 'edge.Start.Get', 'acct-start'),
    call(END - 2 * HOUR, 'cursor', TOOLS[0]!, 'acct-1'),
    call(END - 2 * HOUR + 30 * 60_000, 'planner', TOOLS[0]!, 'acct-1'),
    call(to - 5_000, 'planner', 'edge.End.Get', 'acct-end'),
    call(to + 1_000, 'planner', 'outside.After.Get', 'acct-after'),
  ]);
  const { client: statements, last } = recordingClient(clickhouse);
  // A range still open (it ends after the settled time), so its minutes are cached and its ends read raw.
  const cache = createClosedBucketCache({ settleSeconds: 0, now: () => to - 1 });
  const plain = await queryAgentActivity(clickhouse, 'edges', range, {}, undefined, NO_CACHE);
  assert.deepEqual(
    plain.map((a) => [a.agent, a.calls, a.tools, a.accounts]),
    [
      ['cursor', 2, 2, 2],
      ['planner', 2, 2, 2],
    ],
  );
  assert.deepEqual(await queryAgentActivity(statements, 'edges', range, {}, undefined, cache), plain);
  await cache.settled();
  assert.deepEqual(await queryAgentActivity(statements, 'edges', range, {}, undefined, cache), plain);
  assert.equal(cache.stats().hits, 3, 'the three sources from their minutes\' entries');
  assert.match(last(), /entry_tools/);
  // That request started the read of the distinct counts' key sets; once held, the entries are counted
  // from them, not grouped in the statement.
  await cache.settled();
  assert.deepEqual(await queryAgentActivity(statements, 'edges', range, {}, undefined, cache), plain);
  assert.doesNotMatch(last(), /entry_tools|entry_accounts/);
  const reads = (sql: string) => sql.split('audit_timeline_v1').length - 1;
  const shared = reads(last());
  // As often as a one-source question over the same entries reads them.
  await queryOverview(statements, 'edges', range, {}, cache);
  await cache.settled();
  await queryOverview(statements, 'edges', range, {}, cache);
  assert.ok(reads(last()) > 0);
  assert.equal(shared, reads(last()));

  // Once the range has ended, it is held whole: its requests read no raw call, and answer the same.
  const ended = createClosedBucketCache({ settleSeconds: 0 });
  assert.deepEqual(await queryAgentActivity(statements, 'edges', range, {}, undefined, ended), plain);
  await ended.settled();
  assert.deepEqual(await queryAgentActivity(statements, 'edges', range, {}, undefined, ended), plain);
  assert.equal(ended.stats().hits, 3);
  assert.equal(reads(last()), 0);
});

test('a call written late into a cached hour shows at once; the entry is refilled after', async () => {
  const cache = createClosedBucketCache({ settleSeconds: 0 });
  const before = await queryAgentActivity(clickhouse, 'acme', RANGE, {}, undefined, cache);
  await cache.settled();
  const hit = await queryAgentActivity(clickhouse, 'acme', RANGE, {}, undefined, cache);
  assert.deepEqual(hit, before);
  assert.deepEqual([cache.stats().fills, cache.stats().hits], [6, 3]);
  await write([{ tenant: 'acme', at: END - 5 * HOUR + 17_000, agent: 'late-agent', tool: TOOLS[0]!, account: 'acct-late', allowed: true, error: false }]);

  const after = await queryAgentActivity(clickhouse, 'acme', RANGE, {}, undefined, cache);
  // Its three sources (metrics, distinct tools, distinct accounts) each found their minutes' and their
  // hours' entries stale.
  assert.equal(cache.stats().stale, 6);
  assert.deepEqual(new Map(after.map((a) => [a.agent, a.calls])), expectedCalls('acme'));
  assert.equal(after.find((a) => a.agent === 'late-agent')?.calls, 1);
  assert.deepEqual(after, await queryAgentActivity(clickhouse, 'acme', RANGE, {}, undefined, NO_CACHE));
  // The next request finds no entry and starts the refills; the one after reads them.
  assert.deepEqual(await queryAgentActivity(clickhouse, 'acme', RANGE, {}, undefined, cache), after);
  await cache.settled();
  assert.deepEqual(await queryAgentActivity(clickhouse, 'acme', RANGE, {}, undefined, cache), after);
  // Hits: 3 before the write, 6 entries found and then found stale, 3 after the refills.
  assert.deepEqual([cache.stats().fills, cache.stats().stale, cache.stats().hits], [12, 6, 12]);
});

test('replicated tables: an entry whose rows are not all there is noticed, and the answer is still right', async () => {
  const cache = createClosedBucketCache({ settleSeconds: 0, replicated: true });
  const plain = await queryOverview(clickhouse, 'acme', RANGE, {}, NO_CACHE);
  assert.deepEqual(await queryOverview(clickhouse, 'acme', RANGE, {}, cache), plain);
  await cache.settled();
  await clickhouse.command({ query: 'TRUNCATE TABLE closed_buckets_v1' });
  assert.deepEqual(await queryOverview(clickhouse, 'acme', RANGE, {}, cache), plain);
  assert.equal(cache.stats().stale, 2);
  assert.deepEqual(await queryOverview(clickhouse, 'acme', RANGE, {}, cache), plain);
  await cache.settled();
  assert.equal(cache.stats().fills, 4);
  assert.deepEqual(await queryOverview(clickhouse, 'acme', RANGE, {}, cache), plain);
  // Hits: the two entries found and then found stale, and this one.
  assert.equal(cache.stats().hits, 3);
});

test("agentActivity's distinct counts from held key sets: right over a range moving each request, and (replicated) a lost entry is still noticed", async () => {
  // Ranges still open at this moment: each ends after it, so none is held whole.
  const cache = createClosedBucketCache({ settleSeconds: 0, now: () => END - 2 * 60_000 + 1000, replicated: true });
  const { client: statements, last } = recordingClient(clickhouse);
  // Open ranges that end at different seconds of one minute: the same minutes' entries, other raw edges.
  const ranges = [5, 17, 29].map((s) => parseTimeRange({ from: iso(END - 20 * HOUR - 2 * 60_000 + s * 1000), to: iso(END - 2 * 60_000 + s * 1000) }));
  await queryAgentActivity(statements, 'acme', ranges[0]!, {}, undefined, cache);
  await cache.settled();
  await queryAgentActivity(statements, 'acme', ranges[0]!, {}, undefined, cache);
  await cache.settled();
  for (const range of ranges) {
    const plain = await queryAgentActivity(clickhouse, 'acme', range, {}, undefined, NO_CACHE);
    assert.ok(plain.some((a) => a.tools > 1 && a.accounts > 1));
    assert.deepEqual(await queryAgentActivity(statements, 'acme', range, {}, undefined, cache), plain);
    assert.doesNotMatch(last(), /entry_tools|entry_accounts/);
  }
  assert.equal(cache.stats().stale, 0);
  assert.equal(cache.stats().keySets, 2, 'distinct tools and accounts');
  // The key sets are held, but on replicated tables the statement's guard counts every entry's rows: a
  // lost entry fails it, and the request is answered without the cache; the stale entries' key sets are
  // dropped.
  await clickhouse.command({ query: 'TRUNCATE TABLE closed_buckets_v1' });
  assert.deepEqual(await queryAgentActivity(statements, 'acme', ranges[1]!, {}, undefined, cache), await queryAgentActivity(clickhouse, 'acme', ranges[1]!, {}, undefined, NO_CACHE));
  assert.ok(cache.stats().stale > 0);
  assert.equal(cache.stats().keySets, 0);
});

test("one server: an entry's rows are counted once, after its fill; the guard looks at the write log and the server's start", async () => {
  const cache = createClosedBucketCache({ settleSeconds: 0 });
  const { client: statements, sent: seen } = recordingClient(clickhouse);
  const plain = await queryAgentActivity(clickhouse, 'acme', RANGE, {}, undefined, NO_CACHE);
  await queryAgentActivity(statements, 'acme', RANGE, {}, undefined, cache);
  await cache.settled();
  seen.length = 0;
  assert.deepEqual(await queryAgentActivity(statements, 'acme', RANGE, {}, undefined, cache), plain);
  assert.equal(cache.stats().stale, 0);
  const read = seen.find((q) => q.includes('closed-bucket cache entry missing or stale'));
  assert.ok(read, 'the answer was read from entries');
  assert.doesNotMatch(read, /FROM closed_buckets_v1 WHERE entry IN/);
  assert.match(read, /uptime\(\)/);

  // The server's start against the fill's time: a fill that began before the server started fails it.
  const guarded = (filled: string) =>
    clickhouse.query({
      query: `SELECT 1 WHERE ${cacheGuard(1, 1, false)}`,
      query_params: { tenant: 'nobody', cache_settle: 0, cache_since_0: filled, cache_from_0: '2000-01-01 00:00:00', cache_to_0: '2000-01-02 00:00:00', cache_filled: filled },
      format: 'JSONEachRow',
    }).then((r) => r.json());
  assert.deepEqual(await guarded(formatClickHouse({ epochMs: Date.now(), subMsNanos: 0 })), [{ '1': 1 }]);
  await assert.rejects(guarded('2000-01-01 00:00:00'), /closed-bucket cache entry missing or stale/);
});

test('key sets are held within their row bound: the least recently used go first, and an entry over it is grouped in the statement', async () => {
  const now = () => END - 2 * 60_000 + 1000;
  const range = parseTimeRange({ from: iso(END - 20 * HOUR - 2 * 60_000 + 5000), to: iso(END - 2 * 60_000 + 5000) });
  const plain = await queryAgentActivity(clickhouse, 'acme', range, {}, undefined, NO_CACHE);
  const { client: statements, last } = recordingClient(clickhouse);
  /** Asks until the key sets the bound allows are held, checking every answer. */
  const ask = async (cache: ReturnType<typeof createClosedBucketCache>) => {
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await queryAgentActivity(statements, 'acme', range, {}, undefined, cache), plain);
      await cache.settled();
    }
  };
  const unbounded = createClosedBucketCache({ settleSeconds: 0, now });
  await ask(unbounded);
  const { keySets, keySetRows } = unbounded.stats();
  assert.equal(keySets, 2);
  // One row short of both: holding one drops the other.
  const short = createClosedBucketCache({ settleSeconds: 0, now, maxKeyRows: keySetRows - 1 });
  await ask(short);
  assert.equal(short.stats().keySets, 1);
  assert.ok(short.stats().keySetRows <= keySetRows - 1);
  // Every entry over the bound: none held, both grouped in the statement.
  const none = createClosedBucketCache({ settleSeconds: 0, now, maxKeyRows: 1 });
  await ask(none);
  assert.equal(none.stats().keySets, 0);
  assert.match(last(), /entry_tools/);
  assert.match(last(), /entry_accounts/);
});

test('hours that received a write within the settling time are not cached', async () => {
  // Every call was written within the settling time (an hour).
  const minute = Math.floor(Date.now() / 60_000) * 60_000;
  let clock = minute + 10_000;
  const cache = createClosedBucketCache({ settleSeconds: 3600, now: () => clock });
  const plain = await queryTopServices(clickhouse, 'acme', RANGE, {}, 10, NO_CACHE);
  assert.deepEqual(await queryTopServices(clickhouse, 'acme', RANGE, {}, 10, cache), plain);
  await cache.settled();
  assert.deepEqual(cache.stats(), { entries: 0, hits: 0, fills: 0, unsettled: 2, stale: 0, failed: 0, answers: 0, answerBytes: 0, answered: 0, staleAnswers: 0, keySets: 0, keySetRows: 0 });
  // A range open at the clock: asked at 10 s into the minute, then at 40 s, when the next minute's
  // entry is tried too, once; then only the minutes' and hours' again.
  const open = parseTimeRange({ from: iso(END - 30 * HOUR), to: iso(minute + 41_000) });
  const openPlain = await queryTopServices(clickhouse, 'acme', open, {}, 10, NO_CACHE);
  const unsettledAfter = async () => {
    assert.deepEqual(await queryTopServices(clickhouse, 'acme', open, {}, 10, cache), openPlain);
    await cache.settled();
    return cache.stats().unsettled;
  };
  assert.equal(await unsettledAfter(), 4);
  clock = minute + 40_000;
  assert.equal(await unsettledAfter(), 7);
  assert.equal(await unsettledAfter(), 9);
  assert.equal(cache.stats().entries, 0);
});

test("one tenant's entries never answer another tenant's question", async () => {
  const cache = createClosedBucketCache({ settleSeconds: 0 });
  const acme = await queryAgentActivity(clickhouse, 'acme', RANGE, {}, undefined, cache);
  await cache.settled();
  const globex = await queryAgentActivity(clickhouse, 'globex', RANGE, {}, undefined, cache);
  await cache.settled();
  assert.deepEqual(await queryAgentActivity(clickhouse, 'globex', RANGE, {}, undefined, cache), globex);
  assert.deepEqual(globex, await queryAgentActivity(clickhouse, 'globex', RANGE, {}, undefined, NO_CACHE));
  assert.deepEqual(new Map(globex.map((a) => [a.agent, a.calls])), expectedCalls('globex'));
  assert.notDeepEqual(globex, acme);
  assert.equal(cache.stats().entries, 12);
});

test('a request never waits for a fill: it is answered at once, and the fill serves the requests after it', async () => {
  const held: Array<() => Promise<unknown>> = [];
  // Fills are held back until the test lets them run.
  const cache = createClosedBucketCache({
    settleSeconds: 0,
    detach: <T>(work: () => Promise<T>) => {
      held.push(work);
      return new Promise<T>(() => {});
    },
  });
  const plain = await querySlowestTools(clickhouse, 'acme', RANGE, {}, 10, 'P95', NO_CACHE);
  assert.deepEqual(await querySlowestTools(clickhouse, 'acme', RANGE, {}, 10, 'P95', cache), plain);
  assert.deepEqual(cache.stats(), { entries: 0, hits: 0, fills: 0, unsettled: 0, stale: 0, failed: 0, answers: 0, answerBytes: 0, answered: 0, staleAnswers: 0, keySets: 0, keySetRows: 0 });
  assert.equal(held.length, 2, 'the minutes and the hours');
  await Promise.all(held.map((work) => work()));
  assert.equal(cache.stats().fills, 2);
  assert.deepEqual(await querySlowestTools(clickhouse, 'acme', RANGE, {}, 10, 'P95', cache), plain);
  assert.equal(cache.stats().hits, 1);
});

test('a request that finds the fill of its entry under way waits for it and reads the entry', async () => {
  const cache = createClosedBucketCache({ settleSeconds: 0 });
  const plain = await queryTopServices(clickhouse, 'acme', RANGE, {}, 10, NO_CACHE);
  assert.deepEqual(await queryTopServices(clickhouse, 'acme', RANGE, {}, 10, cache), plain);
  // The first request's answer started the fills (the minutes' entry waits for the hours'); they run now.
  assert.deepEqual([cache.stats().fills, cache.stats().hits], [0, 0]);
  assert.deepEqual(await queryTopServices(clickhouse, 'acme', RANGE, {}, 10, cache), plain);
  assert.deepEqual([cache.stats().fills, cache.stats().hits], [2, 1], 'answered from the minutes\' entry its fill ended with');
});

test("a range moving with the clock has its next minute's entry filled in the second half of this one: the next minute's requests find it", async () => {
  // A minute's 10th second, 2 hours before END (40 minutes into an hour): the hours' entry holds for the minutes asked here.
  let clock = END - 2 * HOUR + 10_000;
  /** Asks overview over [from(), a second after the clock) at each step (still open: the settling time, none here, has not passed over its end), checking the answer and then the cache's fills and hits. */
  const steps = async (from: () => number, list: ReadonlyArray<readonly [advance: number, fillsAndHits: [number, number], what: string]>) => {
    const cache = createClosedBucketCache({ settleSeconds: 0, now: () => clock });
    for (const [advance, fillsAndHits, what] of list) {
      clock += advance;
      const range = parseTimeRange({ from: iso(from()), to: iso(clock + 1_000) });
      assert.deepEqual(await queryOverview(clickhouse, 'acme', range, {}, cache), await queryOverview(clickhouse, 'acme', range, {}, NO_CACHE));
      await cache.settled();
      assert.deepEqual([cache.stats().fills, cache.stats().hits], fillsAndHits, what);
    }
  };
  await steps(
    () => clock + 1_000 - 20 * HOUR,
    [
      [0, [2, 0], 'the minutes and the hours, after the first answer'],
      [1_000, [2, 1], 'the first half of a minute: nothing filled ahead'],
      [30_000, [3, 3], "41 s in: the next minute's entry (filled from the hours' entry held, a hit too)"],
      [1_000, [3, 4], 'filled ahead once'],
      [20_000, [3, 5], "the next minute's first request reads the entry filled ahead"],
    ],
  );
  // A range whose start stays put (month to date) is filled ahead with that start.
  await steps(
    () => END - 20 * HOUR,
    [
      [30_000, [2, 0], 'asked once: nothing filled ahead'],
      [0, [3, 2], "the next minute's entry, from the hours' entry held"],
      [30_000, [3, 3], "the next minute's request reads it"],
    ],
  );
});

test("an ended range's answer is given again until a call is written into the range; an open range's never", async () => {
  const cache = createClosedBucketCache({ settleSeconds: 0 });
  let computed = 0;
  const ask = (tenant: string, range = RANGE) =>
    cache.answer(clickhouse, tenant, ['overview'], range, () => {
      computed++;
      return queryOverview(clickhouse, tenant, range, {}, cache);
    });
  const plain = await queryOverview(clickhouse, 'acme', RANGE, {}, NO_CACHE);
  assert.deepEqual(await ask('acme'), plain);
  assert.deepEqual(await ask('acme'), plain);
  assert.equal(computed, 1);
  assert.equal(cache.stats().answered, 1);

  // Another tenant's question over the same range is its own.
  assert.deepEqual(await ask('globex'), await queryOverview(clickhouse, 'globex', RANGE, {}, NO_CACHE));
  assert.equal(computed, 2);

  // A call arriving late into the ended range: the next request computes again, and counts it.
  await write([{ tenant: 'acme', at: END - 7 * HOUR + 3_000, agent: 'late-answer', tool: TOOLS[1]!, account: 'acct-1', allowed: true, error: false }]);
  const after = await ask('acme');
  assert.equal(computed, 3);
  assert.equal(cache.stats().staleAnswers, 1);
  assert.equal(after.calls, plain.calls + 1);
  assert.deepEqual(after, await queryOverview(clickhouse, 'acme', RANGE, {}, NO_CACHE));
  assert.deepEqual(await ask('acme'), after);
  assert.equal(computed, 3);

  // A range still open (it ends after the settled time) is computed on every request.
  const open = createClosedBucketCache({ settleSeconds: 0, now: () => END - 1 });
  let openComputed = 0;
  for (let i = 0; i < 2; i++) {
    await open.answer(clickhouse, 'acme', ['overview'], RANGE, () => {
      openComputed++;
      return queryOverview(clickhouse, 'acme', RANGE, {}, NO_CACHE);
    });
  }
  assert.equal(openComputed, 2);
  assert.equal(open.stats().answers, 0);
});

test('kept answers stay within their byte bound: the least recently used go first, and one too big is not kept', async () => {
  // 1,600 bytes: sixteen answers of 100 (a JSON string of 98 characters), none over 100.
  const cache = createClosedBucketCache({ settleSeconds: 0, maxAnswerBytes: 1_600 });
  const computed: string[] = [];
  const ask = (name: string, size = 98) =>
    cache.answer(clickhouse, 'acme', [name], RANGE, async () => {
      computed.push(name);
      return 'y'.repeat(size);
    });
  const names = Array.from({ length: 20 }, (_, i) => `q${i}`);
  for (const name of names) await ask(name);
  assert.deepEqual([cache.stats().answers, cache.stats().answerBytes], [16, 1_600]);
  await ask('q19'); // the newest: kept
  await ask('q0'); // among the four oldest, dropped: computed again
  assert.deepEqual(computed, [...names, 'q0']);

  await ask('big', 99);
  await ask('big', 99);
  assert.deepEqual(computed.slice(-2), ['big', 'big'], 'over a sixteenth of the bound: computed each time');
  assert.ok(cache.stats().answerBytes <= 1_600);
});
