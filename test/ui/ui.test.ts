/**
 * The dashboard's frame in Chromium, on the schema of this branch: the API key flow (a server with keys),
 * the caller shown in the header, navigation that keeps the range in the address bar, a path that is no
 * page. The pages themselves are in pages.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Page, Request } from 'playwright-core';
import { PENDING_FIELDS } from '../../ui/src/lib/api.ts';
import { createKeyStore, generateKey, keyEntry } from '../../core/api-keys.ts';
import { axeViolations, chromiumSkip, openPage, screenshot, startHarness, type Harness } from './harness.ts';

const skip = chromiumSkip();

/** While documents wait for their API (PENDING_FIELDS), the pages' requests are 400s on this branch's schema. */
const pendingApi = Object.keys(PENDING_FIELDS).length > 0;
const scriptErrors = (errors: string[]) => errors.filter((e) => !(pendingApi && /status of 400/.test(e)));
const KEY = { viewer: generateKey(), nobody: generateKey(), ingest: generateKey() };

let h: Harness;
let baseUrl: string;
let keyedUrl: string;

before(async () => {
  if (skip) return;
  h = await startHarness('ui_frame');
  baseUrl = await h.serve();
  keyedUrl = await h.serve(
    createKeyStore([
      keyEntry({ name: 'ui-viewer', tenant: 'default', role: 'viewer', secret: KEY.viewer }),
      keyEntry({ name: 'nobody-viewer', tenant: 'nobody', role: 'viewer', secret: KEY.nobody }),
      keyEntry({ name: 'gateway', tenant: 'default', role: 'ingest', secret: KEY.ingest }),
    ]),
  );
});

after(async () => {
  await h?.close();
});

test('without keys, the loopback caller is tenant default; navigation keeps the range; an unknown path says so', { skip }, async () => {
  const { page, errors } = await openPage(h.browser);
  await page.goto(`${baseUrl}/?tenant=default&range=24h`);
  await page.locator('[data-tenant]').waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('[data-tenant]').textContent(), 'default');
  assert.match((await page.locator('[data-who]').textContent())!, /admin \(no API keys configured\)/);
  assert.equal(await page.locator('#api-key').count(), 0);
  assert.equal(await page.getByRole('radio', { name: 'Last 24 h' }).getAttribute('aria-checked'), 'true');

  // Keyboard: Tab reaches the checked range, the arrow keys choose another.
  await page.getByRole('radio', { name: 'Last 24 h' }).focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.getByRole('radio', { name: 'Last 7 days' }).getAttribute('aria-checked'), 'true');
  assert.equal(new URL(page.url()).searchParams.get('range'), '7d');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Last 7 days');
  assert.equal(await page.getByRole('radio', { name: 'Last 24 h' }).getAttribute('tabindex'), '-1');
  await page.keyboard.press('ArrowLeft');
  assert.equal(new URL(page.url()).searchParams.get('range'), '24h');

  await page.getByRole('link', { name: 'Audit log' }).click();
  assert.equal(new URL(page.url()).pathname, '/audit');
  assert.equal(new URL(page.url()).searchParams.get('range'), '24h');
  assert.equal(await page.getByRole('link', { name: 'Audit log' }).getAttribute('aria-current'), 'page');
  assert.equal(await page.title(), 'Audit log · MCP audit analytics');

  await page.goto(`${baseUrl}/no/such/page`);
  await page.getByRole('heading', { name: 'Not found' }).waitFor({ timeout: 15_000 });
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'not-found');
  assert.deepEqual(scriptErrors(errors), []);
  await page.context().close();
});

test('with keys configured, the dashboard asks for a key, keeps it in session storage only, and shows its tenant', { skip }, async () => {
  const { page, errors } = await openPage(h.browser);
  const graphqlRequests: Request[] = [];
  page.on('request', (request) => {
    if (request.url().includes('/graphql')) graphqlRequests.push(request);
  });

  await page.goto(`${keyedUrl}/?range=1h`);
  await page.locator('#api-key').waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('#key-title').textContent(), 'This dashboard needs an API key');
  assert.match((await page.locator('.key-problem').textContent())!, /An API key is required: send it as `Authorization: Bearer <key>`/);
  assert.equal(graphqlRequests[0]!.headers().authorization, undefined, 'no key sent before one is given');
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, 'key-form');

  // An unknown key, then an ingest key: refused, each with the API's reason, and not kept.
  await page.fill('#api-key', generateKey());
  await page.click('.key-form button[type=submit]');
  await page.getByText('The API key is not known (revoked, or mistyped).').waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('#key-title').textContent(), 'This API key cannot open the dashboard');
  await page.fill('#api-key', KEY.ingest);
  await page.click('.key-form button[type=submit]');
  await page.getByText(/this key's role is ingest/).waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused key is not kept');

  // A viewer key of tenant default: the header names the tenant, the role and the key.
  await page.fill('#api-key', KEY.viewer);
  await page.click('.key-form button[type=submit]');
  await page.locator('[data-tenant]').waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('[data-tenant]').textContent(), 'default');
  assert.match((await page.locator('[data-who]').textContent())!, /viewer · key ui-viewer/);

  // Sent as a Bearer header, kept in session storage only, never in an address.
  assert.equal(graphqlRequests.at(-1)!.headers().authorization, `Bearer ${KEY.viewer}`);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('mcp-analytics.api-key')), KEY.viewer);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.equal(await page.evaluate(() => document.cookie), '');
  for (const request of graphqlRequests) assert.ok(!request.url().includes(KEY.viewer.slice(5)), request.url());
  assert.ok(!page.url().includes(KEY.viewer.slice(5)));

  // A reload keeps the key; another tab starts without it.
  await page.reload();
  await page.locator('[data-tenant]').waitFor({ timeout: 15_000 });
  const otherTab = await page.context().newPage();
  await otherTab.goto(`${keyedUrl}/`);
  await otherTab.locator('#api-key').waitFor({ timeout: 15_000 });
  await otherTab.close();

  // Forget the key, then another tenant's key: its tenant in the header.
  await page.getByRole('button', { name: 'Forget key' }).click();
  await page.locator('#api-key').waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.fill('#api-key', KEY.nobody);
  await page.press('#api-key', 'Enter');
  await page.waitForFunction(() => document.querySelector('[data-tenant]')?.textContent === 'nobody', null, { timeout: 15_000 });
  assert.deepEqual(scriptErrors(errors), []);
  await page.context().close();
});

test('the refresh stops while the tab is hidden and runs at once when it shows again', { skip }, async () => {
  const { page } = await openPage(h.browser);
  const sent: number[] = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/graphql')) sent.push(Date.now());
  });
  await page.goto(`${baseUrl}/denials?range=1h`);
  await page.locator('[data-tenant]').waitFor({ timeout: 15_000 });
  // A string, so the transpiler adds no helper the page does not have.
  const setHidden = (hidden: boolean) =>
    page.evaluate(`Object.defineProperty(document, 'hidden', { configurable: true, get() { return ${hidden}; } }); document.dispatchEvent(new Event('visibilitychange'));`);
  await setHidden(true);
  const hiddenAt = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 6500)); // longer than one 5 s period
  assert.deepEqual(sent.filter((t) => t > hiddenAt + 200), [], 'no request while hidden');
  await Promise.all([page.waitForRequest((r) => r.url().endsWith('/graphql'), { timeout: 2000 }), setHidden(false)]);
  await page.context().close();
});
