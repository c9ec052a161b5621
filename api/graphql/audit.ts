/** Raw records: the audit log, one event, a trace by either id, a session. */
import type { ClickHouseClient } from '@clickhouse/client';
import { tenantOf, type ApiContext } from '../context.ts';
import { queryAuditEvent } from '../queries/audit-event.ts';
import { queryAuditLog } from '../queries/audit-log.ts';
import { parseAuditLogFilter, parseEventId, parseFirst, parseId, type AuditLogFilterInput } from '../queries/audit-params.ts';
import type { AuditLogEntry, Page } from '../queries/audit-rows.ts';
import { decodeCursor, encodeCursor, type CursorList } from '../queries/cursor.ts';
import { querySession } from '../queries/session.ts';
import { queryTrace } from '../queries/trace.ts';

export const typeDefs = /* GraphQL */ `
  type Query {
    """
    Raw audit events, newest first, a page at a time: pass a page's \`pageInfo.endCursor\` as \`after\`
    for the next one. Pages are keyed on (timestamp, eventId), so records stored meanwhile never shift
    a page: paging to the end lists each record once. \`first\`: 1 to 500. A call reported both by its
    span and by its audit record is listed once, as the audit record.
    """
    auditLog(tenant: String, filter: AuditLogFilter, first: Int = 50, after: String): AuditEventConnection! @requires(role: VIEWER)
    "One audit event by its eventId; null when the tenant has none."
    auditEvent(tenant: String, id: ID!): AuditEvent @requires(role: VIEWER)
    """
    One trace by the gateway's trace id (go-micro's mcp.trace_id, the audit events' traceId) or an
    OpenTelemetry trace id (32 hex digits): its calls and its spans. Null when the tenant has neither.
    """
    trace(tenant: String, id: String!): Trace @requires(role: VIEWER)
    "The calls of one MCP session, oldest first, a page at a time (\`first\`: 1 to 500)."
    session(tenant: String, id: String!, first: Int = 100, after: String): AuditEventConnection! @requires(role: VIEWER)
  }

  "Every field narrows the list; omitted fields match everything. Strings match exactly unless said otherwise."
  input AuditLogFilter {
    "Inclusive; no lower bound when omitted."
    from: String
    "Exclusive; no upper bound when omitted."
    to: String
    agent: String
    service: String
    tool: String
    "The account id; the empty string matches anonymous calls."
    account: String
    outcome: Outcome
    session: String
    "Either the gateway's trace id or an OpenTelemetry trace id."
    traceId: String
    "Text in the error or the denial reason, any case."
    text: String
  }

  "DENIED: the gateway refused the call. ERROR: it ran and failed. OK: it ran and succeeded."
  enum Outcome {
    OK
    ERROR
    DENIED
  }

  type AuditEventConnection {
    edges: [AuditEventEdge!]!
    pageInfo: PageInfo!
  }

  type AuditEventEdge {
    cursor: String!
    node: AuditEvent!
  }

  type PageInfo {
    hasNextPage: Boolean!
    "Always false: pages go forward only."
    hasPreviousPage: Boolean!
    startCursor: String
    "Pass as \`after\` for the next page; null on an empty page."
    endCursor: String
  }

  type AuditEvent {
    eventId: ID!
    timestamp: String!
    "The gateway's trace id; pass it to Query.trace."
    traceId: String!
    agent: String!
    agentVersion: String!
    sessionId: String!
    "Null for an anonymous call."
    accountId: String
    gateway: String!
    "How the agent reached the gateway (e.g. http, stdio), as reported."
    transport: String!
    service: String!
    tool: String!
    scopesRequired: [String!]!
    allowed: Boolean!
    outcome: Outcome!
    deniedReason: String
    durationMs: Float!
    error: String
    "OpenTelemetry trace id, when the call was traced; pass it to Query.trace."
    otelTraceId: String
    otelSpanId: String
    requestBytes: Float!
    responseBytes: Float!
    "Null when the price is not known."
    costUsd: Money
    "AUDIT: the gateway's audit record. SPAN: derived from an mcp.tool.call span (no audit record came)."
    source: EventSource!
    attributes: [Attribute!]!
  }

  enum EventSource {
    AUDIT
    SPAN
  }

  type Trace {
    "The id asked for."
    id: String!
    "The calls that carry the id (as traceId or otelTraceId), in time order."
    calls: [AuditEvent!]!
    "The OpenTelemetry trace ids of the calls and spans listed."
    otelTraceIds: [String!]!
    "The span tree, depth first: each span is followed by its children, in start order; depth 0 is a root."
    spans: [Span!]!
    "True when the trace has more than 1,000 calls or 10,000 spans: the first are listed."
    truncated: Boolean!
  }

  type Span {
    traceId: String!
    spanId: String!
    "Null for a root span."
    parentSpanId: String
    depth: Int!
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

interface PageArgs {
  tenant?: string | null;
  first?: number | null;
  after?: string | null;
}

function connection(list: CursorList, page: Page<AuditLogEntry>) {
  const edges = page.items.map(({ key, node }) => ({ cursor: encodeCursor(list, key), node }));
  return {
    edges,
    pageInfo: {
      hasNextPage: page.hasNextPage,
      hasPreviousPage: false,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges[edges.length - 1]?.cursor ?? null,
    },
  };
}

export function resolvers(clickhouse: ClickHouseClient) {
  return {
    Query: {
      auditLog: async (_: unknown, args: PageArgs & { filter?: AuditLogFilterInput | null }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx, args.tenant);
        const filter = parseAuditLogFilter(args.filter);
        const first = parseFirst(args.first);
        const after = args.after == null ? undefined : decodeCursor('auditLog', args.after);
        return connection('auditLog', await queryAuditLog(tenant, clickhouse, filter, first, after));
      },

      auditEvent: (_: unknown, args: { tenant?: string | null; id: string }, ctx: ApiContext) =>
        queryAuditEvent(tenantOf(ctx, args.tenant), clickhouse, parseEventId(args.id)),

      trace: (_: unknown, args: { tenant?: string | null; id: string }, ctx: ApiContext) =>
        queryTrace(tenantOf(ctx, args.tenant), clickhouse, parseId(args.id)),

      session: async (_: unknown, args: PageArgs & { id: string }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx, args.tenant);
        const id = parseId(args.id);
        const first = parseFirst(args.first, 100);
        const after = args.after == null ? undefined : decodeCursor('session', args.after);
        return connection('session', await querySession(tenant, clickhouse, id, first, after));
      },
    },
    AuditEvent: {
      source: (event: AuditLogEntry) => event.source.toUpperCase(),
    },
  };
}
