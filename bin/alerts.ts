/**
 * `npm run alerts -- backtest --from 2026-11-01T00:00:00Z --to 2026-11-08T00:00:00Z [--tenant acme]
 * [--json] [--interval 60] [--settings '{"kinds":{"CALL_SPIKE":{"threshold":6}}}']` runs the detector
 * over stored history and prints the alerts it would have raised (one JSON object per line with
 * --json). It writes nothing and pages nobody. Stop `npm start` first when it uses the embedded engine.
 */
import { parseArgs } from 'node:util';
import { runBacktest } from '../alerts/backtest.ts';
import { DEFAULT_SETTINGS, mergeSettings, settingsOverride, settingsProblem } from '../alerts/settings.ts';
import { openClickHouse } from '../core/clickhouse.ts';
import { ConfigError, loadConfig } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { migrate } from '../core/migrate.ts';

class UsageError extends Error {}

const USAGE = 'usage: npm run alerts -- backtest --from ISO-TIME --to ISO-TIME [--tenant NAME]... [--json] [--interval SECONDS] [--settings JSON]';

function parseTime(text: string | undefined, name: string): number {
  const ms = text === undefined ? NaN : Date.parse(text);
  if (!text || !/(Z|[+-]\d{2}:\d{2})$/.test(text) || Number.isNaN(ms)) throw new UsageError(`--${name} must be an ISO-8601 time with a zone, e.g. 2026-11-24T10:00:00Z\n${USAGE}`);
  return ms;
}

try {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      tenant: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      interval: { type: 'string' },
      settings: { type: 'string' },
    },
  });
  if (positionals[0] !== 'backtest') throw new UsageError(USAGE);
  const from = parseTime(values.from, 'from');
  const to = parseTime(values.to, 'to');
  if (from >= to) throw new UsageError(`--from must be before --to\n${USAGE}`);
  const config = loadConfig();
  const intervalS = values.interval === undefined ? config.alerts.intervalS : Number(values.interval);
  if (!Number.isInteger(intervalS) || intervalS < 60 || intervalS % 60 !== 0) throw new UsageError(`--interval must be a whole number of minutes in seconds (60, 120, …)\n${USAGE}`);
  let override;
  if (values.settings !== undefined) {
    const parsed = settingsOverride.safeParse((() => { try { return JSON.parse(values.settings); } catch { return undefined; } })());
    if (!parsed.success) throw new UsageError(`--settings must be JSON alert settings: ${parsed.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') ?? 'not JSON'}`);
    override = parsed.data;
    const problem = settingsProblem(mergeSettings(DEFAULT_SETTINGS, override));
    if (problem) throw new UsageError(`--settings: ${problem.path}: ${problem.message}`);
  }
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'alerts');
  const clickhouse = await openClickHouse({ ...config.clickhouse, dataDir: config.dataDir });
  try {
    await migrate(clickhouse, { cluster: config.clickhouse.cluster, retentionDays: config.retentionDays, logger });
    const result = await runBacktest({ clickhouse, logger, from, to, intervalS, tenants: values.tenant, override }, ({ at, alert }) => {
      if (values.json) {
        console.log(JSON.stringify({ at: new Date(at * 1000).toISOString(), id: alert.id, tenant: alert.tenant, kind: alert.kind, severity: alert.severity, subject: alert.subject, observed: alert.observed, expected: alert.expected, expectedLow: alert.expectedLow, expectedHigh: alert.expectedHigh, score: alert.score, sentence: alert.sentence }));
      } else {
        console.log(`${new Date(at * 1000).toISOString()}  ${alert.tenant}  ${alert.kind.padEnd(18)} ${alert.severity.padEnd(8)} ${alert.sentence}`);
      }
    });
    console.error(`${result.opened.length} alerts in ${result.passes} passes (slowest ${Math.round(result.slowestPassMs)} ms)`);
  } finally {
    await clickhouse.close();
  }
} catch (error) {
  if (error instanceof UsageError || error instanceof ConfigError) {
    console.error(error.message);
    process.exit(2);
  }
  throw error;
}
