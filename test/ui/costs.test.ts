/**
 * The costs page's billing periods in Chromium, on seeded calls of this month and the last: a billing key
 * closes last month, whose downloads are then the export endpoint's bytes; an admin key reopens it with a
 * reason; a viewer key sees no action and the API refuses them; axe-core and 390 px checks. Screenshots
 * go to test-artifacts/ui/.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { createKeyStore, generateKey, keyEntry } from '../../core/api-keys.ts';
import { normalizeAuditRecord, toAuditRow } from '../../model/audit-event.ts';
import { DOCUMENTS, type DocumentName } from '../../ui/src/lib/api.ts';
import { axeViolations, chromiumSkip, openPage, screenshot, startHarness, type Harness } from './harness.ts';

const skip = chromiumSkip();

// ---- fixture: calls with a reported cost in whole cents, this month and in the last days of the last ----

const NOW = Date.now();
const now = new Date(NOW);
const THIS_MONTH_START = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
const LAST_MONTH_START = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
const EARLIER_MONTH_START = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 1);
const label = (ms: number) => new Date(ms).toISOString().slice(0, 7);
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
async function withKey(key: string, path: string, width = 1400) {
  const opened = await openPage(h.browser, width);
  await opened.page.goto(`${url}/`);
  await opened.page.locator('#api-key').waitFor({ timeout: 15_000 });
  await opened.page.fill('#api-key', key);
  await opened.page.press('#api-key', 'Enter');
  await opened.page.locator('[data-tenant]').waitFor({ timeout: 15_000 });
  await opened.page.evaluate((p) => {
    history.pushState(null, '', p);
    dispatchEvent(new PopStateEvent('popstate'));
  }, path);
  return opened;
}

const text = async (page: Page, selector: string) => (await page.locator(selector).first().textContent())!.replace(/\s+/g, ' ').trim();

// ---- tests -----------------------------------------------------------------------------------------------

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

test('a viewer key sees closed periods but no close or reopen; the API refuses them', { skip }, async () => {
  // A closed month to offer a reopen on (to an admin).
  await answer(KEY.billing, 'ClosePeriod', { period: EARLIER_MONTH });
  const { page, errors } = await withKey(KEY.viewer, '/costs?range=24h');
  await page.locator(`[data-list="periods"] [data-period="${EARLIER_MONTH}"][data-closed="true"]`).waitFor({ timeout: 15_000 });
  await page.locator('[data-periods-readonly]').waitFor();
  for (const selector of ['[data-close-form]', '[data-reopen]', '[data-reopen-form]']) {
    assert.equal(await page.locator(selector).count(), 0, selector);
  }
  assert.ok(await page.getByRole('button', { name: 'CSV' }).isDisabled());

  const refused = await Promise.all([
    api(KEY.viewer, 'ClosePeriod', { period: LAST_MONTH }),
    api(KEY.viewer, 'ReopenPeriod', { period: EARLIER_MONTH, reason: 'not mine to reopen' }),
    api(KEY.billing, 'ReopenPeriod', { period: EARLIER_MONTH, reason: 'billing may not reopen' }),
  ]);
  assert.deepEqual(refused.map((r) => r.errors?.[0]?.extensions?.code), ['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN']);

  await screenshot(page, 'costs-viewer-periods');
  assert.deepEqual(await axeViolations(page), []);
  assert.deepEqual(errors, []);
  await page.context().close();
});

test('at 390 px the costs page with its periods and forms fits the screen', { skip }, async () => {
  const { page, errors } = await withKey(KEY.admin, `/costs?range=24h&period=${EARLIER_MONTH}`, 390);
  await page.locator('[data-panel="chargeback"] [data-period-closed]').waitFor({ timeout: 15_000 });
  await page.getByRole('button', { name: `Reopen ${EARLIER_MONTH}…` }).click();
  await page.locator('[data-reopen-form]').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the costs page is ${overflow} px wider than the screen`);
  await screenshot(page, 'costs-periods-390px');
  assert.deepEqual(await axeViolations(page), []);
  assert.deepEqual(errors, []);
  await page.context().close();
});
