/**
 * The one migration mechanism: numbered `.sql` files in `sql/`, applied in order, each once, recorded in
 * `schema_migrations`. The same files serve a single server, the embedded engine and a cluster: the
 * runner fills in `{{on_cluster}}` and `{{replicated}}` from configuration, never from input.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClickHouseClient } from '@clickhouse/client';
import { quoteIdentifier } from './clickhouse.ts';
import type { Logger } from './logger.ts';

export const SQL_DIR = fileURLToPath(new URL('../sql/', import.meta.url));

export interface MigrationOptions {
  cluster?: string;
  retentionDays: number;
  dir?: string;
  logger?: Logger;
}

export interface Migration {
  version: number;
  name: string;
  checksum: string;
  sql: string;
}

export interface MigrationResult {
  applied: string[];
  skipped: string[];
}

const FILE_NAME = /^(\d{4})-([a-z0-9-]+)\.sql$/;

export async function readMigrations(dir = SQL_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const m = FILE_NAME.exec(file);
    if (!m) throw new Error(`sql/${file}: migration files are named NNNN-kebab-name.sql`);
    const sql = await readFile(path.join(dir, file), 'utf8');
    migrations.push({ version: Number(m[1]), name: m[2]!, checksum: sha256(sql), sql });
  }
  const versions = migrations.map((m) => m.version);
  const duplicate = versions.find((v, i) => versions.indexOf(v) !== i);
  if (duplicate !== undefined) throw new Error(`sql/: two migrations have version ${duplicate}`);
  return migrations;
}

/** Fills in the placeholders. Unknown placeholders are an error, not silently left in the SQL. */
export function renderMigration(sql: string, options: MigrationOptions): string {
  const values: Record<string, string> = {
    on_cluster: options.cluster ? `ON CLUSTER ${quoteIdentifier(options.cluster)}` : '',
    replicated: options.cluster ? 'Replicated' : '',
    retention_days: String(options.retentionDays),
    rollup_retention_days: String(options.retentionDays * 4),
  };
  return sql.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`unknown migration placeholder {{${key}}}`);
    return value;
  });
}

/** Splits a file into statements at `;` ending a line; strips `--` comment lines. */
export function splitStatements(sql: string): string[] {
  return sql
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('--'))
    .join('\n')
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter(Boolean);
}

export async function migrate(client: ClickHouseClient, options: MigrationOptions): Promise<MigrationResult> {
  const onCluster = options.cluster ? ` ON CLUSTER ${quoteIdentifier(options.cluster)}` : '';
  const engine = options.cluster ? 'ReplicatedReplacingMergeTree' : 'ReplacingMergeTree';
  await client.command({
    query: `CREATE TABLE IF NOT EXISTS schema_migrations${onCluster}
      (version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
      ENGINE = ${engine} ORDER BY version`,
  });
  const rows = await (
    await client.query({ query: 'SELECT version, name, checksum FROM schema_migrations FINAL ORDER BY version', format: 'JSONEachRow' })
  ).json<{ version: number; name: string; checksum: string }>();
  const done = new Map(rows.map((r) => [Number(r.version), r]));

  const result: MigrationResult = { applied: [], skipped: [] };
  for (const migration of await readMigrations(options.dir)) {
    const label = `${String(migration.version).padStart(4, '0')}-${migration.name}`;
    const previous = done.get(migration.version);
    if (previous) {
      if (previous.checksum !== migration.checksum) {
        throw new Error(`migration ${label} was changed after it was applied; add a new migration instead`);
      }
      result.skipped.push(label);
      continue;
    }
    for (const statement of splitStatements(renderMigration(migration.sql, options))) {
      await client.command({ query: statement });
    }
    await client.insert({
      table: 'schema_migrations',
      values: [{ version: migration.version, name: migration.name, checksum: migration.checksum }],
      format: 'JSONEachRow',
    });
    options.logger?.info({ migration: label }, 'migration applied');
    result.applied.push(label);
  }
  await applyRetention(client, options);
  return result;
}

/**
 * RETENTION_DAYS can change after the tables exist: bring each table's TTL to the configured value.
 * Compares first, so an unchanged setting issues no ALTER.
 */
async function applyRetention(client: ClickHouseClient, options: MigrationOptions): Promise<void> {
  const ttl: Record<string, string> = {
    audit_events_v1: `toDateTime(timestamp) + toIntervalDay(${options.retentionDays})`,
    spans_v1: `toDateTime(start_time) + toIntervalDay(${options.retentionDays})`,
    tool_calls_1m_v1: `minute + toIntervalDay(${options.retentionDays * 4})`,
    dead_letters_v1: `toDateTime(received_at) + toIntervalDay(${options.retentionDays})`,
    call_reports_v2: `toDateTime(timestamp) + toIntervalDay(${options.retentionDays})`,
    audit_timeline_v1: `toDateTime(timestamp) + toIntervalDay(${options.retentionDays})`,
    audit_lookup_v1: `toDateTime(timestamp) + toIntervalDay(${options.retentionDays})`,
    calls_1h_v1: `bucket + toIntervalDay(${options.retentionDays * 4})`,
    calls_6h_v1: `bucket + toIntervalDay(${options.retentionDays * 4})`,
    calls_1d_v1: `bucket + toIntervalDay(${options.retentionDays * 4})`,
    calls_1w_v1: `bucket + toIntervalDay(${options.retentionDays * 4})`,
    cost_calls_1d_v1: `bucket + toIntervalDay(${options.retentionDays * 4})`,
    cost_calls_1w_v1: `bucket + toIntervalDay(${options.retentionDays * 4})`,
    cost_calls_agentless_1d_v1: `bucket + toIntervalDay(${options.retentionDays * 4})`,
    cost_calls_agentless_1w_v1: `bucket + toIntervalDay(${options.retentionDays * 4})`,
    denied_calls_v1: `toDateTime(timestamp) + toIntervalDay(${options.retentionDays * 4})`,
    calls_by_account_v1: `toDateTime(timestamp) + toIntervalDay(${options.retentionDays})`,
    calls_by_id_v1: `toDateTime(timestamp) + toIntervalDay(${options.retentionDays})`,
    trace_spans_v1: `toDateTime(start_time) + toIntervalDay(${options.retentionDays})`,
  };
  const tables = await (
    await client.query({
      query: 'SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}',
      query_params: { names: Object.keys(ttl) },
      format: 'JSONEachRow',
    })
  ).json<{ name: string; engine_full: string }>();
  const onCluster = options.cluster ? ` ON CLUSTER ${quoteIdentifier(options.cluster)}` : '';
  for (const table of tables) {
    const expression = ttl[table.name]!;
    if (table.engine_full.includes(`TTL ${expression}`)) continue;
    await client.command({ query: `ALTER TABLE ${table.name}${onCluster} MODIFY TTL ${expression}` });
    options.logger?.info({ table: table.name, ttl: expression }, 'retention changed');
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
