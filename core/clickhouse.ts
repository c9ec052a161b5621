/**
 * The one place a ClickHouse client is built. With a URL it talks to that server; without one it runs
 * the embedded engine (chDB) in this process, with its data under DATA_DIR. Nothing else can tell.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbPool } from './chdb-pool.ts';

export type { ClickHouseClient };

type ClientConnection = NonNullable<NonNullable<Parameters<typeof createClient>[0]>['connection']>;

export interface ClickHouseOptions {
  /** Server URL; undefined for the embedded engine. */
  url?: string;
  database: string;
  cluster?: string;
  /** Data directory of the embedded engine. */
  dataDir: string;
  /**
   * Embedded engine only: connections to the data directory, so that this many statements run at once
   * (core/chdb-pool.ts); 1 when omitted.
   */
  connections?: number;
}

/**
 * Largest query text the server parses (its default is 256 KiB). The ingest's look-ups carry up to
 * 10,000 ids in the query text (ingest/lookup-sql.ts): ~400 KB of UUIDs, ~9 MB at worst for
 * 128-character trace ids of escaped characters.
 */
export const MAX_QUERY_SIZE = 16 * 1024 * 1024;

export async function openClickHouse(options: ClickHouseOptions): Promise<ClickHouseClient> {
  const onCluster = options.cluster ? ` ON CLUSTER ${quoteIdentifier(options.cluster)}` : '';
  const createDatabase = `CREATE DATABASE IF NOT EXISTS ${quoteIdentifier(options.database)}${onCluster}`;

  if (options.url) {
    const bootstrap = createClient({ url: options.url, database: 'default' });
    try {
      await bootstrap.command({ query: createDatabase });
    } finally {
      await bootstrap.close();
    }
    return createClient({ url: options.url, database: options.database, clickhouse_settings: { max_query_size: String(MAX_QUERY_SIZE) } });
  }

  const dir = path.join(options.dataDir, 'clickhouse');
  mkdirSync(dir, { recursive: true });
  // Every connection is a session of its own: USE and SET hold for its later statements. (A setting
  // passed with each query would be a SET statement before each one: ~4 ms per look-up.)
  const connection = await createChdbPool({
    path: dir,
    connections: options.connections ?? 1,
    setup: [createDatabase, `USE ${quoteIdentifier(options.database)}`, `SET max_query_size = ${MAX_QUERY_SIZE}`],
  });
  // chdb types its Connection against @clickhouse/client-common, the client bundles its own copy of
  // the same interface; the shapes are identical, the declarations are not.
  const client = createClient({ connection: connection as unknown as ClientConnection });
  return client;
}

/** `clickhouse` sending its statements through `statements` instead; every other member is its own. */
export function withStatements(clickhouse: ClickHouseClient, statements: Pick<ClickHouseClient, 'query' | 'command'>): ClickHouseClient {
  return new Proxy(clickhouse, {
    get(target, property) {
      if (property === 'query') return statements.query;
      if (property === 'command') return statements.command;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** For names that come from configuration (validated identifiers), never from requests. */
export function quoteIdentifier(name: string): string {
  return `\`${name.replace(/\\/g, '\\\\').replace(/`/g, '\\`')}\``;
}

/** The numeric ClickHouse error code of a failed statement (e.g. 159 TIMEOUT_EXCEEDED), if it has one. */
export function errorCode(error: unknown): number | undefined {
  if (!(error instanceof Error) || !('code' in error)) return undefined;
  const code = Number(error.code);
  return Number.isInteger(code) ? code : undefined;
}
