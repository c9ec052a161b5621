/**
 * GraphiQL works with no internet: the page at /graphql carries its scripts and styles itself (yoga's
 * GraphiQL package), references no other host, and, in a real browser that may reach only the API's
 * own origin, renders and loads the schema.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { startApi, type ApiServer } from './harness.ts';

const CHROMIUM = '/usr/bin/chromium';
const dataDir = mkdtempSync(path.join(tmpdir(), 'api-graphiql-'));
let clickhouse: ClickHouseClient;
let server: ApiServer;

before(async () => {
  clickhouse = await openClickHouse({ database: 'api_graphiql_test', dataDir });
  // No keys: the loopback caller, as a developer opening GraphiQL on their machine.
  server = await startApi({ clickhouse, keys: undefined });
});

after(async () => {
  await server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Hosts GraphiQL pages commonly load from. */
const CDN = /unpkg\.com|jsdelivr|cdnjs|esm\.sh|googleapis|gstatic|skypack|cdn\./i;

test('the page at /graphql carries its own scripts and styles and loads nothing from another host', async () => {
  const response = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
  const html = await response.text();
  assert.match(html, /YogaGraphiQL\.renderYogaGraphiQL/, 'the GraphiQL bundle is in the page');
  assert.match(html, /<title>MCP audit analytics<\/title>/);
  // Elements that would load something (the markup, inline scripts' text aside): none points at another
  // host, or anywhere but data: and this origin.
  const markup = html.replace(/(<script\b[^>]*>)[\s\S]*?(<\/script>)/gi, '$1$2');
  const loads = [...markup.matchAll(/<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?([^"'\s>]+)/gi)].map((m) => m[1]!);
  assert.ok(loads.length > 0, 'the favicon link at least');
  for (const url of loads) assert.ok(url.startsWith('data:') || (url.startsWith('/') && !url.startsWith('//')), `loads ${url}`);
  assert.equal(CDN.exec(html)?.[0], undefined);
});

test('in a browser that may reach only the API, GraphiQL renders and loads the schema', { skip: !existsSync(CHROMIUM) && `${CHROMIUM} not installed` }, async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const origin = new URL(server.url).origin;
    const elsewhere: string[] = [];
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (new URL(url).origin === origin) return route.continue();
      elsewhere.push(url);
      return route.abort('internetdisconnected');
    });
    const introspected = page.waitForResponse((r) => r.url() === `${server.url}/graphql` && r.request().method() === 'POST' && /__schema/.test(r.request().postData() ?? ''));
    await page.goto(`${server.url}/graphql`);
    await page.waitForSelector('.graphiql-container', { timeout: 30_000 });
    const schema = await introspected;
    assert.equal(schema.status(), 200);
    const body = (await schema.json()) as { data?: { __schema?: { queryType?: { name: string } } } };
    assert.equal(body.data?.__schema?.queryType?.name, 'Query');
    assert.deepEqual(elsewhere, []);
  } finally {
    await browser.close();
  }
});
