/**
 * The dashboard end to end: the UI built by Vite, served by createApi over a real ClickHouse fixture,
 * rendered by Chromium. Checks the numbers a person would read, the range picker, the 5 s refresh and the
 * empty state, and leaves a screenshot in /tmp/ui.png.
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
import { chromium, type Browser, type Page } from 'playwright-core';
import { pino } from 'pino';
import { build } from 'vite';
import { createApi } from '../../api/app.ts';
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
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** The text of each overview tile, once the tiles show `calls`. */
async function tiles(calls: string): Promise<Record<string, string>> {
  await page.waitForFunction(
    (expected) => document.querySelector('[data-tile="calls"] .tile-value')?.textContent?.trim() === expected,
    calls,
    { timeout: 10_000 },
  );
  return page.$$eval('[data-tile]', (nodes) =>
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
  assert.match(page.url(), /[?&]tenant=default(&|$)/);
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

