/** `npm run migrate`: applies pending migrations to the configured ClickHouse and exits. */
import { openClickHouse } from '../core/clickhouse.ts';
import { loadConfig, ConfigError } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { migrate } from '../core/migrate.ts';

try {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, 'migrate');
  const clickhouse = await openClickHouse({ ...config.clickhouse, dataDir: config.dataDir });
  try {
    const result = await migrate(clickhouse, { cluster: config.clickhouse.cluster, retentionDays: config.retentionDays, logger });
    logger.info(result, result.applied.length > 0 ? 'migrations applied' : 'schema up to date');
  } finally {
    await clickhouse.close();
  }
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(error instanceof ConfigError ? 2 : 1);
}
