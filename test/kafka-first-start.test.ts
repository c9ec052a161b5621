/**
 * `npm start` against a brand-new Kafka, as a user who follows the README or runs `docker compose up`
 * meets it: a broker with no topics at all (auto-creation on, as brokers come), which is not even
 * listening yet when the product starts. The product must stay up and say it is not ready, then create
 * its topics with the configured partitions, become ready, and store a record sent to the receiver.
 * Without any broker, it waits as long as it takes, and a SIGTERM meanwhile still stops it at once.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openClickHouse } from '../core/clickhouse.ts';
import type { Kafka } from '../core/kafka.ts';
import { startBroker, startBrokerProcess, stopBroker, stopBrokerProcess, type BrokerHandle } from '../scripts/kafka.mjs';
import { kafkaFor, waitForCommitted } from './helpers/kafka.ts';
import { freePort, waitFor } from './helpers/product.ts';

const skip = process.env.KAFKA_TEST_BROKERS ? false : 'KAFKA_TEST_BROKERS is not set (run the suite with npm test)';
const TOPICS = ['mcp-audit', 'otlp_spans', 'mcp-dead-letters']; // the defaults: nothing set, as a new user runs it

describe('first start against a new Kafka', { skip }, () => {
  let broker: BrokerHandle;
  let kafka: Kafka;
  let child: ChildProcess | undefined;

  before(async () => {
    broker = await startBroker(); // its own broker: the shared one has the other tests' topics
    kafka = kafkaFor([broker.brokers]);
    await stopBrokerProcess(broker); // formatted, never used: not listening yet when the product starts
  });
  after(async () => {
    child?.kill('SIGKILL');
    if (broker) await stopBroker(broker);
  });

  it('waits for the broker, creates its topics, becomes ready, and stores a record', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'first-start-'));
    const [port, receiverPort] = [await freePort(), await freePort()];
    child = spawn(process.execPath, ['--import', 'tsx', 'bin/start.ts'], {
      cwd: new URL('../', import.meta.url).pathname,
      env: {
        ...process.env,
        KAFKA_BROKERS: broker.brokers,
        KAFKA_TOPIC_PARTITIONS: '2',
        DATA_DIR: dataDir,
        PORT: String(port),
        RECEIVER_PORT: String(receiverPort),
        BATCH_MAX_WAIT_MS: '200',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let logs = '';
    child.stdout!.on('data', (chunk) => (logs += chunk));
    child.stderr!.on('data', (chunk) => (logs += chunk));
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));

    // Not ready while there is no broker, saying why, and still running after several failed attempts.
    const notReady = await waitFor(`http://127.0.0.1:${receiverPort}/readyz`, 60_000, (res, body) => res.status === 503 && body.includes('waiting for Kafka topics'));
    const answer = JSON.parse(notReady) as { status: string; checks: Record<string, string> };
    assert.equal(answer.status, 'not ready');
    assert.match(answer.checks.kafka!, /^waiting for Kafka topics mcp-audit, otlp_spans, mcp-dead-letters: KafkaJS\w+: /);
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(child.exitCode, null, logs);
    assert.equal((await fetch(`http://127.0.0.1:${receiverPort}/healthz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 503);
    // A record now would have the broker auto-create a topic with its own defaults: the gateway retries later.
    const early = await fetch(`http://127.0.0.1:${receiverPort}/v1/audit`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ trace_id: 'too-early', timestamp: new Date().toISOString(), tool: 'users.Users.Get', allowed: true }),
    });
    assert.equal(early.status, 503);
    assert.equal(early.headers.get('retry-after'), '5');
    assert.deepEqual(await early.json(), { error: 'the Kafka topics are not ready yet; retry later', retryAfterSeconds: 5 });

    await startBrokerProcess(broker);
    const ready = JSON.parse(await waitFor(`http://127.0.0.1:${port}/readyz`, 120_000)) as { checks: Record<string, string> };
    assert.deepEqual(ready.checks, { clickhouse: 'ok', kafka: 'ok' });
    assert.equal(child.exitCode, null, logs);

    const admin = kafka.admin();
    await admin.connect();
    try {
      const metadata = await admin.fetchTopicMetadata({ topics: TOPICS });
      assert.deepEqual(
        metadata.topics.map((t) => [t.name, t.partitions.length]).sort(),
        TOPICS.map((t) => [t, 2]).sort(),
      );
    } finally {
      await admin.disconnect();
    }

    const timestamp = new Date().toISOString();
    const res = await fetch(`http://127.0.0.1:${receiverPort}/v1/audit`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ trace_id: 'first-start-1', timestamp, tool: 'users.Users.Get', allowed: true, duration: 1_523_000 }),
    });
    assert.equal(res.status, 202, await res.text());

    await waitForCommitted(kafka, 'mcp-ingest', ['mcp-audit']); // committed only once stored
    child.kill('SIGTERM');
    assert.equal(await exited, 0, logs);
    assert.doesNotMatch(logs, /"level":60/); // nothing fatal on the way
    const clickhouse = await openClickHouse({ database: 'mcp_analytics', dataDir });
    try {
      const rows = await (await clickhouse.query({ query: 'SELECT trace_id, tool, duration_ns FROM audit_events_v1', format: 'JSONEachRow' })).json();
      assert.deepEqual(rows, [{ trace_id: 'first-start-1', tool: 'users.Users.Get', duration_ns: 1523000 }]);
    } finally {
      await clickhouse.close();
    }
  });
});

it('with no broker at all: stays up, not ready, saying why; SIGTERM still stops it at once, exit 0', async () => {
  const [port, receiverPort, nobody] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/start.ts'], {
    cwd: new URL('../', import.meta.url).pathname,
    env: {
      ...process.env,
      KAFKA_BROKERS: `127.0.0.1:${nobody}`, // nothing listens there
      DATA_DIR: mkdtempSync(path.join(os.tmpdir(), 'no-broker-')),
      PORT: String(port),
      RECEIVER_PORT: String(receiverPort),
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  after(() => child.kill('SIGKILL'));
  let logs = '';
  child.stdout!.on('data', (chunk) => (logs += chunk));
  child.stderr!.on('data', (chunk) => (logs += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const body = await waitFor(`http://127.0.0.1:${port}/readyz`, 90_000, (res, text) => res.status === 503 && text.includes('ECONNREFUSED'));
  assert.match(JSON.parse(body).checks.kafka, /^waiting for Kafka topics mcp-audit, otlp_spans, mcp-dead-letters: KafkaJS\w+: .*ECONNREFUSED/);
  await new Promise((r) => setTimeout(r, 2_000));
  assert.equal(child.exitCode, null, logs);

  const signalled = Date.now();
  child.kill('SIGTERM');
  assert.equal(await exited, 0, logs);
  const took = Date.now() - signalled;
  assert.ok(took < 5_000, `stopped ${took} ms after SIGTERM, not after the attempt under way`);
  assert.doesNotMatch(logs, /"level":60/);
});
