/**
 * The span model: one OTLP span flattened to one row of `spans_v1`.
 * OTLP decoders (protobuf and JSON, from HTTP or from Kafka) produce `SpanRow`s and nothing else.
 */
import { z } from 'zod';
import { issuesFromZod, type Validated } from './issues.ts';

export const SPAN_LIMITS = {
  nameLength: 512,
  attributes: 128,
  attributeKeyLength: 256,
  attributeValueLength: 4096,
  events: 128,
  statusMessageLength: 4096,
} as const;

export const SPAN_KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'] as const;
export const STATUS_CODES = ['unset', 'ok', 'error'] as const;

const hex = (digits: number) => z.string().regex(new RegExp(`^[0-9a-f]{${digits}}$`), `must be ${digits} lowercase hex digits`);
const nanos = z.string().regex(/^\d{1,20}$/, 'must be an integer count of nanoseconds');
const attributeMap = z
  .record(
    z.string().min(1).max(SPAN_LIMITS.attributeKeyLength),
    z.string().max(SPAN_LIMITS.attributeValueLength, `must be at most ${SPAN_LIMITS.attributeValueLength} characters`),
  )
  .refine((a) => Object.keys(a).length <= SPAN_LIMITS.attributes, {
    message: `must have at most ${SPAN_LIMITS.attributes} attributes`,
  });

export const spanRowSchema = z.object({
  tenant: z.string().min(1).max(64),
  trace_id: hex(32),
  span_id: hex(16),
  /** Empty for a root span. */
  parent_span_id: z.union([hex(16), z.literal('')]),
  name: z.string().min(1, 'must not be empty').max(SPAN_LIMITS.nameLength),
  kind: z.enum(SPAN_KINDS),
  /** `service.name` of the resource. */
  service: z.string().max(256),
  scope_name: z.string().max(256),
  scope_version: z.string().max(128),
  /** Start, in nanoseconds since the Unix epoch (a decimal string: it does not fit a double). */
  start_time_unix_nano: nanos,
  duration_ns: nanos,
  status_code: z.enum(STATUS_CODES),
  status_message: z.string().max(SPAN_LIMITS.statusMessageLength),
  /** Attribute values as text; arrays and maps as JSON. */
  attributes: attributeMap,
  resource_attributes: attributeMap,
  events: z
    .array(
      z.object({
        time_unix_nano: nanos,
        name: z.string().max(SPAN_LIMITS.nameLength),
        attributes: attributeMap,
      }),
    )
    .max(SPAN_LIMITS.events, `must have at most ${SPAN_LIMITS.events} events`),
});

export type SpanRow = z.infer<typeof spanRowSchema>;

export function validateSpanRow(row: unknown): Validated<SpanRow> {
  const parsed = spanRowSchema.safeParse(row);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, issues: issuesFromZod(parsed.error) };
}

/** The name go-micro v6 (and our collector) give the server span of one MCP tool call. */
export const TOOL_CALL_SPAN = 'mcp.tool.call';

/** go-micro v6 `gateway/mcp` span attribute names. */
export const MCP_ATTR = {
  toolName: 'mcp.tool.name',
  transport: 'mcp.transport',
  accountId: 'mcp.account.id',
  traceId: 'mcp.trace_id',
  authAllowed: 'mcp.auth.allowed',
  authDeniedReason: 'mcp.auth.denied_reason',
  scopesRequired: 'mcp.auth.scopes_required',
  rateLimited: 'mcp.rate_limited',
} as const;

/**
 * OpenTelemetry's MCP semantic conventions, as of semantic-conventions v1.41.0 (docs/gen-ai/mcp.md,
 * status Development; since moved to open-telemetry/semantic-conventions-genai): the names read from
 * any instrumented MCP server and written by ours beside go-micro's.
 */
export const MCP_SEMCONV = {
  version: '1.41.0',
  methodName: 'mcp.method.name',
  toolsCall: 'tools/call',
  protocolVersion: 'mcp.protocol.version',
  sessionId: 'mcp.session.id',
  toolName: 'gen_ai.tool.name',
  operationName: 'gen_ai.operation.name',
  executeTool: 'execute_tool',
  agentName: 'gen_ai.agent.name',
  agentId: 'gen_ai.agent.id',
  requestId: 'jsonrpc.request.id',
  errorType: 'error.type',
  /** `error.type` of a CallToolResult with `isError: true`. */
  toolError: 'tool_error',
  responseStatusCode: 'rpc.response.status_code',
  networkTransport: 'network.transport',
  networkProtocolName: 'network.protocol.name',
} as const;

/** Our additions to go-micro's attributes, so a span alone says which agent made the call. */
export const MCP_EXT_ATTR = {
  clientName: 'mcp.client.name',
  clientVersion: 'mcp.client.version',
  sessionId: 'mcp.session.id',
} as const;
