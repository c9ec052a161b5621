/**
 * The fair read scheduler: one caller's heavy load does not stall another's dashboard. Asserted on the
 * order in which reads complete, never on milliseconds: first with reads the test finishes by hand,
 * then end to end over HTTP on the real embedded ClickHouse.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createReadClient } from '../../api/read-client.ts';
import { createReadScheduler } from '../../api/read-scheduler.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import { insertCalls, post, startApi, type ApiServer } from './harness.ts';

/** Lets the scheduler start what it will (a read starts on a later microtask). */
async function settle(): Promise<void> {
  await new Promise((r) => setImmediate(r));
}

/** A read that finishes when the test says so, recording the order reads finish in. */
function manualReads() {
  const finished: string[] = [];
  const started: string[] = [];
  const pending = new Map<string, () => void>();
  return {
    finished,
    started,
    read: (name: string) => () =>
      new Promise<string>((resolve) => {
        started.push(name);
        pending.set(name, () => {
          finished.push(name);
          resolve(name);
        });
      }),
    /** Finishes the oldest running read; resolves once the scheduler has started the next ones. */
    async finishOldest() {
      const [name, finish] = pending.entries().next().value!;
      pending.delete(name);
      finish();
      await settle();
    },
    get running() {
      return [...pending.keys()];
    },
  };
}

describe('fair read scheduler', () => {
  test("one read of B's completes after one of A's 20 queued reads, not after all of them (concurrency 1)", async () => {
    const scheduler = createReadScheduler({ concurrency: 1, maxQueuedPerCaller: 100 });
    const reads = manualReads();
    const all = Array.from({ length: 20 }, (_, i) => scheduler.run('A', reads.read(`A${i + 1}`)));
    const b = scheduler.run('B', reads.read('B1'));
    await settle();
    assert.deepEqual(reads.running, ['A1']);
    assert.equal(scheduler.queued('A'), 19);
    assert.equal(scheduler.queued('B'), 1);
    while (reads.running.length > 0) await reads.finishOldest();
    await Promise.all([...all, b]);
    assert.deepEqual(reads.finished.slice(0, 3), ['A1', 'B1', 'A2']);
    assert.equal(reads.finished.length, 21);
  });

  test('with two slots, B waits for at most the two reads of A already running', async () => {
    const scheduler = createReadScheduler({ concurrency: 2, maxQueuedPerCaller: 100 });
    const reads = manualReads();
    const all = Array.from({ length: 20 }, (_, i) => scheduler.run('A', reads.read(`A${i + 1}`)));
    const b = scheduler.run('B', reads.read('B1'));
    await settle();
    assert.deepEqual(reads.running, ['A1', 'A2']);
    await reads.finishOldest();
    assert.deepEqual(reads.running, ['A2', 'B1'], 'the freed slot goes to B, not to A3');
    while (reads.running.length > 0) await reads.finishOldest();
    await Promise.all([...all, b]);
    assert.ok(reads.finished.indexOf('B1') <= 2, reads.finished.join(' '));
  });

  test('three callers take turns; a caller alone gets every slot', async () => {
    const scheduler = createReadScheduler({ concurrency: 1, maxQueuedPerCaller: 100 });
    const reads = manualReads();
    const runs = [
      ...['A1', 'A2', 'A3'].map((n) => scheduler.run('A', reads.read(n))),
      ...['B1', 'B2'].map((n) => scheduler.run('B', reads.read(n))),
      ...['C1'].map((n) => scheduler.run('C', reads.read(n))),
    ];
    await settle();
    while (reads.running.length > 0) await reads.finishOldest();
    await Promise.all(runs);
    assert.deepEqual(reads.finished, ['A1', 'B1', 'C1', 'A2', 'B2', 'A3']);

    const alone = createReadScheduler({ concurrency: 3, maxQueuedPerCaller: 100 });
    const own = manualReads();
    const mine = ['A1', 'A2', 'A3', 'A4'].map((n) => alone.run('A', own.read(n)));
    await settle();
    assert.deepEqual(own.running, ['A1', 'A2', 'A3']);
    while (own.running.length > 0) await own.finishOldest();
    await Promise.all(mine);
  });

  test("a caller's full queue refuses its next read with TOO_MANY_REQUESTS; other callers still get in", async () => {
    const scheduler = createReadScheduler({ concurrency: 1, maxQueuedPerCaller: 3 });
    const reads = manualReads();
    const accepted = ['A1', 'A2', 'A3', 'A4'].map((n) => scheduler.run('A', reads.read(n))); // 1 runs, 3 wait
    await assert.rejects(scheduler.run('A', reads.read('A5')), (error: any) => {
      assert.equal(error.extensions.code, 'TOO_MANY_REQUESTS');
      assert.equal(error.extensions.http.status, 429);
      return true;
    });
    const b = scheduler.run('B', reads.read('B1'));
    await settle();
    while (reads.running.length > 0) await reads.finishOldest();
    await Promise.all([...accepted, b]);
    assert.deepEqual(reads.finished, ['A1', 'B1', 'A2', 'A3', 'A4']);
    assert.equal(scheduler.queued(), 0);
    assert.equal(scheduler.running, 0);
  });

  test('a read whose request went away while it waited is dropped unrun; the others keep their turns', async () => {
    const scheduler = createReadScheduler({ concurrency: 1, maxQueuedPerCaller: 3 });
    const reads = manualReads();
    const request = new AbortController();
    const a1 = scheduler.run('A', reads.read('A1'), request.signal);
    const a2 = scheduler.run('A', reads.read('A2'), request.signal);
    const a3 = scheduler.run('A', reads.read('A3'), request.signal);
    const b1 = scheduler.run('B', reads.read('B1'));
    await settle();
    request.abort();
    await assert.rejects(a2, { name: 'AbortError' });
    await assert.rejects(a3, { name: 'AbortError' });
    assert.equal(scheduler.queued('A'), 0);
    assert.equal(scheduler.cancelled, 2);
    while (reads.running.length > 0) await reads.finishOldest();
    assert.equal(await a1, 'A1', 'a read already running finishes');
    assert.equal(await b1, 'B1');
    assert.deepEqual(reads.started, ['A1', 'B1']);
    await assert.rejects(scheduler.run('A', reads.read('A4'), request.signal), { name: 'AbortError' });
    assert.deepEqual(reads.started, ['A1', 'B1']);
  });

  test('a failed read frees its slot and reaches only its caller', async () => {
    const scheduler = createReadScheduler({ concurrency: 1, maxQueuedPerCaller: 10 });
    const failing = scheduler.run('A', () => Promise.reject(new Error('boom')));
    const next = scheduler.run('B', () => Promise.resolve('ok'));
    await assert.rejects(failing, /boom/);
    assert.equal(await next, 'ok');
    await settle();
    assert.equal(scheduler.running, 0);
  });
});

describe("the read client's background lane", () => {
  test("work left running after its request (cache fills) never takes a request's place, and waits its turn in its own lane", async () => {
    const scheduler = createReadScheduler({ concurrency: 1, maxQueuedPerCaller: 10 });
    const background = createReadScheduler({ concurrency: 1, maxQueuedPerCaller: 10 });
    const reads = manualReads();
    const engine = { query: (params: { query: string }) => reads.read(params.query)() } as unknown as ClickHouseClient;
    const client = createReadClient(engine, { scheduler, background, timeoutMs: 1_000 });
    // A's request leaves two fills running, then A and B each send a read.
    const fills = client.runAs('A', () => client.detached(() => [client.client.query({ query: 'fill 1' }), client.client.query({ query: 'fill 2' })]));
    const requests = [client.runAs('A', () => client.client.query({ query: 'A1' })), client.runAs('B', () => client.client.query({ query: 'B1' }))];
    await settle();
    assert.deepEqual(reads.running, ['fill 1', 'A1']);
    assert.deepEqual([scheduler.queued(), background.queued()], [1, 1]);
    await reads.finishOldest();
    assert.deepEqual(reads.running, ['A1', 'fill 2']);
    await reads.finishOldest();
    assert.deepEqual(reads.running, ['fill 2', 'B1']);
    while (reads.running.length > 0) await reads.finishOldest();
    await Promise.all([...fills, ...requests]);
    assert.deepEqual(reads.finished, ['fill 1', 'A1', 'fill 2', 'B1']);
  });
});

describe('over HTTP, on the real engine', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'api-fair-'));
  let clickhouse: ClickHouseClient;
  let server: ApiServer;
  const BASE_MS = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
  const RANGE = { from: new Date(BASE_MS - 3600_000).toISOString(), to: new Date(BASE_MS + 3600_000).toISOString() };

  before(async () => {
    clickhouse = await openClickHouse({ database: 'api_fair_test', dataDir });
    await migrate(clickhouse, { retentionDays: 30 });
    await insertCalls(clickhouse, [
      { tenant: 'heavy', tool: 'a.B.C', atMs: BASE_MS, ms: 5 },
      { tenant: 'light', tool: 'x.Y.Z', atMs: BASE_MS, ms: 7 },
      { tenant: 'light', tool: 'x.Y.Z', atMs: BASE_MS + 1, ms: 9 },
    ]);
    server = await startApi({ clickhouse, reads: { concurrency: 1, maxQueuedPerCaller: 100 } });
  });

  after(async () => {
    await server?.close();
    await clickhouse?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("another key's dashboard answers before a heavy key's two 20-read requests", async () => {
    const heavyQuery = `query ($from: String, $to: String) { ${Array.from({ length: 20 }, (_, i) => `a${i}: slowestTools(from: $from, to: $to) { tool calls }`).join(' ')} }`;
    const order: string[] = [];
    const heavy = [1, 2].map((n) =>
      post(server.url, heavyQuery, { tenant: 'heavy', variables: RANGE }).then((answer) => {
        order.push(`heavy${n}`);
        return answer;
      }),
    );
    // Both heavy requests are in: 40 reads, one running, the rest queued under the heavy key.
    const deadline = Date.now() + 30_000;
    while (server.api.scheduler.queued('heavy/key-heavy') < 30 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    assert.ok(server.api.scheduler.queued('heavy/key-heavy') >= 30, `queued ${server.api.scheduler.queued('heavy/key-heavy')}`);

    const light = await post(server.url, `query ($from: String, $to: String) { slowestTools(from: $from, to: $to) { tool calls } }`, { tenant: 'light', variables: RANGE });
    order.push('light');
    // Its one read went ahead of the heavy key's waiting reads: most of them are still waiting.
    assert.ok(server.api.scheduler.queued('heavy/key-heavy') >= 20, `queued ${server.api.scheduler.queued('heavy/key-heavy')}`);
    assert.deepEqual(light.body.data, { slowestTools: [{ tool: 'x.Y.Z', calls: 2 }] });

    const answers = await Promise.all(heavy);
    assert.deepEqual(order, ['light', 'heavy1', 'heavy2']);
    for (const answer of answers) {
      assert.equal(answer.body.errors, undefined);
      for (const tools of Object.values(answer.body.data!)) assert.deepEqual(tools, [{ tool: 'a.B.C', calls: 1 }]);
    }
  });

  test('a client that goes away leaves its waiting reads unrun', async () => {
    const heavyQuery = `query ($from: String, $to: String) { ${Array.from({ length: 20 }, (_, i) => `a${i}: slowestTools(from: $from, to: $to) { tool calls }`).join(' ')} }`;
    const scheduler = server.api.scheduler;
    const before = scheduler.cancelled;
    const client = new AbortController();
    const gone = fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer key-heavy' },
      body: JSON.stringify({ query: heavyQuery, variables: RANGE }),
      signal: client.signal,
    });
    const deadline = Date.now() + 30_000;
    while (scheduler.queued('heavy/key-heavy') < 15 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    const waiting = scheduler.queued('heavy/key-heavy');
    assert.ok(waiting >= 15, `queued ${waiting}`);
    client.abort();
    await assert.rejects(gone, { name: 'AbortError' });
    while (scheduler.queued('heavy/key-heavy') > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    // A few more may start before the abort reaches the server (a read takes milliseconds); without
    // the cancellation none would be dropped.
    assert.ok(scheduler.cancelled - before >= waiting / 2, `cancelled ${scheduler.cancelled - before} of ${waiting} waiting`);
  });
});
