/**
 * Times outside what ClickHouse's DateTime64(9) holds are refused with BAD_USER_INPUT naming the
 * argument, over a real listening server; the widest accepted range answers every call.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseTimeRange } from '../../api/queries/params.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { codes, insertCalls, post, startApi, type ApiServer } from './harness.ts';

const dataDir = mkdtempSync(path.join(tmpdir(), 'api-time-'));
let clickhouse: ClickHouseClient;
let server: ApiServer;

const BASE_MS = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
const RANGE = { from: new Date(BASE_MS - 3600_000).toISOString(), to: new Date(BASE_MS + 3600_000).toISOString() };
const CALLS = [
  { tenant: 'acme', tool: 'users.Users.Get', atMs: BASE_MS + 1000, ms: 10 },
  { tenant: 'acme', tool: 'users.Users.Get', atMs: BASE_MS + 2000, ms: 30 },
  { tenant: 'acme', tool: 'repo.Files.Read', atMs: BASE_MS + 3000, ms: 20 },
  { tenant: 'globex', tool: 'repo.Files.Read', atMs: BASE_MS + 4000, ms: 40 },
];
const ACME_CALLS = { 'users.Users.Get': 2, 'repo.Files.Read': 1 };

before(async () => {
  clickhouse = await openClickHouse({ database: 'api_time_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  await insertCalls(clickhouse, CALLS);
  server = await startApi({ clickhouse });
});

after(async () => {
  await server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('time range', () => {
  const query = `query ($from: String, $to: String) { slowestTools(from: $from, to: $to) { tool calls } }`;

  for (const [argument, value] of [
    ['from', '1969-12-31T23:59:59Z'],
    ['from', '1900-01-01T00:00:00Z'],
    ['to', '2300-01-01T00:00:00Z'],
    ['to', '2262-04-11T23:47:16.854775808Z'],
  ] as const) {
    test(`${argument}: ${value} is BAD_USER_INPUT naming ${argument}`, async () => {
      const variables = argument === 'from' ? { from: value, to: RANGE.to } : { from: RANGE.from, to: value };
      const answer = await post(server.url, query, { variables });
      assert.deepEqual(codes(answer), ['BAD_USER_INPUT']);
      assert.equal(answer.body.errors![0]!.extensions!.argument, argument);
      assert.match(answer.body.errors![0]!.message, new RegExp(`^${argument} must be from 1970-01-01T00:00:00\\.000000000Z to 2262-04-11T23:47:16\\.854775807Z`));
      assert.equal(answer.body.data, null);
    });
  }

  test('the widest range answers every call', async () => {
    const answer = await post(server.url, query, { variables: { from: '1970-01-01T00:00:00Z', to: '2262-04-11T23:47:16.854775807Z' } });
    assert.equal(answer.body.errors, undefined, JSON.stringify(answer.body.errors));
    assert.deepEqual(Object.fromEntries(answer.body.data!.slowestTools.map((t: any) => [t.tool, t.calls])), ACME_CALLS);
  });

  test('the edges themselves are accepted', () => {
    assert.deepEqual(parseTimeRange({ from: '1970-01-01T00:00:00Z', to: '2262-04-11T23:47:16.854775807Z' }), {
      from: '1970-01-01 00:00:00.000000000',
      to: '2262-04-11 23:47:16.854775807',
    });
  });

  test('a default start never falls before 1970', () => {
    assert.deepEqual(parseTimeRange({ to: '1970-01-01T00:10:00Z' }), { from: '1970-01-01 00:00:00.000000000', to: '1970-01-01 00:10:00.000000000' });
  });
});

