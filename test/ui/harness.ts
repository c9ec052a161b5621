/**
 * What the browser tests share: the UI built by Vite into a temp dir, served by createApi over an embedded
 * ClickHouse, a headless Chromium (Debian's, a fresh profile per browser), axe-core, and screenshots under
 * test-artifacts/ui/ (git-ignored).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { pino } from 'pino';
import { build } from 'vite';
import { createApi } from '../../api/app.ts';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';

export const CHROMIUM = '/usr/bin/chromium';
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const ARTIFACTS = path.join(ROOT, 'test-artifacts/ui');

/** A reason to skip when Chromium is missing (a failure with CI=true). */
export function chromiumSkip(): string | false {
  if (existsSync(CHROMIUM)) return false;
  const line = '!'.repeat(78);
  console.error([line, `!! WARNING: ${CHROMIUM} not found: the dashboard (UI) tests are SKIPPED.`, '!! Install it with: apt-get update && apt-get install -y chromium', line].join('\n'));
  if (process.env.CI === 'true') throw new Error(`CI=true: ${CHROMIUM} is required for the UI tests`);
  return `${CHROMIUM} not installed`;
}

export interface Harness {
  clickhouse: ClickHouseClient;
  browser: Browser;
  /** Starts one more API server over the same data (e.g. with keys); closed with the harness. */
  serve(keys?: KeyStore): Promise<string>;
  close(): Promise<void>;
}

export async function startHarness(database: string): Promise<Harness> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'ui-test-'));
  // A fresh build, so a test never looks at a stale ui/dist.
  const uiDir = path.join(dataDir, 'ui-dist');
  await build({ configFile: path.join(ROOT, 'ui/vite.config.ts'), logLevel: 'warn', build: { outDir: uiDir, emptyOutDir: true } });
  const clickhouse = await openClickHouse({ database, dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  const servers: Server[] = [];
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  mkdirSync(ARTIFACTS, { recursive: true });
  return {
    clickhouse,
    browser,
    async serve(keys) {
      const server = createServer(createApi({ clickhouse, logger: pino({ level: 'silent' }), uiDir, keys }).handle);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    async close() {
      await browser.close();
      for (const server of servers) server.close();
      await clickhouse.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A page that records script errors (the browser's own log of 401/403 answers aside). */
export async function openPage(browser: Browser, width = 1400): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width, height: 1000 }, timezoneId: 'UTC', locale: 'en-US' });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error' && !/status of 40[13]/.test(message.text())) errors.push(message.text());
  });
  return { page, errors };
}

/**
 * A page that entered `key` in the dashboard's key form at `baseUrl`, then went to `path` inside the app
 * (the key never in an address).
 */
export async function openWithKey(browser: Browser, baseUrl: string, key: string, path: string, width = 1400): Promise<{ page: Page; errors: string[] }> {
  const opened = await openPage(browser, width);
  await opened.page.goto(`${baseUrl}/`);
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

const AXE = readFileSync(path.join(ROOT, 'node_modules/axe-core/axe.min.js'), 'utf8');

/** axe-core's serious and critical violations on the page as it is, one line each. */
export async function axeViolations(page: Page): Promise<string[]> {
  await page.addScriptTag({ content: AXE });
  return page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: Document, opts: object) => Promise<{ violations: Array<{ id: string; impact: string; nodes: Array<{ target: string[] }> }> }> } }).axe;
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.impact} ${v.id}: ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  });
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}
