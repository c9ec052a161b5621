import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../core/config.ts';

describe('configuration', () => {
  it('has a working default for everything', () => {
    const c = loadConfig({});
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.port, 4000);
    assert.equal(c.receiverPort, 4318);
    assert.equal(c.dataDir, path.resolve('./data'));
    assert.equal(c.clickhouse.url, undefined);
    assert.equal(c.kafka, undefined);
    assert.deepEqual(c.topics, { audit: 'mcp-audit', spans: 'otlp_spans', deadLetter: 'mcp-dead-letters' });
    assert.equal(c.retentionDays, 90);
  });

  it('reads brokers, tokens and numbers', () => {
    const c = loadConfig({ KAFKA_BROKERS: 'k1:9092, k2:9092', INGEST_TOKENS: 'tok1=acme,tok2=globex', PORT: '8080', RETENTION_DAYS: '7' });
    assert.deepEqual(c.kafka?.brokers, ['k1:9092', 'k2:9092']);
    assert.deepEqual([...c.ingestTokens!], [['tok1', 'acme'], ['tok2', 'globex']]);
    assert.equal(c.port, 8080);
    assert.equal(c.retentionDays, 7);
  });

  it('names every bad variable, its value and why, at once', () => {
    try {
      loadConfig({ PORT: 'eighty', RECEIVER_PORT: '70000', KAFKA_BROKERS: 'nohostport', INGEST_TOKENS: 'justatoken', CLICKHOUSE_URL: 'not a url', LOG_LEVEL: 'loud' });
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems.map((p) => p.split('=')[0]), ['PORT', 'RECEIVER_PORT', 'CLICKHOUSE_URL', 'KAFKA_BROKERS', 'INGEST_TOKENS', 'LOG_LEVEL']);
      assert.match(error.message, /PORT="eighty": must be a number/);
      assert.match(error.message, /RECEIVER_PORT="70000": must be 1-65535/);
      assert.match(error.message, /KAFKA_BROKERS="nohostport": must be a comma-separated list of host:port/);
      assert.match(error.message, /INGEST_TOKENS="justatoken": must be token=tenant pairs/);
    }
  });

  it('runs the alert detector by default, every minute; alone only with Kafka', () => {
    const c = loadConfig({});
    assert.deepEqual([...c.roles], ['receiver', 'ingest', 'api', 'alerts']);
    assert.deepEqual(c.alerts, { intervalS: 60, webhookUrl: undefined, webhookSecret: undefined, webhookFormat: 'json', outboxDir: path.resolve('./data/alert-outbox') });
    assert.deepEqual([...loadConfig({ ROLES: 'receiver,ingest,api' }).roles], ['receiver', 'ingest', 'api']);
    assert.deepEqual([...loadConfig({ ROLES: 'alerts', KAFKA_BROKERS: 'k:9092' }).roles], ['alerts']);
    assert.throws(() => loadConfig({ ROLES: 'alerts' }), /without KAFKA_BROKERS one process must run all of receiver,ingest,api/);
    assert.throws(() => loadConfig({ ALERT_WEBHOOK_URL: 'ftp://x', ALERT_WEBHOOK_SECRET: 'short' }), /ALERT_WEBHOOK_URL="ftp:\/\/x": must be an http\(s\) URL[\s\S]*ALERT_WEBHOOK_SECRET="short": must be at least 16 characters/);
  });

  it('refuses the same port for the API and the receiver', () => {
    assert.throws(() => loadConfig({ PORT: '5000', RECEIVER_PORT: '5000' }), /PORT and RECEIVER_PORT must differ/);
  });
});
