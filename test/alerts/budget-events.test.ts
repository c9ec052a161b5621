/**
 * Budget crossings reach the detector from what the cost side records (budget_events_v1): by the
 * minute that crossed, or by when they were recorded, one tenant only; each becomes one alert.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { createBudgetEventSource } from '../../alerts/budget-events.ts';
import { createAlertDetector } from '../../alerts/detector.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';

const MIN = 60;
/** A pass at a whole ten minutes, a day ago (epoch seconds). */
const AT = Math.floor(Date.now() / 600_000) * 600 - 24 * 3600;
const dataDir = mkdtempSync(path.join(tmpdir(), 'alerts-budget-'));
let clickhouse: ClickHouseClient;

const time = (s: number) => new Date(s * 1000).toISOString().replace('T', ' ').replace('Z', '');

/** One row as api/queries/budgets.ts records a crossing. */
function crossing(tenant: string, scope: 'cost_centre' | 'account' | 'agent', key: string, threshold: number, crossedAt: number, recordedAt: number) {
  return {
    tenant,
    scope,
    key,
    period: '2026-11',
    threshold,
    budget_micros: 100_000_000,
    spend_micros: threshold * 1_000_000 + 250_000,
    crossed_minute: time(crossedAt - (crossedAt % 60)),
    recorded_at: time(recordedAt),
  };
}

before(async () => {
  clickhouse = await openClickHouse({ database: 'budget_alerts', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  await clickhouse.insert({
    table: 'budget_events_v1',
    format: 'JSONEachRow',
    values: [
      crossing('acme', 'cost_centre', 'team-payments', 80, AT - 3 * MIN, AT - 2 * MIN), // in the window
      crossing('acme', 'account', 'bob', 100, AT - 30 * MIN, AT - 1 * MIN), // crossed earlier, recorded late: still reported
      crossing('acme', 'agent', 'coder', 80, AT - 60 * MIN, AT - 59 * MIN), // an earlier pass's
      crossing('acme', 'agent', 'later', 80, AT + 2 * MIN, AT + 2 * MIN), // after the pass
      crossing('globex', 'account', 'eve', 80, AT - 3 * MIN, AT - 2 * MIN), // another tenant
    ],
  });
});

after(async () => {
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test("the crossings of one tenant's pass window, by crossing minute or by recording time", async () => {
  const source = createBudgetEventSource(clickhouse);
  const found = await source.crossings('acme', AT - 10 * MIN, AT);
  assert.deepEqual(
    found.map((c) => [c.budgetId, c.scope, c.thresholdPercent, c.spentMicros, c.limitMicros, c.at]),
    [
      ['account:bob:2026-11', { agent: '', account: 'bob', costCentre: '' }, 100, 100_250_000n, 100_000_000n, AT - 30 * MIN],
      ['cost_centre:team-payments:2026-11', { agent: '', account: '', costCentre: 'team-payments' }, 80, 80_250_000n, 100_000_000n, AT - 3 * MIN],
    ],
  );
  assert.deepEqual(await source.crossings('nobody', AT - 10 * MIN, AT), []);
});

test('the detector opens one BUDGET_CROSSED alert per budget and threshold, with its sentence', async () => {
  const detector = createAlertDetector({
    clickhouse,
    logger: pino({ level: 'silent' }),
    budgets: createBudgetEventSource(clickhouse),
    config: { intervalS: 60, webhookFormat: 'json', tenants: ['acme'] },
  });
  const pass = await detector.runOnce(AT * 1000);
  const budget = pass.findings.filter((f) => f.kind === 'BUDGET_CROSSED');
  assert.deepEqual(budget.map((f) => [f.severity, f.sentence]).sort(), [
    ['CRITICAL', 'account bob has spent $100.25 of its $100.00 budget (crossed 100%)'],
    ['WARNING', 'cost centre team-payments has spent $80.25 of its $100.00 budget (crossed 80%)'],
  ]);
  const again = await detector.runOnce(AT * 1000);
  assert.equal(again.findings.filter((f) => f.kind === 'BUDGET_CROSSED').length, 2, 'the same two, not new ones');
  const open = await (
    await clickhouse.query({ query: "SELECT count() AS n FROM alerts_v1 FINAL WHERE tenant = 'acme' AND kind = 'BUDGET_CROSSED'", format: 'JSONEachRow' })
  ).json<{ n: string }>();
  assert.equal(Number(open[0]!.n), 2);
});
