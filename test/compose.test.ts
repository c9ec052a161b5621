/**
 * docker-compose.yml can't run here (no Docker engine), so this keeps it honest against the code:
 * the same variable names, ports, commands and roles.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { loadConfig, SETTINGS } from '../core/config.ts';

const root = new URL('../', import.meta.url);
const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'), { merge: true });
const scripts: Record<string, string> = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).scripts;
const appServices = { receiver: 'receiver', ingest: 'ingest', api: 'api' } as const;
const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');
/** The image's command: exec form only (a JSON array), so the signal reaches the process it names. */
const imageCommand: string[] = JSON.parse(dockerfile.match(/^CMD (\[.*\])$/m)?.[1] ?? 'null');

/** Seconds of a Compose duration such as `20s`, `1m30s`. */
function seconds(duration: string): number {
  const parts = [...duration.matchAll(/(\d+)(h|m|s)/g)];
  assert.equal(parts.map((p) => p[0]).join(''), duration, `a duration: ${duration}`);
  return parts.reduce((sum, [, n, unit]) => sum + Number(n) * { h: 3600, m: 60, s: 1 }[unit as 'h' | 'm' | 's'], 0);
}

describe('docker-compose.yml', () => {
  it('runs Kafka (KRaft) and ClickHouse with health checks and volumes', () => {
    const { kafka, clickhouse } = compose.services;
    assert.match(kafka.image, /^apache\/kafka:/);
    assert.equal(kafka.environment.KAFKA_PROCESS_ROLES, 'broker,controller');
    assert.match(clickhouse.image, /^clickhouse\/clickhouse-server:/);
    for (const s of [kafka, clickhouse]) {
      assert.ok(s.healthcheck?.test, 'health check');
      assert.equal(s.volumes.length, 1);
    }
  });

  for (const [service, role] of Object.entries(appServices)) {
    it(`${service}: only our settings, a valid configuration, a real command, the right role`, () => {
      const s = compose.services[service];
      for (const name of Object.keys(s.environment)) assert.ok(name in SETTINGS, `${service} sets unknown variable ${name}`);
      const env = Object.fromEntries(Object.entries(s.environment).map(([k, v]) => [k, String(v).replace(/\$\{\w+:-([^}]*)\}/, '$1')]));
      const config = loadConfig(env);
      assert.deepEqual([...config.roles], [role]);
      assert.deepEqual(config.kafka?.brokers, ['kafka:9092']);
      assert.match(config.clickhouse.url!, /^http:\/\/.*@clickhouse:8123$/);

      // The image's own command, node itself (not npm, which kept SIGTERM from node): the role comes from ROLES.
      assert.equal(s.command, undefined, `${service} runs the image's command`);
      assert.ok(seconds(s.stop_grace_period) * 1000 > config.shutdownTimeoutMs, `${service}: docker stop waits longer than SHUTDOWN_TIMEOUT_MS before SIGKILL`);

      const healthPort = role === 'receiver' ? config.receiverPort : config.port;
      assert.match(s.healthcheck.test.join(' '), new RegExp(`127\\.0\\.0\\.1:${healthPort}/readyz`));
      for (const published of s.ports ?? []) {
        const [host, container] = String(published).split(':').map(Number);
        assert.equal(container, healthPort);
        assert.equal(host, container);
      }
      assert.deepEqual(Object.keys(s.depends_on).sort(), ['clickhouse', 'kafka']);
    });
  }

  it('gives the receiver and the API one keys file, in a mounted folder (so a rename-over edit reaches them)', () => {
    for (const service of ['receiver', 'api']) {
      const s = compose.services[service];
      const file = String(s.environment.API_KEYS_FILE);
      const mounts = (s.volumes as string[]).map((v) => v.split(':'));
      assert.ok(mounts.some(([host, inside]) => host === './keys' && inside === path.posix.dirname(file)), `${service} mounts the folder of ${file}`);
    }
    assert.equal(compose.services.receiver.environment.API_KEYS_FILE, compose.services.api.environment.API_KEYS_FILE);
  });

  it('scales the ingest workers out to two in one consumer group', () => {
    assert.equal(compose.services.ingest.deploy.replicas, 2);
    assert.equal(compose.services.ingest.environment.KAFKA_GROUP_ID, 'mcp-ingest');
  });

  it('gives the ingest workers one volume at DATA_DIR for their insert journal, writable by the user they run as', () => {
    const dataDir = loadConfig({}).dataDir.replace(process.cwd(), '/app'); // ./data, from WORKDIR /app
    assert.ok(compose.services.ingest.environment.DATA_DIR === undefined, 'the default DATA_DIR');
    const [volume, mountedAt] = String(compose.services.ingest.volumes?.[0]).split(':');
    assert.equal(mountedAt, dataDir);
    assert.ok(volume! in compose.volumes, `${volume} is a named volume, shared by the replicas`);
    const chown = dockerfile.search(new RegExp(`chown node:node ${dataDir}\\b`));
    assert.ok(chown > 0 && chown < dockerfile.search(/^USER node$/m), 'DATA_DIR is made and given to node before USER node');
    assert.match(dockerfile, /^WORKDIR \/app$/m);
  });

  it('builds the image the services run on a maintained LTS Node, and runs node itself with the flags of npm start', () => {
    const major = Number(dockerfile.match(/^FROM node:(\d+)/m)?.[1]);
    assert.ok(major >= 22 && major % 2 === 0, `node:${major} is an LTS line at or after 22`);
    const engines: string = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).engines.node;
    assert.equal(engines, '>=22');
    assert.match(dockerfile, /npm ci/);
    assert.deepEqual(imageCommand, scripts.start!.split(' '));
    assert.equal(imageCommand[0], 'node');
    assert.equal(scripts.ingest, `ROLES=ingest ${scripts.start}`);
  });

  it('installs the dependencies with our patches to them, as npm install does', () => {
    assert.equal(scripts.postinstall, 'patch-package');
    const copied = dockerfile.search(/^COPY patches \.\/patches$/m);
    const installed = dockerfile.search(/^RUN npm ci .*--ignore-scripts && npx patch-package$/m);
    assert.ok(copied > 0 && installed > copied, 'patches/ is in the image before npm ci, and applied right after it (install scripts are off)');
  });

});

describe('README', () => {
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  it('documents every setting with its default', () => {
    for (const [name, [schema]] of Object.entries(SETTINGS)) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\``));
      assert.ok(row, `README documents ${name}`);
      const parsed = (schema as { safeParse(v: undefined): { success: boolean; data?: unknown } }).safeParse(undefined);
      const fallback = parsed.success ? parsed.data : undefined;
      if (fallback !== undefined && !(fallback instanceof Set)) assert.ok(row.includes(`\`${String(fallback)}\``), `README gives the default of ${name}`);
    }
  });

  it('shows the two commands', () => {
    assert.match(readme, /npm install && npm start/);
    assert.match(readme, /npm test/);
  });
});
