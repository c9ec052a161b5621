/** Audit records for the alert tests, inserted into audit_events_v1 so the views fill the rollups. */
import assert from 'node:assert/strict';
import type { ClickHouseClient } from '@clickhouse/client';
import { normalizeAuditRecord, toAuditRow } from '../../model/audit-event.ts';
import { formatRfc3339 } from '../../model/timestamp.ts';

export interface Call {
  /** Epoch milliseconds. */
  at: number;
  agent: string;
  tool: string;
  session?: string;
  account?: string;
  ms?: number;
  error?: boolean;
  denied?: boolean;
  cost?: number;
}

let serial = 0;

export function auditRow(tenant: string, c: Call) {
  serial++;
  const normalized = normalizeAuditRecord({
    tenant,
    trace_id: `${tenant}-${serial}`,
    timestamp: formatRfc3339({ epochMs: c.at, subMsNanos: serial % 1_000_000 }),
    tool: c.tool,
    allowed: !c.denied,
    ...(c.denied && { denied_reason: 'missing scope' }),
    ...(c.account && { account_id: c.account }),
    duration: (c.ms ?? 20) * 1_000_000,
    ...(c.error && { error: 'upstream failed' }),
    ...(c.cost !== undefined && { cost_usd: c.cost }),
    agent: c.agent,
    agent_version: '1.0.0',
    gateway: 'gw-1',
    session_id: c.session ?? `${c.agent}-session`,
  });
  assert.ok(normalized.ok, JSON.stringify(!normalized.ok && normalized.issues));
  return toAuditRow(normalized.value);
}

export async function insertCalls(clickhouse: ClickHouseClient, tenant: string, calls: Call[]): Promise<void> {
  for (let i = 0; i < calls.length; i += 5000) {
    await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: calls.slice(i, i + 5000).map((c) => auditRow(tenant, c)) });
  }
}

/** `count` calls spread evenly over the 10-minute window `k` before `atMs` (window 0 ends at atMs). */
export function windowCalls(atMs: number, k: number, count: number, call: Omit<Call, 'at'>, windowMs = 600_000): Call[] {
  const start = atMs - (k + 1) * windowMs;
  return Array.from({ length: count }, (_, i) => ({ ...call, at: start + Math.floor(((i + 0.5) * windowMs) / count) }));
}
