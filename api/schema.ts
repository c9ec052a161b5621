/**
 * The GraphQL schema: SDL and resolvers. Resolvers only check arguments (./queries/params.ts) and call
 * one query each (./queries/*.ts); the SQL and the row mapping live with the query.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { createSchema } from 'graphql-yoga';
import { queryAgents } from './queries/agents.ts';
import { queryAuditLog } from './queries/audit-log.ts';
import { queryOverview } from './queries/overview.ts';
import { parseFilter, parseLimit, parseTenant, parseTimeRange, parseTraceId } from './queries/params.ts';
import { querySlowestTools } from './queries/slowest-tools.ts';
import { queryTrace } from './queries/trace.ts';

export const typeDefs = /* GraphQL */ `
  """
  Times are ISO-8601 (RFC 3339) strings with a time zone, e.g. "2026-11-24T10:00:00Z"; times returned are
  UTC with nanosecond precision. A range is [from, to): \`to\` defaults to now, \`from\` to an hour before \`to\`.
  Aggregates (overview, agents, slowestTools) come from per-minute rollups, so their range resolves to the
  whole minutes it overlaps. Durations are milliseconds. Percentiles cover allowed calls only.
  """
  type Query {
    "Totals of a tenant over a time range."
    overview(tenant: String = "default", from: String, to: String): Overview!
    "Per-agent activity, busiest agent first."
    agents(tenant: String = "default", from: String, to: String): [AgentStats!]!
    "Tools by p99 duration, slowest first."
    slowestTools(tenant: String = "default", from: String, to: String, limit: Int = 10): [ToolLatency!]!
    "Raw audit events, newest first. agent, tool and accountId filter by exact match."
    auditLog(
      tenant: String = "default"
      from: String
      to: String
      agent: String
      tool: String
      accountId: String
      limit: Int = 100
    ): [AuditEvent!]!
    "The spans of one trace (32 hex digits) in start order; null when the tenant has none."
    trace(tenant: String = "default", traceId: String!): Trace
  }

  type Overview {
    calls: Int!
    errors: Int!
    denials: Int!
    "Distinct agent names; calls reported without one count as one agent named \\"\\"."
    agents: Int!
    "Null when no call was allowed in the range."
    p99Ms: Float
    "Sum of known costs in US dollars; calls without a price count as 0."
    costUsd: Float!
  }

  type AgentStats {
    "Empty when the gateway did not report an agent name."
    agent: String!
    calls: Int!
    errors: Int!
    denials: Int!
    p50Ms: Float
    p99Ms: Float
    costUsd: Float!
  }

  type ToolLatency {
    service: String!
    tool: String!
    calls: Int!
    p50Ms: Float
    p95Ms: Float
    p99Ms: Float
    maxMs: Float!
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

export interface SchemaDependencies {
  clickhouse: ClickHouseClient;
}

interface RangeArgs {
  tenant?: string | null;
  from?: string | null;
  to?: string | null;
}

export function createApiSchema({ clickhouse }: SchemaDependencies) {
  return createSchema({
    typeDefs,
    resolvers: {
      Query: {
        overview: (_: unknown, args: RangeArgs) =>
          queryOverview(clickhouse, parseTenant(args.tenant), parseTimeRange(args)),

        agents: (_: unknown, args: RangeArgs) =>
          queryAgents(clickhouse, parseTenant(args.tenant), parseTimeRange(args)),

        slowestTools: (_: unknown, args: RangeArgs & { limit?: number | null }) =>
          querySlowestTools(clickhouse, parseTenant(args.tenant), parseTimeRange(args), parseLimit(args.limit, 10)),

        auditLog: (
          _: unknown,
          args: RangeArgs & { agent?: string | null; tool?: string | null; accountId?: string | null; limit?: number | null },
        ) =>
          queryAuditLog(
            clickhouse,
            parseTenant(args.tenant),
            parseTimeRange(args),
            {
              agent: parseFilter(args.agent, 'agent'),
              tool: parseFilter(args.tool, 'tool'),
              accountId: parseFilter(args.accountId, 'accountId'),
            },
            parseLimit(args.limit, 100),
          ),

        trace: (_: unknown, args: { tenant?: string | null; traceId: string }) =>
          queryTrace(clickhouse, parseTenant(args.tenant), parseTraceId(args.traceId)),
      },
    },
  });
}
