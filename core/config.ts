/**
 * Every setting, read from the environment once, at the edge (`bin/*.ts`), into one typed object that
 * is passed down. The README's configuration table is checked against `SETTINGS` by a test.
 */
import path from 'node:path';
import { z } from 'zod';

const port = z.coerce.number('must be a number').int('must be a whole number').min(1, 'must be 1-65535').max(65535, 'must be 1-65535');
const positiveInt = z.coerce.number('must be a number').int('must be a whole number').positive('must be greater than 0');
const topic = z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, 'must be a Kafka topic name (letters, digits, . _ -)');

const brokerList = z
  .string()
  .transform((s) => s.split(',').map((b) => b.trim()).filter(Boolean))
  .refine((list) => list.length > 0 && list.every((b) => /^[^\s:]+:\d{1,5}$/.test(b)), {
    message: 'must be a comma-separated list of host:port',
  });

const tokenMap = z.string().transform((s, ctx) => {
  const tokens = new Map<string, string>();
  for (const pair of s.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    const token = pair.slice(0, eq);
    const tenant = pair.slice(eq + 1);
    if (eq <= 0 || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(tenant)) {
      ctx.addIssue({ code: 'custom', message: 'must be token=tenant pairs separated by commas, e.g. tok1=acme,tok2=globex' });
      return z.NEVER;
    }
    tokens.set(token, tenant);
  }
  return tokens;
});

export const ROLES = ['receiver', 'ingest', 'api', 'alerts'] as const;
/** Roles that hand data to each other through Kafka or, without it, through the in-process queue. */
const PIPELINE_ROLES: readonly Role[] = ['receiver', 'ingest', 'api'];
export type Role = (typeof ROLES)[number];

const roleList = z
  .string()
  .transform((s) => s.split(',').map((r) => r.trim()).filter(Boolean))
  .refine((list) => list.length > 0 && list.every((r) => (ROLES as readonly string[]).includes(r)), {
    message: `must be a comma-separated subset of ${ROLES.join(',')}`,
  })
  .transform((list) => new Set(list as Role[]));

/** Name → [schema with default, meaning]. The README documents exactly these. */
export const SETTINGS = {
  ROLES: [roleList.prefault(ROLES.join(',')), 'What this process runs: `receiver`, `ingest`, `api`, `alerts` (the anomaly detector), comma-separated. Split the first three only with Kafka.'],
  HOST: [z.string().min(1).default('127.0.0.1'), 'Address the API/UI and the receiver listen on.'],
  PORT: [port.default(4000), 'Port of the GraphQL API (`/graphql`) and the dashboard.'],
  RECEIVER_PORT: [port.default(4318), 'Port of the receiver: `POST /v1/audit`, `POST /v1/traces` (OTLP/HTTP).'],
  DATA_DIR: [z.string().min(1).default('./data'), 'Where the ingest worker keeps its insert journal, and the embedded ClickHouse engine its data (without `CLICKHOUSE_URL`).'],
  CLICKHOUSE_URL: [z.url('must be a URL such as http://user:password@host:8123').optional(), 'ClickHouse server URL. Unset: the embedded engine (chDB) under `DATA_DIR`.'],
  CLICKHOUSE_DATABASE: [z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'must be a plain identifier').default('mcp_analytics'), 'Database holding all tables.'],
  CLICKHOUSE_CLUSTER: [z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'must be a cluster name from remote_servers').optional(), 'Cluster name: migrations then run `ON CLUSTER` and create replicated tables.'],
  RETENTION_DAYS: [positiveInt.max(36500).default(90), 'Days raw audit events and spans are kept (table TTL). Rollups are kept 4× as long. An audit record stamped earlier is refused.'],
  MAX_CLOCK_SKEW_S: [positiveInt.max(86_400).default(300), "How far ahead of this server's clock an audit record's `timestamp` may be; a later one is refused."],
  KAFKA_BROKERS: [brokerList.optional(), 'Comma-separated Kafka brokers. Unset: an in-process queue replaces Kafka (single process).'],
  KAFKA_CLIENT_ID: [z.string().min(1).default('mcp-analytics'), 'Kafka client id.'],
  KAFKA_AUDIT_TOPIC: [topic.default('mcp-audit'), 'Topic of audit records (JSON).'],
  KAFKA_SPANS_TOPIC: [topic.default('otlp_spans'), 'Topic of spans (OTLP protobuf, as the OpenTelemetry Collector writes them).'],
  KAFKA_DEAD_LETTER_TOPIC: [topic.default('mcp-dead-letters'), 'Topic of messages the ingest could not decode or validate.'],
  KAFKA_GROUP_ID: [z.string().min(1).default('mcp-ingest'), 'Consumer group of the ingest workers.'],
  API_KEYS_FILE: [z.string().min(1).optional(), 'YAML file of API keys (hashes only; `npm run keys`), for the API and the receiver. Re-read when it changes. Unset, and no `INGEST_TOKENS`: the single tenant `default`, localhost only.'],
  INGEST_TOKENS: [tokenMap.optional(), 'Short form of `ingest` keys for the receiver, `token=tenant,...`. Unset, and no `API_KEYS_FILE`: the single tenant `default`, localhost only.'],
  KAFKA_TOPIC_PARTITIONS: [positiveInt.max(10_000).default(6), 'Partitions of each topic the product creates at start when it is missing (audit, spans, dead letters); at most this many ingest workers share the load.'],
  KAFKA_REPLICATION_FACTOR: [positiveInt.max(32767).optional(), "Replicas of each partition of a topic the product creates. Unset: the broker's `default.replication.factor`."],
  RECEIVER_MAX_BODY_BYTES: [positiveInt.default(8 * 1024 * 1024), 'Largest request body the receiver accepts (after decompression).'],
  RECEIVER_MAX_RECORDS: [positiveInt.default(10_000), 'Most records (or spans) in one receiver request.'],
  BATCH_MAX_ROWS: [positiveInt.default(20_000), 'Rows per ClickHouse insert, at most.'],
  BATCH_MAX_WAIT_MS: [positiveInt.default(1000), 'Longest a row waits before its batch is inserted.'],
  API_QUERY_TIMEOUT_MS: [positiveInt.default(10_000), 'Longest one ClickHouse statement of the API may run (`max_execution_time`); beyond it the query answers `QUERY_TIMEOUT`.'],
  API_READ_CONCURRENCY: [positiveInt.default(2), 'ClickHouse reads the API runs at once, all API keys together; the rest wait in a fair queue per key.'],
  API_READ_THREADS: [positiveInt.default(1), 'Threads ClickHouse gives one API read (`max_threads`). The reads are small by design (rollups, cached buckets, keyed look-ups) and `API_READ_CONCURRENCY` of them run at once: one thread each shares the cores between them; raise it on a server with cores to spare for long audit-log searches.'],
  API_READ_QUEUE_PER_CALLER: [positiveInt.default(64), 'Reads one API key may have waiting; more are refused with `TOO_MANY_REQUESTS` (HTTP 429).'],
  SHUTDOWN_TIMEOUT_MS: [positiveInt.default(15_000), 'How long graceful shutdown may take before the process exits anyway.'],
  PRICES_FILE: [z.string().min(1).optional(), 'YAML price book and cost-centre map loaded at start (format under "Costs and chargeback"); loading it again changes nothing.'],
  ALERT_INTERVAL_S: [positiveInt.max(3600).default(60), 'Seconds between two passes of the anomaly detector (role `alerts`), aligned to the clock: each pass runs 10 s after a multiple of it (each minute\'s end at 60) and judges the windows ending there.'],
  ALERT_WEBHOOK_URL: [z.url('must be an http(s) URL').refine((u) => /^https?:/.test(u), 'must be an http(s) URL').optional(), 'Where new, escalated and resolved alerts, and acknowledgements and resolutions by people (roles `alerts` and `api`), are POSTed as JSON. A tenant\'s own URL (`setAlertSettings`) wins.'],
  ALERT_WEBHOOK_SECRET: [z.string().min(16, 'must be at least 16 characters').optional(), 'Key of the `X-Signature-256: sha256=<HMAC-SHA256 of the body>` header on each webhook.'],
  ALERT_WEBHOOK_FORMAT: [z.enum(['json', 'slack']).default('json'), 'Webhook body: `json` (the alert), or `slack` (`{"text": …}`, for a Slack incoming webhook).'],
  LOG_LEVEL: [z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'), 'Log level (JSON logs on stdout).'],
} as const;

type Settings = typeof SETTINGS;
type Raw = { [K in keyof Settings]: z.output<Settings[K][0]> };

export interface Config {
  roles: Set<Role>;
  host: string;
  port: number;
  receiverPort: number;
  dataDir: string;
  /** DATA_DIR/insert-journal: audit inserts kept until they return (ingest/insert-journal.ts). */
  insertJournalDir: string;
  clickhouse: { url?: string; database: string; cluster?: string };
  retentionDays: number;
  /** MAX_CLOCK_SKEW_S: how far in the future a record's timestamp may be. */
  maxClockSkewSeconds: number;
  kafka?: {
    brokers: string[];
    clientId: string;
    groupId: string;
    /** How the product creates its topics when they are missing (core/kafka-topics.ts). */
    newTopics: { partitions: number; replicationFactor?: number };
  };
  topics: { audit: string; spans: string; deadLetter: string };
  /** API_KEYS_FILE, resolved. */
  apiKeysFile?: string;
  ingestTokens?: Map<string, string>;
  receiver: { maxBodyBytes: number; maxRecords: number };
  batch: { maxRows: number; maxWaitMs: number };
  /** The API's ClickHouse reads: statement time limit and the fair read queue. */
  api: { queryTimeoutMs: number; readConcurrency: number; readThreads: number; readQueuePerCaller: number };
  shutdownTimeoutMs: number;
  /** PRICES_FILE, resolved; loaded into the price book when the API starts. */
  pricesFile?: string;
  alerts: {
    intervalS: number;
    webhookUrl?: string;
    webhookSecret?: string;
    webhookFormat: 'json' | 'slack';
    /** DATA_DIR/alert-outbox: webhook deliveries kept until accepted (alerts/webhook-outbox.ts). */
    outboxDir: string;
  };
  logLevel: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Reads every setting; throws one ConfigError naming each bad variable, its value and the reason. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = [];
  const raw: Record<string, unknown> = {};
  for (const [name, [schema]] of Object.entries(SETTINGS)) {
    const value = env[name] === '' ? undefined : env[name];
    const parsed = (schema as z.ZodType).safeParse(value);
    if (parsed.success) raw[name] = parsed.data;
    else problems.push(`${name}=${JSON.stringify(value)}: ${parsed.error.issues.map((i) => i.message).join(', ')}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const r = raw as Raw;
  if (r.PORT === r.RECEIVER_PORT) throw new ConfigError([`PORT and RECEIVER_PORT must differ (both ${r.PORT})`]);
  if (!r.KAFKA_BROKERS && !PIPELINE_ROLES.every((role) => r.ROLES.has(role))) {
    throw new ConfigError([`ROLES=${[...r.ROLES].join(',')}: without KAFKA_BROKERS one process must run all of ${PIPELINE_ROLES.join(',')}`]);
  }

  const topics = { audit: r.KAFKA_AUDIT_TOPIC, spans: r.KAFKA_SPANS_TOPIC, deadLetter: r.KAFKA_DEAD_LETTER_TOPIC };
  return {
    roles: r.ROLES,
    host: r.HOST,
    port: r.PORT,
    receiverPort: r.RECEIVER_PORT,
    dataDir: path.resolve(r.DATA_DIR),
    insertJournalDir: path.resolve(r.DATA_DIR, 'insert-journal'),
    clickhouse: { url: r.CLICKHOUSE_URL, database: r.CLICKHOUSE_DATABASE, cluster: r.CLICKHOUSE_CLUSTER },
    retentionDays: r.RETENTION_DAYS,
    maxClockSkewSeconds: r.MAX_CLOCK_SKEW_S,
    kafka: r.KAFKA_BROKERS && {
      brokers: r.KAFKA_BROKERS,
      clientId: r.KAFKA_CLIENT_ID,
      groupId: r.KAFKA_GROUP_ID,
      newTopics: { partitions: r.KAFKA_TOPIC_PARTITIONS, replicationFactor: r.KAFKA_REPLICATION_FACTOR },
    },
    topics,
    apiKeysFile: r.API_KEYS_FILE && path.resolve(r.API_KEYS_FILE),
    ingestTokens: r.INGEST_TOKENS,
    receiver: { maxBodyBytes: r.RECEIVER_MAX_BODY_BYTES, maxRecords: r.RECEIVER_MAX_RECORDS },
    batch: { maxRows: r.BATCH_MAX_ROWS, maxWaitMs: r.BATCH_MAX_WAIT_MS },
    api: { queryTimeoutMs: r.API_QUERY_TIMEOUT_MS, readConcurrency: r.API_READ_CONCURRENCY, readThreads: r.API_READ_THREADS, readQueuePerCaller: r.API_READ_QUEUE_PER_CALLER },
    shutdownTimeoutMs: r.SHUTDOWN_TIMEOUT_MS,
    pricesFile: r.PRICES_FILE && path.resolve(r.PRICES_FILE),
    alerts: {
      intervalS: r.ALERT_INTERVAL_S,
      webhookUrl: r.ALERT_WEBHOOK_URL,
      webhookSecret: r.ALERT_WEBHOOK_SECRET,
      webhookFormat: r.ALERT_WEBHOOK_FORMAT,
      outboxDir: path.resolve(r.DATA_DIR, 'alert-outbox'),
    },
    logLevel: r.LOG_LEVEL,
  };
}
