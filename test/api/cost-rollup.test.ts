/**
 * Costs from the daily and weekly cost rollups (sql/0019, sql/0020; api/queries/cost-plan.ts) against
 * costs from the minute rollup alone, on the real embedded ClickHouse: for random price books (mid-day
 * changes at millisecond instants, back-dated prices, retirements, cost-centre mappings) every line of
 * the planned answer must equal the minute-by-minute one exactly, for several groupings, filters and
 * ranges whose ends are not on day boundaries; and a tenant's answer counts exactly its own calls.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { queryCostLines } from '../../api/queries/cost-line-cache.ts';
import { computeCostLines, planFor, type CostDimension, type CostFilter, type MsRange } from '../../api/queries/cost-lines.ts';
import { changePoints, DAY_MS, planCostSources, WEEK_MS, type CostSpan } from '../../api/queries/cost-plan.ts';
import { appendEntries, loadPriceBook, resolveBook, type BookEntry, type PriceBook } from '../../api/queries/price-book.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { normalizeAuditRecord, toAuditRow } from '../../model/audit-event.ts';

/** A small seeded generator (mulberry32): the same cases on every run. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]! };
}

// ---- fixture: calls over 25 days, two tenants with the same names ----------------------------------------

const START = Date.UTC(2026, 9, 1); // 2026-10-01
const END = START + 25 * DAY_MS;
const AGENTS = ['planner', 'coder', 'reviewer', 'scraper'];
const ACCOUNTS = ['alice', 'bob', 'carol', 'dave', 'erin'];
const TOOLS = ['payments.Charge.Create', 'payments.Refund.Create', 'payments.Charge.Get', 'repo.Files.Read', 'repo.Files.Write', 'search.Index.Query'];

interface Call {
  tenant: string;
  atMs: number;
  agent: string;
  account: string;
  tool: string;
  ns: number;
  cost?: number;
}

function calls(tenant: string, n: number, seed: number): Call[] {
  const r = random(seed);
  return Array.from({ length: n }, () => ({
    tenant,
    atMs: START + r.int(END - START),
    agent: r.pick(AGENTS),
    account: r.pick(ACCOUNTS),
    tool: r.pick(TOOLS),
    ns: r.int(5_000_000_000),
    // Reported costs with all 9 decimals on a fifth of the calls.
    ...(r.next() < 0.2 && { cost: r.int(1_000_000_000) / 1e9 }),
  }));
}

const ACME = calls('acme', 3000, 1);
const GLOBEX = calls('globex', 600, 2);

function auditRow(call: Call, index: number) {
  const normalized = normalizeAuditRecord({
    tenant: call.tenant,
    trace_id: `${call.tenant}-${index}`,
    timestamp: new Date(call.atMs).toISOString(),
    tool: call.tool,
    account_id: call.account,
    allowed: true,
    duration: call.ns,
    ...(call.cost !== undefined && { cost_usd: call.cost }),
    agent: call.agent,
  });
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return toAuditRow(normalized.value);
}

// ---- random price books ---------------------------------------------------------------------------------

/** An instant in the fixture's days: on a day boundary, or at a random millisecond inside a day. */
function instant(r: ReturnType<typeof random>, midDay: boolean): number {
  const day = START + (r.int(27) - 1) * DAY_MS;
  return midDay ? day + 1 + r.int(DAY_MS - 1) : day;
}

/**
 * A log of book entries in the order they were made: a catch-all from before the data, rules on any
 * mix of dimensions (tool globs too), later changes at day boundaries and mid-day, prices back-dated
 * behind ones made earlier, retirements, and cost centres for accounts and agents that change too.
 */
function randomBook(seed: number, midDayShare: number): PriceBook {
  const r = random(seed);
  const entries: BookEntry[] = [];
  let changed = 0;
  const entry = (kind: BookEntry['kind'], match: Partial<BookEntry>, effectiveFrom: number, extra: Partial<BookEntry> = {}) => {
    entries.push({
      kind, service: '', tool: '', account: '', agent: '', effectiveFrom, perCallNanos: BigInt(r.int(100_000_000)), perSecondNanos: BigInt(r.int(10_000_000)),
      costCentre: '', retired: false, changedAt: new Date(Date.UTC(2026, 11, 1) + changed++).toISOString(), changedBy: 'test', source: 'api', note: '', ...match, ...extra,
    });
  };
  const matches: Array<Partial<BookEntry>> = [{}];
  entry('price', {}, START - 7 * DAY_MS);
  for (let i = 0; i < 8; i++) {
    const match: Partial<BookEntry> = {};
    if (r.next() < 0.5) match.service = r.pick(['payments', 'repo', 'search']);
    if (r.next() < 0.5) match.tool = r.pick([...TOOLS, 'payments.*', 'repo.Files.*', '*.Create']);
    if (r.next() < 0.3) match.account = r.pick(ACCOUNTS);
    if (r.next() < 0.3) match.agent = r.pick(AGENTS);
    matches.push(match);
    entry('price', match, r.next() < 0.5 ? START - DAY_MS : instant(r, r.next() < midDayShare));
  }
  for (let i = 0; i < 6; i++) {
    const match = r.pick(matches);
    const kind = r.int(4);
    if (kind === 0) entry('price', match, instant(r, r.next() < midDayShare), { retired: true });
    // Back-dated: made after the rest, effective before some of them.
    else entry('price', match, instant(r, r.next() < midDayShare));
  }
  for (const account of ACCOUNTS.slice(0, 3)) entry('cost_centre', { account }, START - DAY_MS, { costCentre: `team-${r.int(3)}`, perCallNanos: 0n, perSecondNanos: 0n });
  for (const agent of AGENTS.slice(0, 2)) entry('cost_centre', { agent }, START - DAY_MS, { costCentre: `agents-${r.int(2)}`, perCallNanos: 0n, perSecondNanos: 0n });
  for (let i = 0; i < 3; i++) {
    const mapped = r.next() < 0.5 ? { account: r.pick(ACCOUNTS) } : { agent: r.pick(AGENTS) };
    entry('cost_centre', mapped, instant(r, r.next() < midDayShare), { costCentre: `team-${r.int(4)}`, retired: r.next() < 0.3, perCallNanos: 0n, perSecondNanos: 0n });
  }
  return resolveBook(entries);
}

// ---- harness ---------------------------------------------------------------------------------------------

const dataDir = mkdtempSync(path.join(tmpdir(), 'cost-rollup-test-'));
let clickhouse: ClickHouseClient;

before(async () => {
  clickhouse = await openClickHouse({ database: 'cost_rollup_test', dataDir });
  await migrate(clickhouse, { retentionDays: 3650 });
  // Several inserts, as the ingest makes them: the rollups hold several rows of a bucket until merged.
  const rows = [...ACME, ...GLOBEX].map(auditRow);
  for (let i = 0; i < rows.length; i += 700) await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: rows.slice(i, i + 700) });
});

after(async () => {
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const minute = (ms: number) => Math.floor(ms / 60_000) * 60_000;
const RANGES: MsRange[] = [
  // Whole weeks and days inside, partial days at both ends.
  { fromMs: START + 13 * 3_600_000 + 27 * 60_000, toMs: END - 5 * 3_600_000 - 11 * 60_000 },
  // From a day boundary to the middle of a day.
  { fromMs: START + 2 * DAY_MS, toMs: START + 17 * DAY_MS + 9 * 60_000 },
  // Inside one day.
  { fromMs: START + 4 * DAY_MS + 60_000, toMs: START + 4 * DAY_MS + 23 * 3_600_000 },
  // Everything, on day boundaries.
  { fromMs: START - DAY_MS, toMs: END + DAY_MS },
];
const GROUPINGS: CostDimension[][] = [[], ['costCentre', 'account'], ['day', 'costCentre'], ['month', 'service', 'tool'], ['agent', 'tool', 'account']];
const FILTERS: CostFilter[] = [{}, { service: 'payments' }, { costCentre: 'team-1' }, { account: 'alice', agent: 'coder' }];

async function assertSameAsMinutes(tenant: string, book: PriceBook, range: MsRange, groupBy: CostDimension[], filter: CostFilter) {
  const planned = await computeCostLines(clickhouse, tenant, range, groupBy, filter, book);
  const minutes = await computeCostLines(clickhouse, tenant, range, groupBy, filter, book, { sources: 'minutes' });
  assert.deepStrictEqual(planned, minutes, `${tenant} ${JSON.stringify(range)} ${groupBy.join(',')} ${JSON.stringify(filter)}`);
  return planned;
}

const levels = (spans: CostSpan[]) => new Set(spans.map((s) => s.level));

// ---- tests -----------------------------------------------------------------------------------------------

describe('planCostSources', () => {
  const book = (points: Array<[number, number]>) =>
    resolveBook(points.map(([from, ix], i) => ({
      kind: 'price', service: '', tool: `t${ix}`, account: '', agent: '', effectiveFrom: from, perCallNanos: 1n, perSecondNanos: 0n,
      costCentre: '', retired: false, changedAt: new Date(i).toISOString(), changedBy: 'test', source: 'api', note: '',
    } satisfies BookEntry)));
  const week = Math.ceil(START / WEEK_MS) * WEEK_MS;

  test('whole weeks, whole days without a change, minutes for the partial days and the days with a change inside', () => {
    // A rule from a day boundary (no gap), one from 14:30:00.250 (a gap day), one ending mid-day by a later version.
    const b = book([[week + DAY_MS, 1], [week + 9 * DAY_MS + 52_200_250, 2], [week - 3 * DAY_MS, 3], [week + 16 * DAY_MS + 60_000, 3]]);
    assert.deepEqual(changePoints(b), [week - 3 * DAY_MS, week + DAY_MS, week + 9 * DAY_MS + 52_200_250, week + 16 * DAY_MS + 60_000]);
    const range = { fromMs: week - 2 * DAY_MS - 3_600_000, toMs: week + 21 * DAY_MS + 120_000 };
    assert.deepEqual(planCostSources(b, range, { levels: new Set(['week', 'day']) }), [
      { level: 'minute', fromMs: range.fromMs, toMs: week - 2 * DAY_MS },
      // No whole week: each has a change inside; the change at week + 1 d is on a day boundary.
      { level: 'day', fromMs: week - 2 * DAY_MS, toMs: week + 9 * DAY_MS },
      { level: 'minute', fromMs: week + 9 * DAY_MS, toMs: week + 10 * DAY_MS },
      { level: 'day', fromMs: week + 10 * DAY_MS, toMs: week + 16 * DAY_MS },
      { level: 'minute', fromMs: week + 16 * DAY_MS, toMs: week + 17 * DAY_MS },
      { level: 'day', fromMs: week + 17 * DAY_MS, toMs: week + 21 * DAY_MS },
      { level: 'minute', fromMs: week + 21 * DAY_MS, toMs: range.toMs },
    ]);
    // Without the change at week + 16 d 00:01, the third week is read whole.
    const whole = book([[week + DAY_MS, 1], [week + 9 * DAY_MS + 52_200_250, 2], [week - 3 * DAY_MS, 3]]);
    assert.deepEqual(planCostSources(whole, range, { levels: new Set(['week', 'day']) }).slice(-2), [
      { level: 'week', fromMs: week + 14 * DAY_MS, toMs: week + 21 * DAY_MS },
      { level: 'minute', fromMs: week + 21 * DAY_MS, toMs: range.toMs },
    ]);
  });

  test('a week read whole when nothing changes inside it; by day when grouped by day; as days across a month start when grouped by month', () => {
    const b = book([[0, 1]]);
    const range = { fromMs: week, toMs: week + 2 * WEEK_MS };
    assert.deepEqual(planCostSources(b, range, { levels: new Set(['week', 'day']) }), [{ level: 'week', fromMs: week, toMs: week + 2 * WEEK_MS }]);
    assert.deepEqual(planFor(b, range, ['day'], {}), [{ level: 'day', fromMs: week, toMs: week + 2 * WEEK_MS }]);
    assert.deepEqual(planFor(b, range, ['account'], { byMinute: true }), [{ level: 'minute', fromMs: week, toMs: week + 2 * WEEK_MS }]);
    // The epoch week holding 2026-11-01 crosses the month's start.
    const nov = Date.UTC(2026, 10, 1);
    const across = Math.floor(nov / WEEK_MS) * WEEK_MS;
    assert.ok(across < nov);
    const spans = planFor(b, { fromMs: across, toMs: across + WEEK_MS }, ['month'], {});
    assert.deepEqual(spans, [{ level: 'day', fromMs: across, toMs: across + WEEK_MS }]);
  });

  test('a range shorter than a day, or not covering one whole, is read by minute', () => {
    const b = book([[0, 1]]);
    assert.deepEqual(planCostSources(b, { fromMs: START + 60_000, toMs: START + DAY_MS + 60_000 }, { levels: new Set(['week', 'day']) }), [{ level: 'minute', fromMs: START + 60_000, toMs: START + DAY_MS + 60_000 }]);
  });
});

describe('costs from the daily and weekly rollups', () => {
  test('equal the minute rollup\'s exactly, for random books with mid-day changes, back-dated prices, retirements and mappings', async () => {
    let coarse = 0;
    let gaps = 0;
    for (let seed = 1; seed <= 5; seed++) {
      const book = randomBook(seed, seed <= 2 ? 0 : 0.5);
      // A range inside one day is read by minute whatever the book (its calls are counted in the last test).
      for (const range of RANGES.filter((r) => r.toMs - r.fromMs > DAY_MS)) {
        const spans = planFor(book, range, [], {});
        if (levels(spans).has('week') || levels(spans).has('day')) coarse++;
        gaps += spans.filter((s) => s.level === 'minute' && s.fromMs % DAY_MS === 0 && s.toMs % DAY_MS === 0).length;
        for (const groupBy of GROUPINGS) await assertSameAsMinutes('acme', book, range, groupBy, {});
        await assertSameAsMinutes('acme', book, range, ['costCentre', 'account'], FILTERS[seed % FILTERS.length]!);
      }
    }
    // The comparison means something only if the plans read the coarse rollups and skipped some days.
    assert.ok(coarse >= 12, `plans reading a coarse rollup: ${coarse}`);
    assert.ok(gaps >= 4, `days read by minute for a change inside them: ${gaps}`);
  });

  test('equal the minute rollup\'s exactly for books without agent rules: mapped accounts read without the agent, the rest by agent', async () => {
    for (let seed = 11; seed <= 14; seed++) {
      // Cost centres for some accounts and agents (randomBook maps both), no price on an agent.
      const random = randomBook(seed, seed <= 12 ? 0 : 0.5);
      const book = resolveBook(random.entries.filter((e) => e.kind !== 'price' || e.agent === ''));
      assert.ok(book.costCentres.some((c) => c.dimension === 'agent') && book.prices.every((p) => p.agent === ''));
      for (const range of RANGES.filter((r) => r.toMs - r.fromMs > DAY_MS)) {
        for (const groupBy of GROUPINGS) await assertSameAsMinutes('acme', book, range, groupBy, {});
        for (const filter of FILTERS) await assertSameAsMinutes('acme', book, range, ['costCentre', 'account'], filter);
      }
    }
  });

  test('a book stored through the log, changed mid-day and back-dated afterwards, applies at once', async () => {
    const tenant = 'globex';
    const at = (day: number, ms = 0) => START + day * DAY_MS + ms;
    const price = (match: Partial<BookEntry>, from: number, perCall: bigint) => ({ kind: 'price' as const, service: '', tool: '', account: '', agent: '', effectiveFrom: from, perCallNanos: perCall, perSecondNanos: 7n, costCentre: '', retired: false, ...match });
    await appendEntries(clickhouse, tenant, [price({}, at(-1), 1_000n), { ...price({ account: 'bob' }, at(-1), 0n), kind: 'cost_centre', costCentre: 'team-bob' }], { changedBy: 'test', source: 'api' });
    const range = { fromMs: at(0, 7 * 60_000), toMs: at(24, 3_600_000) };
    const before = await assertSameAsMinutes(tenant, await loadPriceBook(clickhouse, tenant), range, ['costCentre', 'account'], {});
    // A price for one tool from 09:41:07.123 on day 8, then a correction back-dated to 00:00 on day 3.
    await appendEntries(clickhouse, tenant, [price({ tool: 'repo.Files.Read' }, at(8, 34_867_123), 50_000n)], { changedBy: 'test', source: 'api' });
    await appendEntries(clickhouse, tenant, [price({ tool: 'repo.Files.Read' }, at(3), 20_000n)], { changedBy: 'test', source: 'api' });
    const book = await loadPriceBook(clickhouse, tenant);
    const spans = planFor(book, range, ['costCentre', 'account'], {});
    assert.ok(spans.some((s) => s.level === 'minute' && s.fromMs === at(8) && s.toMs === at(9)), JSON.stringify(spans));
    const after = await assertSameAsMinutes(tenant, book, range, ['costCentre', 'account'], {});
    const priced = (lines: typeof before) => lines.reduce((sum, l) => sum + l.pricedAtto, 0n);
    // The repo.Files.Read calls from day 3 on now cost more: independently, their count × the price difference.
    const read = GLOBEX.filter((c) => c.tool === 'repo.Files.Read' && c.atMs >= at(3) && c.atMs < range.toMs);
    const late = read.filter((c) => minute(c.atMs) >= Math.ceil(at(8, 34_867_123) / 60_000) * 60_000);
    const expected = BigInt(read.length - late.length) * (20_000n - 1_000n) + BigInt(late.length) * (50_000n - 1_000n);
    assert.equal(priced(after) - priced(before), expected * 1_000_000_000n);
  });

  test('a tool the weekly rows do not hold is still matched by its glob', async () => {
    // Calls of a tool whose weekly rows are gone (as for a tool inserted after the statement began).
    const tenant = 'initech';
    const range = { fromMs: START + 2 * DAY_MS + 5 * 3_600_000, toMs: START + 5 * DAY_MS + 3 * 3_600_000 };
    const late = [range.fromMs + 60_000, range.fromMs + DAY_MS].map((atMs) => ({ tenant, atMs, agent: 'coder', account: 'alice', tool: 'payments.Late.Create', ns: 1_000 }));
    await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: late.map((c, i) => auditRow(c, 10_000 + i)) });
    await clickhouse.command({ query: `ALTER TABLE cost_calls_agentless_1w_v1 DELETE WHERE tenant = '${tenant}' SETTINGS mutations_sync = 1` });
    const price = (tool: string, perCall: bigint) => ({ kind: 'price' as const, service: '', tool, account: '', agent: '', effectiveFrom: START - DAY_MS, perCallNanos: perCall, perSecondNanos: 0n, costCentre: '', retired: false, changedAt: '2026-12-01T00:00:00.000Z', changedBy: 'test', source: 'api', note: '' });
    const book = resolveBook([price('', 1_000n), { ...price('*.Create', 7_000n), changedAt: '2026-12-01T00:00:00.001Z' }]);
    const lines = await assertSameAsMinutes(tenant, book, range, ['tool'], {});
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.calls, 2n);
    assert.deepEqual(lines[0]!.rules.map((r) => r.tool), ['*.Create']);
    assert.equal(lines[0]!.pricedAtto, lines[0]!.calls * 7_000n * 1_000_000_000n);
  });

  test('a range moved by a minute, or after a call of its last day, reuses its whole days and weeks; a late record for one of them is counted at once', async () => {
    const tenant = 'umbrella';
    const fixture = calls(tenant, 300, 9);
    await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: fixture.map((c, i) => auditRow(c, i)) });
    const book = randomBook(8, 0.5);
    const fresh = (range: MsRange) => computeCostLines(clickhouse, tenant, range, ['costCentre', 'account'], {}, book);
    const cached = (range: MsRange) => queryCostLines(clickhouse, tenant, range, ['costCentre', 'account'], {}, book);
    // How many statements computing lines a call runs: one for the partial days, two when the whole
    // days and weeks are computed again.
    const statements = async (run: () => Promise<unknown>) => {
      const query = clickhouse.query.bind(clickhouse);
      let n = 0;
      clickhouse.query = ((args: Parameters<typeof query>[0]) => {
        if (args.query.includes('l_priced_atto')) n++;
        return query(args);
      }) as typeof clickhouse.query;
      try {
        await run();
      } finally {
        clickhouse.query = query;
      }
      return n;
    };
    const range = RANGES[0]!;
    assert.deepStrictEqual(await cached(range), await fresh(range));
    const moved = { ...range, toMs: range.toMs + 60_000 };
    assert.equal(await statements(async () => assert.deepStrictEqual(await cached(moved), await fresh(moved))), 1 + 1);
    // A call of the range's last (partial) day, as live traffic writes them: the whole days are reused.
    const live = { tenant, atMs: moved.toMs - 600_000, agent: 'coder', account: 'carol', tool: 'repo.Files.Read', ns: 5_000 };
    await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: [auditRow(live, fixture.length)] });
    assert.equal(await statements(async () => assert.deepStrictEqual(await cached(moved), await fresh(moved))), 1 + 1);
    // A call late for a whole day inside the range (read from the day or week rollups): computed again.
    const day = planFor(book, moved, ['costCentre', 'account'], {}).find((s) => s.level !== 'minute')!;
    const late = { tenant, atMs: day.fromMs + 3_600_000, agent: 'coder', account: 'carol', tool: 'repo.Files.Read', ns: 7_000 };
    await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: [auditRow(late, fixture.length + 1)] });
    let after: Awaited<ReturnType<typeof cached>> = [];
    assert.equal(await statements(async () => assert.deepStrictEqual((after = await cached(moved)), await fresh(moved))), 2 + 1);
    const total = after.reduce((sum, l) => sum + l.calls, 0n);
    assert.equal(total, BigInt(fixture.filter((c) => c.atMs >= moved.fromMs && c.atMs < moved.toMs).length) + 2n);
  });

  test('a tenant\'s answer counts its own calls only, read from the coarse rollups', async () => {
    const book = randomBook(7, 0);
    for (const [tenant, fixture] of [['acme', ACME], ['globex', GLOBEX]] as const) {
      for (const range of RANGES) {
        const read = levels(planFor(book, range, ['account'], {}));
        assert.ok(read.has('week') || read.has('day') || range.toMs - range.fromMs < 2 * DAY_MS);
        const lines = await computeCostLines(clickhouse, tenant, range, ['account'], {}, book);
        const inRange = fixture.filter((c) => c.atMs >= range.fromMs && c.atMs < range.toMs);
        for (const account of ACCOUNTS) {
          const line = lines.find((l) => l.key.account === account);
          const mine = inRange.filter((c) => c.account === account);
          assert.equal(line?.calls ?? 0n, BigInt(mine.length), `${tenant} ${account}`);
          assert.equal(line?.durationNs ?? 0n, mine.reduce((s, c) => s + BigInt(c.ns), 0n), `${tenant} ${account}`);
        }
        assert.equal(lines.length, new Set(inRange.map((c) => c.account)).size);
      }
    }
  });
});
