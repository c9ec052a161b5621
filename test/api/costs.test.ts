/**
 * Costs against the real embedded ClickHouse: known calls go in through the real tables (and so the
 * rollups), a known price book through PRICES_FILE and the admin mutations; cost reports and chargeback
 * exports must equal the hand-computed amounts below, and an independent computation over the raw
 * events (each event priced on its own by the TypeScript precedence, not the SQL).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { createApi } from '../../api/app.ts';
import { FOCUS_COLUMNS, neutralise } from '../../api/chargeback-export.ts';
import type { Caller } from '../../api/context.ts';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { loadPricesFile, parsePricesFile } from '../../api/prices-file.ts';
import { centsFromAtto } from '../../api/queries/cost-report.ts';
import { appendEntries, comparePrecedence, costCentreFor, loadPriceBook, priceFor, resolveBook, type BookEntry, type NewEntry, type PriceVersion } from '../../api/queries/price-book.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { normalizeAuditRecord, toAuditRow } from '../../model/audit-event.ts';

// ---- fixture ------------------------------------------------------------------------------------------

interface Call {
  at: string;
  agent: string;
  account: string;
  tool: string;
  ms: number;
  denied?: boolean;
  cost?: number;
}

/** Tenant acme. Expected prices per call are worked out in the comments (rules in PRICES below). */
const OCTOBER: Call[] = [
  // payments.Charge.Create exact rule: 0.05 + 4 s × 0.002 = 0.058
  { at: '2026-10-15T08:00:10Z', agent: 'planner', account: 'alice', tool: 'payments.Charge.Create', ms: 4000 },
];
const NOVEMBER: Call[] = [
  // Same minute, exact rule v1: 2 × 0.05 + 3 s × 0.002 = 0.106; reported 0.25
  { at: '2026-11-03T10:00:05Z', agent: 'planner', account: 'alice', tool: 'payments.Charge.Create', ms: 2000, cost: 0.25 },
  { at: '2026-11-03T10:00:30Z', agent: 'planner', account: 'alice', tool: 'payments.Charge.Create', ms: 1000 },
  // Glob payments.*: 0.01 + 0.5 s × 0.001 = 0.0105
  { at: '2026-11-10T12:00:00Z', agent: 'coder', account: 'bob', tool: 'payments.Refund.Create', ms: 500 },
  // service=repo,account=bob (two dimensions) beats the catch-all: 0.002 + 3 s × 0.0005 = 0.0035
  { at: '2026-11-10T12:01:00Z', agent: 'coder', account: 'bob', tool: 'repo.Files.Read', ms: 3000 },
  // Exact rule v2 (from Nov 10): 0.10 + 1 s × 0.002 = 0.102
  { at: '2026-11-12T09:30:00Z', agent: 'planner', account: 'alice', tool: 'payments.Charge.Create', ms: 1000 },
  // Catch-all: 0.001 + 1.5 s × 0.0001 = 0.00115; account carol unmapped, agent coder → team-dev
  { at: '2026-11-20T09:00:00Z', agent: 'coder', account: 'carol', tool: 'repo.Files.Read', ms: 1500 },
  // Catch-all, denied (0 s): 0.001; nothing maps dave or reviewer → unallocated; a formula-like account
  { at: '2026-11-25T18:00:00Z', agent: 'reviewer', account: '=HYPERLINK("x")', tool: 'repo.Files.Write', ms: 0, denied: true },
];
/** Another tenant, same month and names: must never show in acme's answers. */
const GLOBEX: Call[] = [{ at: '2026-11-05T10:00:00Z', agent: 'planner', account: 'alice', tool: 'payments.Charge.Create', ms: 9000, cost: 5 }];

const PRICES = `
tenants:
  acme:
    prices:
      - { effective_from: "2026-10-01T00:00:00Z", per_call: "0.001", per_second: "0.0001", note: catch-all }
      - { tool: "payments.*", effective_from: "2026-10-01T00:00:00Z", per_call: "0.01", per_second: "0.001" }
      - { tool: payments.Charge.Create, effective_from: "2026-10-01T00:00:00Z", per_call: "0.05", per_second: "0.002" }
      - { tool: payments.Charge.Create, effective_from: "2026-11-10T00:00:00Z", per_call: "0.10", per_second: "0.002" }
      - { service: repo, account: bob, effective_from: "2026-10-01T00:00:00Z", per_call: 0.002, per_second: 0.0005 }
    cost_centres:
      - { account: alice, cost_centre: team-payments, effective_from: "2026-10-01T00:00:00Z" }
      - { account: bob, cost_centre: team-platform, effective_from: "2026-10-01T00:00:00Z" }
      - { agent: coder, cost_centre: team-dev, effective_from: "2026-10-01T00:00:00Z" }
  globex:
    prices:
      - { effective_from: "2026-01-01T00:00:00Z", per_call: "1", per_second: "1" }
`;

function row(tenant: string, call: Call, index: number) {
  const normalized = normalizeAuditRecord({
    tenant,
    trace_id: `${tenant}-${index}-${call.at}`,
    timestamp: call.at,
    tool: call.tool,
    account_id: call.account,
    allowed: !call.denied,
    ...(call.denied && { denied_reason: 'scope' }),
    duration: call.ms * 1_000_000,
    ...(call.cost !== undefined && { cost_usd: call.cost }),
    agent: call.agent,
  });
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return toAuditRow(normalized.value);
}

// ---- harness -----------------------------------------------------------------------------------------

const dataDir = mkdtempSync(path.join(tmpdir(), 'costs-test-'));
let clickhouse: ClickHouseClient;
let server: Server;
let baseUrl: string;

const ROLE_KEYS: Record<string, Caller> = {
  'acme-admin': { tenant: 'acme', role: 'admin', name: 'alice-admin' },
  'acme-billing': { tenant: 'acme', role: 'billing', name: 'finance' },
  'acme-viewer': { tenant: 'acme', role: 'viewer', name: 'grafana' },
  'globex-billing': { tenant: 'globex', role: 'billing', name: 'globex-finance' },
};
const KEYS: KeyStore = { size: 5, lookup: (secret) => ROLE_KEYS[secret] };

async function gql(key: string, query: string, variables: Record<string, unknown> = {}) {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as { data?: any; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
}

async function data(key: string, query: string, variables: Record<string, unknown> = {}) {
  const result = await gql(key, query, variables);
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data;
}

async function exportText(query: string, key = 'acme-billing') {
  const response = await fetch(`${baseUrl}/export/chargeback?${query}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: response.status, type: response.headers.get('content-type'), body: await response.text() };
}

/** A CSV body as rows of cells (the fixture has no quoted newlines). */
function csvRows(body: string): string[][] {
  return body
    .trimEnd()
    .split('\r\n')
    .map((line) => {
      const cells: string[] = [];
      let cell = '';
      let quoted = false;
      for (let i = 0; i < line.length; i++) {
        const c = line[i]!;
        if (quoted && c === '"' && line[i + 1] === '"') (cell += '"'), i++;
        else if (c === '"') quoted = !quoted;
        else if (c === ',' && !quoted) cells.push(cell), (cell = '');
        else cell += c;
      }
      cells.push(cell);
      return cells;
    });
}

function records(body: string): Array<Record<string, string>> {
  const [header, ...rest] = csvRows(body);
  return rest.map((cells) => Object.fromEntries(header!.map((h, i) => [h, cells[i]!])));
}

before(async () => {
  clickhouse = await openClickHouse({ database: 'costs_test', dataDir });
  await migrate(clickhouse, { retentionDays: 3650 });
  await clickhouse.insert({
    table: 'audit_events_v1',
    format: 'JSONEachRow',
    values: [...OCTOBER.map((c, i) => row('acme', c, i)), ...NOVEMBER.map((c, i) => row('acme', c, 100 + i)), ...GLOBEX.map((c, i) => row('globex', c, i))],
  });
  const file = path.join(dataDir, 'prices.yaml');
  writeFileSync(file, PRICES);
  assert.deepEqual(await loadPricesFile(clickhouse, file), { acme: 8, globex: 1 });
  ({ server, url: baseUrl } = await new Promise<{ server: Server; url: string }>((resolve) => {
    const s = createServer(createApi({ clickhouse, logger: pino({ level: process.env.TEST_LOG ?? 'silent' }), keys: KEYS }).handle);
    s.listen(0, '127.0.0.1', () => resolve({ server: s, url: `http://127.0.0.1:${(s.address() as AddressInfo).port}` }));
  }));
});

after(async () => {
  server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Each raw event priced on its own by the TypeScript rules at its minute, then summed per group. */
async function independentCosts(tenant: string, fromIso: string, toIso: string, keyOf = (cc: string, call: { account: string; agent: string; tool: string }) => `${cc}|${call.account}`) {
  const result = await clickhouse.query({
    query: `SELECT toUnixTimestamp(toStartOfMinute(timestamp)) * 1000 AS minute_ms, agent, account_id, service, tool, toString(duration_ns) AS duration_ns, toString(ifNull(cost_usd, 0)) AS cost
            FROM audit_events_v1 FINAL WHERE tenant = {tenant:String} AND timestamp >= {from:DateTime64(9)} AND timestamp < {to:DateTime64(9)} AND counted`,
    query_params: { tenant, from: fromIso.replace('T', ' ').replace('Z', ''), to: toIso.replace('T', ' ').replace('Z', '') },
    format: 'JSONEachRow',
  });
  const events = z.array(z.object({ minute_ms: z.coerce.number(), agent: z.string(), account_id: z.string(), service: z.string(), tool: z.string(), duration_ns: z.string(), cost: z.string() })).parse(await result.json());
  const book = await loadPriceBook(clickhouse, tenant);
  const groups = new Map<string, { calls: number; pricedAtto: bigint; reportedAtto: bigint; rules: Set<string> }>();
  for (const e of events) {
    const call = { service: e.service, tool: e.tool, account: e.account_id, agent: e.agent };
    const rule = priceFor(book, call, e.minute_ms);
    const priced = rule ? rule.perCallNanos * 1_000_000_000n + BigInt(e.duration_ns) * rule.perSecondNanos : 0n;
    const [whole, fraction = ''] = e.cost.split('.');
    const reported = (BigInt(whole!) * 1_000_000_000n + BigInt(fraction.padEnd(9, '0').slice(0, 9))) * 1_000_000_000n;
    const key = keyOf(costCentreFor(book, call, e.minute_ms), call);
    const g = groups.get(key) ?? { calls: 0, pricedAtto: 0n, reportedAtto: 0n, rules: new Set<string>() };
    if (rule) g.rules.add(rule.id);
    g.calls += 1;
    g.pricedAtto += priced;
    g.reportedAtto += reported;
    groups.set(key, g);
  }
  return groups;
}

// ---- the price book ------------------------------------------------------------------------------------

describe('price book', () => {
  test('loading the same file again changes nothing', async () => {
    const before = (await loadPriceBook(clickhouse, 'acme')).version;
    const file = path.join(dataDir, 'prices.yaml');
    assert.deepEqual(await loadPricesFile(clickhouse, file), { acme: 0, globex: 0 });
    assert.equal((await loadPriceBook(clickhouse, 'acme')).version, before);
  });

  test('a bad file names the entry and the field', () => {
    assert.throws(() => parsePricesFile('tenants: { acme: { prices: [ { effective_from: "2026-01-01T00:00:00Z", per_call: "0.1", per_second: "-1" } ] } }'), /tenants\.acme\.prices\[0\]\.per_second/);
    assert.throws(() => parsePricesFile('prices: [ { effective_from: "yesterday", per_call: 1, per_second: 1 } ]'), /prices\[0\]\.effective_from/);
  });

  test('the most specific rule wins: dimensions, then exact tool over glob, then account over agent over tool over service', () => {
    const v = (over: Partial<PriceVersion>): PriceVersion => ({ id: JSON.stringify(over), service: '', tool: '', account: '', agent: '', from: 0, until: Infinity, perCallNanos: 0n, perSecondNanos: 0n, changedAt: '', changedBy: '', ...over });
    const rules = [
      v({ id: 'all' }),
      v({ id: 'service', service: 'payments' }),
      v({ id: 'glob-short', tool: 'payments.*' }),
      v({ id: 'glob-long', tool: 'payments.Charge.*' }),
      v({ id: 'exact', tool: 'payments.Charge.Create' }),
      v({ id: 'agent', agent: 'planner' }),
      v({ id: 'account', account: 'alice' }),
      v({ id: 'glob+account', tool: 'payments.*', account: 'alice' }),
      v({ id: 'exact+service', tool: 'payments.Charge.Create', service: 'payments' }),
      v({ id: 'account+agent', account: 'alice', agent: 'planner' }),
      v({ id: 'older-account+agent', account: 'alice', agent: 'planner', from: -1 }),
    ];
    const order = [...rules].sort(comparePrecedence).map((r) => r.id);
    assert.deepEqual(order, ['exact+service', 'glob+account', 'account+agent', 'older-account+agent', 'exact', 'glob-long', 'glob-short', 'account', 'agent', 'service', 'all']);
    const book = { ...resolveBook([]), prices: rules };
    assert.equal(priceFor(book, { service: 'payments', tool: 'payments.Charge.Create', account: 'bob', agent: 'x' }, 0)?.id, 'exact+service');
    assert.equal(priceFor(book, { service: 'payments', tool: 'payments.Refund.Create', account: 'alice', agent: 'x' }, 0)?.id, 'glob+account');
    assert.equal(priceFor(book, { service: 'repo', tool: 'repo.Files.Read', account: 'bob', agent: 'planner' }, 0)?.id, 'agent');
  });

  test('a version holds until the next for the same match; a retired match falls back', () => {
    const entry = (over: Partial<BookEntry>): BookEntry => ({ kind: 'price', service: '', tool: 't', account: '', agent: '', effectiveFrom: 0, perCallNanos: 1n, perSecondNanos: 0n, costCentre: '', retired: false, changedAt: '', changedBy: '', source: '', note: '', ...over });
    const book = resolveBook([entry({ effectiveFrom: 0, perCallNanos: 1n }), entry({ effectiveFrom: 100, perCallNanos: 2n }), entry({ effectiveFrom: 200, retired: true }), entry({ tool: '', effectiveFrom: 0, perCallNanos: 9n })]);
    const call = { service: '', tool: 't', account: '', agent: '' };
    assert.deepEqual([50, 150, 250].map((t) => priceFor(book, call, t)?.perCallNanos), [1n, 2n, 9n]);
  });

  test('prices(at) shows the book in force at that instant', async () => {
    const q = `query ($at: String) { prices(at: $at) { version prices { id perCall perSecond effectiveFrom until } costCentres { account agent costCentre } } }`;
    const early = (await data('acme-viewer', q, { at: '2026-11-05T00:00:00Z' })).prices;
    const exact = early.prices.find((p: any) => p.id === 'tool=payments.Charge.Create');
    assert.deepEqual(exact, { id: 'tool=payments.Charge.Create', perCall: '0.05', perSecond: '0.002', effectiveFrom: '2026-10-01T00:00:00.000Z', until: '2026-11-10T00:00:00.000Z' });
    const late = (await data('acme-viewer', q, { at: '2026-11-15T00:00:00Z' })).prices;
    assert.equal(late.prices.find((p: any) => p.id === 'tool=payments.Charge.Create').perCall, '0.1');
    assert.deepEqual(early.prices.map((p: any) => p.id), ['service=repo,account=bob', 'tool=payments.Charge.Create', 'tool=payments.*', '*'], 'most specific first');
    assert.equal(early.costCentres.length, 3);
    assert.deepEqual((await data('acme-viewer', q, { at: '2026-09-01T00:00:00Z' })).prices.prices, []);
  });

  test('setPrice needs admin: a viewer gets FORBIDDEN and the book is unchanged', async () => {
    const result = await gql('acme-viewer', `mutation { setPrice(input: { tool: "x", perCall: "1", perSecond: "0", effectiveFrom: "2026-11-01T00:00:00Z" }) { version } }`);
    assert.equal(result.errors?.[0]?.extensions?.code, 'FORBIDDEN');
    assert.equal((await loadPriceBook(clickhouse, 'acme')).entries.length, 8);
  });

  test('bad prices and times are BAD_USER_INPUT naming the argument', async () => {
    const bad = await gql('acme-admin', `mutation { setPrice(input: { tool: "x", perCall: "0.1234567891", perSecond: "0", effectiveFrom: "2026-11-01T00:00:00Z" }) { version } }`);
    assert.equal(bad.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.equal(bad.errors?.[0]?.extensions?.argument, 'input.perCall');
    const time = await gql('acme-admin', `mutation { setPrice(input: { tool: "x", perCall: "1", perSecond: "0", effectiveFrom: "soon" }) { version } }`);
    assert.equal(time.errors?.[0]?.extensions?.argument, 'input.effectiveFrom');
  });
});

// ---- reports ---------------------------------------------------------------------------------------------

const NOV = { from: '2026-11-01T00:00:00Z', to: '2026-12-01T00:00:00Z' };
const REPORT = `query ($from: String!, $to: String!, $groupBy: [CostGroup!], $filter: CostFilter) {
  costReport(from: $from, to: $to, groupBy: $groupBy, filter: $filter) {
    priceBookVersion
    rows { costCentre account agent tool day calls unpricedCalls computeSeconds pricedCost { amount micros } reportedCost { amount } total { amount micros } rulesApplied { rule effectiveFrom } }
    total { calls computeSeconds pricedCost { amount micros } reportedCost { amount } total { amount micros } }
  }
}`;

describe('costReport', () => {
  test('by cost centre and account: the hand-computed amounts, rounded half-even to the cent per row', async () => {
    const { costReport } = await data('acme-viewer', REPORT, { ...NOV, groupBy: ['COST_CENTRE', 'ACCOUNT'] });
    const rows = costReport.rows.map((r: any) => [r.costCentre, r.account, r.calls, r.computeSeconds, r.pricedCost.amount, r.reportedCost.amount, r.total.amount]);
    assert.deepEqual(rows, [
      ['team-dev', 'carol', 1, '1.5', '0.000000', '0.000000', '0.000000'], // 0.00115
      ['team-payments', 'alice', 3, '4', '0.210000', '0.250000', '0.460000'], // 0.106 + 0.102 = 0.208
      ['team-platform', 'bob', 2, '3.5', '0.010000', '0.000000', '0.010000'], // 0.0105 + 0.0035 = 0.014
      ['unallocated', '=HYPERLINK("x")', 1, '0', '0.000000', '0.000000', '0.000000'], // 0.001
    ]);
    assert.deepEqual(costReport.total, { calls: 7, computeSeconds: '9', pricedCost: { amount: '0.220000', micros: '220000' }, reportedCost: { amount: '0.250000' }, total: { amount: '0.470000', micros: '470000' } });
    const sum = costReport.rows.reduce((s: bigint, r: any) => s + BigInt(r.total.micros), 0n);
    assert.equal(sum, 470000n);
  });

  test('equals an independent computation over the raw events, row by row', async () => {
    const { costReport } = await data('acme-viewer', REPORT, { ...NOV, groupBy: ['COST_CENTRE', 'ACCOUNT'] });
    const expected = await independentCosts('acme', NOV.from, NOV.to);
    assert.equal(costReport.rows.length, expected.size);
    for (const r of costReport.rows) {
      const e = expected.get(`${r.costCentre}|${r.account}`)!;
      assert.equal(r.calls, e.calls);
      assert.equal(r.pricedCost.micros, String(centsFromAtto(e.pricedAtto)));
      assert.equal(BigInt(r.total.micros), centsFromAtto(e.pricedAtto) + centsFromAtto(e.reportedAtto));
    }
  });

  test('a later effective_from changes only later costs; the rules applied are listed', async () => {
    const { costReport } = await data('acme-viewer', REPORT, { ...NOV, groupBy: ['TOOL', 'DAY'], filter: { tool: 'payments.Charge.Create' } });
    const rows = costReport.rows.map((r: any) => [r.day, r.calls, r.pricedCost.amount, r.rulesApplied.map((a: any) => `${a.rule}@${a.effectiveFrom}`)]);
    assert.deepEqual(rows, [
      ['2026-11-03', 2, '0.110000', ['tool=payments.Charge.Create@2026-10-01T00:00:00.000Z']], // 0.106
      ['2026-11-12', 1, '0.100000', ['tool=payments.Charge.Create@2026-11-10T00:00:00.000Z']], // 0.102
    ]);
  });

  test("another tenant's calls and prices never show", async () => {
    const { costReport } = await data('acme-viewer', REPORT, { ...NOV, filter: { account: 'alice' } });
    assert.equal(costReport.total.calls, 3);
    assert.equal(costReport.total.reportedCost.amount, '0.250000');
  });

  test('a record arriving late for a range already reported shows at once (no stale answer)', async () => {
    const SEPT = { from: '2026-09-01T00:00:00Z', to: '2026-10-01T00:00:00Z', groupBy: ['ACCOUNT'] };
    assert.deepEqual((await data('acme-viewer', REPORT, SEPT)).costReport.rows, []);
    await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: [row('acme', { at: '2026-09-15T10:00:00Z', agent: 'coder', account: 'erin', tool: 'repo.Files.Read', ms: 2000 }, 800)] });
    // No rule is in force before October: the call is counted, unpriced.
    const rows = (await data('acme-viewer', REPORT, SEPT)).costReport.rows;
    assert.deepEqual(rows.map((r: any) => [r.account, r.calls, r.unpricedCalls, r.pricedCost.amount]), [['erin', 1, 1, '0.000000']]);
  });

  test('bad arguments are BAD_USER_INPUT', async () => {
    const bad = await gql('acme-viewer', REPORT, { from: 'yesterday', to: NOV.to });
    assert.equal(bad.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    const reversed = await gql('acme-viewer', REPORT, { from: NOV.to, to: NOV.from });
    assert.equal(reversed.errors?.[0]?.extensions?.argument, 'from');
    const enumValue = await gql('acme-viewer', REPORT, { ...NOV, groupBy: ['COLOUR'] });
    assert.ok(enumValue.errors?.length);
  });
});

test('a book of 150 rules (three words of rule masks) prices each call as the TypeScript precedence does', async () => {
  const at = Date.UTC(2026, 9, 1);
  const entries: NewEntry[] = [];
  const rule = (match: Partial<NewEntry>, perCall: number, perSecond: number, effectiveFrom = at): NewEntry => ({
    kind: 'price', service: '', tool: '', account: '', agent: '', effectiveFrom, perCallNanos: BigInt(perCall), perSecondNanos: BigInt(perSecond), costCentre: '', retired: false, ...match,
  });
  entries.push(rule({}, 1_000, 10));
  for (let i = 0; i < 100; i++) entries.push(rule({ tool: `svc${i % 3}.S.M${i}` }, 2_000 + i, 20 + i));
  for (let i = 0; i < 30; i++) entries.push(rule({ tool: i % 2 ? `svc${i % 3}.S.M${i}?` : `svc${i % 3}.*` }, 5_000 + i, 50));
  for (let i = 0; i < 19; i++) entries.push(rule({ account: `a${i % 5}`, agent: i % 2 ? `g${i % 3}` : '', tool: i % 3 ? '' : `svc${i % 3}.*` }, 9_000 + i, 90 + i, at + i * 86_400_000));
  assert.equal(await appendEntries(clickhouse, 'initech', entries, { changedBy: 'test', source: 'api' }), 150);
  const calls: Call[] = [];
  for (let i = 0; i < 60; i++) {
    calls.push({ at: new Date(Date.UTC(2026, 10, 1 + (i % 28), i % 24, i)).toISOString(), agent: `g${i % 4}`, account: `a${i % 6}`, tool: `svc${i % 3}.S.M${(i * 7) % 130}`, ms: 10 * i + 1 });
  }
  await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: calls.map((c, i) => row('initech', c, 5000 + i)) });
  const key = 'initech-viewer';
  ROLE_KEYS[key] = { tenant: 'initech', role: 'viewer', name: key };
  const { costReport } = await data(key, REPORT, { ...NOV, groupBy: ['ACCOUNT', 'AGENT', 'TOOL'] });
  const expected = await independentCosts('initech', NOV.from, NOV.to, (_cc, c) => `${c.account}|${c.agent}|${c.tool}`);
  assert.equal(costReport.rows.length, expected.size);
  let checked = 0;
  for (const r of costReport.rows) {
    const e = expected.get(`${r.account}|${r.agent}|${r.tool}`)!;
    assert.equal(r.calls, e.calls);
    assert.equal(r.pricedCost.micros, String(centsFromAtto(e.pricedAtto)), `${r.account} ${r.agent} ${r.tool}`);
    assert.deepEqual(r.rulesApplied.map((a: any) => a.rule).sort(), [...e.rules].sort());
    checked++;
  }
  assert.ok(checked > 30);
  const winners = new Set(costReport.rows.flatMap((r: any) => r.rulesApplied.map((a: any) => a.rule)));
  assert.ok([...winners].some((w) => String(w).includes('*')) && [...winners].some((w) => String(w).includes('account=')), 'globs and account rules both win somewhere');
});

describe('budgets', () => {
  const BUDGETS = `query ($period: String) { budgets(period: $period) { scope key amount { amount } spend { amount } forecast { amount } thresholds crossed { threshold crossedAt spendAtCrossing { amount } recordedAt } changedBy } }`;

  test('setBudget needs billing; bad input is coded', async () => {
    const viewer = await gql('acme-viewer', `mutation { setBudget(input: { account: "bob", period: "2026-11", amount: "1" }) { key } }`);
    assert.equal(viewer.errors?.[0]?.extensions?.code, 'FORBIDDEN');
    const both = await gql('acme-billing', `mutation { setBudget(input: { account: "bob", agent: "coder", period: "2026-11", amount: "1" }) { key } }`);
    assert.equal(both.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    const amount = await gql('acme-billing', `mutation { setBudget(input: { account: "bob", period: "2026-11", amount: "0.001" }) { key } }`);
    assert.equal(amount.errors?.[0]?.extensions?.argument, 'input.amount');
  });

  test('each threshold is crossed at the minute of the call that reached it, and recorded once', async () => {
    // bob in November: 12:00 0.0105, 12:01 0.0035 (cumulative 0.014). Budget 0.02: 50% = 0.01, 70% = 0.014.
    await data('acme-billing', `mutation { setBudget(input: { account: "bob", period: "2026-11", amount: "0.02", thresholds: [70, 50] }) { key } }`);
    await data('acme-billing', `mutation { setBudget(input: { costCentre: "team-payments", period: "2026-11", amount: "1.00" }) { key } }`);
    const first = (await data('acme-viewer', BUDGETS, { period: '2026-11' })).budgets;
    const bob = first.find((b: any) => b.key === 'bob');
    assert.deepEqual({ ...bob, crossed: bob.crossed.map((c: any) => ({ ...c, recordedAt: undefined })) }, {
      scope: 'ACCOUNT',
      key: 'bob',
      amount: { amount: '0.020000' },
      spend: { amount: '0.010000' },
      forecast: { amount: '0.010000' },
      thresholds: [50, 70],
      crossed: [
        { threshold: 50, crossedAt: '2026-11-10T12:00:00Z', spendAtCrossing: { amount: '0.010000' }, recordedAt: undefined },
        { threshold: 70, crossedAt: '2026-11-10T12:01:00Z', spendAtCrossing: { amount: '0.010000' }, recordedAt: undefined },
      ],
      changedBy: 'finance',
    });
    const payments = first.find((b: any) => b.key === 'team-payments');
    assert.deepEqual([payments.scope, payments.spend.amount, payments.crossed], ['COST_CENTRE', '0.460000', []]); // 0.106 + 0.25 + 0.102
    const again = (await data('acme-viewer', BUDGETS, { period: '2026-11' })).budgets.find((b: any) => b.key === 'bob');
    assert.deepEqual(again.crossed.map((c: any) => c.recordedAt), bob.crossed.map((c: any) => c.recordedAt));
    const stored = await clickhouse.query({ query: `SELECT count() AS n FROM budget_events_v1 WHERE tenant = 'acme'`, format: 'JSONEachRow' });
    assert.equal(Number(((await stored.json()) as Array<{ n: string }>)[0]!.n), 2);
  });
});

// ---- exports ---------------------------------------------------------------------------------------------

describe('chargeback export', () => {
  test('CSV: the hand-computed lines, a total line that is their sum, period, generation time and price-book version', async () => {
    const response = await exportText('period=2026-11&groupBy=costCentre,account&format=csv');
    assert.equal(response.status, 200);
    assert.match(response.type!, /^text\/csv/);
    const version = (await loadPriceBook(clickhouse, 'acme')).version;
    const lines = records(response.body);
    assert.deepEqual(
      lines.map((l) => [l.line_type, l.cost_centre, l.account, l.calls, l.compute_seconds, l.priced_cost, l.reported_cost, l.total_cost]),
      [
        ['usage', 'team-dev', 'carol', '1', '1.5', '0.00', '0.00', '0.00'],
        ['usage', 'team-payments', 'alice', '3', '4', '0.21', '0.25', '0.46'],
        ['usage', 'team-platform', 'bob', '2', '3.5', '0.01', '0.00', '0.01'],
        ['usage', 'unallocated', `'=HYPERLINK("x")`, '1', '0', '0.00', '0.00', '0.00'],
        ['total', '', '', '7', '9', '0.22', '0.25', '0.47'],
      ],
    );
    for (const l of lines) {
      assert.equal(l.period, '2026-11');
      assert.equal(l.currency, 'USD');
      assert.equal(l.price_book_version, version);
      assert.ok(Math.abs(Date.parse(l.generated_at!) - Date.now()) < 60_000);
    }
    // RFC 4180: CRLF records, the quote inside a cell doubled, the cell quoted.
    assert.ok(response.body.includes(`,"'=HYPERLINK(""x"")",`));
  });

  test('formula-like text cells are neutralised, amounts are not', () => {
    assert.deepEqual(['=1+1', '+1', '-1', '@SUM(A1)', '\tx', '\rx', 'alice'].map(neutralise), ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", 'alice']);
  });

  test('JSON: the same lines and total', async () => {
    const response = await exportText('period=2026-11&groupBy=costCentre&format=json');
    assert.equal(response.status, 200);
    const body = JSON.parse(response.body);
    assert.equal(body.period, '2026-11');
    assert.deepEqual(
      body.lines.map((l: any) => [l.costCentre, l.totalCost]),
      [
        ['team-dev', '0.00'],
        ['team-payments', '0.46'],
        ['team-platform', '0.01'],
        ['unallocated', '0.00'],
      ],
    );
    assert.equal(body.total.totalCost, '0.47');
  });

  test('FOCUS 1.2: every mandatory column, with valid values', async () => {
    const response = await exportText('period=2026-11&groupBy=costCentre,account,agent,service,tool&format=focus');
    assert.equal(response.status, 200);
    const [header] = csvRows(response.body);
    const mandatory = ['BilledCost', 'BillingAccountId', 'BillingAccountName', 'BillingCurrency', 'BillingPeriodEnd', 'BillingPeriodStart', 'ChargeCategory', 'ChargeClass', 'ChargeDescription', 'ChargePeriodEnd', 'ChargePeriodStart', 'ContractedCost', 'EffectiveCost', 'InvoiceIssuerName', 'ListCost', 'PricingQuantity', 'PricingUnit', 'ProviderName', 'PublisherName', 'ServiceCategory', 'ServiceName'];
    for (const column of mandatory) assert.ok(header!.includes(column), column);
    assert.deepEqual(header, FOCUS_COLUMNS);
    const rows = records(response.body);
    assert.equal(rows.length, 5, 'one row per group, no total row (FinOps tools sum rows)');
    let billed = 0n;
    for (const r of rows) {
      for (const column of ['BilledCost', 'BillingAccountId', 'BillingCurrency', 'ChargeCategory', 'ChargeDescription', 'ServiceCategory', 'ServiceName', 'ProviderName', 'PublisherName', 'InvoiceIssuerName', 'PricingQuantity', 'PricingUnit']) assert.notEqual(r[column], '', column);
      assert.equal(r.BillingCurrency, 'USD');
      assert.equal(r.BillingPeriodStart, '2026-11-01T00:00:00Z');
      assert.equal(r.BillingPeriodEnd, '2026-12-01T00:00:00Z');
      assert.equal(r.ChargeCategory, 'Usage');
      assert.equal(r.ChargeClass, '');
      assert.equal(r.ServiceCategory, 'AI and Machine Learning');
      assert.match(r.BilledCost!, /^-?\d+\.\d{2}$/);
      assert.equal(r.EffectiveCost, r.BilledCost);
      assert.match(r.ChargePeriodStart!, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
      const tags = JSON.parse(r.Tags!);
      assert.ok(typeof tags.agent === 'string' && typeof tags.cost_centre === 'string');
      billed += BigInt(r.BilledCost!.replace('.', ''));
    }
    const alice = rows.filter((r) => r.SubAccountId === 'alice');
    assert.deepEqual(alice.map((r) => [r.ServiceName, r.ResourceId, r.PricingQuantity, r.ConsumedQuantity, r.ConsumedUnit]), [['payments', 'payments.Charge.Create', '3', '4', 'Seconds']]);
    assert.equal(billed, 47n, 'the same total as the CSV, in cents');
  });

  test('refusals: no key 401, a viewer 403, bad period, groupBy and format 400, all with a code', async () => {
    const none = await fetch(`${baseUrl}/export/chargeback?period=2026-11`);
    assert.equal(none.status, 401);
    assert.equal((await none.json()).error.code, 'UNAUTHENTICATED');
    const viewer = await exportText('period=2026-11', 'acme-viewer');
    assert.equal(viewer.status, 403);
    assert.equal(JSON.parse(viewer.body).error.code, 'FORBIDDEN');
    for (const [query, argument] of [
      ['period=2026-13', 'period'],
      ['period=november', 'period'],
      ['', 'period'],
      ['period=2026-11&groupBy=colour', 'groupBy'],
      ['period=2026-11&groupBy=account,account', 'groupBy'],
      ['period=2026-11&format=xlsx', 'format'],
    ]) {
      const r = await exportText(query!);
      assert.equal(r.status, 400, query);
      assert.deepEqual([JSON.parse(r.body).error.code, JSON.parse(r.body).error.argument], ['BAD_USER_INPUT', argument]);
    }
  });

  test("tenant B's billing key gets nothing of tenant A's", async () => {
    const lines = records((await exportText('period=2026-11&groupBy=costCentre,account', 'globex-billing')).body);
    // globex: one call, 1 + 9 s × 1 = 10.00 priced, 5.00 reported; no cost centres → unallocated.
    assert.deepEqual(
      lines.map((l) => [l.line_type, l.cost_centre, l.account, l.calls, l.priced_cost, l.reported_cost, l.total_cost]),
      [
        ['usage', 'unallocated', 'alice', '1', '10.00', '5.00', '15.00'],
        ['total', '', '', '1', '10.00', '5.00', '15.00'],
      ],
    );
  });
});

// ---- closed periods ------------------------------------------------------------------------------------------

describe('closed periods', () => {
  const OCT = 'period=2026-10&groupBy=costCentre,account&format=csv';
  let octoberBefore: string;

  test('closing needs billing; a viewer is refused', async () => {
    const refused = await gql('acme-viewer', `mutation { closePeriod(period: "2026-10") { period } }`);
    assert.equal(refused.errors?.[0]?.extensions?.code, 'FORBIDDEN');
    const bad = await gql('acme-billing', `mutation { closePeriod(period: "2026-1") { period } }`);
    assert.equal(bad.errors?.[0]?.extensions?.argument, 'period');
  });

  test('a back-dated price and a late record leave the closed export byte-identical and show as adjustments next period', async () => {
    octoberBefore = (await exportText(OCT)).body;
    assert.deepEqual(
      records(octoberBefore).map((l) => [l.line_type, l.cost_centre, l.account, l.total_cost]),
      [
        ['usage', 'team-payments', 'alice', '0.06'], // 0.058
        ['total', '', '', '0.06'],
      ],
    );
    const closed = await data('acme-billing', `mutation { closePeriod(period: "2026-10") { period closed sha256 groupBy by } }`);
    assert.deepEqual({ ...closed.closePeriod, sha256: undefined }, { period: '2026-10', closed: true, sha256: undefined, groupBy: ['COST_CENTRE', 'ACCOUNT'], by: 'finance' });
    assert.match(closed.closePeriod.sha256, /^[0-9a-f]{64}$/);
    const octoberClosed = (await exportText(OCT)).body;
    // Closed: generated_at is the closing time from now on.
    assert.deepEqual(records(octoberClosed).map((l) => l.total_cost), ['0.06', '0.06']);

    // Back-dated on purpose: alice's charges cost 0.50 a call in October only.
    await data('acme-admin', `mutation { setPrice(input: { tool: "payments.Charge.Create", account: "alice", perCall: "0.5", perSecond: "0.002", effectiveFrom: "2026-10-01T00:00:00Z", note: "contract" }) { version } }`);
    await data('acme-admin', `mutation { retirePrice(input: { tool: "payments.Charge.Create", account: "alice", effectiveFrom: "2026-11-01T00:00:00Z" }) { version } }`);
    // A late record for October: bob reads for 10 s: 0.002 + 10 × 0.0005 = 0.007.
    await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: [row('acme', { at: '2026-10-20T11:00:00Z', agent: 'coder', account: 'bob', tool: 'repo.Files.Read', ms: 10_000 }, 900)] });

    assert.equal((await exportText(OCT)).body, octoberClosed, 'the closed export is byte-identical');
    const november = records((await exportText('period=2026-11&groupBy=costCentre,account&format=csv')).body);
    assert.deepEqual(
      november.map((l) => [l.line_type, l.adjusts_period, l.cost_centre, l.account, l.calls, l.priced_cost, l.total_cost]),
      [
        ['usage', '', 'team-dev', 'carol', '1', '0.00', '0.00'],
        ['usage', '', 'team-payments', 'alice', '3', '0.21', '0.46'],
        ['usage', '', 'team-platform', 'bob', '2', '0.01', '0.01'],
        ['usage', '', 'unallocated', `'=HYPERLINK("x")`, '1', '0.00', '0.00'],
        ['adjustment', '2026-10', 'team-payments', 'alice', '0', '0.45', '0.45'], // 0.508 → 0.51, billed 0.06
        ['adjustment', '2026-10', 'team-platform', 'bob', '1', '0.01', '0.01'], // 0.007 late
        ['total', '', '', '', '8', '0.68', '0.93'],
      ],
    );
    const focus = records((await exportText('period=2026-11&groupBy=costCentre,account&format=focus')).body);
    const corrections = focus.filter((r) => r.ChargeClass === 'Correction');
    assert.deepEqual(corrections.map((r) => [r.SubAccountId, r.BilledCost, r.ChargePeriodStart, r.BillingPeriodStart]), [
      ['alice', '0.45', '2026-10-01T00:00:00Z', '2026-11-01T00:00:00Z'],
      ['bob', '0.01', '2026-10-01T00:00:00Z', '2026-11-01T00:00:00Z'],
    ]);
  });

  test('a closed period is asked only at the grain it was closed with', async () => {
    const r = await exportText('period=2026-10&groupBy=costCentre,account,tool');
    assert.equal(r.status, 409);
    assert.equal(JSON.parse(r.body).error.code, 'PERIOD_CLOSED_GRAIN');
    assert.equal((await exportText('period=2026-10&groupBy=costCentre')).status, 200);
  });

  test('closing November keeps the adjustments billed; reopening needs admin and a reason, and is logged', async () => {
    await data('acme-billing', `mutation { closePeriod(period: "2026-11") { period } }`);
    const decemberBefore = records((await exportText('period=2026-12')).body);
    assert.deepEqual(decemberBefore.map((l) => l.line_type), ['total'], 'nothing is owed for October any more');

    const refused = await gql('acme-billing', `mutation { reopenPeriod(period: "2026-10", reason: "contract dispute") { closed } }`);
    assert.equal(refused.errors?.[0]?.extensions?.code, 'FORBIDDEN');
    const noReason = await gql('acme-admin', `mutation { reopenPeriod(period: "2026-10", reason: " ") { closed } }`);
    assert.equal(noReason.errors?.[0]?.extensions?.argument, 'reason');
    const reopened = await data('acme-admin', `mutation { reopenPeriod(period: "2026-10", reason: "contract dispute") { period closed by reason } }`);
    assert.deepEqual(reopened.reopenPeriod, { period: '2026-10', closed: false, by: 'alice-admin', reason: 'contract dispute' });
    const periods = await data('acme-viewer', `{ billingPeriods { period closed reason } }`);
    assert.deepEqual(
      periods.billingPeriods.map((p: any) => [p.period, p.closed, p.reason]).sort((a: any[], b: any[]) => (a[0] < b[0] ? -1 : 1)),
      [
        ['2026-10', false, 'contract dispute'],
        ['2026-11', true, ''],
      ],
    );
    // Open again: October is computed live, with the back-dated price and the late record.
    assert.deepEqual(records((await exportText(OCT)).body).map((l) => [l.account, l.total_cost]), [
      ['alice', '0.51'],
      ['bob', '0.01'],
      ['', '0.52'],
    ]);
    // Closed again, October's statement replaces the first one: the corrections billed for it in
    // November are credited back in the next open period (December).
    await data('acme-billing', `mutation { closePeriod(period: "2026-10") { period } }`);
    assert.deepEqual(records((await exportText('period=2026-12')).body).map((l) => [l.line_type, l.adjusts_period, l.account, l.total_cost]), [
      ['adjustment', '2026-10', 'alice', '-0.45'],
      ['adjustment', '2026-10', 'bob', '-0.01'],
      ['total', '', '', '-0.46'],
    ]);
  });

  test('the price book log says who changed what and when', async () => {
    const { priceBookChanges } = await data('acme-viewer', `{ priceBookChanges(limit: 2) { rule effectiveFrom perCall retired changedBy source note } }`);
    assert.deepEqual(priceBookChanges, [
      { rule: 'tool=payments.Charge.Create,account=alice', effectiveFrom: '2026-11-01T00:00:00.000Z', perCall: null, retired: true, changedBy: 'alice-admin', source: 'api', note: '' },
      { rule: 'tool=payments.Charge.Create,account=alice', effectiveFrom: '2026-10-01T00:00:00.000Z', perCall: '0.5', retired: false, changedBy: 'alice-admin', source: 'api', note: 'contract' },
    ]);
  });
});
