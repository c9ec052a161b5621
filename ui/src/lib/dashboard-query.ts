/**
 * The dashboard's one GraphQL request (every panel in one round trip) and the types of its answer,
 * the API's own (type imports only: nothing of the server is bundled).
 */

import type { AgentStats } from '../../../api/queries/agent-activity.ts';
import type { AuditLogEntry } from '../../../api/queries/audit-log.ts';
import type { Overview } from '../../../api/queries/overview.ts';
import type { ToolLatency } from '../../../api/queries/slowest-tools.ts';

export type { AgentStats, Overview, ToolLatency };

/** The audit log fields the dashboard asks for. */
export type AuditEvent = Pick<
  AuditLogEntry,
  'eventId' | 'timestamp' | 'traceId' | 'agent' | 'accountId' | 'tool' | 'allowed' | 'deniedReason' | 'durationMs' | 'error' | 'costUsd'
>;

export interface Dashboard {
  overview: Overview;
  agents: AgentStats[];
  slowestTools: ToolLatency[];
  auditLog: AuditEvent[];
}

export interface DashboardVariables {
  tenant: string;
  from: string;
  to: string;
}

const QUERY = /* GraphQL */ `
  query Dashboard($tenant: String!, $from: String!, $to: String!) {
    overview(tenant: $tenant, from: $from, to: $to) { calls errors denials agents p99Ms costUsd { amount micros currency } }
    agents(tenant: $tenant, from: $from, to: $to) { agent calls errors denials p50Ms p99Ms costUsd { amount micros currency } }
    slowestTools(tenant: $tenant, from: $from, to: $to, limit: 10) { service tool calls p50Ms p95Ms p99Ms maxMs }
    auditLog(tenant: $tenant, from: $from, to: $to, limit: 50) {
      eventId timestamp traceId agent accountId tool allowed deniedReason durationMs error costUsd
    }
  }
`;

export class ApiError extends Error {
  override readonly name = 'ApiError';
}

export async function fetchDashboard(variables: DashboardVariables, signal: AbortSignal): Promise<Dashboard> {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' },
    body: JSON.stringify({ query: QUERY, variables, operationName: 'Dashboard' }),
    signal,
  });
  let body: { data?: Dashboard | null; errors?: Array<{ message: string }> };
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The API answered ${response.status} ${response.statusText} without a GraphQL response.`);
  }
  if (body.errors?.length) throw new ApiError(body.errors.map((e) => e.message).join('; '));
  if (!body.data) throw new ApiError(`The API answered ${response.status} without data.`);
  return body.data;
}
