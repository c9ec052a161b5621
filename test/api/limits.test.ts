/**
 * The API's limits over a real listening server on the real embedded ClickHouse: the shape of an
 * operation (tokens, depth, aliases, directives, cost), ClickHouse's per-statement time limit and the
 * per-key read queue. Each refusal has its code and, where HTTP applies, its status.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { LIMITS } from '../../api/plugins/use-limits.ts';
import { count, selectRows } from '../../api/queries/select-rows.ts';
import { createReadClient } from '../../api/read-client.ts';
import { createReadScheduler } from '../../api/read-scheduler.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { codes, insertCalls, post, startApi, type ApiServer } from './harness.ts';

const dataDir = mkdtempSync(path.join(tmpdir(), 'api-limits-'));
const DATABASE = 'api_limits_test';
let clickhouse: ClickHouseClient;
let server: ApiServer;

/** Ten minutes ago on a whole minute; the calls below are all within the next minute. */
const BASE_MS = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
const RANGE = { from: new Date(BASE_MS - 3600_000).toISOString(), to: new Date(BASE_MS + 3600_000).toISOString() };
const CALLS = [
  { tenant: 'acme', tool: 'users.Users.Get', atMs: BASE_MS + 1000, ms: 10 },
  { tenant: 'acme', tool: 'users.Users.Get', atMs: BASE_MS + 2000, ms: 30 },
  { tenant: 'acme', tool: 'repo.Files.Read', atMs: BASE_MS + 3000, ms: 20 },
  { tenant: 'globex', tool: 'repo.Files.Read', atMs: BASE_MS + 4000, ms: 40 },
];
/** Calls per tool of acme, counted from CALLS. */
const ACME_CALLS = Object.fromEntries(
  [...new Set(CALLS.filter((c) => c.tenant === 'acme').map((c) => c.tool))].map((tool) => [tool, CALLS.filter((c) => c.tenant === 'acme' && c.tool === tool).length]),
);

before(async () => {
  clickhouse = await openClickHouse({ database: DATABASE, dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  await insertCalls(clickhouse, CALLS);
  server = await startApi({ clickhouse });
});

after(async () => {
  await server?.close();
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function slowestTools(alias = '') {
  return `${alias}slowestTools(from: $from, to: $to, limit: 10) { tool calls }`;
}

describe('shape of an operation', () => {
  test('what a dashboard asks passes every limit and answers exactly', async () => {
    const query = `query Dashboard($from: String, $to: String) {
      ${slowestTools()}
      top: slowestTools(from: $from, to: $to, limit: 1) { service tool calls p50Ms p95Ms p99Ms maxMs }
      __typename
    }`;
    const answer = await post(server.url, query, { variables: RANGE });
    assert.equal(answer.status, 200, JSON.stringify(answer.body.errors));
    assert.equal(answer.body.errors, undefined);
    const counted = Object.fromEntries(answer.body.data!.slowestTools.map((t: any) => [t.tool, t.calls]));
    assert.deepEqual(counted, ACME_CALLS);
    assert.equal(answer.body.data!.top.length, 1);
  });

  test('500 aliases of auditLog(limit: 1000) are refused before anything runs (TOO_MANY_TOKENS, HTTP 400)', async () => {
    const aliases = Array.from({ length: 500 }, (_, i) => `a${i}: auditLog(limit: 1000) { eventId timestamp tool agent error }`).join('\n');
    const answer = await post(server.url, `{ ${aliases} }`);
    assert.equal(answer.status, 400);
    assert.deepEqual(codes(answer), ['TOO_MANY_TOKENS']);
    assert.equal(answer.body.errors![0]!.extensions!.limit, LIMITS.tokens.n);
    assert.equal(answer.body.data, undefined, 'nothing executed');
  });

  test('5,000 nested braces or list brackets answer 400 with a code, not a 500 stack overflow', async () => {
    const depth = 5000;
    const braces = `{${'a {'.repeat(depth - 1)}a${'}'.repeat(depth)}`;
    const brackets = `{ slowestTools(limit: ${'['.repeat(depth)}1${']'.repeat(depth)}) { tool } }`;
    for (const query of [braces, brackets]) {
      const answer = await post(server.url, query);
      assert.equal(answer.status, 400);
      assert.deepEqual(codes(answer), ['TOO_MANY_TOKENS']);
      assert.match(answer.body.errors![0]!.message, /Token limit of 1000 exceeded/);
    }
    // As deep as the token limit allows (330 levels, 990 tokens): refused by depth, still a 400.
    const deepest = await post(server.url, `{${'a {'.repeat(329)}a${'}'.repeat(330)}`);
    assert.equal(deepest.status, 400);
    assert.ok(codes(deepest).includes('QUERY_TOO_DEEP'), JSON.stringify(codes(deepest)));
  });

  test('a misspelt field is refused without suggesting the schema\'s field names', async () => {
    const answer = await post(server.url, '{ slowestTool { tool } }');
    assert.deepEqual(codes(answer), ['GRAPHQL_VALIDATION_FAILED']);
    assert.match(answer.body.errors![0]!.message, /^Cannot query field "slowestTool" on type "Query"\./);
    assert.doesNotMatch(answer.body.errors![0]!.message, /slowestTools|Did you mean/);
  });

  test(`more than ${LIMITS.aliases.n} aliases: TOO_MANY_ALIASES, HTTP 400; ${LIMITS.aliases.n} pass`, async () => {
    const op = (n: number) => `query ($from: String, $to: String) { ${Array.from({ length: n }, (_, i) => slowestTools(`a${i}: `)).join(' ')} }`;
    const refused = await post(server.url, op(LIMITS.aliases.n + 1), { variables: RANGE });
    assert.equal(refused.status, 400);
    assert.deepEqual(codes(refused), ['TOO_MANY_ALIASES']);
    assert.equal(refused.body.errors![0]!.extensions!.limit, 20);

    const passed = await post(server.url, op(LIMITS.aliases.n), { variables: RANGE });
    assert.equal(passed.status, 200, JSON.stringify(passed.body.errors));
    assert.equal(Object.keys(passed.body.data!).length, 20);
    for (const tools of Object.values(passed.body.data!)) assert.deepEqual(Object.fromEntries((tools as any[]).map((t) => [t.tool, t.calls])), ACME_CALLS);
  });

  test(`deeper than ${LIMITS.depth.n}: QUERY_TOO_DEEP, HTTP 400; ${LIMITS.depth.n} levels pass`, async () => {
    // __type (1) › fields (2) › type (3) › ofType × n › name: 4 + n levels.
    const op = (ofTypes: number) => `{ __type(name: "Query") { fields { type { ${'ofType { '.repeat(ofTypes)}name${' }'.repeat(ofTypes)} } } } }`;
    const refused = await post(server.url, op(7));
    assert.equal(refused.status, 400);
    assert.deepEqual(codes(refused), ['QUERY_TOO_DEEP']);
    assert.match(refused.body.errors![0]!.message, /Query depth limit of 10 exceeded, found 11\./);

    const passed = await post(server.url, op(6));
    assert.equal(passed.status, 200, JSON.stringify(passed.body.errors));
    assert.ok(passed.body.data!.__type.fields.length > 0);
  });

  test(`more than ${LIMITS.directives.n} directives: TOO_MANY_DIRECTIVES, HTTP 400`, async () => {
    const op = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `t${i}: __typename @include(if: true)`).join(' ')} }`;
    const refused = await post(server.url, op(LIMITS.directives.n + 1));
    assert.equal(refused.status, 400);
    assert.deepEqual(codes(refused), ['TOO_MANY_DIRECTIVES']);

    const passed = await post(server.url, op(LIMITS.directives.n));
    assert.equal(passed.status, 200, JSON.stringify(passed.body.errors));
    assert.equal(Object.keys(passed.body.data!).length, 20);
  });

  test(`a fragment spread 400 times costs more than ${LIMITS.cost.n}: QUERY_TOO_COSTLY, HTTP 400`, async () => {
    const op = (spreads: number) => `{ __type(name: "Query") { ${'...F '.repeat(spreads)}} }
      fragment F on __Type { fields { type { ofType { ofType { ofType { name kind description specifiedByURL } } } } } }`;
    const refused = await post(server.url, op(400));
    assert.equal(refused.status, 400);
    assert.deepEqual(codes(refused), ['QUERY_TOO_COSTLY']);
    const found = Number.parseFloat(/found ([\d.]+)/.exec(refused.body.errors![0]!.message)?.[1] ?? '');
    assert.ok(found > LIMITS.cost.n, refused.body.errors![0]!.message);

    const passed = await post(server.url, op(1));
    assert.equal(passed.status, 200, JSON.stringify(passed.body.errors));
  });
});

describe('ClickHouse time limit per statement', () => {
  test('a statement past max_execution_time answers QUERY_TIMEOUT (ClickHouse code 159)', async () => {
    const scheduler = createReadScheduler({ concurrency: 1, maxQueuedPerCaller: 10 });
    // Its own client (its own session on the embedded engine), as the API has in production.
    const own = await openClickHouse({ database: DATABASE, dataDir });
    try {
      const reads = createReadClient(own, { scheduler, timeoutMs: 300 });
      const started = performance.now();
      // 10^11 hashes: hours of work without the limit.
      const slow = selectRows(reads.client, 'slow', 'SELECT count() AS n FROM numbers(100000000000) WHERE sipHash64(number) = {x:UInt64}', { x: 1 }, z.object({ n: count }));
      await assert.rejects(slow, (error: any) => {
        assert.equal(error.extensions?.code, 'QUERY_TIMEOUT');
        assert.equal(error.extensions?.limit, 300);
        return true;
      });
      assert.ok(performance.now() - started < 10_000);
      // The session still answers afterwards.
      const rows = await selectRows(reads.client, 'fast', 'SELECT count() AS n FROM numbers(10) WHERE number < {x:UInt64}', { x: 4 }, z.object({ n: count }));
      assert.deepEqual(rows, [{ n: 4 }]);
    } finally {
      await own.close();
    }
  });

  test("each statement runs on the API's read threads (max_threads)", async () => {
    const scheduler = createReadScheduler({ concurrency: 1, maxQueuedPerCaller: 10 });
    const own = await openClickHouse({ database: DATABASE, dataDir });
    try {
      const threads = (reads: ReturnType<typeof createReadClient>) =>
        selectRows(reads.client, 'threads', "SELECT toUInt64(getSetting('max_threads')) AS n", {}, z.object({ n: count }));
      assert.deepEqual(await threads(createReadClient(own, { scheduler, timeoutMs: 1000, threads: 1 })), [{ n: 1 }]);
      assert.deepEqual(await threads(createReadClient(own, { scheduler, timeoutMs: 1000, threads: 3 })), [{ n: 3 }]);
    } finally {
      await own.close();
    }
  });

  test('over HTTP: a query past the limit answers QUERY_TIMEOUT, others are unaffected', async () => {
    // A limit of one microsecond: every real statement exceeds it.
    const own = await openClickHouse({ database: DATABASE, dataDir });
    const strict = await startApi({ clickhouse: own, reads: { timeoutMs: 0.001 } });
    try {
      const answer = await post(strict.url, `query ($from: String, $to: String) { ${slowestTools()} }`, { variables: RANGE });
      assert.equal(answer.status, 200);
      assert.deepEqual(codes(answer), ['QUERY_TIMEOUT']);
      assert.match(answer.body.errors![0]!.message, /longer than the API allows one statement to run/);
      // The other API (its own client and session) still answers.
      const other = await post(server.url, `query ($from: String, $to: String) { ${slowestTools()} }`, { variables: RANGE });
      assert.equal(other.body.errors, undefined);
    } finally {
      await strict.close();
      await own.close();
    }
  });
});

test('the chargeback export reads through the same limits: past the statement limit it answers QUERY_TIMEOUT, not 500', async () => {
  const billing: KeyStore = { size: 1, lookup: (secret) => (secret === 'billing-acme' ? { tenant: 'acme', role: 'billing', name: 'finance' } : undefined) };
  const own = await openClickHouse({ database: DATABASE, dataDir });
  const strict = await startApi({ clickhouse: own, keys: billing, reads: { timeoutMs: 0.001 } });
  try {
    const response = await fetch(`${strict.url}/export/chargeback?period=2026-11&format=csv`, { headers: { authorization: 'Bearer billing-acme' } });
    assert.equal(response.status, 503);
    const body = (await response.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'QUERY_TIMEOUT');
    assert.match(body.error.message, /longer than the API allows one statement to run/);
  } finally {
    await strict.close();
    await own.close();
  }
});

test('a key with more reads waiting than its queue holds gets TOO_MANY_REQUESTS, HTTP 429', async () => {
  const tight = await startApi({ clickhouse, reads: { concurrency: 1, maxQueuedPerCaller: 2 } });
  try {
    // Five root fields start five reads at once: one runs, two wait, the fourth and fifth are refused.
    // (Non-null root fields: graphql-js reports the first error that nulls the data, a3's.)
    const query = `query ($from: String, $to: String) { ${Array.from({ length: 5 }, (_, i) => slowestTools(`a${i}: `)).join(' ')} }`;
    const response = await fetch(`${tight.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer key-acme' },
      body: JSON.stringify({ query, variables: RANGE }),
    });
    assert.equal(response.status, 429);
    assert.equal(response.headers.get('retry-after'), '1');
    const body = (await response.json()) as any;
    assert.deepEqual(
      body.errors.map((e: any) => [e.path[0], e.extensions.code]),
      [['a3', 'TOO_MANY_REQUESTS']],
    );
    assert.equal(body.data, null);
  } finally {
    await tight.close();
  }
});
