/**
 * The dashboard end to end: the UI built by Vite, served by createApi over a real ClickHouse fixture,
 * rendered by Chromium. Checks the numbers a person would read, the range picker, the 5 s refresh, the
 * API key flow (a second server with keys) and the empty state, and leaves screenshots in /tmp/ui*.png.
 *
 * Needs Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium`). Without it the test is
 * skipped with a warning, except with CI=true, where that is a failure.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type Page, type Request } from 'playwright-core';
import { pino } from 'pino';
import { build } from 'vite';
import { createApi } from '../../api/app.ts';
import { createKeyStore, generateKey, keyEntry } from '../../core/api-keys.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput } from '../../model/audit-event.ts';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCREENSHOT = '/tmp/ui.png';

const chromiumMissing = !existsSync(CHROMIUM);
if (chromiumMissing) {
  const line = '!'.repeat(78);
  console.error(
    [
      line,
      `!! WARNING: ${CHROMIUM} not found: the dashboard (UI) tests are SKIPPED.`,
      '!! Install it with: apt-get update && apt-get install -y chromium',
      line,
    ].join('\n'),
  );
  if (process.env.CI === 'true') throw new Error(`CI=true: ${CHROMIUM} is required for the UI tests`);
}
const skip = chromiumMissing ? `${CHROMIUM} not installed` : false;

// ---- fixture: tenant acme, minutes ago; one call half an hour ago (inside 1 h, outside 15 min) ----------

const NOW = Date.now();
const MS = 1_000_000;

function call(minutesAgo: number, fields: Partial<AuditRecordInput> & { tool: string; agent: string }) {
  const normalized = normalizeAuditRecord({
    tenant: 'default',
    trace_id: `ui-${minutesAgo}-${fields.tool}`,
    timestamp: new Date(NOW - minutesAgo * 60_000).toISOString(),
    allowed: true,
    ...fields,
  });
  assert.ok(normalized.ok);
  return toAuditRow(normalized.value);
}

const FIXTURE = [
  call(2, { agent: 'planner', tool: 'users.Users.Get', account_id: 'alice', duration: 12 * MS, cost_usd: 0.002 }),
  call(3, { agent: 'planner', tool: 'users.Users.Get', account_id: 'alice', duration: 30 * MS, error: 'upstream timeout' }),
  call(4, { agent: 'planner', tool: 'billing.Invoices.Delete', account_id: 'bob', allowed: false, denied_reason: 'missing scope billing:write' }),
  call(5, { agent: 'coder', tool: 'repo.Files.Read', account_id: 'carol', duration: 45 * MS, cost_usd: 0.01 }),
  call(6, { agent: 'coder', tool: 'repo.Files.Write', account_id: 'carol', allowed: false, denied_reason: 'read-only token' }),
  call(30, { agent: 'reviewer', tool: 'search.Search.Query', duration: 800 * MS, cost_usd: 0.05 }),
];

// ---- harness ---------------------------------------------------------------------------------------------

const dataDir = mkdtempSync(path.join(tmpdir(), 'ui-test-'));
let clickhouse: ClickHouseClient;
let server: Server;
let baseUrl: string;
/** The same API with keys configured, for the key flow. */
let keyedServer: Server;
let keyedUrl: string;
const KEY = { viewer: generateKey(), nobody: generateKey(), ingest: generateKey() };
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

before(async () => {
  if (skip) return;
  // A fresh build, so the test never looks at a stale ui/dist.
  const uiDir = path.join(dataDir, 'ui-dist');
  await build({ configFile: path.join(ROOT, 'ui/vite.config.ts'), logLevel: 'warn', build: { outDir: uiDir, emptyOutDir: true } });

  clickhouse = await openClickHouse({ database: 'ui_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: FIXTURE });

  const api = createApi({ clickhouse, logger: pino({ level: 'silent' }), uiDir });
  server = createServer(api.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const keys = createKeyStore([
    keyEntry({ name: 'ui-viewer', tenant: 'default', role: 'viewer', secret: KEY.viewer }),
    keyEntry({ name: 'nobody-viewer', tenant: 'nobody', role: 'viewer', secret: KEY.nobody }),
    keyEntry({ name: 'gateway', tenant: 'default', role: 'ingest', secret: KEY.ingest }),
  ]);
  keyedServer = createServer(createApi({ clickhouse, logger: pino({ level: 'silent' }), uiDir, keys }).handle);
  await new Promise<void>((resolve) => keyedServer.listen(0, '127.0.0.1', resolve));
  keyedUrl = `http://127.0.0.1:${(keyedServer.address() as AddressInfo).port}`;

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(message.text());
  });
});

after(async () => {
  await browser?.close();
  server?.close();
  keyedServer?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** The text of each overview tile, once the tiles show `calls`. */
async function tiles(calls: string, on: Page = page): Promise<Record<string, string>> {
  await on.waitForFunction(
    (expected) => document.querySelector('[data-tile="calls"] .tile-value')?.textContent?.trim() === expected,
    calls,
    { timeout: 10_000 },
  );
  return on.$$eval('[data-tile]', (nodes) =>
    Object.fromEntries(nodes.map((n) => [n.getAttribute('data-tile'), n.querySelector('.tile-value')?.textContent?.trim() ?? ''])),
  );
}

const firstColumn = (table: string) =>
  page.$$eval(`[data-table="${table}"] tbody tr td:first-child .name`, (cells) => cells.map((c) => c.textContent?.trim()));

// ---- tests -------------------------------------------------------------------------------------------------

test('the overview tiles and the tables show the fixture', { skip }, async () => {
  await page.goto(`${baseUrl}/?tenant=default&range=1h`);
  const shown = await tiles('6');
  assert.deepEqual({ ...shown, p99: undefined }, { calls: '6', errors: '1', denials: '2', agents: '3', p99: undefined, cost: '$0.062' });
  assert.match(shown.p99!, /^\d+(\.\d+)? ms$/);

  assert.deepEqual(await firstColumn('agents'), ['planner', 'coder', 'reviewer']);
  assert.deepEqual((await firstColumn('slowest-tools'))[0], 'search.Search.Query');
  assert.equal(await page.locator('[data-table="audit-log"] tbody tr').count(), 6);
  assert.equal(await page.locator('[data-table="audit-log"] .badge.warn').count(), 2);

  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.deepEqual(pageErrors, []);
});

test('the range picker narrows every panel, and the address bar keeps the choice', { skip }, async () => {
  await page.getByRole('radio', { name: 'Last 15 min' }).click();
  const shown = await tiles('5');
  assert.deepEqual([shown.calls, shown.agents, shown.cost], ['5', '2', '$0.012']);
  assert.deepEqual(await firstColumn('agents'), ['planner', 'coder']);
  assert.match(page.url(), /[?&]range=15m(&|$)/);
  assert.doesNotMatch(page.url(), /tenant=/, 'the tenant is the caller\'s, not the address bar\'s');
  // Without keys, the loopback caller is tenant default, and the header says so.
  assert.equal(await page.locator('[data-tenant]').textContent(), 'default');
  assert.match((await page.locator('[data-who]').textContent())!, /admin \(no API keys configured\)/);
  assert.equal(await page.locator('#api-key').count(), 0);
});

test('new calls appear on the next 5 s refresh', { skip }, async () => {
  await clickhouse.insert({
    table: 'audit_events_v1',
    format: 'JSONEachRow',
    values: [call(1, { agent: 'tester', tool: 'users.Users.Get', duration: 5 * MS })],
  });
  const shown = await tiles('6'); // waits up to 10 s: at most one refresh period plus slack
  assert.equal(shown.agents, '3');
});


// ---- API keys -------------------------------------------------------------------------------------------

/** Calls of tenant default in the last hour, counted on the raw table. */
async function defaultCallsLastHour(): Promise<number> {
  const result = await clickhouse.query({
    query: "SELECT count() AS n FROM audit_events_v1 WHERE tenant = 'default' AND timestamp >= now64(9) - INTERVAL 1 HOUR",
    format: 'JSONEachRow',
  });
  return Number((await result.json<{ n: string }>())[0]!.n);
}

let keyPage: Page;
const keyPageErrors: string[] = [];
const graphqlRequests: Request[] = [];

test('with keys configured, the dashboard asks for a key, keeps it in session storage only, and shows its tenant', { skip }, async () => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  keyPage = await context.newPage();
  keyPage.on('pageerror', (error) => keyPageErrors.push(error.message));
  keyPage.on('console', (message) => {
    // The browser itself logs each 401/403 answer; those are the API's expected refusals.
    if (message.type() === 'error' && !/status of 40[13]/.test(message.text())) keyPageErrors.push(message.text());
  });
  keyPage.on('request', (request) => {
    if (request.url().includes('/graphql')) graphqlRequests.push(request);
  });

  await keyPage.goto(`${keyedUrl}/?range=1h`);
  await keyPage.locator('#api-key').waitFor({ timeout: 10_000 });
  assert.equal(await keyPage.locator('#key-title').textContent(), 'This dashboard needs an API key');
  assert.match((await keyPage.locator('.key-problem').textContent())!, /An API key is required: send it as `Authorization: Bearer <key>`/);
  assert.equal(await keyPage.locator('[data-tile]').count(), 0);
  assert.equal(graphqlRequests[0]!.headers().authorization, undefined, 'no key sent before one is given');

  // An unknown key, then an ingest key: refused, each with the API's reason.
  await keyPage.fill('#api-key', generateKey());
  await keyPage.click('.key-form button[type=submit]');
  await keyPage.getByText('The API key is not known (revoked, or mistyped).').waitFor({ timeout: 10_000 });
  assert.equal(await keyPage.locator('#key-title').textContent(), 'This API key cannot open the dashboard');
  await keyPage.fill('#api-key', KEY.ingest);
  await keyPage.click('.key-form button[type=submit]');
  await keyPage.getByText(/this key's role is ingest/).waitFor({ timeout: 10_000 });
  await keyPage.screenshot({ path: '/tmp/ui-key-form.png' });
  assert.equal(await keyPage.evaluate(() => sessionStorage.length), 0, 'a refused key is not kept');

  // A viewer key of tenant default: the fixture, and the header names the tenant and the key.
  const calls = await defaultCallsLastHour();
  await keyPage.fill('#api-key', KEY.viewer);
  await keyPage.click('.key-form button[type=submit]');
  const shown = await tiles(String(calls), keyPage);
  assert.equal(shown.calls, String(calls));
  assert.equal(await keyPage.locator('[data-tenant]').textContent(), 'default');
  assert.match((await keyPage.locator('[data-who]').textContent())!, /viewer · key ui-viewer/);

  // Sent as a Bearer header, kept in session storage only, never in an address.
  assert.equal(graphqlRequests.at(-1)!.headers().authorization, `Bearer ${KEY.viewer}`);
  assert.equal(await keyPage.evaluate(() => sessionStorage.getItem('mcp-analytics.api-key')), KEY.viewer);
  assert.equal(await keyPage.evaluate(() => localStorage.length), 0);
  assert.equal(await keyPage.evaluate(() => document.cookie), '');
  for (const request of graphqlRequests) assert.ok(!request.url().includes(KEY.viewer.slice(5)), request.url());
  assert.ok(!keyPage.url().includes(KEY.viewer.slice(5)));

  // A reload of the tab keeps the key; another tab starts without it.
  await keyPage.reload();
  await tiles(String(calls), keyPage);
  const otherTab = await context.newPage();
  await otherTab.goto(`${keyedUrl}/`);
  await otherTab.locator('#api-key').waitFor({ timeout: 10_000 });
  await otherTab.close();

  await keyPage.screenshot({ path: '/tmp/ui-key.png', fullPage: true });
  assert.deepEqual(keyPageErrors, []);
});

test('a tenant with no data (another key) says how to send some', { skip }, async () => {
  await keyPage.getByRole('button', { name: 'Forget key' }).click();
  await keyPage.locator('#api-key').waitFor({ timeout: 10_000 });
  assert.equal(await keyPage.evaluate(() => sessionStorage.length), 0);
  await keyPage.fill('#api-key', KEY.nobody);
  await keyPage.press('#api-key', 'Enter');
  await tiles('0', keyPage);
  assert.equal(await keyPage.locator('[data-tenant]').textContent(), 'nobody');
  const empty = (await keyPage.locator('.empty').textContent())!;
  assert.match(empty, /Tenant nobody has no tool calls in the last hour/);
  assert.match(empty, /npm run demo/);
  assert.match(empty, /POST \/v1\/audit/);
  assert.match(empty, /npm run keys -- create --tenant nobody --role ingest/);
  assert.match(empty, /authorization: Bearer <ingest key of nobody>/);
  await keyPage.screenshot({ path: '/tmp/ui-empty.png', fullPage: true });
  assert.deepEqual(keyPageErrors, []);
});
