/**
 * The API over a real listening server on the real embedded ClickHouse, for the hardening tests: a
 * viewer key per tenant (`key-<tenant>`), audit records inserted through the real tables, and a
 * request helper that keeps the HTTP status.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { createApi, type Api, type ApiDependencies } from '../../api/app.ts';
import type { Caller } from '../../api/context.ts';
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import type { ClickHouseClient } from '../../core/clickhouse.ts';
import { normalizeAuditRecord, toAuditRow, type AuditRecordInput } from '../../model/audit-event.ts';

/** `key-<tenant>` is a viewer key of that tenant, for any tenant name. */
export const KEYS: KeyStore = {
  size: 1,
  lookup: (secret) => (/^key-[a-z]+$/.test(secret) ? ({ tenant: secret.slice(4), role: 'viewer', name: secret } satisfies Caller) : undefined),
};

export interface ApiServer {
  url: string;
  api: Api;
  close(): Promise<void>;
}

/** The API with the `key-<tenant>` keys; silent unless a test passes a logger to read what it logs. */
export async function startApi(deps: Omit<ApiDependencies, 'logger'> & { logger?: ApiDependencies['logger'] }): Promise<ApiServer> {
  const api = createApi({ logger: pino({ level: 'silent' }), keys: KEYS, ...deps });
  const server: Server = createServer(api.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    api,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface GraphQLAnswer {
  status: number;
  body: {
    data?: Record<string, any> | null;
    errors?: Array<{ message: string; extensions?: Record<string, any> }>;
  };
}

/** POSTs an operation as `application/json` (what most clients send) with the tenant's key. */
export async function post(url: string, query: string, { tenant = 'acme', variables = {} as Record<string, unknown> } = {}): Promise<GraphQLAnswer> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer key-${tenant}` },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  let body: GraphQLAnswer['body'];
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`HTTP ${response.status}, not JSON: ${text.slice(0, 300)}`);
  }
  return { status: response.status, body };
}

/** The codes of an answer's errors, in order. */
export function codes(answer: GraphQLAnswer): unknown[] {
  return (answer.body.errors ?? []).map((e) => e.extensions?.code);
}

/** Inserts one allowed call per (tenant, tool, second) given, at `baseMs` + second. */
export async function insertCalls(clickhouse: ClickHouseClient, calls: Array<{ tenant: string; tool: string; atMs: number; ms: number }>): Promise<void> {
  const rows = calls.map((c, i) => {
    const input: AuditRecordInput = {
      tenant: c.tenant,
      trace_id: `${c.tenant}-harness-${i}`,
      timestamp: new Date(c.atMs).toISOString(),
      tool: c.tool,
      allowed: true,
      duration: c.ms * 1_000_000,
      agent: 'agent-1',
    };
    const normalized = normalizeAuditRecord(input);
    assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
    return toAuditRow(normalized.value);
  });
  await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: rows });
}
