/** Aggregates over the rollups: totals, per-agent activity, slowest tools. */
import type { ClickHouseClient } from '@clickhouse/client';
import { tenantOf, type ApiContext } from '../context.ts';
import { queryAgents } from '../queries/agents.ts';
import { queryOverview } from '../queries/overview.ts';
import { parseLimit, parseTimeRange } from '../queries/params.ts';
import { querySlowestTools } from '../queries/slowest-tools.ts';

export const typeDefs = /* GraphQL */ `
  type Query {
    "Totals of a tenant over a time range."
    overview(tenant: String, from: String, to: String): Overview! @requires(role: VIEWER)
    "Per-agent activity, busiest agent first."
    agents(tenant: String, from: String, to: String): [AgentStats!]! @requires(role: VIEWER)
    "Tools by p99 duration, slowest first."
    slowestTools(tenant: String, from: String, to: String, limit: Int = 10): [ToolLatency!]! @requires(role: VIEWER)
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
`;

interface RangeArgs {
  tenant?: string | null;
  from?: string | null;
  to?: string | null;
}

export function resolvers(clickhouse: ClickHouseClient) {
  return {
    Query: {
      overview: (_: unknown, args: RangeArgs, ctx: ApiContext) => queryOverview(clickhouse, tenantOf(ctx, args.tenant), parseTimeRange(args)),

      agents: (_: unknown, args: RangeArgs, ctx: ApiContext) => queryAgents(clickhouse, tenantOf(ctx, args.tenant), parseTimeRange(args)),

      slowestTools: (_: unknown, args: RangeArgs & { limit?: number | null }, ctx: ApiContext) =>
        querySlowestTools(clickhouse, tenantOf(ctx, args.tenant), parseTimeRange(args), parseLimit(args.limit, 10)),
    },
  };
}
