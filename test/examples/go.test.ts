/**
 * The Go examples against the product as a user runs it (`bin/start.ts` as a child process): real Go
 * programs, built here, send audit records and OTLP/HTTP spans to the receiver, and what comes back
 * through GraphQL must be exactly what they sent.
 *
 *   examples/go-otlp   go-micro's wire formats without go-micro (deps from the Go module proxy)
 *   examples/go-micro  a real go-micro v6 MCP gateway, driven through its HTTP endpoint (`-drive`)
 *
 * Needs `go` on PATH: without it the suite is skipped with a warning, and fails under CI=true. When
 * the module proxy refuses go-micro (it answers 403 "not available" for go-micro.dev/v6 today), the
 * go-micro part is skipped with the proxy's answer, even under CI: that is a refusal, not a missing tool.
 *
 * Each program sends audit records with one ingest token and spans with another (through the standard
 * OTEL_EXPORTER_OTLP_TRACES_HEADERS), so audit records and spans land in two tenants: the audit log
 * then shows exactly the records sent, whatever the ingest also derives from `mcp.tool.call` spans.
 * Programs are built from a copy of their folder, so `-mod=mod` never rewrites go.mod or go.sum here.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { AuditLogEntry } from '../../api/queries/audit-log.ts';
import type { Attribute, Span as TraceSpan } from '../../api/queries/trace.ts';

/** The span fields the test asks for. */
type Span = Omit<TraceSpan, 'traceId' | 'depth'>;
import { appendKey, generateKey, keyEntry } from '../../core/api-keys.ts';
import { freePort } from '../helpers/product.ts';

const root = new URL('../../', import.meta.url).pathname;
const go = spawnSync('go', ['version'], { encoding: 'utf8' });
const goVersion = go.status === 0 ? go.stdout.trim() : undefined;
/** Builds, binaries and the product's data; made by the suite's `before`, removed by its `after`. */
let work = '';

const TOKENS = {
  otlpAudit: { token: 'otlp-audit-token', tenant: 'go-otlp' },
  otlpSpans: { token: 'otlp-spans-token', tenant: 'go-otlp-spans' },
  microAudit: { token: 'micro-audit-token', tenant: 'go-micro' },
  microSpans: { token: 'micro-spans-token', tenant: 'go-micro-spans' },
};
/** The first module download may take a while; later builds come from the module cache. */
const BUILD_TIMEOUT_MS = 240_000;
const RUN_TIMEOUT_MS = 60_000;
const ARRIVAL_TIMEOUT_MS = 30_000;

function loud(lines: string[]): void {
  const bar = '!'.repeat(78);
  console.error([bar, ...lines.map((l) => `!! ${l}`), bar].join('\n'));
}

if (!goVersion) {
  loud([
    'WARNING: `go` not found on PATH: the Go example tests are SKIPPED.',
    'Install Go 1.25+ (https://go.dev/dl/) to build examples/go-otlp and examples/go-micro.',
    ...(process.env.CI === 'true' ? ['CI=true: this is a failure.'] : []),
  ]);
  if (process.env.CI === 'true') {
    it('needs Go on PATH under CI=true', () => assert.fail('`go` is not on PATH; the Go example tests cannot run'));
  }
}

// ---- child processes ---------------------------------------------------------------------------

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `go build` of an example, from a copy of its folder, into the work directory. */
async function goBuild(example: string): Promise<{ binary: string; build: Finished }> {
  const dir = path.join(work, example);
  cpSync(path.join(root, 'examples', example), dir, { recursive: true });
  const binary = path.join(work, `${example}.bin`);
  const GOFLAGS = [process.env.GOFLAGS, '-mod=mod'].filter(Boolean).join(' ');
  const build = await run('go', ['build', '-o', binary, '.'], { cwd: dir, env: { GOFLAGS }, timeoutMs: BUILD_TIMEOUT_MS });
  return { binary, build };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = ARRIVAL_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ---- the product ---------------------------------------------------------------------------------

interface Product {
  receiver: string;
  graphql<T>(query: string, variables: Record<string, unknown>): Promise<T>;
}

/** A viewer key per tenant, for reading back what each program sent (the API serves a key's own tenant). */
const VIEWER_KEYS = new Map(Object.values(TOKENS).map((t) => [t.tenant, generateKey()]));

async function startProduct(): Promise<{ product: Product; child: ChildProcess; logs: () => string }> {
  const [port, receiverPort] = [await freePort(), await freePort()];
  const keysFile = path.join(work, 'keys.yaml');
  for (const [tenant, secret] of VIEWER_KEYS) appendKey(keysFile, keyEntry({ name: `${tenant}-viewer`, tenant, role: 'viewer', secret }));
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/start.ts'], {
    cwd: root,
    env: {
      ...process.env,
      DATA_DIR: path.join(work, 'data'),
      PORT: String(port),
      RECEIVER_PORT: String(receiverPort),
      INGEST_TOKENS: Object.values(TOKENS).map((t) => `${t.token}=${t.tenant}`).join(','),
      API_KEYS_FILE: keysFile,
      BATCH_MAX_WAIT_MS: '200',
      LOG_LEVEL: 'warn',
      KAFKA_BROKERS: '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stdout!.on('data', (chunk) => (logs += chunk));
  child.stderr!.on('data', (chunk) => (logs += chunk));
  const api = `http://127.0.0.1:${port}`;
  const receiver = `http://127.0.0.1:${receiverPort}`;
  await until('the product to be ready', async () => {
    if (child.exitCode !== null) throw new Error(`the product exited (${child.exitCode}):\n${logs}`);
    const ready = await fetch(`${receiver}/readyz`).catch(() => undefined);
    const apiUp = await fetch(`${api}/healthz`).catch(() => undefined);
    return ready?.ok && apiUp?.ok ? true : undefined;
  }, 60_000);

  async function graphql<T>(query: string, variables: Record<string, unknown>): Promise<T> {
    const key = VIEWER_KEYS.get(String(variables.tenant));
    assert.ok(key, `a viewer key for tenant ${String(variables.tenant)}`);
    const res = await fetch(`${api}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await res.json()) as { data?: T; errors?: unknown[] };
    assert.equal(body.errors, undefined, JSON.stringify(body.errors));
    return body.data!;
  }
  return { product: { receiver, graphql }, child, logs: () => logs };
}

// ---- GraphQL -----------------------------------------------------------------------------------

const AUDIT_LOG = /* GraphQL */ `
  query ($tenant: String!, $from: String!, $to: String!) {
    auditLog(tenant: $tenant, filter: { from: $from, to: $to }, first: 500) {
      edges { node {
        eventId timestamp traceId agent agentVersion sessionId accountId gateway service tool
        allowed deniedReason durationMs error otelTraceId otelSpanId costUsd { amount }
      } }
    }
  }`;

const TRACE = /* GraphQL */ `
  query ($tenant: String!, $traceId: String!) {
    trace(tenant: $tenant, id: $traceId) {
      spans {
        spanId parentSpanId name kind service startTime durationMs statusCode statusMessage
        attributes { key value }
        events { time name attributes { key value } }
      }
    }
  }`;

type AuditLogPage = { auditLog: { edges: Array<{ node: AuditLogEntry }> } };

/** The tenant's audit log once it holds `count` events, oldest first. */
async function auditLog(product: Product, tenant: string, from: Date, count: number): Promise<AuditLogEntry[]> {
  const to = new Date(Date.now() + 60_000).toISOString();
  const read = async () => (await product.graphql<AuditLogPage>(AUDIT_LOG, { tenant, from: from.toISOString(), to })).auditLog.edges.map((e) => e.node);
  const rows = await until(`${count} audit events of ${tenant}`, async () => {
    const events = await read();
    return events.length >= count ? events : undefined;
  });
  await new Promise((r) => setTimeout(r, 500)); // anything beyond `count` would show now
  const settled = await read();
  assert.equal(settled.length, count, `audit events of ${tenant}: ${JSON.stringify(settled, null, 1)}`);
  assert.equal(rows.length, count);
  return settled.reverse();
}

async function traceSpans(product: Product, tenant: string, traceId: string): Promise<Span[]> {
  return until(`trace ${traceId} of ${tenant}`, async () => {
    const data = await product.graphql<{ trace: { spans: Span[] } | null }>(TRACE, { tenant, traceId });
    return data.trace?.spans;
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HEX16 = /^[0-9a-f]{16}$/;

/** RFC 3339 with nine fractional digits, as the API returns times, from Unix nanoseconds. */
function iso(ns: bigint): string {
  const seconds = new Date(Number(ns / 1_000_000_000n) * 1000).toISOString().slice(0, 19);
  return `${seconds}.${String(ns % 1_000_000_000n).padStart(9, '0')}Z`;
}

const attrs = (map: Record<string, string>): Attribute[] =>
  Object.keys(map)
    .sort()
    .map((key) => ({ key, value: map[key]! }));

function lines<T>(stdout: string): T[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
}

// ---- the tests -----------------------------------------------------------------------------------

describe('Go examples against npm start', { skip: goVersion ? false : '`go` is not on PATH' }, () => {
  let product: Product;
  let child: ChildProcess | undefined;
  let productLogs = () => '';

  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'go-examples-'));
    console.error(`Go examples built with ${goVersion}`);
    ({ product, child, logs: productLogs } = await startProduct());
  });

  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      child.kill('SIGKILL');
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('go-otlp: go-micro AuditRecord JSON and mcp.tool.call spans over the real OTLP/HTTP exporter arrive exactly', async () => {
    const { binary, build } = await goBuild('go-otlp');
    assert.equal(build.code, 0, `go build examples/go-otlp failed:\n${build.stderr}`);

    // The script's calls start at t0 + 10 ms × i; t0 has nanoseconds, to see them survive.
    const t0 = BigInt(Date.now() - 60_000) * 1_000_000n + 456_789n;
    const ran = await run(binary, ['-start', iso(t0)], {
      cwd: work,
      timeoutMs: RUN_TIMEOUT_MS,
      env: {
        RECEIVER_URL: product.receiver,
        INGEST_TOKEN: TOKENS.otlpAudit.token,
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: `Authorization=Bearer%20${TOKENS.otlpSpans.token}`,
      },
    });
    assert.equal(ran.code, 0, `go-otlp failed:\n${ran.stderr}\n${productLogs()}`);
    const sent = lines<{ tool: string; trace_id: string; otel_trace_id: string; otel_span_id: string }>(ran.stdout);
    assert.equal(sent.length, 5, ran.stdout);

    // The script (examples/go-otlp/main.go): start `at` ms after t0, lasting `us` µs (a denied call's span 200 µs).
    const notFound = '{"id":"users","code":404,"detail":"user 99 not found","status":"Not Found"}';
    const calls = [
      { at: 0, us: 1523, tool: 'users.Users.Get', account: 'acct-42', scopes: ['users:read'], allowed: true },
      { at: 10, us: 4200, tool: 'users.Users.Get', account: 'acct-42', scopes: ['users:read'], allowed: true, error: notFound },
      { at: 20, us: 200, tool: 'users.Users.Delete', account: 'acct-42', scopes: ['users:admin'], denied: 'insufficient scopes' },
      { at: 30, us: 200, tool: 'users.Users.Get', denied: 'missing token' },
      { at: 40, us: 200, tool: 'orders.Orders.Create', account: 'acct-7', denied: 'rate limited', rateLimited: true },
    ].map((c, i) => ({ ...c, start: t0 + BigInt(c.at) * 1_000_000n, end: t0 + BigInt(c.at) * 1_000_000n + BigInt(c.us) * 1000n, sent: sent[i]! }));

    const events = await auditLog(product, TOKENS.otlpAudit.tenant, new Date(Date.now() - 120_000), calls.length);
    for (const e of events) assert.match(e.eventId, UUID);
    assert.deepEqual(
      events.map(({ eventId: _, ...rest }) => rest),
      calls.map((c) => ({
        timestamp: iso(c.end),
        traceId: c.sent.trace_id,
        agent: '',
        agentVersion: '',
        sessionId: '',
        accountId: c.account ?? null,
        gateway: '',
        service: c.tool.split('.')[0],
        tool: c.tool,
        allowed: c.allowed === true,
        deniedReason: c.denied ?? null,
        durationMs: c.allowed ? c.us / 1000 : 0,
        error: c.error ?? null,
        otelTraceId: null,
        otelSpanId: null,
        costUsd: null,
      })),
    );

    for (const c of calls) {
      const spans = await traceSpans(product, TOKENS.otlpSpans.tenant, c.sent.otel_trace_id);
      const failure = c.error ?? (c.rateLimited ? `rate limit exceeded for tool ${c.tool}` : c.denied);
      const expected: Span = {
        spanId: c.sent.otel_span_id,
        parentSpanId: null,
        name: 'mcp.tool.call',
        kind: 'server',
        service: 'go-otlp-example',
        startTime: iso(c.start),
        durationMs: c.us / 1000,
        statusCode: failure ? 'error' : 'ok',
        statusMessage: failure ?? null,
        attributes: attrs({
          'mcp.tool.name': c.tool,
          'mcp.transport': 'http',
          'mcp.trace_id': c.sent.trace_id,
          ...(c.account && { 'mcp.account.id': c.account }),
          ...(c.scopes && { 'mcp.auth.scopes_required': JSON.stringify(c.scopes) }),
          ...(c.rateLimited
            ? { 'mcp.rate_limited': 'true' }
            : { 'mcp.auth.allowed': String(c.allowed === true), ...(c.denied && { 'mcp.auth.denied_reason': c.denied }) }),
        }),
        events: failure
          ? [{ time: iso(c.end), name: 'exception', attributes: attrs({ 'exception.message': failure, 'exception.type': '*errors.errorString' }) }]
          : [],
      };
      assert.deepEqual(spans, [expected], `span of ${c.tool} (${c.denied ?? c.error ?? 'ok'})`);
    }
  });

  it('go-micro: a real go-micro v6 MCP gateway reports calls, errors and denials through AuditFunc and TraceProvider', async (t: TestContext) => {
    const { binary, build } = await goBuild('go-micro');
    if (build.code !== 0) {
      const refused = /403 Forbidden|not available/i.test(build.stderr);
      if (!refused) assert.fail(`go build examples/go-micro failed:\n${build.stderr}`);
      const answer = build.stderr.split('\n').filter((l) => /403|server response/.test(l)).slice(0, 2);
      const reason = 'the Go module proxy refuses go-micro.dev/v6, so examples/go-micro cannot be built here';
      loud([
        `SKIPPED: ${reason}.`,
        ...answer.map((l) => `  ${l.trim()}`),
        'This is the proxy refusing the module (GOPROXY), not a missing tool, so it is skipped even under CI=true.',
        'Where the proxy (or GOPROXY=direct) serves go-micro.dev/v6, this test builds the example and runs -drive.',
      ]);
      t.skip(`${reason}: ${answer.map((l) => l.trim()).join(' ')}`);
      return;
    }

    const startedAt = Date.now();
    const allowed = 4;
    const ran = await run(binary, ['-addr', `127.0.0.1:${await freePort()}`, '-drive', String(allowed)], {
      cwd: work,
      timeoutMs: RUN_TIMEOUT_MS,
      env: {
        RECEIVER_URL: product.receiver,
        INGEST_TOKEN: TOKENS.microAudit.token,
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: `Authorization=Bearer%20${TOKENS.microSpans.token}`,
      },
    });
    assert.equal(ran.code, 0, `go-micro example failed:\n${ran.stderr}\n${productLogs()}`);
    const report = JSON.parse(ran.stdout) as {
      audit: { sent: number; dropped: number; failed: number };
      spans: Array<{ tool: string; trace_id: string; otel_trace_id: string; otel_span_id: string }>;
    };
    const total = allowed + 4;
    assert.deepEqual(report.audit, { sent: total, dropped: 0, failed: 0 });
    assert.equal(report.spans.length, total);

    // -drive: acct-42 and acct-7 take turns on allowed calls, then the service errs, then three denials.
    const notFound = '{"id":"users","code":404,"detail":"user 404 not found","status":"Not Found"}';
    const expected = [
      ...Array.from({ length: allowed }, (_, i) => ({ tool: 'users.Users.Get', accountId: i % 2 ? 'acct-7' : 'acct-42', allowed: true, deniedReason: null, error: null })),
      { tool: 'users.Users.Get', accountId: 'acct-42', allowed: true, deniedReason: null, error: notFound },
      { tool: 'users.Users.Delete', accountId: 'acct-42', allowed: false, deniedReason: 'insufficient scopes', error: null },
      { tool: 'users.Users.Get', accountId: null, allowed: false, deniedReason: 'missing token', error: null },
      { tool: 'users.Users.Get', accountId: null, allowed: false, deniedReason: 'invalid token', error: null },
    ];
    const events = await auditLog(product, TOKENS.microAudit.tenant, new Date(startedAt - 60_000), total);
    assert.deepEqual(
      events.map((e) => ({ tool: e.tool, accountId: e.accountId, allowed: e.allowed, deniedReason: e.deniedReason, error: e.error })),
      expected,
    );
    for (const e of events) {
      assert.deepEqual(
        { agent: e.agent, gateway: e.gateway, service: e.service, otelTraceId: e.otelTraceId, costUsd: e.costUsd },
        { agent: '', gateway: 'go-micro-example', service: 'users', otelTraceId: null, costUsd: null },
      );
      const at = Date.parse(e.timestamp);
      assert.ok(at >= startedAt - 1000 && at <= Date.now(), `timestamp ${e.timestamp} is not within the run`);
      // Users.Get sleeps 2 ms; a denied call never ran, so go-micro reports no duration.
      if (e.allowed) assert.ok(e.durationMs >= 2 && e.durationMs < 5000, `duration of ${e.tool}: ${e.durationMs} ms`);
      else assert.equal(e.durationMs, 0);
    }
    assert.deepEqual(new Set(events.map((e) => e.traceId)), new Set(report.spans.map((s) => s.trace_id)));

    for (const e of events) {
      const call = report.spans.find((s) => s.trace_id === e.traceId)!;
      const [span, ...others] = await traceSpans(product, TOKENS.microSpans.tenant, call.otel_trace_id);
      assert.equal(others.length, 0);
      const failure = e.error ?? e.deniedReason;
      assert.deepEqual(
        { spanId: span!.spanId, parentSpanId: span!.parentSpanId, name: span!.name, kind: span!.kind, service: span!.service },
        { spanId: call.otel_span_id, parentSpanId: null, name: 'mcp.tool.call', kind: 'server', service: 'go-micro-example' },
      );
      assert.deepEqual({ statusCode: span!.statusCode, statusMessage: span!.statusMessage }, { statusCode: failure ? 'error' : 'ok', statusMessage: failure });
      const scopes = e.tool === 'users.Users.Delete' ? ['users:admin'] : ['users:read'];
      assert.deepEqual(
        span!.attributes,
        attrs({
          'mcp.tool.name': e.tool,
          'mcp.transport': 'http',
          'mcp.trace_id': e.traceId,
          'mcp.auth.allowed': String(e.allowed),
          ...(e.deniedReason && { 'mcp.auth.denied_reason': e.deniedReason }),
          ...(e.accountId && { 'mcp.account.id': e.accountId, 'mcp.auth.scopes_required': JSON.stringify(scopes) }),
        }),
      );
      assert.deepEqual(
        span!.events.map((ev) => [ev.name, ev.attributes.find((a) => a.key === 'exception.message')?.value]),
        failure ? [['exception', failure]] : [],
      );
      // The span covers the whole call: the audit record's duration is the RPC within it.
      assert.ok(span!.durationMs >= e.durationMs, `span ${span!.durationMs} ms, audit ${e.durationMs} ms`);
      assert.match(span!.spanId, HEX16);
    }
  });
});
