/**
 * The one place a ClickHouse client is built. With a URL it talks to that server; without one it runs
 * the embedded engine (chDB) in this process, with its data under DATA_DIR. Nothing else can tell.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';

export type { ClickHouseClient };

type ClientConnection = NonNullable<NonNullable<Parameters<typeof createClient>[0]>['connection']>;

export interface ClickHouseOptions {
  /** Server URL; undefined for the embedded engine. */
  url?: string;
  database: string;
  cluster?: string;
  /** Data directory of the embedded engine. */
  dataDir: string;
}

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
    return createClient({ url: options.url, database: options.database });
  }

  const dir = path.join(options.dataDir, 'clickhouse');
  mkdirSync(dir, { recursive: true });
  // chdb types its Connection against @clickhouse/client-common, the client bundles its own copy of
  // the same interface; the shapes are identical, the declarations are not.
  const connection = createChdbConnection({ path: dir }) as unknown as ClientConnection;
  const client = createClient({ connection });
  await client.command({ query: createDatabase });
  // The embedded engine is one session: USE sets the database for every later statement.
  await client.command({ query: `USE ${quoteIdentifier(options.database)}` });
  return client;
}

/** For names that come from configuration (validated identifiers), never from requests. */
export function quoteIdentifier(name: string): string {
  return `\`${name.replace(/\\/g, '\\\\').replace(/`/g, '\\`')}\``;
}
