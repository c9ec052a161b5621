/**
 * Every page of the dashboard in Chromium on seeded data: the numbers shown equal both an independent
 * computation over the inserted records and the API's answer; the range picker, the audit log's filters
 * and pagination, the way from an audit row to its trace; an axe-core check and a screenshot per page
 * (test-artifacts/ui/). A page whose documents wait in PENDING_FIELDS (ui/src/lib/api.ts) is skipped
 * with the reason until its API branch is merged.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { createKeyStore, generateKey, keyEntry } from '../../core/api-keys.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput } from '../../model/audit-event.ts';
import { DOCUMENTS, PENDING_FIELDS, type DocumentName } from '../../ui/src/lib/api.ts';
import { axeViolations, chromiumSkip, openPage, openWithKey, screenshot, startHarness, type Harness } from './harness.ts';

const noChromium = chromiumSkip();

/** Skipped without Chromium, or while one of the page's documents is pending. */
function skipFor(...documents: DocumentName[]): string | false {
  if (noChromium) return noChromium;
  const pending = documents.filter((d) => PENDING_FIELDS[d]).map((d) => `${d}: ${PENDING_FIELDS[d]}`);
  return pending.length ? `pending API — ${pending.join('; ')}` : false;
}
const anyPage = skipFor('Overview', 'Activity', 'Latency', 'Denials', 'AuditLog', 'AuditEvent', 'Trace', 'CostReport', 'Prices', 'SetPrice', 'Budgets', 'Alerts', 'Alert');

// ---- fixture: 60 calls of tenant default in the last hour; 12 of them in the last 15 minutes -----------

const NOW = Math.floor(Date.now() / 60_000) * 60_000 - 1; // just before a minute starts: buckets are whole
const MS = 1_000_000;
const AGENTS = ['Claude Desktop', 'planner', 'coder'];
const TOOLS = [
  ['users', 'users.Users.Get'],
  ['billing', 'billing.Invoices.List'],
  ['repo', 'repo.Files.Read'],
  ['search', 'search.Search.Query'],
] as const;
const OTEL_TRACE = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const ROOT_SPAN = '1111111111111111';

interface Call {
  ts: number;
  agent: string;
  service: string;
  tool: string;
  account: string;
  outcome: 'OK' | 'ERROR' | 'DENIED';
  reason: string | null;
  costMicros: number;
  traceId: string;
}

const CALLS: Call[] = [];
const ROWS = Array.from({ length: 60 }, (_, i) => {
  const minutesAgo = i < 12 ? 1 + i : 20 + (i - 12) * 0.7;
  const ts = NOW - Math.round(minutesAgo * 60_000);
  const [service, tool] = TOOLS[i % 4]!;
  const denied = i % 10 === 7;
  const failed = !denied && i % 10 === 3;
  const reason = denied ? (i % 20 === 7 ? 'missing scope billing:write' : 'read-only token') : null;
  const costMicros = denied ? 0 : 1000 * (1 + (i % 5));
  const input: AuditRecordInput = {
    tenant: 'default',
    trace_id: `ui-trace-${i}`,
    timestamp: new Date(ts).toISOString(),
    agent: AGENTS[i % 3],
    service,
    tool,
    account_id: ['alice', 'bob', 'carol'][(i >> 1) % 3],
    session_id: `session-${i % 4}`,
    allowed: !denied,
    ...(denied && { denied_reason: reason!, scopes_required: ['billing:write'] }),
    ...(failed && { error: 'upstream timeout' }),
    duration: (10 + ((i * 37) % 400)) * MS,
    ...(!denied && { cost_usd: costMicros / 1e6 }),
    ...(i === 0 && { otel_trace_id: OTEL_TRACE, otel_span_id: ROOT_SPAN }),
  };
  CALLS.push({ ts, agent: AGENTS[i % 3]!, service, tool, account: input.account_id!, outcome: denied ? 'DENIED' : failed ? 'ERROR' : 'OK', reason, costMicros, traceId: input.trace_id! });
  const normalized = normalizeAuditRecord(input);
  assert.ok(normalized.ok);
  return toAuditRow(normalized.value);
});

/** The first call's trace: the tool call and two children, one failed. */
const SPANS = [
  { span_id: ROOT_SPAN, parent_span_id: '', name: 'mcp.tool.call users.Users.Get', offset: 0, ms: 40, status: 'ok', attrs: { 'mcp.tool': 'users.Users.Get' } },
  { span_id: '2222222222222222', parent_span_id: ROOT_SPAN, name: 'db.query users', offset: 5, ms: 20, status: 'ok', attrs: { 'db.system': 'postgres' } },
  { span_id: '3333333333333333', parent_span_id: ROOT_SPAN, name: 'cache.get', offset: 28, ms: 8, status: 'error', attrs: { 'cache.key': 'user:42' } },
].map((s) => ({
  tenant: 'default',
  trace_id: OTEL_TRACE,
  span_id: s.span_id,
  parent_span_id: s.parent_span_id,
  name: s.name,
  kind: 'internal',
  service: 'users',
  scope_name: 'test',
  scope_version: '1',
  start_time: new Date(CALLS[0]!.ts + s.offset).toISOString().replace('T', ' ').replace('Z', ''),
  duration_ns: s.ms * MS,
  status_code: s.status,
  status_message: s.status === 'error' ? 'cache down' : '',
  attributes: s.attrs,
  resource_attributes: {},
  events: [],
}));

/** One open alert about planner's errors, as the detector writes it (alerts_v1, alert_history_v1). */
const ALERT_ID = 'a1e7a1e7a1e7a1e7a1e7a1e7a1e7a1e7';
const ALERT_SENTENCE = 'planner failed 3 of 20 calls in 15 minutes, 15% against 1% usually.';
const chTime = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
const ALERT_ROW = {
  tenant: 'default', alert_id: ALERT_ID, kind: 'ERROR_SPIKE', severity: 'CRITICAL', status: 'OPEN', agent: 'planner', tool: '', account_id: '', session_id: '',
  window_start: chTime(NOW - 20 * 60_000), window_end: chTime(NOW - 5 * 60_000), last_fired_at: chTime(NOW - 5 * 60_000),
  observed: 0.15, expected: 0.01, expected_low: 0, expected_high: 0.03, score: 9.5, baseline: 'recent', sentence: ALERT_SENTENCE,
  acknowledged_by: '', acknowledged_at: null, resolved_by: '', resolved_at: null, updated_at: chTime(NOW - 5 * 60_000) + '.000',
};
const ALERT_HISTORY = { tenant: 'default', alert_id: ALERT_ID, at: chTime(NOW - 20 * 60_000) + '.000', action: 'opened', by: 'detector', severity: 'CRITICAL', observed: 0.15, score: 9.5 };

// ---- independent expectations ---------------------------------------------------------------------------

const within = (fromMs: number, toMs = NOW + 1) => CALLS.filter((c) => c.ts >= fromMs && c.ts < toMs);
const lastHour = within(NOW - 3600_000);
const count = (calls: Call[], outcome?: Call['outcome']) => calls.filter((c) => !outcome || c.outcome === outcome).length;
const usd = (micros: number) =>
  new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: micros !== 0 && micros < 1e6 ? 4 : 2 }).format(micros / 1e6);
const sumCost = (calls: Call[]) => calls.reduce((a, c) => a + c.costMicros, 0);

// ---- harness ---------------------------------------------------------------------------------------------

const KEY = { admin: generateKey(), viewer: generateKey(), nobody: generateKey() };
let keyedUrl: string;
let h: Harness;
let baseUrl: string;
let page: Page;
let errors: string[];

before(async () => {
  if (anyPage) return;
  h = await startHarness('ui_pages');
  await h.clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: ROWS });
  await h.clickhouse.insert({ table: 'spans_v1', format: 'JSONEachRow', values: SPANS });
  if (!PENDING_FIELDS.Alerts) {
    await h.clickhouse.insert({ table: 'alerts_v1', format: 'JSONEachRow', values: [ALERT_ROW] });
    await h.clickhouse.insert({ table: 'alert_history_v1', format: 'JSONEachRow', values: [ALERT_HISTORY] });
  }
  baseUrl = await h.serve();
  keyedUrl = await h.serve(
    createKeyStore([
      keyEntry({ name: 'ui-admin', tenant: 'default', role: 'admin', secret: KEY.admin }),
      keyEntry({ name: 'ui-viewer', tenant: 'default', role: 'viewer', secret: KEY.viewer }),
      keyEntry({ name: 'nobody-viewer', tenant: 'nobody', role: 'viewer', secret: KEY.nobody }),
    ]),
  );
  ({ page, errors } = await openPage(h.browser));
});

after(async () => {
  await h?.close();
});

/** The API's own answer to a document, for comparing with what a page shows. */
async function api<T>(name: DocumentName, variables: object): Promise<T> {
  const response = await fetch(`${baseUrl}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: DOCUMENTS[name], variables, operationName: name }) });
  const body = (await response.json()) as { data: T; errors?: unknown };
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

async function tileTexts(expectedCalls: string): Promise<Record<string, string>> {
  await page.waitForFunction((n) => document.querySelector('[data-tile="calls"] .tile-value')?.textContent?.trim() === n, expectedCalls, { timeout: 15_000 });
  return page.$$eval('[data-tile]', (nodes) => Object.fromEntries(nodes.map((n) => [n.getAttribute('data-tile'), n.querySelector('.tile-value')?.textContent?.trim() ?? ''])));
}

async function checkPage(name: string) {
  await screenshot(page, name);
  assert.deepEqual(await axeViolations(page), [], `axe on ${name}`);
  assert.deepEqual(errors, [], `script errors on ${name}`);
}

const fmt = (n: number) => n.toLocaleString('en-US');

// ---- tests -----------------------------------------------------------------------------------------------

test('overview: totals, agents as sentences, service shares, the chart, equal to the records and to the API', { skip: skipFor('Overview', 'Activity', 'Alerts') }, async () => {
  await page.goto(`${baseUrl}/?range=1h`);
  const shown = await tileTexts(fmt(lastHour.length));
  assert.deepEqual(
    { calls: shown.calls, errors: shown.errors, denials: shown.denials, agents: shown.agents, cost: shown.cost },
    { calls: '60', errors: fmt(count(lastHour, 'ERROR')), denials: fmt(count(lastHour, 'DENIED')), agents: '3', cost: usd(sumCost(lastHour)) },
  );

  // "Claude Desktop 20 calls $0.0600": calls and cost per agent from the records; the order is the API's.
  const rows = await page.$$eval('[data-list="agents"] li', (items) =>
    items.map((li) => ({ agent: li.getAttribute('data-agent'), calls: li.querySelector('[data-field="calls"]')!.textContent!.trim(), cost: li.querySelector('[data-field="cost"]')!.textContent!.trim() })),
  );
  const range = { from: new Date(NOW - 3600_000).toISOString(), to: new Date(NOW + 1).toISOString() };
  const answer = await api<{ agentActivity: Array<{ agent: string }>; topServices: Array<{ service: string; share: number }> }>('Overview', range);
  assert.deepEqual(rows.map((r) => r.agent), answer.agentActivity.map((a) => a.agent));
  for (const row of rows) {
    const mine = lastHour.filter((c) => c.agent === row.agent);
    assert.equal(row.calls, `${fmt(mine.length)} calls`, row.agent!);
    assert.equal(row.cost, usd(sumCost(mine)), row.agent!);
  }
  const shares = await page.$$eval('[data-list="services"] li', (items) => items.map((li) => [li.getAttribute('data-service'), li.querySelector('[data-field="share"]')!.textContent!.trim()]));
  assert.deepEqual(Object.fromEntries(shares), Object.fromEntries(TOOLS.map(([s]) => [s, `${Math.round((lastHour.filter((c) => c.service === s).length / 60) * 100)}%`])));
  assert.deepEqual(shares.map(([s]) => s), answer.topServices.map((s) => s.service));

  await page.locator('[data-panel="activity"] canvas').first().waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('[data-panel="activity"] canvas').count(), 2, 'two uPlot charts');
  await checkPage('overview');
});

/**
 * Each page, and what must be on screen when its data-shown mark is set: no "Loading…" placeholder left,
 * and the page's own data (checked at that moment, by an observer of the attribute, not later).
 */
const SHOWN_PAGES: Array<[name: string, path: string, documents: DocumentName[], selectors: string[]]> = [
  ['overview', '/?range=1h', ['Overview', 'Activity', 'Alerts'], ['[data-tile="calls"]', '[data-panel="activity"] canvas', '[data-panel="open-alerts"] [data-alert]', '[data-list="agents"] li', '[data-list="services"] li']],
  ['agent', '/agents/planner?range=1h', ['Overview', 'Activity', 'Alerts', 'Denials', 'AuditLog'], ['[data-tile="calls"]', '[data-table="tools"] tbody tr', '[data-list="sessions"] li', '[data-panel="recent-calls"] tbody tr', '[data-list="by-reason"] li']],
  ['tool', '/tools/repo.Files.Read?range=1h', ['Overview', 'Latency', 'Prices', 'AuditLog'], ['[data-table="tools"] tbody tr', '[data-panel="tool-charts"] canvas', '[data-tool-price]', '[data-list="agents"] li', '[data-panel="recent-calls"] tbody tr']],
  ['costs', '/costs?range=24h', ['CostReport', 'Budgets', 'Prices'], ['[data-table="costs"] tbody tr', '[data-table="prices"]', '[data-panel="budgets"]']],
  ['alerts', `/alerts?status=ALL&alert=${ALERT_ID}`, ['Alerts', 'Alert'], ['[data-panel="alerts"] [data-alert]', '[data-alert-sentence]']],
  ['audit log', '/audit?range=1h', ['AuditLog'], ['[data-table="audit-log"] tbody tr']],
  ['trace', '/traces/ui-trace-0', ['Trace'], ['[data-waterfall] li']],
  ['denials', '/denials?range=1h', ['Denials', 'AuditLog'], ['[data-list="by-reason"] li', '[data-panel="recent-calls"] tbody tr']],
];

test('every page sets its data-shown mark once its data is on screen, and "error" when a query failed', { skip: anyPage }, async () => {
  const { page: fresh, errors: freshErrors } = await openPage(h.browser);
  // At the moment the attribute appears: which selectors match, and whether a placeholder is left.
  await fresh.addInitScript(() => {
    const w = window as unknown as { shownAt?: { state: string; missing: string[]; placeholders: number }; expected?: string[] };
    new MutationObserver(() => {
      const state = document.documentElement.dataset.shown;
      if (!state || w.shownAt) return;
      const expected: string[] = JSON.parse(sessionStorage.getItem('test.expected') ?? '[]');
      w.shownAt = { state, missing: expected.filter((sel) => !document.querySelector(sel)), placeholders: document.querySelectorAll('.placeholder').length };
    }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-shown'] }); // <html> is not there yet
  });
  for (const [name, path, documents, selectors] of SHOWN_PAGES) {
    if (skipFor(...documents)) continue;
    await fresh.goto(`${baseUrl}/`);
    await fresh.evaluate((expected) => sessionStorage.setItem('test.expected', JSON.stringify(expected)), selectors);
    await fresh.goto(`${baseUrl}${path}`);
    await fresh.waitForFunction(() => document.documentElement.dataset.shown !== undefined, null, { timeout: 15_000 });
    const seen = await fresh.evaluate(() => ({
      at: (window as unknown as { shownAt?: { state: string; missing: string[]; placeholders: number } }).shownAt,
      marks: performance.getEntriesByName('data-shown', 'mark').map((m) => m.startTime),
    }));
    assert.deepEqual(seen.at, { state: 'data', missing: [], placeholders: 0 }, name);
    assert.equal(seen.marks.length, 1, `${name}: one mark`);
    assert.ok(seen.marks[0]! > 0, `${name}: the mark is timed from the navigation's start`);
  }

  // A record that does not exist: the detail panel's error, and the mark says so.
  await fresh.goto(`${baseUrl}/audit?range=1h&event=not-an-event-id`);
  await fresh.waitForFunction(() => document.documentElement.dataset.shown !== undefined, null, { timeout: 15_000 });
  assert.equal(await fresh.evaluate(() => document.documentElement.dataset.shown), 'error');
  // A new range loads anew: the attribute goes, and comes back once the new answers are shown.
  await fresh.goto(`${baseUrl}/?range=1h`);
  await fresh.waitForFunction(() => document.documentElement.dataset.shown === 'data', null, { timeout: 15_000 });
  await fresh.evaluate(() => {
    const w = window as unknown as { cleared?: boolean };
    new MutationObserver(() => {
      if (document.documentElement.dataset.shown === undefined) w.cleared = true;
    }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-shown'] }); // <html> is not there yet
  });
  await fresh.getByRole('radio', { name: 'Last 15 min' }).click();
  await fresh.waitForFunction(() => (window as unknown as { cleared?: boolean }).cleared === true && document.documentElement.dataset.shown === 'data', null, { timeout: 15_000 });
  assert.equal(await fresh.evaluate(() => performance.getEntriesByName('data-shown', 'mark').length), 2);
  assert.deepEqual(freshErrors, []);
  await fresh.context().close();
});

test('a query slower than the 5 s refresh still finishes (the refresh waits for it)', { skip: skipFor('Overview', 'Activity', 'Alerts') }, async () => {
  const { page: slow, errors: slowErrors } = await openPage(h.browser);
  let overviewRequests = 0;
  await slow.route('**/graphql', async (route) => {
    if (route.request().postDataJSON()?.operationName === 'Overview') {
      overviewRequests++;
      await new Promise((resolve) => setTimeout(resolve, 7000));
    }
    await route.continue();
  });
  await slow.goto(`${baseUrl}/?range=1h`);
  await slow.waitForFunction((n) => document.querySelector('[data-tile="calls"] .tile-value')?.textContent === n, fmt(lastHour.length), { timeout: 12_000 });
  assert.equal(overviewRequests, 1, 'the tick during the slow answer sent no second request');
  assert.deepEqual(slowErrors, []);
  await slow.context().close();
});

test('while one panel still loads, the refresh leaves the answered ones alone', { skip: skipFor('Overview', 'Activity', 'Alerts') }, async () => {
  const { page: slow, errors: slowErrors } = await openPage(h.browser);
  const sent: string[] = [];
  await slow.route('**/graphql', async (route) => {
    const name = route.request().postDataJSON()?.operationName as string;
    sent.push(name);
    if (name === 'Activity') await new Promise((resolve) => setTimeout(resolve, 7000));
    await route.continue();
  });
  await slow.goto(`${baseUrl}/?range=1h`);
  await slow.waitForFunction(() => document.documentElement.dataset.shown === 'data', null, { timeout: 15_000 });
  // Over 5 s passed with the tiles and alerts shown and the chart loading: no tick refreshed them.
  assert.deepEqual(sent.filter((n) => n === 'Overview' || n === 'Alerts').sort(), ['Alerts', 'Overview']);
  // Once everything is shown, the next tick refreshes again.
  const overviews = () => sent.filter((n) => n === 'Overview').length;
  const deadline = Date.now() + 8000;
  while (overviews() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(overviews(), 2, `a refresh after the page settled: ${sent.join(', ')}`);
  assert.deepEqual(slowErrors, []);
  await slow.context().close();
});

test('the range picker: a preset and a custom range narrow the totals, kept in the address bar', { skip: skipFor('Overview', 'Activity', 'Alerts') }, async () => {
  await page.getByRole('radio', { name: 'Last 15 min' }).click();
  const last15 = within(NOW - 15 * 60_000);
  const shown = await tileTexts(fmt(last15.length));
  assert.equal(shown.cost, usd(sumCost(last15)));
  assert.match(page.url(), /[?&]range=15m(&|$)/);

  // Custom: 40 to 25 minutes ago, typed into the form (the browser's time zone is UTC).
  const from = NOW + 1 - 40 * 60_000;
  const to = NOW + 1 - 25 * 60_000;
  await page.getByRole('radio', { name: 'Custom…' }).click();
  await page.fill('input[name="from"]', new Date(from).toISOString().slice(0, 16));
  await page.fill('input[name="to"]', new Date(to).toISOString().slice(0, 16));
  await page.getByRole('button', { name: 'Apply' }).click();
  const custom = within(from, to);
  const customShown = await tileTexts(fmt(custom.length));
  assert.equal(customShown.errors, fmt(count(custom, 'ERROR')));
  assert.equal(new URL(page.url()).searchParams.get('from'), new Date(from).toISOString());
  assert.equal(new URL(page.url()).searchParams.get('range'), null);
  // Back in history: the preset again.
  await page.goBack();
  await tileTexts(fmt(last15.length));
});

test('a tenant with no data (another key) says how to send some', { skip: skipFor('Overview', 'Activity', 'Alerts') }, async () => {
  const { page: other, errors: otherErrors } = await withKey(KEY.nobody, '/?range=1h');
  await other.locator('.empty').waitFor({ timeout: 15_000 });
  const empty = (await other.locator('.empty').textContent())!;
  assert.match(empty, /Tenant nobody has no tool calls in the last hour/);
  assert.match(empty, /npm run keys -- create --tenant nobody --role ingest/);
  assert.match(empty, /authorization: Bearer <ingest key of nobody>/);
  await screenshot(other, 'overview-empty');
  assert.deepEqual(await axeViolations(other), []);
  assert.deepEqual(otherErrors, []);
  await other.context().close();
});

test('at 390 px wide every page fits the screen (tables scroll inside their card)', { skip: anyPage }, async () => {
  const narrow = await openPage(h.browser, 390);
  const pages = [
    ['overview', '/?range=1h', '[data-panel="activity"] canvas'],
    ['audit-log', '/audit?range=1h', '[data-table="audit-log"] tbody tr'],
    ['trace', '/traces/ui-trace-0?span=3333333333333333', '[data-span-detail]'],
    ['agent', '/agents/planner?range=1h', '[data-table="tools"] tbody tr'],
    ['denials', '/denials?range=1h', '[data-list="by-reason"] li'],
    ['costs', '/costs?range=24h', '[data-table="costs"] tbody tr'],
    ['alerts', `/alerts?status=ALL&alert=${ALERT_ID}`, '[data-alert-sentence]'],
  ];
  for (const [name, path, ready] of pages) {
    await narrow.page.goto(`${baseUrl}${path}`);
    await narrow.page.locator(ready!).first().waitFor({ timeout: 15_000 });
    const overflow = await narrow.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `${name} is ${overflow} px wider than the screen`);
    await screenshot(narrow.page, `${name}-390px`);
  }
  assert.deepEqual(narrow.errors, []);
  await narrow.page.context().close();
});

test('audit log: pages of 50 by cursor, filters in the address bar, a detail panel, then its trace', { skip: skipFor('AuditLog', 'AuditEvent', 'Trace') }, async () => {
  await page.goto(`${baseUrl}/audit?range=1h`);
  const rows = page.locator('[data-table="audit-log"] tbody tr');
  await rows.first().waitFor({ timeout: 15_000 });
  assert.equal(await rows.count(), 50);
  const newest = [...lastHour].sort((a, b) => b.ts - a.ts);
  assert.equal(await rows.nth(0).locator('a').first().textContent(), newest[0]!.agent);

  await page.getByRole('button', { name: 'Older →' }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-table="audit-log"] tbody tr').length === 10, null, { timeout: 15_000 });
  assert.ok(await page.getByRole('button', { name: 'Older →' }).isDisabled());
  assert.match(page.url(), /[?&]after=/);
  await page.getByRole('button', { name: '← Newer' }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-table="audit-log"] tbody tr').length === 50, null, { timeout: 15_000 });

  // Filters: agent planner, denied only.
  await page.fill('input[name="agent"]', 'planner');
  await page.selectOption('select[name="outcome"]', 'DENIED');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  const expected = lastHour.filter((c) => c.agent === 'planner' && c.outcome === 'DENIED');
  await page.waitForFunction((n) => document.querySelectorAll('[data-table="audit-log"] tbody tr').length === n, expected.length, { timeout: 15_000 });
  assert.deepEqual(await page.$$eval('[data-outcome]', (b) => b.map((x) => x.getAttribute('data-outcome'))), expected.map(() => 'DENIED'));
  assert.equal(new URL(page.url()).searchParams.get('agent'), 'planner');
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-table="audit-log"] tbody tr').length === 50, null, { timeout: 15_000 });

  // Text filter (error or reason, any case).
  await page.fill('input[name="text"]', 'TIMEOUT');
  await page.press('input[name="text"]', 'Enter');
  await page.waitForFunction((n) => document.querySelectorAll('[data-table="audit-log"] tbody tr').length === n, count(lastHour, 'ERROR'), { timeout: 15_000 });
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-table="audit-log"] tbody tr').length === 50, null, { timeout: 15_000 });
  await checkPage('audit-log');

  // The first fixture call (the traced one): its detail panel, then its trace.
  const first = CALLS[0]!;
  await page.fill('input[name="session"]', 'session-0');
  await page.fill('input[name="tool"]', first.tool);
  await page.getByRole('button', { name: 'Apply filters' }).click();
  const sessionCalls = lastHour.filter((c) => c.tool === first.tool && CALLS.indexOf(c) % 4 === 0);
  await page.waitForFunction((n) => document.querySelectorAll('[data-table="audit-log"] tbody tr').length === n, sessionCalls.length, { timeout: 15_000 });
  await page.locator('[data-table="audit-log"] tbody tr').first().getByRole('button').click();
  await page.locator('[data-detail] [data-detail-trace]').waitFor({ timeout: 15_000 });
  assert.match((await page.locator('[data-detail]').textContent())!, /ui-trace-0/);
  await checkPage('audit-log-detail');
  await page.locator('[data-detail-trace]').click();
  await page.locator('[data-waterfall] li').first().waitFor({ timeout: 15_000 });
  assert.equal(new URL(page.url()).pathname, '/traces/ui-trace-0');
  assert.equal(await page.locator('[data-waterfall] li').count(), SPANS.length);
  await page.locator('[data-span="3333333333333333"] button').click();
  assert.match((await page.locator('[data-span-detail]').textContent())!, /cache\.key\s*user:42/);
  assert.match((await page.locator('[data-span-detail]').textContent())!, /error: cache down/);
  await checkPage('trace');
});

test('an error shows alone, and goes when the next answer comes', { skip: skipFor('AuditLog', 'AuditEvent') }, async () => {
  await page.goto(`${baseUrl}/audit?range=1h&event=not-an-event-id`);
  const banner = page.locator('[data-detail] [role="alert"]');
  await banner.waitFor({ timeout: 15_000 });
  assert.match((await banner.textContent())!, /id/);
  assert.equal(await page.locator('[data-detail] dl').count(), 0, 'no record under the error');
  await page.locator('[data-table="audit-log"] tbody tr').first().getByRole('button').click();
  await page.locator('[data-detail] dl').waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('[role="alert"]').count(), 0, 'the error is gone');
});

test('agent page: its totals equal its records; a tool page lists its callers', { skip: skipFor('Overview', 'Activity', 'Denials', 'AuditLog', 'Latency', 'Alerts', 'Prices') }, async () => {
  await page.goto(`${baseUrl}/agents/${encodeURIComponent('Claude Desktop')}?range=1h`);
  const mine = lastHour.filter((c) => c.agent === 'Claude Desktop');
  const shown = await tileTexts(fmt(mine.length));
  assert.deepEqual([shown.errors, shown.denials, shown.cost], [fmt(count(mine, 'ERROR')), fmt(count(mine, 'DENIED')), usd(sumCost(mine))]);
  await page.locator('[data-table="tools"] tbody tr').first().waitFor({ timeout: 15_000 });
  await page.locator('[data-panel="recent-calls"] tbody tr').first().waitFor({ timeout: 15_000 });
  // Its sessions, each with its number of calls.
  await page.locator('[data-list="sessions"] li').first().waitFor({ timeout: 15_000 });
  const sessions = await page.$$eval('[data-list="sessions"] li', (li) => Object.fromEntries(li.map((x) => [x.getAttribute('data-session'), x.querySelector('[data-field="calls"]')!.textContent])));
  const expectedSessions: Record<string, string> = {};
  for (const [i, c] of CALLS.entries()) {
    if (c.agent !== 'Claude Desktop' || c.ts < NOW - 3600_000) continue;
    const id = `session-${i % 4}`;
    expectedSessions[id] = String(Number.parseInt(expectedSessions[id] ?? '0') + 1);
  }
  assert.deepEqual(sessions, Object.fromEntries(Object.entries(expectedSessions).map(([k, v]) => [k, `${v} calls`])));
  await checkPage('agent');

  // From one of its tools to that tool's page, which lists every agent calling it.
  const tool = 'repo.Files.Read';
  await page.locator('[data-table="tools"] a', { hasText: tool }).click();
  await page.locator('[data-list="agents"] li').first().waitFor({ timeout: 15_000 });
  assert.equal(new URL(page.url()).pathname, `/tools/${tool}`);
  const callers = [...new Set(lastHour.filter((c) => c.tool === tool).map((c) => c.agent))].sort();
  assert.deepEqual((await page.$$eval('[data-list="agents"] li', (li) => li.map((x) => x.getAttribute('data-agent')!))).sort(), callers);
  await page.locator('[data-panel="tool-charts"] canvas').first().waitFor({ timeout: 15_000 });
  assert.match((await page.locator('[data-tool-price]').textContent())!, /No price rule/);
  await checkPage('tool');
});

test('denials page: counts by reason equal the records', { skip: skipFor('Denials', 'AuditLog') }, async () => {
  await page.goto(`${baseUrl}/denials?range=1h`);
  await page.locator('[data-list="by-reason"] li').first().waitFor({ timeout: 15_000 });
  const byReason = await page.$$eval('[data-list="by-reason"] li', (li) => li.map((x) => [x.children[0]!.textContent!.trim(), x.children[1]!.textContent!.trim()]));
  const expected = new Map<string, number>();
  for (const c of lastHour) if (c.reason) expected.set(c.reason, (expected.get(c.reason) ?? 0) + 1);
  assert.deepEqual(Object.fromEntries(byReason), Object.fromEntries([...expected].map(([k, v]) => [k, fmt(v)])));
  await page.locator('[data-panel="recent-calls"] tbody tr').first().waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('[data-panel="recent-calls"] tbody tr').count(), count(lastHour, 'DENIED'));
  await checkPage('denials');
});

// ---- costs, with keys: an admin edits the price book, a viewer cannot -------------------------------------


const withKey = (key: string, path: string, width?: number) => openWithKey(h.browser, keyedUrl, key, path, width);

test('costs: an admin key sets a price, the totals equal the API, the chargeback download equals the export', { skip: skipFor('CostReport', 'Prices', 'SetPrice', 'Budgets') }, async () => {
  const { page: admin, errors: adminErrors } = await withKey(KEY.admin, '/costs?range=24h&by=TOOL');
  await admin.locator('[data-price-form]').waitFor({ timeout: 15_000 });
  await admin.fill('[data-price-form] input[name="tool"]', 'search.*');
  await admin.fill('[data-price-form] input[name="perCall"]', '0.01');
  await admin.getByRole('button', { name: 'Set price from now' }).click();
  await admin.locator('[data-table="prices"] tr[data-rule*="search"]').waitFor({ timeout: 15_000 });
  await admin.goto(`${keyedUrl}/tools/search.Search.Query?range=1h`);
  await admin.locator('[data-tool-price]').waitFor({ timeout: 15_000 });
  assert.match((await admin.locator('[data-tool-price]').textContent())!, /\$0\.01 per call \+ \$0 per second/);
  await admin.goto(`${keyedUrl}/costs?range=24h&by=TOOL`);

  await admin.locator('[data-table="costs"] tbody tr').first().waitFor({ timeout: 15_000 });
  const shown = await admin.$$eval('[data-table="costs"] tbody tr', (rows) => Object.fromEntries(rows.map((r) => [r.getAttribute('data-cost-row'), r.querySelector('[data-field="cost"]')!.textContent!.trim()])));
  const minute = (ms: number) => new Date(Math.floor(ms / 60_000) * 60_000).toISOString();
  const answer = await (
    await fetch(`${keyedUrl}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY.admin}` },
      body: JSON.stringify({ query: DOCUMENTS.CostReport, variables: { from: minute(Date.now() - 86_400_000), to: minute(Date.now()), groupBy: ['TOOL'], overTime: ['TOOL', 'DAY'] } }),
    })
  ).json();
  const expected = Object.fromEntries(
    (answer.data.totals.rows as Array<{ tool: string; total: { amount: string } }>).map((r) => [r.tool, usd(Math.round(Number(r.total.amount) * 1e6))]),
  );
  assert.deepEqual(shown, expected);
  assert.deepEqual(Object.keys(shown).sort(), TOOLS.map(([, t]) => t).sort());

  // Each download is the export endpoint's bytes, its generation time aside (an instant within the last minute).
  const period = new Date().toISOString().slice(0, 7);
  const generated = (text: string) =>
    text.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, (t) => (Math.abs(Date.parse(t) - Date.now()) < 120_000 ? '<generated>' : t));
  for (const [button, format] of [['CSV', 'csv'], ['JSON', 'json'], ['FOCUS', 'focus']] as const) {
    const [download] = await Promise.all([admin.waitForEvent('download'), admin.getByRole('button', { name: button, exact: true }).click()]);
    const downloaded = readFileSync((await download.path())!, 'utf8');
    const exported = await (await fetch(`${keyedUrl}/export/chargeback?period=${period}&format=${format}`, { headers: { authorization: `Bearer ${KEY.admin}` } })).text();
    assert.ok(exported.length > 0);
    assert.equal(generated(downloaded), generated(exported), format);
    assert.match(download.suggestedFilename(), new RegExp(`chargeback-${period}`));
  }
  // A budget for agent planner this month (set through the API): the panel shows the API's spend and amount.
  const setBudget = await (
    await fetch(`${keyedUrl}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY.admin}` },
      body: JSON.stringify({ query: `mutation { setBudget(input: { agent: "planner", period: "${period}", amount: "10.00" }) { key } }` }),
    })
  ).json();
  assert.equal(setBudget.errors, undefined, JSON.stringify(setBudget.errors));
  const budgets = await (
    await fetch(`${keyedUrl}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY.admin}` },
      body: JSON.stringify({ query: DOCUMENTS.Budgets, variables: { period } }),
    })
  ).json();
  const planner = (budgets.data.budgets as Array<{ key: string; spend: { amount: string } }>).find((b) => b.key === 'planner')!;
  await admin.reload();
  const budget = admin.locator('[data-list="budgets"] [data-budget="planner"] [data-field="spend"]');
  await budget.waitFor({ timeout: 15_000 });
  assert.equal(await budget.textContent(), `${usd(Math.round(Number(planner.spend.amount) * 1e6))} of $10.00`);
  await screenshot(admin, 'costs-admin');
  assert.deepEqual(await axeViolations(admin), []);
  assert.deepEqual(adminErrors, []);
  await admin.context().close();
});

test('a viewer key sees costs but no admin action: no price form, no export, and the API refuses setPrice', { skip: skipFor('CostReport', 'Prices', 'SetPrice', 'Budgets') }, async () => {
  const { page: viewer, errors: viewerErrors } = await withKey(KEY.viewer, '/costs?range=24h');
  await viewer.locator('[data-price-readonly]').waitFor({ timeout: 15_000 });
  assert.equal(await viewer.locator('[data-price-form]').count(), 0);
  assert.ok(await viewer.getByRole('button', { name: 'CSV' }).isDisabled());
  await viewer.locator('[data-export-needs-role]').waitFor();
  const refused = await (
    await fetch(`${keyedUrl}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY.viewer}` },
      body: JSON.stringify({ query: DOCUMENTS.SetPrice, variables: { input: { perCall: '1', perSecond: '0', effectiveFrom: new Date().toISOString() } } }),
    })
  ).json();
  assert.equal(refused.errors?.[0]?.extensions?.code, 'FORBIDDEN');
  await screenshot(viewer, 'costs-viewer');
  assert.deepEqual(await axeViolations(viewer), []);
  assert.deepEqual(viewerErrors, []);
  await viewer.context().close();
});

test('alerts: an open alert on the overview, its sentence and chart, acknowledged, then its agent', { skip: skipFor('Overview', 'Activity', 'Alerts', 'Alert', 'AcknowledgeAlert') }, async () => {
  await page.goto(`${baseUrl}/?range=1h`);
  const item = page.locator(`[data-panel="open-alerts"] [data-alert="${ALERT_ID}"]`);
  await item.waitFor({ timeout: 15_000 });
  assert.equal((await item.locator('.alert-sentence').textContent())!.trim(), ALERT_SENTENCE);
  await item.locator('.alert-sentence').click();
  await page.locator('[data-alert-sentence]').waitFor({ timeout: 15_000 });
  assert.equal(new URL(page.url()).pathname, '/alerts');
  assert.equal(await page.locator('[data-alert-sentence]').textContent(), ALERT_SENTENCE);
  await page.locator('[data-panel="alert-detail"] canvas').first().waitFor({ timeout: 15_000 });
  assert.match((await page.locator('[data-list="alert-history"]').textContent())!, /opened by detector/);
  await checkPage('alerts');

  // The loopback caller is an admin: it acknowledges, and the API agrees.
  await page.getByRole('button', { name: 'Acknowledge' }).click();
  await page.waitForFunction(() => document.querySelector('[data-alert-status]')?.textContent === 'acknowledged', null, { timeout: 15_000 });
  const answer = await api<{ alert: { status: string; acknowledgedBy: string } }>('Alert', { id: ALERT_ID });
  assert.equal(answer.alert.status, 'ACKNOWLEDGED');

  await page.locator('[data-alert-agent]').click();
  await page.locator('[data-tile="calls"]').waitFor({ timeout: 15_000 });
  assert.equal(new URL(page.url()).pathname, '/agents/planner');
});

test('a viewer key sees an alert but cannot acknowledge, resolve or silence it', { skip: skipFor('Alerts', 'Alert', 'AcknowledgeAlert') }, async () => {
  const { page: viewer, errors: viewerErrors } = await withKey(KEY.viewer, `/alerts?status=ALL&alert=${ALERT_ID}`);
  await viewer.locator('[data-alert-readonly]').waitFor({ timeout: 15_000 });
  assert.equal(await viewer.locator('[data-alert-actions]').count(), 0);
  const refused = await (
    await fetch(`${keyedUrl}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY.viewer}` },
      body: JSON.stringify({ query: DOCUMENTS.ResolveAlert, variables: { id: ALERT_ID } }),
    })
  ).json();
  assert.equal(refused.errors?.[0]?.extensions?.code, 'FORBIDDEN');
  assert.deepEqual(await axeViolations(viewer), []);
  assert.deepEqual(viewerErrors, []);
  await viewer.context().close();
});

// Last: it adds a call the other tests do not expect.
test('new calls appear on the next 5 s refresh', { skip: skipFor('Overview', 'Activity', 'Alerts') }, async () => {
  await page.goto(`${baseUrl}/?range=1h`);
  await tileTexts(fmt(lastHour.length));
  const late = normalizeAuditRecord({ tenant: 'default', trace_id: 'ui-late', timestamp: new Date().toISOString(), agent: 'tester', tool: 'users.Users.Get', allowed: true, duration: 5 * MS });
  assert.ok(late.ok);
  await h.clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: [toAuditRow(late.value)] });
  const shown = await tileTexts(fmt(lastHour.length + 1)); // at most one refresh period plus slack
  assert.equal(shown.agents, '4');
});
