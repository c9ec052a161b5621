/**
 * The benches' data set: N audit events (default 10,000,000) over the 30 days ending at `end`, computed
 * inside ClickHouse (`INSERT INTO audit_events_v1 SELECT … FROM numbers(…)`), so the materialized views
 * fill the rollups exactly as the ingest's inserts do, and spans in spans_v1 for a sample of the calls
 * that carry OpenTelemetry ids. Deterministic: the same seed, N and `end` give the same rows.
 *
 *   node --import tsx bench/data/generate-events.ts --dir /work/benchdata/10m [--events 10000000] [--seed 1] [--end 2026-12-04T17:00:00Z]
 *
 * The command line migrates the directory's database (mcp_analytics), loads it and writes dataset.json
 * beside the engine's data (generator version, counts per tenant, the time range).
 *
 * Shape (issue 11): 3 tenants (acme 80% of rows, globex 15%, initech 5%: accounts belong to one tenant);
 * 50 agents (a few of them probing, with most of the denials); 200 tools over 20 services
 * (`svc.Svc.Method`, popularity skewed, so are services); 1,000 accounts; sessions of ~20 calls of one
 * account and agent, interleaved; log-normal durations with a median per tool; ~2% errors; ~1% denials
 * with a reason and the tool's required scope; a price on ~20% of the calls; a daily cycle (busiest at
 * 14:00 UTC, quietest at 02:00, 4:1); event_id a UUIDv7 of the event's millisecond; trace_id a UUID on every
 * call; otel_trace_id/otel_span_id on 30% of them, and a 3-span trace in spans_v1 for a tenth of those.
 *
 * Row i's time grows with i, so each insert of consecutive numbers touches one or two daily partitions.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { loadConfig } from '../../core/config.ts';
import { migrate } from '../../core/migrate.ts';

/** Bump when the rows this makes change: caches of a data set are keyed by it. */
export const GENERATOR_VERSION = 1;
export const DEFAULT_EVENTS = 10_000_000;
export const DAYS = 30;
/** Written beside the engine's data by the command line: the generator's version and GenerateResult. */
export const DATASET_FILE = 'dataset.json';

export const TENANTS = [
  { tenant: 'acme', accounts: 800 },
  { tenant: 'globex', accounts: 150 },
  { tenant: 'initech', accounts: 50 },
] as const;
export const ACCOUNTS = TENANTS.reduce((n, t) => n + t.accounts, 0);

const SERVICES = [
  'users', 'orders', 'payments', 'search', 'inventory', 'analytics', 'billing', 'notifications', 'auth', 'shipping',
  'catalog', 'reviews', 'messaging', 'files', 'calendar', 'reports', 'crm', 'support', 'pricing', 'geo',
];
const METHODS = ['Get', 'List', 'Search', 'Create', 'Update', 'Delete', 'Export', 'Import', 'Sync', 'Generate'];
const READS = new Set(['Get', 'List', 'Search', 'Export']);

const AGENT_NAMES = [
  'Claude Desktop', 'Claude Code', 'Cursor', 'ChatGPT', 'Copilot', 'Windsurf', 'Cline', 'Continue', 'Zed', 'Goose',
  'LibreChat', 'Open WebUI', 'Aider', 'Roo Code', 'Amp', 'Warp', 'JetBrains AI', 'Tabnine', 'Codeium', 'Devin',
  'support-bot', 'billing-bot', 'ops-agent', 'sales-assistant', 'triage-agent', 'report-writer', 'data-analyst', 'oncall-helper',
  'onboarding-bot', 'qa-agent', 'release-bot', 'docs-bot', 'crm-sync', 'inventory-bot', 'pricing-agent', 'search-agent',
  'mail-assistant', 'calendar-agent', 'hr-assistant', 'legal-review', 'finance-agent', 'security-scanner', 'etl-agent',
  'planner', 'researcher',
  // The last five probe: most denials are theirs.
  'scraper-x', 'unknown-client', 'test-harness', 'legacy-agent', 'shadow-agent',
];
const PROBING_AGENTS = 5;

const ERRORS = [
  'context deadline exceeded', 'upstream unavailable: connection refused', 'invalid argument: id', 'not found',
  'internal error', 'rate limited by upstream', 'permission denied by upstream',
];
const DENIAL_REASONS = ['missing scope', 'account suspended', 'tool not allowed for this agent', 'rate limit exceeded'];
const GATEWAYS = ['gw-eu-1', 'gw-eu-2', 'gw-us-1'];

/** A small deterministic generator for the per-tool constants (not the rows: those come from sipHash64). */
function lcg(seed: number) {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

interface Tool {
  name: string;
  scope: string;
  /** Median duration of an allowed call, ms, and the spread of its logarithm. */
  medianMs: number;
  sigma: number;
  /** Price of one call, USD, when the call is priced. */
  priceUsd: number;
}

/** The 200 tools in popularity order: rank r belongs to service r / 10. */
export function tools(seed: number): Tool[] {
  const rnd = lcg(seed * 7919 + 17);
  const out: Tool[] = [];
  for (let s = 0; s < SERVICES.length; s++) {
    const service = SERVICES[s]!;
    const Svc = service[0]!.toUpperCase() + service.slice(1);
    for (const method of METHODS) {
      const heavy = method === 'Generate' || method === 'Export' || method === 'Import';
      out.push({
        name: `${service}.${Svc}.${method}`,
        scope: `${service}:${READS.has(method) ? 'read' : 'write'}`,
        medianMs: Math.round((heavy ? 100 : 3) * 10 ** (rnd() * 1.5) * 1000) / 1000,
        sigma: 0.4 + rnd() * 0.6,
        priceUsd: Math.round((heavy ? 0.02 : 0.0005) * (1 + rnd() * 4) * 1e6) / 1e6,
      });
    }
  }
  return out;
}

export interface GenerateOptions {
  events?: number;
  seed?: number;
  /** End of the 30 days (exclusive), whole seconds; defaults to now. */
  end?: Date;
  /** Rows per INSERT statement. */
  chunk?: number;
  log?: (message: string) => void;
}

export interface GenerateResult {
  events: number;
  spans: number;
  from: Date;
  end: Date;
  seed: number;
  perTenant: Record<string, number>;
  seconds: number;
}

/** Loads the data set into an empty, migrated database. */
export async function generateEvents(clickhouse: ClickHouseClient, options: GenerateOptions = {}): Promise<GenerateResult> {
  const events = options.events ?? DEFAULT_EVENTS;
  const seed = options.seed ?? 1;
  const end = new Date(Math.floor((options.end ?? new Date()).getTime() / 1000) * 1000);
  const chunk = options.chunk ?? 500_000;
  const log = options.log ?? (() => {});
  const started = performance.now();

  const existing = await count(clickhouse, 'SELECT count() AS n FROM audit_events_v1');
  if (existing !== 0) throw new Error(`audit_events_v1 already holds ${existing} rows: the generator loads an empty database`);

  const spanNs = BigInt(DAYS) * 86_400_000_000_000n;
  const endNs = BigInt(end.getTime()) * 1_000_000n;
  const startNs = endNs - spanNs;
  const startSecondOfDay = Number((startNs / 1_000_000_000n) % 86_400n);
  const ts = tools(seed);
  const params = {
    seed,
    n: events,
    start_ns: startNs.toString(),
    span_ns: spanNs.toString(),
    // The busiest time of day is 14:00 UTC: the cycle's phase, in days from the range's start.
    phase: (14 * 3600 - startSecondOfDay) / 86_400,
    tool_names: ts.map((t) => t.name),
    tool_scopes: ts.map((t) => t.scope),
    tool_median_ms: ts.map((t) => t.medianMs),
    tool_sigma: ts.map((t) => t.sigma),
    tool_price: ts.map((t) => t.priceUsd),
    agents: AGENT_NAMES,
    errors: ERRORS,
    reasons: DENIAL_REASONS,
    gateways: GATEWAYS,
  };

  for (let offset = 0; offset < events; offset += chunk) {
    const rows = Math.min(chunk, events - offset);
    await clickhouse.command({
      query: insertEventsSql(offset, rows),
      query_params: params,
      clickhouse_settings: { max_block_size: String(rows), min_insert_block_size_rows: String(rows), min_insert_block_size_bytes: '0' },
    });
    log(`events ${(offset + rows).toLocaleString('en-US')} / ${events.toLocaleString('en-US')} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  }
  await clickhouse.command({ query: INSERT_SPANS_SQL });
  const spans = await count(clickhouse, 'SELECT count() AS n FROM spans_v1');
  log(`spans ${spans.toLocaleString('en-US')} (${((performance.now() - started) / 1000).toFixed(0)} s)`);

  const perTenant: Record<string, number> = {};
  const rows = await (await clickhouse.query({ query: 'SELECT tenant, count() AS n FROM audit_events_v1 GROUP BY tenant ORDER BY tenant', format: 'JSONEachRow' })).json<{ tenant: string; n: string }>();
  for (const r of rows) perTenant[r.tenant] = Number(r.n);
  return { events, spans, from: new Date(end.getTime() - DAYS * 86_400_000), end, seed, perTenant, seconds: (performance.now() - started) / 1000 };
}

async function count(clickhouse: ClickHouseClient, query: string): Promise<number> {
  const [row] = await (await clickhouse.query({ query, format: 'JSONEachRow' })).json<{ n: string }>();
  return Number(row?.n ?? 0);
}

/**
 * Rows [offset, offset + rows). `u(k)` is a uniform [0, 1) draw, the k-th of row `number`; a session's
 * draws hash the session key instead. Row i sits at x = (i + 0.5) / n of the range, warped by the daily
 * cycle: t = x − A/(2π·30) · (sin(2π(30x − phase)) + sin(2π·phase)), A = 0.6, whose density is 1 / (1 − A cos(…)):
 * highest at the phase, 4× the lowest; t(0) = 0 and t(1) = 1, so every row is inside the range.
 */
function insertEventsSql(offset: number, rows: number): string {
  const u = (k: number) => `(sipHash64({seed:UInt32}, number, ${k}) / 18446744073709551616.0)`;
  const su = (k: number) => `(sipHash64({seed:UInt32}, session_key, ${k}) / 18446744073709551616.0)`;
  const hex16 = (k: number) => `leftPad(lower(hex(sipHash64({seed:UInt32}, number, ${k}))), 16, '0')`;
  return `
INSERT INTO audit_events_v1
  (event_id, tenant, timestamp, trace_id, tool, service, account_id, scopes_required, allowed, denied_reason,
   duration_ns, error, is_error, agent, agent_version, session_id, gateway, transport, otel_trace_id, otel_span_id,
   request_bytes, response_bytes, cost_usd, attributes, source, ingested_at)
SELECT
  toUUID(concat(substring(ms_hex, 1, 8), '-', substring(ms_hex, 9, 4), '-7', substring(id_hex, 1, 3), '-',
    ['8', '9', 'a', 'b'][1 + (sipHash64({seed:UInt32}, number, 3) % 4)], substring(id_hex, 4, 3), '-', substring(id_hex2, 1, 12))) AS event_id,
  tenant,
  fromUnixTimestamp64Nano(ts_ns, 'UTC') AS timestamp,
  concat(substring(tr_hex, 1, 8), '-', substring(tr_hex, 9, 4), '-4', substring(tr_hex, 14, 3), '-',
    ['8', '9', 'a', 'b'][1 + (sipHash64({seed:UInt32}, number, 6) % 4)], substring(tr_hex2, 2, 3), '-', substring(tr_hex2, 5, 12)) AS trace_id,
  tool,
  splitByChar('.', tool)[1] AS service,
  account_id,
  [scope] AS scopes_required,
  allowed,
  if(allowed, '', if(reason = 'missing scope', concat('missing scope ', scope), reason)) AS denied_reason,
  toUInt64(if(allowed,
    if(error = 'context deadline exceeded', 30e9, least(median_ms * exp(sigma * z) * 1e6, 600e9)),
    20000 + 200000 * ${u(13)})) AS duration_ns,
  error,
  error != '' AS is_error,
  agent,
  concat(toString(1 + agent_ix % 3), '.', toString(agent_ix % 7), '.', toString(agent_ix % 11)) AS agent_version,
  session_id,
  {gateways:Array(String)}[1 + session_key % 3] AS gateway,
  if(agent_ix % 4 = 0, 'stdio', 'http') AS transport,
  if(has_otel, concat(${hex16(7)}, ${hex16(8)}), '') AS otel_trace_id,
  if(has_otel, ${hex16(9)}, '') AS otel_span_id,
  toUInt64(if(allowed, 80 + 2000 * pow(${u(10)}, 3), 80 + 100 * ${u(10)})) AS request_bytes,
  toUInt64(if(allowed AND error = '', 200 + 200000 * pow(${u(11)}, 4), 0)) AS response_bytes,
  CAST(if(allowed AND ${u(12)} < 0.2, round(price * (0.5 + ${u(14)}), 9), NULL) AS Nullable(Decimal(18, 9))) AS cost_usd,
  map('mcp.method', 'tools/call') AS attributes,
  'audit' AS source,
  fromUnixTimestamp64Milli(intDiv(ts_ns, 1000000) + 50 + toInt64(${u(15)} * 950), 'UTC') AS ingested_at
FROM
(
  SELECT
    number,
    ts_ns,
    leftPad(lower(hex(intDiv(ts_ns, 1000000))), 12, '0') AS ms_hex,
    ${hex16(4)} AS id_hex,
    ${hex16(5)} AS id_hex2,
    ${hex16(16)} AS tr_hex,
    ${hex16(17)} AS tr_hex2,
    session_key,
    account_ix,
    multiIf(account_ix < ${TENANTS[0].accounts}, '${TENANTS[0].tenant}', account_ix < ${TENANTS[0].accounts + TENANTS[1].accounts}, '${TENANTS[1].tenant}', '${TENANTS[2].tenant}') AS tenant,
    concat('acct-', leftPad(toString(account_ix), 4, '0')) AS account_id,
    agent_ix,
    {agents:Array(String)}[agent_ix + 1] AS agent,
    concat('sess-', leftPad(lower(hex(sipHash64({seed:UInt32}, session_key, 99))), 16, '0')) AS session_id,
    tool_ix,
    {tool_names:Array(String)}[tool_ix + 1] AS tool,
    {tool_scopes:Array(String)}[tool_ix + 1] AS scope,
    {tool_median_ms:Array(Float64)}[tool_ix + 1] AS median_ms,
    {tool_sigma:Array(Float64)}[tool_ix + 1] AS sigma,
    {tool_price:Array(Float64)}[tool_ix + 1] AS price,
    -- A standard normal draw (Box-Muller).
    sqrt(-2 * log(1 - ${u(20)})) * cos(2 * pi() * ${u(21)}) AS z,
    ${u(22)} >= if(agent_ix >= ${AGENT_NAMES.length - PROBING_AGENTS}, 0.06, 0.006) AS allowed,
    {reasons:Array(String)}[1 + toUInt8(floor(pow(${u(23)}, 1.8) * ${DENIAL_REASONS.length}))] AS reason,
    if(allowed AND ${u(24)} < 0.02, {errors:Array(String)}[1 + toUInt8(floor(pow(${u(25)}, 1.5) * ${ERRORS.length}))], '') AS error,
    ${u(26)} < 0.3 AS has_otel
  FROM
  (
    SELECT
      number,
      (number + 0.5) / {n:UInt64} AS x,
      {start_ns:Int64} + toInt64(floor(
        (x - 0.6 / (2 * pi() * ${DAYS}) * (sin(2 * pi() * (${DAYS} * x - {phase:Float64})) + sin(2 * pi() * {phase:Float64}))) * {span_ns:Int64}
      )) AS ts_ns,
      -- Sessions: ~20 calls each, 200 of them interleaved in each run of 4,000 consecutive calls.
      intDiv(number, 4000) * 200 + sipHash64({seed:UInt32}, number, 2) % 200 AS session_key,
      toUInt32(floor(${su(1)} * ${ACCOUNTS})) AS account_ix,
      toUInt32(floor(pow(${su(2)}, 1.5) * ${AGENT_NAMES.length})) AS agent_ix,
      toUInt32(floor(pow(${u(1)}, 2.2) * 200)) AS tool_ix
    FROM numbers(${offset}, ${rows})
  )
)`;
}

/**
 * A 3-span trace for a tenth of the calls with OpenTelemetry ids: the gateway's request (root), its
 * `mcp.tool.call` span (the call's otel_span_id) and the service's handler under it, with the attributes
 * go-micro sets. Inserted directly (the ingest's span-to-call derivation is not run: each call stays one row).
 */
const INSERT_SPANS_SQL = `
INSERT INTO spans_v1
  (tenant, trace_id, span_id, parent_span_id, name, kind, service, scope_name, scope_version, start_time, duration_ns,
   status_code, status_message, attributes, resource_attributes, events, ingested_at)
SELECT
  tenant,
  otel_trace_id,
  [root_span, otel_span_id, handler_span][k] AS span_id,
  ['', root_span, otel_span_id][k] AS parent_span_id,
  ['POST /mcp', 'mcp.tool.call', tool][k] AS name,
  ['server', 'internal', 'server'][k] AS kind,
  [gateway, gateway, service][k] AS service,
  ['go-micro/gateway', 'go-micro/gateway/mcp', 'go-micro/server'][k] AS scope_name,
  'v6.0.0' AS scope_version,
  timestamp - toIntervalNanosecond([200000, 100000, 0][k]) AS start_time,
  duration_ns + [400000, 150000, 0][k] AS duration_ns,
  if(is_error OR NOT allowed, 'error', 'ok') AS status_code,
  if(allowed, error, denied_reason) AS status_message,
  [
    map('http.method', 'POST', 'http.route', '/mcp'),
    map('mcp.tool.name', tool, 'mcp.trace_id', trace_id, 'mcp.transport', transport, 'mcp.account.id', account_id,
        'mcp.auth.allowed', if(allowed, 'true', 'false'), 'mcp.auth.denied_reason', denied_reason,
        'mcp.client.name', agent, 'mcp.client.version', agent_version, 'mcp.session.id', session_id),
    map('rpc.service', service, 'rpc.method', tool)
  ][k] AS attributes,
  map('service.name', [gateway, gateway, service][k]) AS resource_attributes,
  [] AS events,
  ingested_at
FROM
(
  SELECT *, leftPad(lower(hex(sipHash64(event_id, 1))), 16, '0') AS root_span, leftPad(lower(hex(sipHash64(event_id, 2))), 16, '0') AS handler_span
  FROM audit_events_v1
  WHERE otel_trace_id != '' AND sipHash64(event_id) % 10 = 0
)
ARRAY JOIN [1, 2, 3] AS k`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string' },
      events: { type: 'string', default: String(DEFAULT_EVENTS) },
      seed: { type: 'string', default: '1' },
      end: { type: 'string' },
      database: { type: 'string', default: 'mcp_analytics' },
    },
  });
  if (!values.dir) throw new Error('--dir is required: the data directory to build (DATA_DIR-style)');
  const clickhouse = await openClickHouse({ database: values.database, dataDir: values.dir });
  try {
    await migrate(clickhouse, { retentionDays: loadConfig({}).retentionDays });
    const result = await generateEvents(clickhouse, {
      events: Number(values.events),
      seed: Number(values.seed),
      end: values.end ? new Date(values.end) : undefined,
      log: (m) => console.error(m),
    });
    const description = { generator: GENERATOR_VERSION, ...result };
    writeFileSync(path.join(values.dir, DATASET_FILE), `${JSON.stringify(description, null, 2)}\n`);
    console.log(JSON.stringify(description, null, 2));
  } finally {
    await clickhouse.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
