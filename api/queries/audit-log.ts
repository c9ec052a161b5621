/**
 * Raw audit events of one tenant, newest first, optionally narrowed to one agent, tool or account.
 * Reads `audit_events_v1 FINAL` so that an event delivered twice is listed once.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { isoFromClickHouse, msFromNs, type TimeRange } from './params.ts';
import { count, selectRows } from './select-rows.ts';

export interface AuditLogFilter {
  agent?: string;
  tool?: string;
  accountId?: string;
}

export interface AuditLogEntry {
  eventId: string;
  /** RFC 3339, UTC, nanosecond precision. */
  timestamp: string;
  /** The gateway's trace id (go-micro `trace_id`). */
  traceId: string;
  agent: string;
  agentVersion: string;
  sessionId: string;
  /** Null for an anonymous call. */
  accountId: string | null;
  gateway: string;
  service: string;
  tool: string;
  allowed: boolean;
  deniedReason: string | null;
  durationMs: number;
  error: string | null;
  otelTraceId: string | null;
  otelSpanId: string | null;
  costUsd: number | null;
}

// Each optional filter adds a fixed condition; the values are always bound parameters.
const FILTERS: Record<keyof AuditLogFilter, string> = {
  agent: 'agent = {agent:String}',
  tool: 'tool = {tool:String}',
  accountId: 'account_id = {accountId:String}',
};

function sql(conditions: string[]): string {
  return `
SELECT
    toString(event_id)      AS event_id,
    timestamp,
    trace_id,
    agent,
    agent_version,
    session_id,
    account_id,
    gateway,
    service,
    tool,
    allowed,
    denied_reason,
    duration_ns,
    error,
    otel_trace_id,
    otel_span_id,
    toFloat64(cost_usd)     AS cost_usd
FROM audit_events_v1 FINAL
WHERE tenant = {tenant:String}
  AND timestamp >= {from:DateTime64(9, 'UTC')}
  AND timestamp < {to:DateTime64(9, 'UTC')}${conditions.map((c) => `\n  AND ${c}`).join('')}
ORDER BY timestamp DESC, event_id DESC
LIMIT {limit:UInt32}`;
}

const row = z.object({
  event_id: z.string(),
  timestamp: z.string(),
  trace_id: z.string(),
  agent: z.string(),
  agent_version: z.string(),
  session_id: z.string(),
  account_id: z.string(),
  gateway: z.string(),
  service: z.string(),
  tool: z.string(),
  allowed: z.boolean(),
  denied_reason: z.string(),
  duration_ns: count,
  error: z.string(),
  otel_trace_id: z.string(),
  otel_span_id: z.string(),
  cost_usd: z.number().nullable(),
});

export async function queryAuditLog(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  filter: AuditLogFilter,
  limit: number,
): Promise<AuditLogEntry[]> {
  const active = (Object.keys(FILTERS) as Array<keyof AuditLogFilter>).filter((k) => filter[k] !== undefined);
  const params = { tenant, ...range, limit, ...Object.fromEntries(active.map((k) => [k, filter[k]])) };
  const rows = await selectRows(clickhouse, 'auditLog', sql(active.map((k) => FILTERS[k])), params, row);
  return rows.map((r) => ({
    eventId: r.event_id,
    timestamp: isoFromClickHouse(r.timestamp),
    traceId: r.trace_id,
    agent: r.agent,
    agentVersion: r.agent_version,
    sessionId: r.session_id,
    accountId: r.account_id || null,
    gateway: r.gateway,
    service: r.service,
    tool: r.tool,
    allowed: r.allowed,
    deniedReason: r.denied_reason || null,
    durationMs: msFromNs(r.duration_ns) ?? 0,
    error: r.error || null,
    otelTraceId: r.otel_trace_id || null,
    otelSpanId: r.otel_span_id || null,
    costUsd: r.cost_usd,
  }));
}
