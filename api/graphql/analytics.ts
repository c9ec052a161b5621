/**
 * The aggregate questions, each over a range [from, to) and an optional AggregateFilter, answered from
 * the rollups (sql/0008, sql/0009) and exact to the nanosecond at the range's edges (rollup-plan.ts).
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { Kind, type GraphQLResolveInfo } from 'graphql';
import { tenantOf, type ApiContext } from '../context.ts';
import { NO_CACHE, type ClosedBuckets } from '../queries/closed-buckets.ts';
import { queryAgentActivity } from '../queries/agent-activity.ts';
import { queryDenials } from '../queries/denials.ts';
import { parseAggregateFilter, type AggregateFilterInput } from '../queries/filter.ts';
import { queryOverview } from '../queries/overview.ts';
import { badInput, parseLimit, parseTimeRange, type TimeRange } from '../queries/params.ts';
import { querySlowestTools, type ToolOrder } from '../queries/slowest-tools.ts';
import { buckets, formatStep, parseStep } from '../queries/step.ts';
import { queryTimeseries, queryTotalsOverTime, type GroupBy, type Metric, type Timeseries } from '../queries/timeseries.ts';
import { queryTopServices } from '../queries/top-services.ts';

export const typeDefs = /* GraphQL */ `
  type Query {
    "Totals of a tenant over a time range."
    overview(tenant: String, from: String, to: String, filter: AggregateFilter): Overview! @requires(role: VIEWER)
    "Per-agent activity, busiest agent first."
    agentActivity(from: String, to: String, filter: AggregateFilter): [AgentActivity!]! @requires(role: VIEWER)
    "Per-agent calls, busiest agent first."
    agents(tenant: String, from: String, to: String): [AgentStats!]! @requires(role: VIEWER) @deprecated(reason: "Use agentActivity.")
    "Services by calls, busiest first, with their share of all calls."
    topServices(from: String, to: String, filter: AggregateFilter, limit: Int = 10): [ServiceShare!]! @requires(role: VIEWER)
    "Tools by latency of allowed calls (p99 unless orderBy says otherwise), slowest first."
    slowestTools(tenant: String, from: String, to: String, filter: AggregateFilter, limit: Int = 10, orderBy: ToolOrder = P99): [ToolLatency!]! @requires(role: VIEWER)
    """
    One metric over time in buckets aligned to \`step\` ("30s", "5m", "1h", "1d"; at most 500 buckets; chosen
    when omitted, at most 200). With \`groupBy\`, one series per group for the \`top\` groups by the metric's
    total (by calls for latencies), the rest folded into one series with \`other: true\`.
    """
    timeseries(metric: Metric!, from: String, to: String, filter: AggregateFilter, step: String, groupBy: GroupBy = NONE, top: Int = 5): Timeseries! @requires(role: VIEWER)
    "Denied calls by reason, agent, tool and required scope (the \`limit\` largest of each), and over time."
    denials(from: String, to: String, filter: AggregateFilter, step: String, limit: Int = 20): Denials! @requires(role: VIEWER)
  }

  "Exact matches; omitted fields match anything. An empty string matches calls reported without that value."
  input AggregateFilter {
    agent: String
    service: String
    tool: String
    account: String
    outcome: Outcome
  }

  "DENIED: refused by the gateway (whatever its error); ERROR: allowed and failed; OK: the rest."
  enum Outcome {
    OK
    ERROR
    DENIED
  }

  enum ToolOrder {
    AVG
    P50
    P95
    P99
  }

  enum Metric {
    CALLS
    ERRORS
    DENIALS
    "Reported cost, in integer micro-dollars (exact)."
    COST
    "Mean duration of allowed calls, milliseconds (0 for a bucket without any)."
    AVG_MS
    "p95 duration of allowed calls, milliseconds (0 for a bucket without any)."
    P95_MS
  }

  enum GroupBy {
    NONE
    AGENT
    SERVICE
    TOOL
    ACCOUNT
  }

  type Overview {
    calls: Int!
    errors: Int!
    denials: Int!
    "Distinct agent names; calls reported without one count as one agent named \\"\\"."
    agents: Int!
    "Null when no call was allowed in the range."
    p99Ms: Float
    "Sum of reported costs; calls without a price count as 0."
    costUsd: Money!
  }

  type AgentActivity {
    "Empty when the gateway did not report an agent name."
    agent: String!
    calls: Int!
    "This agent's calls / all calls in the filtered range."
    share: Float!
    errors: Int!
    denials: Int!
    "errors / calls."
    errorRate: Float!
    "Latency of allowed calls; null when every call was denied."
    avgMs: Float
    p50Ms: Float
    p95Ms: Float
    p99Ms: Float
    "Distinct tools called."
    tools: Int!
    "Distinct accounts (anonymous calls are no account)."
    accounts: Int!
    "Sum of reported costs; calls without a price count as 0."
    costUsd: Money!
    firstSeen: String!
    lastSeen: String!
  }

  type AgentStats {
    "Empty when the gateway did not report an agent name."
    agent: String!
    calls: Int!
    errors: Int!
    denials: Int!
    p50Ms: Float
    p99Ms: Float
    costUsd: Money!
  }

  type ServiceShare {
    service: String!
    calls: Int!
    "This service's calls / all calls in the filtered range."
    share: Float!
    errors: Int!
    costUsd: Money!
  }

  type ToolLatency {
    service: String!
    tool: String!
    calls: Int!
    avgMs: Float
    p50Ms: Float
    p95Ms: Float
    p99Ms: Float
    maxMs: Float!
    "errors / calls."
    errorRate: Float!
  }

  type Timeseries {
    metric: Metric!
    "The step, e.g. \\"1h\\"."
    step: String!
    stepSeconds: Int!
    "Start of each bucket (RFC 3339, UTC)."
    buckets: [String!]!
    series: [Series!]!
  }

  type Series {
    "The agent, service, tool or account; null for groupBy NONE and for the folded series."
    key: String
    "True for the series folding every group beyond \`top\`."
    other: Boolean!
    "One value per bucket."
    values: [Float!]!
  }

  type DenialCount {
    key: String!
    count: Int!
  }

  type ToolDenials {
    service: String!
    tool: String!
    count: Int!
  }

  type Denials {
    total: Int!
    byReason: [DenialCount!]!
    byAgent: [DenialCount!]!
    byTool: [ToolDenials!]!
    "A call requiring several scopes counts under each."
    byScope: [DenialCount!]!
    step: String!
    stepSeconds: Int!
    buckets: [String!]!
    "Denials per bucket."
    overTime: [Int!]!
  }
`;

interface RangeArgs {
  tenant?: string | null;
  from?: string | null;
  to?: string | null;
  filter?: AggregateFilterInput | null;
}

const TOP_MAX = 50;

function parseTop(top: number | null | undefined): number {
  const value = top ?? 5;
  if (!Number.isInteger(value) || value < 1 || value > TOP_MAX) throw badInput(`top must be a whole number from 1 to ${TOP_MAX}, got ${value}`, 'top');
  return value;
}

/** The fields selected directly under this field; undefined when fragments make that unclear. */
function selectedFields(info: GraphQLResolveInfo): Set<string> | undefined {
  const names = new Set<string>();
  for (const node of info.fieldNodes) {
    for (const selection of node.selectionSet?.selections ?? []) {
      if (selection.kind !== Kind.FIELD) return undefined;
      names.add(selection.name.value);
    }
  }
  return names;
}

export function resolvers(clickhouse: ClickHouseClient, { closedBuckets = NO_CACHE }: { closedBuckets?: ClosedBuckets } = {}) {
  const totals = metricBatches<Metric, Timeseries>();
  // Each aggregate over a range that has ended is answered again from its kept answer while no call is
  // written into the range (closedBuckets.answer); the question names everything else it depends on.
  const answer = <T>(tenant: string, question: unknown[], range: TimeRange, compute: () => Promise<T>) => closedBuckets.answer(clickhouse, tenant, question, range, compute);
  return {
    Query: {
      overview: (_: unknown, args: RangeArgs, ctx: ApiContext) => {
        const tenant = tenantOf(ctx, args.tenant);
        const range = parseTimeRange(args);
        const filter = parseAggregateFilter(args.filter);
        return answer(tenant, ['overview', filter], range, () => queryOverview(clickhouse, tenant, range, filter, closedBuckets));
      },

      agentActivity: (_: unknown, args: RangeArgs, ctx: ApiContext, info: GraphQLResolveInfo) => {
        const fields = selectedFields(info);
        const tenant = tenantOf(ctx);
        const range = parseTimeRange(args);
        const filter = parseAggregateFilter(args.filter);
        const distinct = { tools: fields?.has('tools') ?? true, accounts: fields?.has('accounts') ?? true };
        return answer(tenant, ['agentActivity', filter, distinct], range, () => queryAgentActivity(clickhouse, tenant, range, filter, distinct, closedBuckets));
      },

      agents: async (_: unknown, args: RangeArgs, ctx: ApiContext) => {
        const tenant = tenantOf(ctx, args.tenant);
        const range = parseTimeRange(args);
        const rows = await answer(tenant, ['agents'], range, () => queryAgentActivity(clickhouse, tenant, range, {}, { tools: false, accounts: false }, closedBuckets));
        return rows.map(({ agent, calls, errors, denials, p50Ms, p99Ms, costUsd }) => ({ agent, calls, errors, denials, p50Ms, p99Ms, costUsd }));
      },

      topServices: (_: unknown, args: RangeArgs & { limit?: number | null }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        const range = parseTimeRange(args);
        const filter = parseAggregateFilter(args.filter);
        const limit = parseLimit(args.limit, 10);
        return answer(tenant, ['topServices', filter, limit], range, () => queryTopServices(clickhouse, tenant, range, filter, limit, closedBuckets));
      },

      slowestTools: (_: unknown, args: RangeArgs & { limit?: number | null; orderBy?: ToolOrder | null }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx, args.tenant);
        const range = parseTimeRange(args);
        const filter = parseAggregateFilter(args.filter);
        const limit = parseLimit(args.limit, 10);
        const orderBy = args.orderBy ?? 'P99';
        return answer(tenant, ['slowestTools', filter, limit, orderBy], range, () => querySlowestTools(clickhouse, tenant, range, filter, limit, orderBy, closedBuckets));
      },

      timeseries: async (
        _: unknown,
        args: RangeArgs & { metric: Metric; step?: string | null; groupBy?: GroupBy | null; top?: number | null },
        ctx: ApiContext,
      ) => {
        const tenant = tenantOf(ctx);
        const range = parseTimeRange(args);
        const filter = parseAggregateFilter(args.filter);
        const top = parseTop(args.top);
        const steps = buckets(range, parseStep(args.step));
        const groupBy = args.groupBy ?? 'NONE';
        const series = await answer(tenant, ['timeseries', filter, args.metric, steps, groupBy, groupBy === 'NONE' ? null : top], range, () =>
          groupBy === 'NONE'
            ? totals.of(ctx, [tenant, range, filter, steps], args.metric, (metrics) => queryTotalsOverTime(clickhouse, tenant, range, filter, metrics, steps, closedBuckets))
            : queryTimeseries(clickhouse, tenant, range, filter, args.metric, steps, groupBy, top, closedBuckets),
        );
        return { ...series, step: formatStep(series.stepSeconds) };
      },

      denials: async (_: unknown, args: RangeArgs & { step?: string | null; limit?: number | null }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        const range = parseTimeRange(args);
        const filter = parseAggregateFilter(args.filter);
        const limit = parseLimit(args.limit, 20);
        const steps = buckets(range, parseStep(args.step));
        const result = await answer(tenant, ['denials', filter, steps, limit], range, () => queryDenials(clickhouse, tenant, range, filter, steps, limit));
        return { ...result, step: formatStep(result.stepSeconds) };
      },
    },
  };
}

/**
 * Fields of one request that ask for different metrics of the same question (`key`), answered by one
 * statement: graphql-js calls sibling resolvers in the same turn of the event loop, so the first
 * schedules the read for the next turn and the others join it. A field that comes later starts a read
 * of its own.
 */
function metricBatches<M, T>() {
  const open = new WeakMap<object, Map<string, { metrics: Set<M>; answer: Promise<Map<M, T>> }>>();
  return {
    async of(request: object, key: unknown, metric: M, read: (metrics: M[]) => Promise<Map<M, T>>): Promise<T> {
      let batches = open.get(request);
      if (!batches) open.set(request, (batches = new Map()));
      const id = JSON.stringify(key);
      let batch = batches.get(id);
      if (!batch) {
        const metrics = new Set<M>();
        const answer = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
          batches.delete(id);
          return read([...metrics]);
        });
        batches.set(id, (batch = { metrics, answer }));
      }
      batch.metrics.add(metric);
      const answer = (await batch.answer).get(metric);
      if (answer === undefined) throw new Error(`the batched read did not answer ${String(metric)}`);
      return answer;
    },
  };
}
