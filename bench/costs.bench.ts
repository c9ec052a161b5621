/**
 * Cost reports and the chargeback export on the 10M-event data set (issue 11's), against the raw table.
 *
 *   npx tsx bench/costs.bench.ts --dir /work/benchdata/<your copy> [--runs 20]
 *   COSTS_BENCH_DIR=/work/benchdata/<your copy> npm run bench costs
 *   npm run bench costs   (a copy of the benches' cached data set, bench/data/dataset-cache.ts)
 *
 * The directory is opened and written (migrations, a price book): give it a copy, never the original.
 *
 * Loads a realistic price book for the busiest tenant (a catch-all, a rule per service, tool globs,
 * exact tools, account-specific rules, a price change mid-month; 800 accounts and 10 agents mapped to
 * 16 cost centres), then measures, one client: `costReport` over the data set's 30 days grouped by
 * cost centre and account (p50 / p99; beside it the same lines from the minute rollup alone, which
 * must be equal), and the chargeback export of a month (CSV, whole file). Beside
 * each: the raw table's time for the calls and durations per account over the same range (the raw
 * limit), and a check that the report's calls and durations per account equal the raw table's.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { writeStatement } from '../api/chargeback-export.ts';
import { buildStatement } from '../api/queries/chargeback.ts';
import { parsePeriod } from '../api/queries/closed-periods.ts';
import { computeCostLines } from '../api/queries/cost-lines.ts';
import { queryCostReport } from '../api/queries/cost-report.ts';
import { appendEntries, loadPriceBook, type NewEntry } from '../api/queries/price-book.ts';
import { openClickHouse } from '../core/clickhouse.ts';
import { migrate } from '../core/migrate.ts';
import { normalizeAuditRecord, toAuditRow } from '../model/audit-event.ts';
import { cachedDataSet } from './data/dataset-cache.ts';
import { DEFAULT_EVENTS } from './data/generate-events.ts';
import { printTable, type Row } from './table.ts';

const { values } = parseArgs({ options: { dir: { type: 'string', default: process.env.COSTS_BENCH_DIR }, runs: { type: 'string', default: '20' } } });
// Without a directory: a copy of the benches' cached data set (the bench writes a price book into it).
let scratch: string | undefined;
if (!values.dir) {
  const cached = await cachedDataSet(Number(process.env.BENCH_EVENTS ?? DEFAULT_EVENTS), (line) => console.log(line));
  scratch = `${cached}.costs-${process.pid}`;
  console.log(`copying ${cached} to ${scratch}`);
  execFileSync('cp', ['-a', cached, scratch]);
  values.dir = scratch;
  process.once('exit', () => rmSync(scratch!, { recursive: true, force: true }));
}
const RUNS = Number(values.runs);
const TENANT = 'acme';
const dataset = JSON.parse(readFileSync(path.join(values.dir, 'dataset.json'), 'utf8')) as { from?: string; to?: string; end?: string };
const toMs = Date.parse(dataset.to ?? dataset.end ?? '2026-12-04T16:50:23Z');
const range = { fromMs: Math.floor((toMs - 30 * 86_400_000) / 60_000) * 60_000, toMs: Math.ceil(toMs / 60_000) * 60_000 };

const clickhouse = await openClickHouse({ database: 'mcp_analytics', dataDir: values.dir });
await migrate(clickhouse, { retentionDays: 90 });

// ---- a price book of a realistic size ------------------------------------------------------------------

const names = async (column: string) =>
  ((await (await clickhouse.query({ query: `SELECT DISTINCT ${column} AS v FROM tool_calls_1m_v1 WHERE tenant = {t:String} ORDER BY v`, query_params: { t: TENANT }, format: 'JSONEachRow' })).json()) as Array<{ v: string }>).map((r) => r.v);
const [services, tools, accounts, agents] = [await names('service'), await names('tool'), await names('account_id'), await names('agent')];
const from = Date.UTC(2026, 9, 1);
const change = Date.UTC(2026, 10, 20);
const price = (match: Partial<NewEntry>, perCall: bigint, perSecond: bigint, at = from): NewEntry => ({ kind: 'price', service: '', tool: '', account: '', agent: '', effectiveFrom: at, perCallNanos: perCall, perSecondNanos: perSecond, costCentre: '', retired: false, ...match });
const book: NewEntry[] = [price({}, 100_000n, 10_000n)];
services.forEach((service, i) => book.push(price({ service }, 200_000n + BigInt(i) * 1000n, 20_000n)));
services.slice(0, 10).forEach((service) => book.push(price({ tool: `${service}.*` }, 300_000n, 30_000n)));
tools.slice(0, 20).forEach((tool, i) => {
  book.push(price({ tool }, 500_000n + BigInt(i), 50_000n));
  book.push(price({ tool }, 600_000n + BigInt(i), 50_000n, change));
});
accounts.slice(0, 50).forEach((account, i) => book.push(price({ account, service: services[i % services.length]! }, 50_000n, 5_000n)));
accounts.forEach((account, i) => book.push({ ...price({ account }, 0n, 0n), kind: 'cost_centre', costCentre: `team-${i % 16}` }));
agents.slice(0, 10).forEach((agent, i) => book.push({ ...price({ agent }, 0n, 0n), kind: 'cost_centre', costCentre: `agents-${i % 3}` }));
const stored = await appendEntries(clickhouse, TENANT, book, { changedBy: 'bench', source: 'file:bench' });
const priceBook = await loadPriceBook(clickhouse, TENANT);
console.log(`price book: ${priceBook.prices.length} price versions, ${priceBook.costCentres.length} mappings (${stored} stored now); ${services.length} services, ${tools.length} tools, ${accounts.length} accounts`);

// ---- measurements -----------------------------------------------------------------------------------------

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function timed<T>(run: () => Promise<T>, runs: number): Promise<{ p50: number; p99: number; first: number; last: T }> {
  let last!: T;
  const warm = performance.now();
  await run();
  const first = performance.now() - warm;
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    last = await run();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99), first, last };
}

const dt = (ms: number) => new Date(ms).toISOString().slice(0, 23).replace('T', ' ');
const rawPerAccount = async () =>
  (await (
    await clickhouse.query({
      query: `SELECT account_id AS account, count() AS calls, toString(sum(duration_ns)) AS duration_ns FROM audit_events_v1
              WHERE tenant = {t:String} AND timestamp >= {from:DateTime64(3)} AND timestamp < {to:DateTime64(3)} AND counted GROUP BY account_id`,
      query_params: { t: TENANT, from: dt(range.fromMs), to: dt(range.toMs) },
      format: 'JSONEachRow',
    })
  ).json()) as Array<{ account: string; calls: number; duration_ns: string }>;

// Cold: each run's range ends a minute later, so no answer is reused; its whole days and weeks are (as
// after an insert of live traffic, api/queries/cost-line-cache.ts), its partial days are read again. The
// first run reuses nothing. Warm: the same report again (reused while the range's rollup sums and the
// price-book version are unchanged).
let shift = 0;
const cold = await timed(() => queryCostReport(clickhouse, TENANT, { ...range, toMs: range.toMs + ++shift * 60_000 }, ['costCentre', 'account'], {}, priceBook), Math.max(3, Math.floor(RUNS / 2)));
const report = await timed(() => queryCostReport(clickhouse, TENANT, range, ['costCentre', 'account'], {}, priceBook), RUNS);
// The same lines from the minute rollup alone (no daily or weekly rollup), uncached: what the plan saves.
let minutesRange = range;
const minutesOnly = await timed(() => computeCostLines(clickhouse, TENANT, (minutesRange = { ...range, toMs: range.toMs + ++shift * 60_000 }), ['costCentre', 'account'], {}, priceBook, { sources: 'minutes' }), 3);
const text = (v: unknown) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? String(x) : x));
const samePricing = text(await computeCostLines(clickhouse, TENANT, minutesRange, ['costCentre', 'account'], {}, priceBook)) === text(minutesOnly.last);
const raw = await timed(rawPerAccount, Math.max(3, Math.floor(RUNS / 4)));

// The same calls and durations per account as the raw table.
const perAccount = new Map<string, { calls: bigint; durationNs: bigint }>();
for (const l of report.last.lines) {
  const a = perAccount.get(l.key.account!) ?? { calls: 0n, durationNs: 0n };
  a.calls += l.calls;
  a.durationNs += l.durationNs;
  perAccount.set(l.key.account!, a);
}
const mismatches = raw.last.filter((r) => perAccount.get(r.account)?.calls !== BigInt(r.calls) || perAccount.get(r.account)?.durationNs !== BigInt(r.duration_ns));
const sameAnswer = mismatches.length === 0 && perAccount.size === raw.last.length;

const period = parsePeriod(new Date(range.fromMs + 15 * 86_400_000).toISOString().slice(0, 7))!;
let bytes = 0;
const sink = () =>
  new Writable({
    write(chunk, _encoding, callback) {
      bytes += chunk.length;
      callback();
    },
  });
const exportRuns = await timed(async () => {
  bytes = 0;
  const statement = await buildStatement(clickhouse, TENANT, period, ['costCentre', 'account']);
  await writeStatement(statement, 'csv', sink());
  return statement.lines.length;
}, Math.max(3, Math.floor(RUNS / 4)));

// After live traffic: one call written in the range's last minute before each report, which then
// misses the answer cache (the month's parts changed) and reads its partial days again.
const afterInsert: number[] = [];
for (let i = 0; i < Math.max(3, Math.floor(RUNS / 2)); i++) {
  const call = normalizeAuditRecord({ tenant: TENANT, trace_id: `costs-bench-${process.pid}-${i}`, timestamp: new Date(range.toMs - 30_000).toISOString(), tool: tools[0]!, account_id: accounts[0]!, allowed: true, duration: 1_000_000, agent: agents[0]! });
  if (!call.ok) throw new Error(JSON.stringify(call.issues));
  await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: [toAuditRow(call.value)] });
  const start = performance.now();
  await queryCostReport(clickhouse, TENANT, range, ['costCentre', 'account'], {}, priceBook);
  afterInsert.push(performance.now() - start);
}
afterInsert.sort((a, b) => a - b);

const ms = (v: number) => `${v.toFixed(0)} ms`;
const rows: Row[] = [
  ['costReport 30 d by cost centre, account, first run (nothing reused)', ms(cold.first), '', ''],
  ['costReport 30 d by cost centre, account, cold: p50', ms(cold.p50), '', ''],
  ['costReport 30 d by cost centre, account, cold: p99', ms(cold.p99), '≤ 300 ms', cold.p99 <= 300 ? 'PASS' : 'FAIL'],
  ['costReport 30 d by cost centre, account, warm: p50', ms(report.p50), '', ''],
  ['costReport 30 d by cost centre, account, warm: p99', ms(report.p99), '≤ 300 ms', report.p99 <= 300 ? 'PASS' : 'FAIL'],
  ['costReport 30 d by cost centre, account, after an insert: p50', ms(percentile(afterInsert, 50)), '', ''],
  ['costReport 30 d by cost centre, account, after an insert: p99', ms(percentile(afterInsert, 99)), '≤ 300 ms', percentile(afterInsert, 99) <= 300 ? 'PASS' : 'FAIL'],
  ['  minute rollup alone, cold (p50)', `${ms(minutesOnly.p50)} (cold report ${(cold.p50 / minutesOnly.p50).toFixed(2)}× minutes)`, '', ''],
  ['  same lines (exact amounts) as from the minute rollup alone', samePricing ? 'yes' : 'no', 'yes', samePricing ? 'PASS' : 'FAIL'],
  ['  raw table, calls and durations per account (p50)', `${ms(raw.p50)} (cold report ${(cold.p50 / raw.p50).toFixed(2)}× raw)`, '', ''],
  ['  same calls and durations as the raw table', `${sameAnswer ? 'yes' : `no (${mismatches.length} accounts differ)`}, ${report.last.lines.length} lines`, 'yes', sameAnswer ? 'PASS' : 'FAIL'],
  [`chargeback export ${period.label} (CSV, whole file), first run`, `${ms(exportRuns.first)} (${exportRuns.last} lines, ${bytes} bytes)`, '≤ 2000 ms', exportRuns.first <= 2000 ? 'PASS' : 'FAIL'],
  [`chargeback export ${period.label} (CSV, whole file), again: p99`, ms(exportRuns.p99), '≤ 2000 ms', exportRuns.p99 <= 2000 ? 'PASS' : 'FAIL'],
];
printTable(rows);
await clickhouse.close();
