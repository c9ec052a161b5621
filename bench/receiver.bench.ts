/**
 * How fast `POST /v1/audit` takes batches, against what the machine allows in the same run.
 *
 *   npx tsx bench/receiver.bench.ts [--batches 200] [--size 1000] [--concurrency 4]
 *
 * A worker thread (its own core) sends batches of go-micro-shaped records over keep-alive HTTP with a
 * few concurrent connections to, in turn: a bare node:http server that only reads the body and answers
 * 202 (the raw HTTP limit), and the receiver with a publisher that only counts. The CPU cost of the
 * receiver's steps is measured apart, in process: JSON.parse alone, + validation, + message encoding.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { createReceiver } from '../collector/receiver.ts';
import { createLogger } from '../core/logger.ts';
import { auditMessageKey, type Publisher } from '../core/publisher.ts';
import { normalizeAuditRecord } from '../model/audit-event.ts';

const { values } = parseArgs({
  options: {
    batches: { type: 'string', default: '200' },
    size: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '4' },
  },
});
const BATCHES = Number(values.batches);
const SIZE = Number(values.size);
const CONCURRENCY = Number(values.concurrency);
const WARMUP_BATCHES = Math.max(CONCURRENCY * 2, Math.ceil(BATCHES / 10));
const TOOLS = ['users.Users.Get', 'users.Users.List', 'billing.Billing.Charge', 'search.Search.Query', 'files.Files.Read'];

/** As go-micro marshals `AuditRecord`: allowed calls carry account, scopes and duration; denials a reason. */
function goMicroRecord(i: number): Record<string, unknown> {
  const timestamp = new Date(Date.UTC(2026, 10, 24, 10) + i * 37).toISOString().replace('Z', `${String(i % 1e6).padStart(6, '0')}Z`);
  const base = { trace_id: crypto.randomUUID(), timestamp, tool: TOOLS[i % TOOLS.length] };
  if (i % 10 === 9) return { ...base, allowed: false, denied_reason: 'missing scope users:write' };
  return { ...base, account_id: `acct-${i % 97}`, scopes_required: ['users:read'], allowed: true, duration: 200_000 + ((i * 7919) % 5_000_000) };
}

const bodies = Array.from({ length: 8 }, (_, b) =>
  Buffer.from(JSON.stringify(Array.from({ length: SIZE }, (_, i) => goMicroRecord(b * SIZE + i)))),
);

// ---- the load generator, in a worker thread -------------------------------------------------------------

const CLIENT = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const bodies = workerData.bodies.map((b) => Buffer.from(b));
const agent = new http.Agent({ keepAlive: true, maxSockets: workerData.concurrency });
const post = (port, body) => new Promise((resolve, reject) => {
  const req = http.request({ host: '127.0.0.1', port, path: '/v1/audit', method: 'POST', agent,
    headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
    res.resume();
    res.on('end', () => resolve(res.statusCode));
  });
  req.on('error', reject);
  req.end(body);
});
parentPort.on('message', async ({ port, batches }) => {
  const statuses = {};
  let next = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: workerData.concurrency }, async () => {
    while (next < batches) {
      const status = await post(port, bodies[next++ % bodies.length]);
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  }));
  parentPort.postMessage({ ms: performance.now() - start, statuses });
});
`;

const client = new Worker(CLIENT, { eval: true, workerData: { bodies, concurrency: CONCURRENCY } });

function drive(port: number, batches: number): Promise<{ ms: number; statuses: Record<string, number> }> {
  return new Promise((resolve, reject) => {
    client.once('message', resolve);
    client.once('error', reject);
    client.postMessage({ port, batches });
  });
}

async function measureServer(name: string, listener: http.RequestListener): Promise<number> {
  const server = http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await drive(port, WARMUP_BATCHES);
  const { ms, statuses } = await drive(port, BATCHES);
  if (statuses['202'] !== BATCHES) throw new Error(`${name}: expected ${BATCHES} × 202, got ${JSON.stringify(statuses)}`);
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return (BATCHES * SIZE) / (ms / 1000);
}

// ---- in-process CPU cost of each step ---------------------------------------------------------------------

function measureCpu(step: (body: Buffer) => void): number {
  for (let i = 0; i < WARMUP_BATCHES; i++) step(bodies[i % bodies.length]!);
  const start = performance.now();
  for (let i = 0; i < BATCHES; i++) step(bodies[i % bodies.length]!);
  return (BATCHES * SIZE) / ((performance.now() - start) / 1000);
}

let sink = 0;
const parseOnly = (body: Buffer) => {
  sink += (JSON.parse(body.toString('utf8')) as unknown[]).length;
};
const parseValidate = (body: Buffer) => {
  for (const record of JSON.parse(body.toString('utf8')) as unknown[]) sink += normalizeAuditRecord(record, { tenant: 'default' }).ok ? 1 : 0;
};
const parseValidateEncode = (body: Buffer) => {
  for (const record of JSON.parse(body.toString('utf8')) as unknown[]) {
    const result = normalizeAuditRecord(record, { tenant: 'default' });
    if (result.ok) sink += Buffer.from(JSON.stringify(result.value)).length + auditMessageKey(result.value).length;
  }
};

// ---- run --------------------------------------------------------------------------------------------------

const rawHttp = await measureServer('raw HTTP', (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    sink += Buffer.concat(chunks).length;
    res.writeHead(202, { 'Content-Type': 'application/json' }).end(`{"accepted":${SIZE}}`);
  });
});

let published = 0;
const publisher: Publisher = {
  async publish(_topic, messages) {
    published += messages.length;
  },
};
const receiver = createReceiver({
  publisher,
  logger: createLogger('warn', 'receiver-bench'),
  topics: { audit: 'mcp-audit', spans: 'otlp_spans' },
  maxBodyBytes: 8 * 1024 * 1024,
  maxRecords: 10_000,
});
const receiverRate = await measureServer('receiver', receiver.handle);
if (published !== (BATCHES + WARMUP_BATCHES) * SIZE) throw new Error(`published ${published} records, expected ${(BATCHES + WARMUP_BATCHES) * SIZE}`);

const parseRate = measureCpu(parseOnly);
const validateRate = measureCpu(parseValidate);
const encodeRate = measureCpu(parseValidateEncode);
await client.terminate();

const fmt = (n: number) => Math.round(n).toLocaleString('en-US').padStart(11);
const pct = (n: number) => `${((n / rawHttp) * 100).toFixed(1)}%`.padStart(8);
const bodyKb = (bodies.reduce((s, b) => s + b.length, 0) / bodies.length / 1024).toFixed(0);
console.log(
  `POST /v1/audit: ${BATCHES} batches × ${SIZE} go-micro records (~${bodyKb} KB each), ${CONCURRENCY} keep-alive connections ` +
    `from a worker thread, node ${process.version}\n`,
);
console.log(`${'what'.padEnd(46)}${'records/s'.padStart(11)}${'vs raw'.padStart(8)}`);
const rows: Array<[string, number]> = [
  ['raw HTTP limit (bare server: read body, 202)', rawHttp],
  ['receiver (auth, read, parse, validate, publish)', receiverRate],
  ['in process: JSON.parse alone', parseRate],
  ['in process: JSON.parse + normalizeAuditRecord', validateRate],
  ['in process: + JSON.stringify into messages', encodeRate],
];
for (const [what, rate] of rows) console.log(`${what.padEnd(46)}${fmt(rate)}${pct(rate)}`);
console.log(`\nreceiver = ${((receiverRate / rawHttp) * 100).toFixed(1)}% of the raw HTTP limit, ${((receiverRate / encodeRate) * 100).toFixed(1)}% of its own in-process CPU ceiling`);
if (sink < 0) console.log(sink); // keeps the measured work observable
