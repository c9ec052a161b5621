/**
 * The detector against the real embedded ClickHouse: audit records go into audit_events_v1 (so the
 * views fill the rollups), one tenant per case; each kind fires on its injected case with its sentence,
 * stays quiet on clean data, keeps one open alert while it fires, resolves when quiet, and a second
 * detector instance makes no duplicate.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { median, quantile } from 'simple-statistics';
import { createMemoryAlertStore } from '../../alerts/alert-store.ts';
import { createAlertDetector, type AlertDetector } from '../../alerts/detector.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { insertCalls, windowCalls, type Call } from './helpers.ts';

const MIN = 60_000;
/** End of the judged window: a whole 10 minutes, a day ago (inside the raw table's retention). */
const AT = Math.floor(Date.now() / (10 * MIN)) * 10 * MIN - 24 * 3600_000;
const BASELINE = [3, 4, 5, 6, 7, 8, 9, 5, 6, 7, 4, 5];

const dataDir = mkdtempSync(path.join(tmpdir(), 'alerts-test-'));
let clickhouse: ClickHouseClient;
let detector: AlertDetector;
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });

function series(counts: number[], call: Omit<Call, 'at'>): Call[] {
  return counts.flatMap((n, i) => windowCalls(AT, i + 1, n, call));
}

async function openAlerts(tenant: string) {
  const result = await clickhouse.query({
    query: `SELECT alert_id, kind, status, sentence, agent, tool, account_id, session_id FROM alerts_v1 FINAL WHERE tenant = {tenant:String} ORDER BY kind, alert_id`,
    query_params: { tenant },
    format: 'JSONEachRow',
  });
  return result.json<{ alert_id: string; kind: string; status: string; sentence: string; agent: string; tool: string; account_id: string; session_id: string }>();
}

before(async () => {
  clickhouse = await openClickHouse({ database: 'alerts_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  detector = createAlertDetector({ clickhouse, logger, config: { intervalS: 60, webhookFormat: 'json' } });

  const refund = { agent: 'claude-desktop', tool: 'payments.Payments.Refund' };
  // Many sessions, a few calls each: a spike, not a loop.
  const spread = (calls: Call[]) => calls.map((c, i) => ({ ...c, session: `desk-${i % 100}` }));
  await insertCalls(clickhouse, 'spike', spread([...series(BASELINE, refund), ...windowCalls(AT, 0, 412, refund)]));

  const steady = { agent: 'nightly-sync', tool: 'repo.Files.Read' };
  await insertCalls(clickhouse, 'collapse', series(Array(12).fill(60), steady));

  const erring = { agent: 'erring', tool: 'billing.Invoices.List' };
  await insertCalls(clickhouse, 'errors', [
    ...series(Array(12).fill(20), erring),
    ...windowCalls(AT, 0, 20, erring),
    ...windowCalls(AT, 0, 20, { ...erring, error: true }),
  ]);

  const prober = { agent: 'prober', tool: 'admin.Users.List' };
  await insertCalls(clickhouse, 'denials', [
    ...series(Array(12).fill(20), prober),
    ...windowCalls(AT, 0, 10, prober),
    ...windowCalls(AT, 0, 30, { ...prober, denied: true }),
  ]);

  const slow = { agent: 'slowpoke', tool: 'repo.Files.Read', ms: 100 };
  await insertCalls(clickhouse, 'latency', [...series(Array(12).fill(40), slow), ...windowCalls(AT, 0, 40, { ...slow, ms: 500 })]);

  const spender = { agent: 'spender', tool: 'llm.Chat.Complete', account: 'acct-9', cost: 0.01 };
  await insertCalls(clickhouse, 'cost', [...series(Array(12).fill(10), spender), ...windowCalls(AT, 0, 10, { ...spender, cost: 0.2 })]);

  const explorer = { agent: 'explorer', tool: 'repo.Files.Read' };
  await insertCalls(clickhouse, 'new-tool', [
    { ...explorer, at: AT - 3 * 24 * 3600_000 },
    ...series(Array(12).fill(10), explorer),
    ...windowCalls(AT, 0, 10, explorer),
    ...windowCalls(AT, 0, 5, { agent: 'explorer', tool: 'admin.Users.Delete' }),
    // A new agent learning its tools: no alert.
    ...windowCalls(AT, 0, 5, { agent: 'newcomer', tool: 'admin.Users.Delete' }),
  ]);

  // A spike that began a minute before the pass: 6 calls a minute, then 60 in the last minute.
  const early = { agent: 'early', tool: 'repo.Files.Read' };
  await insertCalls(clickhouse, 'early-spike', [
    ...series(Array(12).fill(60), early),
    ...windowCalls(AT, 0, 54, early, 9 * MIN).map((c) => ({ ...c, at: c.at - MIN })),
    ...windowCalls(AT, 0, 60, early, MIN),
  ].map((c, i) => ({ ...c, session: `early-${i % 100}` })));

  const sessions = Array.from({ length: 10 }, (_, s) => `s-${s}`);
  await insertCalls(clickhouse, 'loop', [
    ...sessions.flatMap((session) => series(Array(12).fill(2), { agent: 'looper', tool: 'repo.Files.Read', session })),
    ...sessions.flatMap((session) => windowCalls(AT, 0, 2, { agent: 'looper', tool: 'repo.Files.Read', session })),
    ...windowCalls(AT, 0, 60, { agent: 'looper', tool: 'repo.Files.Read', session: 's-loop' }),
  ]);

  // Clean, noisy traffic: counts drawn around 30, errors and denials at their usual share.
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const calm: Call[] = [];
  for (let k = 0; k < 18; k++) {
    for (const agent of ['calm-a', 'calm-b', 'calm-c']) {
      const n = 25 + Math.floor(rand() * 11);
      calm.push(...windowCalls(AT, k - 6, n, { agent, tool: 'repo.Files.Read', ms: 40 + Math.floor(rand() * 20), cost: 0.01, account: 'acct-calm' }));
      if (rand() < 0.5) calm.push(...windowCalls(AT, k - 6, 1, { agent, tool: 'repo.Files.Read', error: true }));
    }
  }
  await insertCalls(clickhouse, 'calm', calm);
});

after(async () => {
  await detector?.stop();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('each kind fires on its injected case with its sentence', () => {
  let byTenant: Map<string, Awaited<ReturnType<typeof openAlerts>>>;
  before(async () => {
    await detector.runOnce(AT);
    byTenant = new Map();
    for (const tenant of ['spike', 'collapse', 'errors', 'denials', 'latency', 'cost', 'new-tool', 'loop']) byTenant.set(tenant, await openAlerts(tenant));
  });

  test('call-rate spike of an agent on one tool', () => {
    // The usual range is the baseline's 5th–95th percentile, interpolated: sorted
    // 3 4 4 5 5 5 6 6 7 7 8 9, h = 11 × 0.05 = 0.55 → 3.55; h = 11 × 0.95 = 10.45 → 8.45; shown rounded.
    assert.deepEqual([quantile(BASELINE, 0.05), quantile(BASELINE, 0.95), median(BASELINE)], [3.55, 8.45, 5.5]);
    const alerts = byTenant.get('spike')!;
    assert.deepEqual(alerts.map((a) => [a.kind, a.status, a.agent, a.tool, a.sentence]), [
      ['CALL_SPIKE', 'OPEN', 'claude-desktop', 'payments.Payments.Refund', 'claude-desktop called payments.Payments.Refund 412 times in 10 min; its usual over the last hours is 4–8'],
    ]);
  });

  test('collapse: an agent falling silent', () => {
    assert.deepEqual(byTenant.get('collapse')!.map((a) => [a.kind, a.sentence]), [['CALL_COLLAPSE', 'nightly-sync made 0 calls in 10 min; its usual over the last hours is 60']]);
  });

  test('error-rate spike', () => {
    // 20 of 40 calls failed; the baseline windows had no errors.
    assert.deepEqual(byTenant.get('errors')!.map((a) => [a.kind, a.sentence]), [["ERROR_SPIKE", "50% of erring's 40 calls failed in 10 min; its usual over the last hours is 0%"]]);
  });

  test('denial spike', () => {
    assert.deepEqual(byTenant.get('denials')!.map((a) => [a.kind, a.sentence]), [["DENIAL_SPIKE", "75% of prober's 40 calls were denied in 10 min; its usual over the last hours is 0%"]]);
  });

  test('p95 latency regression of a tool', () => {
    assert.deepEqual(byTenant.get('latency')!.map((a) => [a.kind, a.sentence]), [['LATENCY_REGRESSION', 'repo.Files.Read took 500 ms at p95 for slowpoke in 10 min; its usual over the last hours is 100 ms']]);
  });

  test('cost spike of an agent and of its account', () => {
    // 10 calls × $0.20 against 10 × $0.01 in every earlier window.
    assert.deepEqual(byTenant.get('cost')!.map((a) => [a.kind, a.agent, a.account_id, a.sentence]).sort((a, b) => a[3]!.localeCompare(b[3]!)), [
      ['COST_SPIKE', '', 'acct-9', 'account acct-9 cost $2.00 in 10 min; its usual over the last hours is $0.10'],
      ['COST_SPIKE', 'spender', '', 'spender cost $2.00 in 10 min; its usual over the last hours is $0.10'],
    ]);
  });

  test('first use of a tool by a known agent; a new agent is still learning', () => {
    assert.deepEqual(byTenant.get('new-tool')!.map((a) => [a.kind, a.agent, a.sentence]), [
      ['NEW_TOOL', 'explorer', 'explorer called admin.Users.Delete for the first time (5 calls in 10 min)'],
    ]);
  });

  test('call loop: one session calling the same tool far more than usual', () => {
    const loop = byTenant.get('loop')!.filter((a) => a.kind === 'CALL_LOOP');
    assert.deepEqual(loop.map((a) => [a.session_id, a.sentence]), [['s-loop', 'looper called repo.Files.Read 60 times in 10 min in session s-loop; its usual per session is 2']]);
  });
});

describe('the short window', () => {
  test('a spike one minute old is seen in the last 2 minutes, with a sentence saying so', async () => {
    const pass = await createAlertDetector({ clickhouse, logger, store: createMemoryAlertStore(), config: { intervalS: 60, webhookFormat: 'json', tenants: ['early-spike'] } }).runOnce(AT);
    // 114 calls in 10 min against a usual 60 is under 2.5 × usual; 66 in 2 min against 12 is not.
    assert.deepEqual(pass.findings.map((f) => [f.kind, f.windowMinutes, f.observed, f.expected, f.sentence]), [
      ['CALL_SPIKE', 2, 66, 12, 'early called repo.Files.Read 66 times in 2 min; its usual over the last hours is 12'],
    ]);
    assert.deepEqual(pass.opened.map((a) => [a.windowStart, a.windowEnd]), [[AT / 1000 - 120, AT / 1000]]);
  });

  test('turned off (shortWindowMinutes 0), the same minute raises nothing yet', async () => {
    const override = { kinds: { CALL_SPIKE: { shortWindowMinutes: 0 } } };
    const pass = await createAlertDetector({ clickhouse, logger, store: createMemoryAlertStore(), config: { intervalS: 60, webhookFormat: 'json', tenants: ['early-spike'], override } }).runOnce(AT);
    assert.deepEqual(pass.findings, []);
  });
});

test('quiet on clean noisy data, pass after pass (every minute of the last 20, so every short window)', async () => {
  for (let m = -50; m <= 0; m += m < -20 ? 5 : 1) {
    const result = await createAlertDetector({ clickhouse, logger, config: { intervalS: 60, webhookFormat: 'json', tenants: ['calm'] } }).runOnce(AT + m * MIN);
    assert.deepEqual(result.findings.filter((f) => f.subject.agent.startsWith('calm') || f.subject.account === 'acct-calm'), []);
  }
  assert.deepEqual(await openAlerts('calm'), []);
});

describe('one alert per subject and kind, from open to resolved', () => {
  const counts = async (tenant: string) => {
    const result = await clickhouse.query({
      query: `SELECT status, count() AS n FROM alerts_v1 FINAL WHERE tenant = {tenant:String} GROUP BY status ORDER BY status`,
      query_params: { tenant },
      format: 'JSONEachRow',
    });
    return Object.fromEntries((await result.json<{ status: string; n: string }>()).map((r) => [r.status, Number(r.n)]));
  };

  test('a restart (a new detector instance) and a second process make no duplicate', async () => {
    const first = (await openAlerts('collapse'))[0]!;
    const again = await createAlertDetector({ clickhouse, logger, config: { intervalS: 60, webhookFormat: 'json' } }).runOnce(AT);
    assert.deepEqual(again.opened.filter((a) => a.tenant === 'collapse'), []);
    assert.deepEqual(await counts('collapse'), { OPEN: 1 });
    assert.equal((await openAlerts('collapse'))[0]!.alert_id, first.alert_id);
  });

  test('two processes judging the same interval for the first time write one alert', async () => {
    const twin = () => createAlertDetector({ clickhouse, logger, config: { intervalS: 60, webhookFormat: 'json' } });
    const steady = { agent: 'twin', tool: 'repo.Files.Read' };
    await insertCalls(clickhouse, 'twins', series(Array(12).fill(60), steady));
    const [a, b] = await Promise.all([twin().runOnce(AT), twin().runOnce(AT)]);
    // Whichever stored first opened it; the other opened the same id or, having read it, updated it.
    const ids = (r: typeof a) => [...r.opened, ...r.updated].filter((x) => x.tenant === 'twins').map((x) => x.id);
    assert.deepEqual(ids(a), ids(b));
    assert.deepEqual(await counts('twins'), { OPEN: 1 });
  });

  test('updated while it fires, resolved once quiet for resolveAfterMinutes (15)', async () => {
    const [open] = await openAlerts('collapse');
    // Still silent a minute and ten minutes later: the same alert, updated.
    for (const m of [1, 10]) {
      const pass = await detector.runOnce(AT + m * MIN);
      assert.deepEqual(pass.updated.filter((a) => a.tenant === 'collapse').map((a) => a.id), [open!.alert_id]);
      assert.deepEqual(await counts('collapse'), { OPEN: 1 });
    }
    // The agent comes back: 60 calls a window again, from AT + 10 min.
    await insertCalls(clickhouse, 'collapse', [1, 2, 3].flatMap((k) => windowCalls(AT + 40 * MIN, k, 60, { agent: 'nightly-sync', tool: 'repo.Files.Read' })));
    // At AT + 24 min it last fired 14 minutes ago: still open. At AT + 25 min: resolved by the detector.
    assert.deepEqual((await detector.runOnce(AT + 24 * MIN)).resolved.filter((a) => a.tenant === 'collapse'), []);
    const pass = await detector.runOnce(AT + 25 * MIN);
    assert.deepEqual(pass.resolved.filter((a) => a.tenant === 'collapse').map((a) => [a.id, a.status, a.resolvedBy]), [[open!.alert_id, 'RESOLVED', 'detector']]);
    assert.deepEqual(await counts('collapse'), { RESOLVED: 1 });
    const history = await clickhouse.query({
      query: `SELECT action, count() AS n FROM alert_history_v1 FINAL WHERE tenant = 'collapse' GROUP BY action ORDER BY action`,
      format: 'JSONEachRow',
    });
    // Opened at AT; updated by the restarted detector at AT (same row), at AT+1 and AT+10 min; resolved.
    assert.deepEqual((await history.json<{ action: string; n: string }>()).map((r) => [r.action, Number(r.n)]), [['opened', 1], ['resolved', 1], ['updated', 3]]);
  });
});

test('live, a pass runs just after each boundary settles and judges that boundary', async () => {
  // A clock 3 s before the pass judging AT is due (AT plus the 10 s settle time).
  const t0 = Date.now();
  const now = () => AT + 10_000 - 3000 + (Date.now() - t0);
  const store = createMemoryAlertStore();
  const live = createAlertDetector({ clickhouse, logger, store, now, config: { intervalS: 60, webhookFormat: 'json', tenants: ['collapse'] } });
  live.start();
  try {
    const deadline = Date.now() + 15_000;
    while (!store.events.some((e) => e.at === AT)) {
      assert.ok(Date.now() < deadline, `no pass judged ${new Date(AT).toISOString()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await live.stop();
  }
  // At start, the last boundary settled (AT − 1 min); then AT, once its 10 s had passed; nothing else.
  assert.deepEqual(store.events.map((e) => [e.action, e.at]), [['opened', AT - MIN], ['updated', AT]]);
});

test('a budget threshold crossed, from the cost side, is one alert per budget and threshold', async () => {
  const crossing = {
    budgetId: 'b-1',
    scope: { agent: '', account: 'acct-9', costCentre: '' },
    thresholdPercent: 80,
    spentMicros: 80_500_000n,
    limitMicros: 100_000_000n,
    currency: 'USD',
    at: AT / 1000 - 120,
  };
  const asked: Array<[string, number, number]> = [];
  const budgets = {
    async crossings(tenant: string, from: number, to: number) {
      asked.push([tenant, from, to]);
      return tenant === 'cost' && crossing.at >= from && crossing.at < to ? [crossing] : [];
    },
  };
  const d = createAlertDetector({ clickhouse, logger, budgets, config: { intervalS: 60, webhookFormat: 'json', tenants: ['cost'] } });
  const pass = await d.runOnce(AT);
  assert.deepEqual(asked, [['cost', AT / 1000 - 600, AT / 1000]]);
  const budget = pass.findings.filter((f) => f.kind === 'BUDGET_CROSSED');
  assert.deepEqual(budget.map((f) => [f.severity, f.observed, f.expected, f.score, f.sentence]), [
    ['WARNING', 80.5, 100, 80.5, 'account acct-9 has spent $80.50 of its $100.00 budget (crossed 80%)'],
  ]);
  const stored = (await openAlerts('cost')).filter((a) => a.kind === 'BUDGET_CROSSED');
  assert.deepEqual(stored.map((a) => [a.status, a.account_id, a.session_id]), [['OPEN', 'acct-9', 'b-1@80%']]);
});

test('/metrics: alerts fired and open by kind, pass duration', async () => {
  const { Registry } = await import('prom-client');
  const registry = new Registry();
  const steady = { agent: 'metered', tool: 'repo.Files.Read' };
  await insertCalls(clickhouse, 'metrics', series(Array(12).fill(60), steady));
  await createAlertDetector({ clickhouse, logger, registry, config: { intervalS: 60, webhookFormat: 'json', tenants: ['metrics'] } }).runOnce(AT);
  const text = await registry.metrics();
  const open = await clickhouse.query({ query: `SELECT kind, count() AS n FROM alerts_v1 FINAL WHERE status != 'RESOLVED' GROUP BY kind ORDER BY kind`, format: 'JSONEachRow' });
  for (const r of await open.json<{ kind: string; n: string }>()) assert.match(text, new RegExp(`alerts_open\\{kind="${r.kind}"\\} ${Number(r.n)}\\n`));
  assert.match(text, /alerts_fired_total\{kind="CALL_COLLAPSE"\} 1\n/);
  assert.match(text, /alert_detector_pass_seconds_count 1\n/);
});
