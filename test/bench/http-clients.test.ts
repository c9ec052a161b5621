/**
 * The API bench's clients' process: every request index sent once, the warm-up before the parent's
 * settle step and the timed requests after it, and an error answered as the operation's error.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { ClientProcess, GraphQLClient } from '../../bench/http-clients.ts';

const seen: string[] = [];
const server = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    const { query } = JSON.parse(body) as { query: string };
    seen.push(query);
    res.setHeader('content-type', 'application/json');
    if (query === 'fail') res.end(JSON.stringify({ errors: [{ message: 'no', extensions: { code: 'BAD_USER_INPUT' } }] }));
    else res.end(JSON.stringify({ data: { ok: true } }));
  });
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const client = new GraphQLClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`, 'key');
const clients = new ClientProcess();
after(async () => {
  await clients.close();
  server.close();
});

test('each request index is sent once: the warm-up, the settle step, one per client, then the timed ones', async () => {
  seen.length = 0;
  let seenAtSettle: string[] | undefined;
  const timing = await clients.drive(client, 2, 10, 10_000, (i) => `q${i}`, async () => {
    seenAtSettle = [...seen];
  });
  assert.equal(timing.error, undefined);
  assert.equal(timing.times.length, 10);
  assert.ok(timing.first! >= 0 && timing.clientCpuMs! > 0);
  assert.deepEqual(seenAtSettle, ['q10']);
  assert.deepEqual([...seen].sort(), Array.from({ length: 13 }, (_, i) => `q${i}`).sort());
});

test('an error answer ends the operation with its code and message, from the warm-up or a timed request', async () => {
  // 5 timed requests and 2 clients: index 5 is the warm-up, 6 and 7 the untimed round, 0-4 the timed ones.
  const warmUp = await clients.drive(client, 2, 5, 10_000, (i) => (i === 5 ? 'fail' : `q${i}`), undefined);
  assert.deepEqual([warmUp.error, warmUp.times.length], ['BAD_USER_INPUT: no', 0]);
  const timed = await clients.drive(client, 2, 5, 10_000, (i) => (i === 2 ? 'fail' : `q${i}`), undefined);
  assert.equal(timed.error, 'BAD_USER_INPUT: no');
  assert.ok(timed.times.length < 5);
});
