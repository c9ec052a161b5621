/**
 * The costs page's budgets and billing periods in Chromium, on seeded calls of this month and the last:
 * budgets' spend and forecast equal the API's and an independent computation over the records; a billing
 * key sets and edits a budget and closes last month, whose downloads are then the export endpoint's bytes;
 * an admin key reopens it with a reason; a viewer key sees no action and the API refuses them; axe-core
 * and 390 px checks. Screenshots go to test-artifacts/ui/.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import type { Page, Response } from 'playwright-core';
import { createKeyStore, generateKey, keyEntry } from '../../core/api-keys.ts';
import { normalizeAuditRecord, toAuditRow } from '../../model/audit-event.ts';
import { DOCUMENTS, type Budget, type DocumentName } from '../../ui/src/lib/api.ts';
import { axeViolations, chromiumSkip, openWithKey, screenshot, startHarness, type Harness } from './harness.ts';

const skip = chromiumSkip();

// ---- fixture: calls with a reported cost in whole cents, this month and in the last days of the last ----

const NOW = Date.now();
const now = new Date(NOW);
const THIS_MONTH_START = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
const THIS_MONTH_END = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
const LAST_MONTH_START = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
const EARLIER_MONTH_START = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 1);
const label = (ms: number) => new Date(ms).toISOString().slice(0, 7);
const THIS_MONTH = label(THIS_MONTH_START);
const LAST_MONTH = label(LAST_MONTH_START);
const EARLIER_MONTH = label(EARLIER_MONTH_START);

interface Call {
  ts: number;
  agent: string;
  account: string;
  cents: number;
}

const AGENTS = ['planner', 'coder', 'Claude Desktop'];
const ACCOUNTS = ['alice', 'bob'];
const call = (i: number, ts: number): Call => ({ ts, agent: AGENTS[i % 3]!, account: ACCOUNTS[(i >> 1) % 2]!, cents: 25 + 10 * (i % 4) });
// This month: 30 calls spread from its start to two minutes ago (whole minutes behind us).
const THIS_MONTH_CALLS = Array.from({ length: 30 }, (_, i) => call(i, THIS_MONTH_START + Math.floor(((NOW - 120_000 - THIS_MONTH_START) * (i + 1)) / 31)));
// Last month: 12 calls, three hours apart, in its last 36 hours.
const LAST_MONTH_CALLS = Array.from({ length: 12 }, (_, i) => call(i + 1, THIS_MONTH_START - (i + 1) * 3 * 3600_000));

const ROWS = [...THIS_MONTH_CALLS, ...LAST_MONTH_CALLS].map((c, i) => {
  const normalized = normalizeAuditRecord({
    tenant: 'default',
    trace_id: `costs-${i}`,
    timestamp: new Date(c.ts).toISOString(),
    agent: c.agent,
    service: 'billing',
    tool: 'billing.Invoices.List',
    account_id: c.account,
    allowed: true,
    duration: 20_000_000,
    cost_usd: c.cents / 100,
  });
  assert.ok(normalized.ok);
  return toAuditRow(normalized.value);
});

const centsOf = (calls: Call[], where: (c: Call) => boolean) => calls.filter(where).reduce((a, c) => a + c.cents, 0);
const usd = (micros: number) =>
  new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: micros !== 0 && Math.abs(micros) < 1e6 ? 4 : 2 }).format(micros / 1e6);
const dollars = (cents: number) => (cents / 100).toFixed(2);

// ---- harness ---------------------------------------------------------------------------------------------

const KEY = { admin: generateKey(), billing: generateKey(), viewer: generateKey() };
let h: Harness;
let url: string;

before(async () => {
  if (skip) return;
  h = await startHarness('ui_costs');
  await h.clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: ROWS });
  url = await h.serve(
    createKeyStore([
      keyEntry({ name: 'ui-admin', tenant: 'default', role: 'admin', secret: KEY.admin }),
      keyEntry({ name: 'ui-billing', tenant: 'default', role: 'billing', secret: KEY.billing }),
      keyEntry({ name: 'ui-viewer', tenant: 'default', role: 'viewer', secret: KEY.viewer }),
    ]),
  );
});

after(async () => {
  await h?.close();
});

/** The API's answer to one of the dashboard's documents, asked with a key. */
async function api<T>(key: string, name: DocumentName, variables: object = {}): Promise<{ data: T | null; errors?: Array<{ message: string; extensions?: { code?: string } }> }> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query: DOCUMENTS[name], variables, operationName: name }),
  });
  return response.json() as never;
}

async function answer<T>(key: string, name: DocumentName, variables: object = {}): Promise<T> {
  const body = await api<T>(key, name, variables);
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data!;
}

/** A page that entered `key` in the key form, then went to `path` (the key never in an address). */
const withKey = (key: string, path: string, width?: number) => openWithKey(h.browser, url, key, path, width);

/** Every Budgets answer the page received, in order. */
function recordBudgets(page: Page): Budget[][] {
  const answers: Budget[][] = [];
  page.on('response', async (response: Response) => {
    if (!response.url().endsWith('/graphql') || response.request().postDataJSON()?.operationName !== 'Budgets') return;
    const body = await response.json().catch(() => null);
    if (body?.data) answers.push(body.data.budgets);
  });
  return answers;
}

const text = async (page: Page, selector: string) => (await page.locator(selector).first().textContent())!.replace(/\s+/g, ' ').trim();

// ---- tests -----------------------------------------------------------------------------------------------

test('budgets: spend and forecast equal the records and the API; a billing key sets and edits one', { skip }, async () => {
  const spend = (agent: string) => centsOf(THIS_MONTH_CALLS, (c) => c.agent === agent);
  // planner at about 90% of its budget (80% crossed, 100% not); coder far below.
  const plannerAmount = Math.ceil(spend('planner') / 0.9);
  await answer(KEY.billing, 'SetBudget', { input: { agent: 'planner', period: THIS_MONTH, amount: dollars(plannerAmount) } });
  await answer(KEY.billing, 'SetBudget', { input: { agent: 'coder', period: THIS_MONTH, amount: dollars(spend('coder') * 10), thresholds: [50, 100] } });

  const t1 = Date.now();
  const { page, errors } = await withKey(KEY.billing, '/costs?range=24h');
  const answers = recordBudgets(page);
  await page.locator('[data-budget="planner"] [data-field="spend"]').waitFor({ timeout: 15_000 });
  await page.locator('[data-budget="coder"]').waitFor({ timeout: 15_000 });
  const shownForecast = await text(page, '[data-budget="planner"] [data-field="forecast"]');
  const t2 = Date.now();

  // Spend: the records' own costs this month, against the amount.
  assert.equal(await text(page, '[data-budget="planner"] [data-field="spend"]'), `${usd(spend('planner') * 1e4)} of ${usd(plannerAmount * 1e4)}`);
  assert.equal(await text(page, '[data-budget="coder"] [data-field="spend"]'), `${usd(spend('coder') * 1e4)} of ${usd(spend('coder') * 1e5)}`);
  assert.equal(await text(page, '[data-budget="planner"] [data-field="spent-share"]'), `${Math.round((spend('planner') / plannerAmount) * 100)}% spent`);

  // Forecast: one the API sent, and the spend extended linearly from the month's start to its end, with
  // "now" somewhere between before the page opened and after it showed the number (whole cents either way).
  const fromApi = answers.flat().filter((b) => b.key === 'planner');
  assert.ok(fromApi.length > 0, 'the page asked for the budgets');
  assert.ok(fromApi.map((b) => usd(Number(b.forecast.micros))).includes(shownForecast), `${shownForecast} is one of the API's forecasts`);
  const forecastCents = Math.round(Number(shownForecast.replace(/[$,]/g, '')) * 100);
  const linear = (t: number) => (spend('planner') * (THIS_MONTH_END - THIS_MONTH_START)) / (t - THIS_MONTH_START);
  assert.ok(forecastCents >= Math.floor(linear(t2)) && forecastCents <= Math.ceil(linear(t1)), `forecast ${forecastCents} cents within [${linear(t2)}, ${linear(t1)}]`);

  // Thresholds crossed: planner's 80% (not 100%), none of coder's; the API says the same.
  assert.match(await text(page, '[data-budget="planner"] [data-field="crossed"]'), /^80% crossed /);
  assert.equal(await text(page, '[data-budget="coder"] [data-field="crossed"]'), 'none crossed');
  const api1 = await answer<{ budgets: Budget[] }>(KEY.viewer, 'Budgets', { period: THIS_MONTH });
  assert.deepEqual(api1.budgets.map((b) => [b.key, b.crossed.map((c) => c.threshold)]).sort(), [['coder', []], ['planner', [80]]]);

  // Edit planner's budget to half its spend: 100% is crossed too.
  await page.getByRole('button', { name: 'Edit the budget of agent planner' }).click();
  assert.equal(await page.locator('[data-budget-form] input[name="amount"]').inputValue(), dollars(plannerAmount));
  const halved = Math.floor(spend('planner') / 2);
  await page.fill('[data-budget-form] input[name="amount"]', dollars(halved));
  await page.getByRole('button', { name: 'Save budget' }).click();
  await page.waitForFunction((t) => document.querySelector('[data-budget="planner"] [data-field="spend"]')?.textContent?.trim().endsWith(t), `of ${usd(halved * 1e4)}`, { timeout: 15_000 });
  assert.match(await text(page, '[data-budget="planner"] [data-field="crossed"]'), /^80% crossed .*, 100% crossed /);

  // A new budget for account alice, typed into the form.
  await page.selectOption('[data-budget-form] select[name="scope"]', 'ACCOUNT');
  await page.fill('[data-budget-form] input[name="key"]', 'alice');
  await page.fill('[data-budget-form] input[name="amount"]', '100');
  await page.fill('[data-budget-form] input[name="thresholds"]', '50, 90');
  await page.getByRole('button', { name: 'Set budget' }).click();
  await page.locator('[data-budget="alice"][data-scope="ACCOUNT"] [data-field="spend"]').waitFor({ timeout: 15_000 });
  const alice = centsOf(THIS_MONTH_CALLS, (c) => c.account === 'alice');
  assert.equal(await text(page, '[data-budget="alice"] [data-field="spend"]'), `${usd(alice * 1e4)} of $100.00`);
  const api2 = await answer<{ budgets: Budget[] }>(KEY.viewer, 'Budgets', { period: THIS_MONTH });
  const byKey = Object.fromEntries(api2.budgets.map((b) => [b.key, b]));
  assert.deepEqual(
    { planner: [byKey.planner!.amount.amount, byKey.planner!.crossed.map((c) => c.threshold)], alice: [byKey.alice!.scope, byKey.alice!.spend.micros, byKey.alice!.thresholds] },
    { planner: [`${dollars(halved)}0000`, [80, 100]], alice: ['ACCOUNT', String(alice * 1e4), [50, 90]] },
  );

  // Bad input answers the API's code, shown in the form.
  assert.equal(await page.locator('[data-budget-form] input[name="key"]').inputValue(), '', 'the form empties after a new budget');
  await page.selectOption('[data-budget-form] select[name="scope"]', 'ACCOUNT');
  await page.fill('[data-budget-form] input[name="key"]', 'bob');
  await page.fill('[data-budget-form] input[name="amount"]', '1.234');
  await page.getByRole('button', { name: 'Set budget' }).click();
  await page.locator('[data-budget-form] [role="alert"]').waitFor({ timeout: 15_000 });
  assert.match(await text(page, '[data-budget-form] [role="alert"]'), /^BAD_USER_INPUT: amount must be a decimal USD amount with at most 2 decimals/);

  // planner's chart: spend per day as a running sum, the forecast and the budget; its link in the address bar.
  const [spendResponse] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/graphql') && r.request().postDataJSON()?.operationName === 'BudgetSpend', { timeout: 15_000 }),
    page.getByRole('button', { name: 'Chart of the budget of agent planner' }).click(),
  ]);
  await page.locator('[data-budget="planner"] [data-budget-chart] canvas').first().waitFor({ timeout: 15_000 });
  // Its days are planner's calls of this month by day, summing to its spend.
  const rows = ((await spendResponse.json()) as { data: { costReport: { rows: Array<{ day: string; total: { micros: string } }> } } }).data.costReport.rows;
  const plannerDays: Record<string, number> = {};
  for (const c of THIS_MONTH_CALLS.filter((c) => c.agent === 'planner')) {
    const day = new Date(c.ts).toISOString().slice(0, 10);
    plannerDays[day] = (plannerDays[day] ?? 0) + c.cents * 1e4;
  }
  assert.deepEqual(Object.fromEntries(rows.map((r) => [r.day, Number(r.total.micros)])), plannerDays);
  assert.equal(new URL(page.url()).searchParams.get('budget'), 'AGENT:planner');
  const summary = (await page.locator('[data-budget="planner"] [data-budget-chart] figure').getAttribute('aria-label'))!;
  assert.ok(summary.startsWith(`planner in ${THIS_MONTH}: ${usd(spend('planner') * 1e4)} spent of a ${usd(halved * 1e4)} budget, forecast $`), summary);

  await screenshot(page, 'costs-budgets-billing');
  assert.deepEqual(await axeViolations(page), []);
  assert.deepEqual(errors, []);
  await page.context().close();
});

test('a billing key closes last month: it is marked, and each download is the export endpoint’s bytes', { skip }, async () => {
  const { page, errors } = await withKey(KEY.billing, '/costs?range=24h');
  await page.locator('[data-close-form]').waitFor({ timeout: 15_000 });
  // The chargeback's period, chosen in its form, goes to the address bar; last month is open so far.
  await page.fill('input[name="period"]', LAST_MONTH);
  await page.waitForFunction((p) => new URL(location.href).searchParams.get('period') === p, LAST_MONTH, { timeout: 15_000 });
  await page.locator('[data-panel="chargeback"] [data-period-open]').waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('[data-reopen]').count(), 0, 'reopening is for admin keys');

  assert.equal(await page.locator('[data-close-form] input[name="close-period"]').inputValue(), LAST_MONTH, 'the form proposes the last ended month');
  await page.getByRole('button', { name: 'Close period' }).click();
  await page.locator(`[data-list="periods"] [data-period="${LAST_MONTH}"][data-closed="true"]`).waitFor({ timeout: 15_000 });
  await page.locator('[data-panel="chargeback"] [data-period-closed]').waitFor({ timeout: 15_000 });

  const { billingPeriods } = await answer<{ billingPeriods: Array<{ period: string; closed: boolean; by: string; sha256: string }> }>(KEY.viewer, 'BillingPeriods');
  const closed = billingPeriods.find((p) => p.period === LAST_MONTH)!;
  assert.deepEqual([closed.closed, closed.by], [true, 'ui-billing']);
  assert.match(closed.sha256, /^[0-9a-f]{64}$/);
  assert.equal(await text(page, `[data-period="${LAST_MONTH}"] [data-field="sha256"]`), closed.sha256);
  assert.match(await text(page, '[data-panel="chargeback"] [data-period-closed]'), new RegExp(`by ui-billing: .*${closed.sha256}`));
  assert.equal(await page.locator('[data-period-badge]').textContent(), 'closed');

  // Each format: the downloaded file is byte for byte what the endpoint sends for the closed month.
  for (const [button, format] of [['CSV', 'csv'], ['JSON', 'json'], ['FOCUS', 'focus']] as const) {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: button, exact: true }).click()]);
    const downloaded = readFileSync((await download.path())!);
    const exported = Buffer.from(await (await fetch(`${url}/export/chargeback?period=${LAST_MONTH}&format=${format}`, { headers: { authorization: `Bearer ${KEY.billing}` } })).arrayBuffer());
    assert.ok(exported.length > 0);
    assert.ok(downloaded.equals(exported), `${format}: the download differs from the export`);
    assert.equal(download.suggestedFilename(), `chargeback-${LAST_MONTH}${format === 'json' ? '.json' : format === 'focus' ? '-focus.csv' : '.csv'}`);
    if (format === 'json') {
      const statement = JSON.parse(downloaded.toString('utf8')) as { closed: boolean; total: { totalCost: string } };
      assert.equal(statement.closed, true);
      assert.equal(Number(statement.total.totalCost), centsOf(LAST_MONTH_CALLS, () => true) / 100, 'the closed month’s total is the records’ cost');
    }
  }

  // Closing it again: the API's conflict, with its code.
  await page.getByRole('button', { name: 'Close period' }).click();
  await page.locator('[data-panel="periods"] [role="alert"]').waitFor({ timeout: 15_000 });
  assert.match(await text(page, '[data-panel="periods"] [role="alert"]'), new RegExp(`^CONFLICT: period ${LAST_MONTH} is closed already`));

  await screenshot(page, 'costs-closed-billing');
  assert.deepEqual(await axeViolations(page), []);
  // The browser logs the second close's HTTP 409 (the conflict above); nothing else.
  assert.deepEqual(errors.filter((e) => !/status of 409 \(Conflict\)/.test(e)), []);
  await page.context().close();
});

test('an admin key reopens the closed month with a reason; the download is live again', { skip }, async () => {
  const { page, errors } = await withKey(KEY.admin, `/costs?range=24h&period=${LAST_MONTH}`);
  await page.locator('[data-panel="chargeback"] [data-period-closed]').waitFor({ timeout: 15_000 });
  await page.getByRole('button', { name: `Reopen ${LAST_MONTH}…` }).click();
  const reason = 'late records from gateway eu-1';
  await page.fill('[data-reopen-form] input[name="reason"]', reason);
  assert.deepEqual(await axeViolations(page), [], 'axe with the reopen form open');
  await page.getByRole('button', { name: `Reopen ${LAST_MONTH}`, exact: true }).click();
  await page.locator(`[data-list="periods"] [data-period="${LAST_MONTH}"][data-closed="false"]`).waitFor({ timeout: 15_000 });
  assert.equal(await text(page, `[data-period="${LAST_MONTH}"] [data-field="reason"]`), `Reason: ${reason}`);
  assert.match(await text(page, '[data-panel="chargeback"] [data-period-open]'), new RegExp(`^Reopened .* by ui-admin \\(${reason}\\)`));
  const { billingPeriods } = await answer<{ billingPeriods: Array<{ period: string; closed: boolean; by: string; reason: string; sha256: string | null }> }>(KEY.viewer, 'BillingPeriods');
  const reopened = billingPeriods.find((p) => p.period === LAST_MONTH)!;
  assert.deepEqual([reopened.closed, reopened.by, reopened.reason, reopened.sha256], [false, 'ui-admin', reason, null]);
  await screenshot(page, 'costs-reopened-admin');
  assert.deepEqual(errors, []);
  await page.context().close();
});

test('a viewer key sees budgets and closed periods but no edit, close or reopen; the API refuses them', { skip }, async () => {
  // A closed month to offer a reopen on (to an admin).
  await answer(KEY.billing, 'ClosePeriod', { period: EARLIER_MONTH });
  const { page, errors } = await withKey(KEY.viewer, '/costs?range=24h');
  await page.locator(`[data-list="periods"] [data-period="${EARLIER_MONTH}"][data-closed="true"]`).waitFor({ timeout: 15_000 });
  await page.locator('[data-budget="planner"]').waitFor({ timeout: 15_000 });
  await page.locator('[data-budget-readonly]').waitFor();
  await page.locator('[data-periods-readonly]').waitFor();
  for (const selector of ['[data-budget-form]', '[data-budget-edit]', '[data-close-form]', '[data-reopen]', '[data-reopen-form]']) {
    assert.equal(await page.locator(selector).count(), 0, selector);
  }
  assert.ok(await page.getByRole('button', { name: 'CSV' }).isDisabled());

  const refused = await Promise.all([
    api(KEY.viewer, 'SetBudget', { input: { agent: 'planner', period: THIS_MONTH, amount: '1.00' } }),
    api(KEY.viewer, 'ClosePeriod', { period: LAST_MONTH }),
    api(KEY.viewer, 'ReopenPeriod', { period: EARLIER_MONTH, reason: 'not mine to reopen' }),
    api(KEY.billing, 'ReopenPeriod', { period: EARLIER_MONTH, reason: 'billing may not reopen' }),
  ]);
  assert.deepEqual(refused.map((r) => r.errors?.[0]?.extensions?.code), ['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN']);

  await screenshot(page, 'costs-viewer-periods');
  assert.deepEqual(await axeViolations(page), []);
  assert.deepEqual(errors, []);
  await page.context().close();
});

test('at 390 px the costs page with its budgets, periods and forms fits the screen', { skip }, async () => {
  const { page, errors } = await withKey(KEY.admin, `/costs?range=24h&period=${EARLIER_MONTH}`, 390);
  await page.locator('[data-panel="chargeback"] [data-period-closed]').waitFor({ timeout: 15_000 });
  await page.locator('[data-budget-form]').waitFor({ timeout: 15_000 });
  await page.getByRole('button', { name: `Reopen ${EARLIER_MONTH}…` }).click();
  await page.locator('[data-reopen-form]').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the costs page is ${overflow} px wider than the screen`);
  await screenshot(page, 'costs-periods-390px');
  // This month's budgets, planner's chart open (from the address bar).
  await page.evaluate(() => {
    history.pushState(null, '', '/costs?range=24h&budget=AGENT:planner');
    dispatchEvent(new PopStateEvent('popstate'));
  });
  await page.locator('[data-budget="planner"] [data-budget-chart] canvas').first().waitFor({ timeout: 15_000 });
  const overflowBudgets = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflowBudgets <= 0, `the costs page with a budget chart is ${overflowBudgets} px wider than the screen`);
  await screenshot(page, 'costs-budgets-390px');
  assert.deepEqual(await axeViolations(page), []);
  assert.deepEqual(errors, []);
  await page.context().close();
});
