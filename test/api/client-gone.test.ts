/**
 * A client that goes away mid-request (a browser tab closed, a page left) is routine: the API drops the
 * request's waiting reads and logs one debug line without a stack, never an error.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { insertCalls, startApi, type ApiServer } from './harness.ts';

const dataDir = mkdtempSync(path.join(tmpdir(), 'api-gone-'));
const BASE_MS = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
const RANGE = { from: new Date(BASE_MS - 3600_000).toISOString(), to: new Date(BASE_MS + 3600_000).toISOString() };
/** What the API logged, one parsed pino line each. */
const logged: Array<{ level: number; msg: string; err?: { stack?: string } }> = [];
let clickhouse: ClickHouseClient;
let server: ApiServer;

before(async () => {
  clickhouse = await openClickHouse({ database: 'api_gone_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  await insertCalls(clickhouse, [{ tenant: 'gone', tool: 'a.B.C', atMs: BASE_MS, ms: 5 }]);
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
  server = await startApi({ clickhouse, logger, reads: { concurrency: 1, maxQueuedPerCaller: 100 } });
});

after(async () => {
  await server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('a request whose client went away logs a debug line without a stack, no error', async () => {
  // 20 reads, one at a time: most are waiting when the client leaves.
  const query = `query ($from: String, $to: String) { ${Array.from({ length: 20 }, (_, i) => `a${i}: slowestTools(from: $from, to: $to) { tool calls }`).join(' ')} }`;
  const client = new AbortController();
  const gone = fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer key-gone' },
    body: JSON.stringify({ query, variables: RANGE }),
    signal: client.signal,
  });
  const deadline = Date.now() + 30_000;
  while (server.api.scheduler.queued('gone/key-gone') < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  assert.ok(server.api.scheduler.queued('gone/key-gone') >= 10, 'reads were waiting when the client left');
  client.abort();
  await assert.rejects(gone, { name: 'AbortError' });

  // The server finishes the request after the client left: wait for its log line.
  const abandoned = () => logged.filter((l) => l.msg === 'graphql request abandoned: the client went away');
  while (abandoned().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.ok(abandoned().length >= 1, `no "abandoned" line; logged: ${logged.map((l) => `${l.level} ${l.msg}`).join('; ')}`);
  for (const line of abandoned()) {
    assert.equal(line.level, 20, 'debug');
    assert.equal(line.err, undefined, 'no error object, no stack');
  }
  const serious = logged.filter((l) => l.level >= 40);
  assert.deepEqual(serious.map((l) => `${l.level} ${l.msg}`), [], 'no warning or error');
});
