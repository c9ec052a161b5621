/**
 * A gateway that only exports traces still shows up in the dashboards: each `mcp.tool.call` span
 * (go-micro v6's, or our collector's) yields the same tool-call facts an audit record carries.
 * The call is identified by go-micro's per-call `mcp.trace_id`, which the audit record of the same
 * call carries as `trace_id`; the writer uses that to count a call reported both ways once.
 */
import { deriveEventId } from './ids.ts';
import { LIMITS, serviceOfTool, type AuditRow } from './audit-event.ts';
import { MCP_ATTR, MCP_EXT_ATTR, TOOL_CALL_SPAN, type SpanRow } from './span.ts';
import { formatClickHouse, instantFromEpochNanos } from './timestamp.ts';

/** The tool-call row a span stands for, or undefined when the span is not an MCP tool call. */
export function toolCallFromSpan(span: SpanRow): AuditRow | undefined {
  const a = span.attributes;
  const tool = a[MCP_ATTR.toolName];
  if (span.name !== TOOL_CALL_SPAN || !tool) return undefined;

  const start = instantFromEpochNanos(BigInt(span.start_time_unix_nano));
  const allowed = a[MCP_ATTR.authAllowed] !== 'false';
  const traceId = clip(a[MCP_ATTR.traceId] || span.trace_id, LIMITS.idLength);
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
    error: allowed && span.status_code === 'error' ? clip(span.status_message || 'error', LIMITS.textLength) : '',
    is_error: allowed && span.status_code === 'error' ? 1 : 0,
    agent: clip(a[MCP_EXT_ATTR.clientName] ?? '', LIMITS.nameLength),
    agent_version: clip(a[MCP_EXT_ATTR.clientVersion] ?? '', LIMITS.nameLength),
    session_id: clip(a[MCP_EXT_ATTR.sessionId] ?? '', LIMITS.idLength),
    gateway: clip(span.service, LIMITS.nameLength),
    transport: clip(a[MCP_ATTR.transport] ?? '', 64),
    otel_trace_id: span.trace_id,
    otel_span_id: span.span_id,
    request_bytes: 0,
    response_bytes: 0,
    cost_usd: null,
    attributes,
    source: 'span',
  };
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
