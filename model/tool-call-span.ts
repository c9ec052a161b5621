/**
 * A gateway that only exports traces still shows up in the dashboards: the server span of each MCP
 * tool call yields the same tool-call facts an audit record carries. Two namings are read:
 *
 * - go-micro v6's (and our collector's): a span named `mcp.tool.call`, `mcp.tool.name`, `mcp.auth.*`,
 *   and the call's own id in `mcp.trace_id`, which the audit record of the same call carries as `trace_id`.
 * - OpenTelemetry's MCP semantic conventions (semconv v1.41.0, status Development; see MCP_SEMCONV): a
 *   SERVER span with `mcp.method.name = tools/call` and the tool in `gen_ai.tool.name` (or the older
 *   `mcp.tool.name`), `error.type` when it failed, `mcp.session.id`, `gen_ai.agent.*`, `network.*`.
 *   Client spans of the same call are not facts: the server's span is, once.
 *
 * The writer pairs the reports of one call by tenant, trace id and tool (ingest/clickhouse-writer.ts).
 * A span without `mcp.trace_id` has only its trace's id, shared by every call of the trace: for it (and
 * for an audit record whose `trace_id` is its `otel_trace_id`), the span id tells the calls apart.
 */
import { deriveEventId } from './ids.ts';
import { LIMITS, serviceOfTool, type AuditRow } from './audit-event.ts';
import { MCP_ATTR, MCP_EXT_ATTR, MCP_SEMCONV, TOOL_CALL_SPAN, type SpanRow } from './span.ts';
import { formatClickHouse, instantFromEpochNanos } from './timestamp.ts';

/** The tool-call row a span stands for, or undefined when the span is not the server span of an MCP tool call. */
export function toolCallFromSpan(span: SpanRow): AuditRow | undefined {
  const a = span.attributes;
  const tool = a[MCP_SEMCONV.toolName] || a[MCP_ATTR.toolName];
  if (!tool || !isToolCallSpan(span)) return undefined;

  const start = instantFromEpochNanos(BigInt(span.start_time_unix_nano));
  const allowed = a[MCP_ATTR.authAllowed] !== 'false';
  const traceId = clip(a[MCP_ATTR.traceId] || span.trace_id, LIMITS.idLength);
  const failed = span.status_code === 'error' || Boolean(a[MCP_SEMCONV.errorType]);
  const attributes: Record<string, string> = {};
  if (a[MCP_ATTR.rateLimited] === 'true') attributes[MCP_ATTR.rateLimited] = 'true';

  return {
    event_id: deriveEventId(start.epochMs, [span.tenant, 'span', span.trace_id, span.span_id]),
    tenant: span.tenant,
    timestamp: formatClickHouse(start),
    trace_id: traceId,
    tool: clip(tool, LIMITS.toolLength),
    service: serviceOfTool(tool),
    account_id: clip(a[MCP_ATTR.accountId] ?? '', LIMITS.nameLength),
    scopes_required: parseScopes(a[MCP_ATTR.scopesRequired]),
    allowed: allowed ? 1 : 0,
    denied_reason: allowed ? '' : clip(a[MCP_ATTR.authDeniedReason] || span.status_message, LIMITS.textLength),
    // go-micro reports no duration for a denied call: it never ran.
    duration_ns: allowed ? Number(span.duration_ns) : 0,
    error: allowed && failed ? clip(span.status_message || a[MCP_SEMCONV.errorType] || 'error', LIMITS.textLength) : '',
    is_error: allowed && failed ? 1 : 0,
    agent: clip(a[MCP_EXT_ATTR.clientName] || a[MCP_SEMCONV.agentName] || a[MCP_SEMCONV.agentId] || '', LIMITS.nameLength),
    agent_version: clip(a[MCP_EXT_ATTR.clientVersion] ?? '', LIMITS.nameLength),
    session_id: clip(a[MCP_EXT_ATTR.sessionId] ?? '', LIMITS.idLength),
    gateway: clip(span.service, LIMITS.nameLength),
    transport: clip(transportOf(a), 64),
    otel_trace_id: span.trace_id,
    otel_span_id: span.span_id,
    request_bytes: 0,
    response_bytes: 0,
    cost_usd: null,
    attributes,
    source: 'span',
  };
}

function isToolCallSpan(span: SpanRow): boolean {
  if (span.name === TOOL_CALL_SPAN) return true;
  return span.attributes[MCP_SEMCONV.methodName] === MCP_SEMCONV.toolsCall && span.kind === 'server';
}

/**
 * go-micro's `mcp.transport` (stdio, http), else the conventions' network attributes in those terms:
 * `network.protocol.name` (http, websocket), else `network.transport` with `pipe` (stdio's) as stdio.
 */
function transportOf(a: Record<string, string>): string {
  const named = a[MCP_ATTR.transport] || a[MCP_SEMCONV.networkProtocolName];
  if (named) return named;
  const transport = a[MCP_SEMCONV.networkTransport] ?? '';
  return transport === 'pipe' ? 'stdio' : transport;
}

/** OTLP string arrays arrive flattened to JSON text (`["users:read"]`). */
function parseScopes(text: string | undefined): string[] {
  if (!text) return [];
  try {
    const parsed: unknown = JSON.parse(text);
    if (Array.isArray(parsed)) {
      return parsed
        .filter((s): s is string => typeof s === 'string')
        .slice(0, LIMITS.scopes)
        .map((s) => clip(s, LIMITS.scopeLength));
    }
  } catch {
    // a plain string
  }
  return [clip(text, LIMITS.scopeLength)];
}

function clip(text: string, max: number): string {
  return text.length > max ? text.slice(0, max) : text;
}
