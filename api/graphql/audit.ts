/** Raw records: the audit log and traces. */
import type { ClickHouseClient } from '@clickhouse/client';
import { tenantOf, type ApiContext } from '../context.ts';
import { queryAuditLog } from '../queries/audit-log.ts';
import { parseFilter, parseLimit, parseTimeRange, parseTraceId } from '../queries/params.ts';
import { queryTrace } from '../queries/trace.ts';

export const typeDefs = /* GraphQL */ `
  type Query {
    "Raw audit events, newest first. agent, tool and accountId filter by exact match."
    auditLog(tenant: String, from: String, to: String, agent: String, tool: String, accountId: String, limit: Int = 100): [AuditEvent!]! @requires(role: VIEWER)
    "The spans of one trace (32 hex digits) in start order; null when the tenant has none."
    trace(tenant: String, traceId: String!): Trace @requires(role: VIEWER)
  }

  type AuditEvent {
    eventId: ID!
    timestamp: String!
    "The gateway's trace id."
    traceId: String!
    agent: String!
    agentVersion: String!
    sessionId: String!
    "Null for an anonymous call."
    accountId: String
    gateway: String!
    service: String!
    tool: String!
    allowed: Boolean!
    deniedReason: String
    durationMs: Float!
    error: String
    "OpenTelemetry trace id, when the call was traced; pass it to Query.trace."
    otelTraceId: String
    otelSpanId: String
    "Null when the price is not known."
    costUsd: Float
  }

  type Trace {
    traceId: String!
    spans: [Span!]!
  }

  type Span {
    spanId: String!
    "Null for a root span."
    parentSpanId: String
    name: String!
    kind: String!
    service: String!
    startTime: String!
    durationMs: Float!
    "unset, ok or error."
    statusCode: String!
    statusMessage: String
    attributes: [Attribute!]!
    events: [SpanEvent!]!
  }

  type SpanEvent {
    time: String!
    name: String!
    attributes: [Attribute!]!
  }

  type Attribute {
    key: String!
    value: String!
  }
`;

interface AuditLogArgs {
  tenant?: string | null;
  from?: string | null;
  to?: string | null;
  agent?: string | null;
  tool?: string | null;
  accountId?: string | null;
  limit?: number | null;
}

export function resolvers(clickhouse: ClickHouseClient) {
  return {
    Query: {
      auditLog: (_: unknown, args: AuditLogArgs, ctx: ApiContext) =>
        queryAuditLog(
          clickhouse,
          tenantOf(ctx, args.tenant),
          parseTimeRange(args),
          { agent: parseFilter(args.agent, 'agent'), tool: parseFilter(args.tool, 'tool'), accountId: parseFilter(args.accountId, 'accountId') },
          parseLimit(args.limit, 100),
        ),

      trace: (_: unknown, args: { tenant?: string | null; traceId: string }, ctx: ApiContext) =>
        queryTrace(clickhouse, tenantOf(ctx, args.tenant), parseTraceId(args.traceId)),
    },
  };
}
