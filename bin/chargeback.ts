/**
 * `npm run chargeback -- --period 2026-11 [--group-by cost-centre,account] [--format csv|json|focus]
 * [--tenant acme] > november.csv`: the chargeback statement of a billing period on stdout, the same file
 * `GET /export/chargeback` serves. Reads ClickHouse directly (configured as for `npm start`; with the
 * embedded engine, stop `npm start` first: one process per data directory).
 */
import { parseArgs } from 'node:util';
import { FORMATS, parseGroupByList, writeStatement, type ExportFormat } from '../api/chargeback-export.ts';
import { buildStatement, StatementError } from '../api/queries/chargeback.ts';
import { parsePeriod } from '../api/queries/closed-periods.ts';
import { parseTenant } from '../api/queries/params.ts';
import { openClickHouse } from '../core/clickhouse.ts';
import { ConfigError, loadConfig } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { migrate } from '../core/migrate.ts';

const USAGE = 'usage: npm run chargeback -- --period YYYY-MM [--group-by cost-centre,account] [--format csv|json|focus] [--tenant NAME]';

class UsageError extends Error {}

try {
  const { values } = parseArgs({
    options: { period: { type: 'string' }, 'group-by': { type: 'string' }, format: { type: 'string' }, tenant: { type: 'string' } },
  });
  const period = parsePeriod(values.period);
  if (!period) throw new UsageError(`--period must be a month as YYYY-MM, got ${JSON.stringify(values.period ?? null)}\n${USAGE}`);
  const groupBy = parseGroupByList(values['group-by'] ?? 'cost-centre,account');
  if (!groupBy) throw new UsageError(`--group-by must list cost-centre, account, agent, service, tool, day, month (each once)\n${USAGE}`);
  const format = (values.format ?? 'csv') as ExportFormat;
  if (!FORMATS.includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(', ')}\n${USAGE}`);
  let tenant: string;
  try {
    tenant = parseTenant(values.tenant ?? 'default');
  } catch {
    throw new UsageError(`--tenant must be a tenant name\n${USAGE}`);
  }

  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'chargeback');
  const clickhouse = await openClickHouse({ ...config.clickhouse, dataDir: config.dataDir });
  try {
    await migrate(clickhouse, { cluster: config.clickhouse.cluster, retentionDays: config.retentionDays, logger });
    const statement = await buildStatement(clickhouse, tenant, period, groupBy);
    await writeStatement(statement, format, process.stdout);
  } finally {
    await clickhouse.close();
  }
} catch (error) {
  if (error instanceof UsageError || error instanceof ConfigError || error instanceof StatementError) {
    console.error(error.message);
    process.exit(2);
  }
  throw error;
}
