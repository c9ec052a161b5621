/**
 * MCP server spans as an instrumented server following OpenTelemetry's MCP semantic conventions writes
 * them, recorded by the real OpenTelemetry JS SDK and serialized to OTLP by @opentelemetry/otlp-transformer
 * (the bytes an OTLP exporter sends). Attribute names come from @opentelemetry/semantic-conventions, not
 * from our model.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import {
  ATTR_ERROR_TYPE,
  ATTR_GEN_AI_AGENT_NAME,
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_TOOL_NAME,
  ATTR_JSONRPC_REQUEST_ID,
  ATTR_MCP_METHOD_NAME,
  ATTR_MCP_PROTOCOL_VERSION,
  ATTR_MCP_SESSION_ID,
  ATTR_NETWORK_PROTOCOL_NAME,
  ATTR_NETWORK_TRANSPORT,
  GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL,
  MCP_METHOD_NAME_VALUE_TOOLS_CALL,
} from '@opentelemetry/semantic-conventions/incubating';

export interface SemconvCall {
  tool: string;
  /** Epoch ms of the start. */
  startMs: number;
  durationMs: number;
  session?: string;
  agent?: string;
  /** `error.type` and the status message, as a failed call has them. */
  error?: { type: string; message: string };
  kind?: SpanKind;
  /** A span of another method (not a tool call). */
  method?: string;
  extra?: Attributes;
  /** The span's name, when not the conventions' `{mcp.method.name} {tool}` (go-micro's `mcp.tool.call`). */
  name?: string;
}

/**
 * The finished spans of `calls`, in order, from one tracer of a server named `service`; with
 * `oneTrace`, all in one trace, children of an agent's span that is not returned.
 */
export function recordSemconvSpans(service: string, calls: readonly SemconvCall[], oneTrace = false): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('some-mcp-instrumentation', '0.3.0');
  const root = oneTrace ? tracer.startSpan('invoke_agent planner', { startTime: calls[0]?.startMs }) : undefined;
  const parent = root ? trace.setSpan(ROOT_CONTEXT, root) : ROOT_CONTEXT;
  calls.forEach((call, i) => {
    const method = call.method ?? MCP_METHOD_NAME_VALUE_TOOLS_CALL;
    const attributes: Attributes = {
      [ATTR_MCP_METHOD_NAME]: method,
      [ATTR_JSONRPC_REQUEST_ID]: String(i + 1),
      [ATTR_MCP_PROTOCOL_VERSION]: '2025-06-18',
      [ATTR_NETWORK_TRANSPORT]: 'tcp',
      [ATTR_NETWORK_PROTOCOL_NAME]: 'http',
      ...call.extra,
    };
    if (method === MCP_METHOD_NAME_VALUE_TOOLS_CALL) {
      attributes[ATTR_GEN_AI_TOOL_NAME] = call.tool;
      attributes[ATTR_GEN_AI_OPERATION_NAME] = GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL;
    }
    if (call.session) attributes[ATTR_MCP_SESSION_ID] = call.session;
    if (call.agent) attributes[ATTR_GEN_AI_AGENT_NAME] = call.agent;
    const name = call.name ?? `${method} ${call.tool}`;
    const span = tracer.startSpan(name, { kind: call.kind ?? SpanKind.SERVER, attributes, startTime: call.startMs }, parent);
    if (call.error) {
      span.setAttribute(ATTR_ERROR_TYPE, call.error.type);
      span.setStatus({ code: SpanStatusCode.ERROR, message: call.error.message });
    }
    span.end(call.startMs + call.durationMs);
  });
  return exporter.getFinishedSpans();
}

/** The OTLP/protobuf request body an OTLP exporter sends for `spans`. */
export function otlpProtobuf(spans: ReadableSpan[]): Uint8Array {
  return ProtobufTraceSerializer.serializeRequest(spans)!;
}

/** The OTLP/JSON request body an OTLP exporter sends for `spans`. */
export function otlpJson(spans: ReadableSpan[]): Uint8Array {
  return JsonTraceSerializer.serializeRequest(spans)!;
}
