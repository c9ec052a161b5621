/**
 * The dashboard's one GraphQL request (every panel in one round trip) and the types of its answer,
 * the API's own (type imports only: nothing of the server is bundled).
 */

import type { AgentStats } from '../../../api/queries/agent-activity.ts';
import type { Money } from '../../../api/money.ts';
import type { AuditLogEntry } from '../../../api/queries/audit-log.ts';
import type { Overview } from '../../../api/queries/overview.ts';
import type { ToolLatency } from '../../../api/queries/slowest-tools.ts';

export type { AgentStats, Overview, ToolLatency };

/** The audit log fields the dashboard asks for. */
export type AuditEvent = Pick<
  AuditLogEntry,
  'eventId' | 'timestamp' | 'traceId' | 'agent' | 'accountId' | 'tool' | 'allowed' | 'deniedReason' | 'durationMs' | 'error'
> & { costUsd: Pick<Money, 'amount'> | null };

/** The API key the dashboard reads with (`Query.me`). */
export interface Me {
  tenant: string;
  role: 'VIEWER' | 'OPERATOR' | 'BILLING' | 'ADMIN';
  name: string;
}

export interface Dashboard {
  me: Me;
  overview: Overview;
  agents: AgentStats[];
  slowestTools: ToolLatency[];
  /** The newest page of the audit log (a connection: the events are its edges' nodes). */
  auditLog: { edges: Array<{ node: AuditEvent }> };
}

/** The tenant is the API key's: the dashboard never names one. */
export interface DashboardVariables {
  from: string;
  to: string;
}

const QUERY = /* GraphQL */ `
  query Dashboard($from: String!, $to: String!) {
    me { tenant role name }
    overview(from: $from, to: $to) { calls errors denials agents p99Ms costUsd { amount micros currency } }
    agents(from: $from, to: $to) { agent calls errors denials p50Ms p99Ms costUsd { amount micros currency } }
    slowestTools(from: $from, to: $to, limit: 10) { service tool calls p50Ms p95Ms p99Ms maxMs }
    auditLog(filter: { from: $from, to: $to }, first: 50) {
      edges { node { eventId timestamp traceId agent accountId tool allowed deniedReason durationMs error costUsd { amount } } }
    }
  }
`;

export class ApiError extends Error {
  override readonly name: string = 'ApiError';
}

/** The API wants a (different) key: none was sent, it is not known, or its role may not read. */
export class KeyRequiredError extends ApiError {
  override readonly name = 'KeyRequiredError';
  constructor(
    message: string,
    readonly code: 'UNAUTHENTICATED' | 'FORBIDDEN',
  ) {
    super(message);
  }
}

export async function fetchDashboard(variables: DashboardVariables, apiKey: string | null, signal: AbortSignal): Promise<Dashboard> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  const response = await fetch('/graphql', {
    method: 'POST',
    headers,
    body: JSON.stringify({ query: QUERY, variables, operationName: 'Dashboard' }),
    signal,
  });
  let body: { data?: Dashboard | null; errors?: Array<{ message: string; extensions?: { code?: string } }> };
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The API answered ${response.status} ${response.statusText} without a GraphQL response.`);
  }
  const refusal = body.errors?.find((e) => e.extensions?.code === 'UNAUTHENTICATED' || e.extensions?.code === 'FORBIDDEN');
  if (refusal) throw new KeyRequiredError(refusal.message, refusal.extensions!.code as 'UNAUTHENTICATED' | 'FORBIDDEN');
  if (body.errors?.length) throw new ApiError(body.errors.map((e) => e.message).join('; '));
  if (!body.data) throw new ApiError(`The API answered ${response.status} without data.`);
  return body.data;
}
