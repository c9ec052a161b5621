/**
 * `instrumentServer`: every `tools/call` of an MCP SDK server (`McpServer` or the low-level `Server`)
 * is audited and traced, with no other change to the gateway.
 *
 * How: the SDK keeps one request handler per method in `Server._requestHandlers` (a Map) and every
 * registration goes through `Server.setRequestHandler`. The `tools/call` entry is wrapped now, and again
 * after any later `setRequestHandler` call (McpServer registers it lazily, with its first tool).
 * The wrapper runs the handler inside a `mcp.tool.call` SERVER span (go-micro's name and attribute
 * names, and beside them those of OpenTelemetry's MCP semantic conventions: MCP_SEMCONV), then reports
 * one audit record. The span continues the client's trace from the request's `params._meta`
 * (`traceparent`, `tracestate`, and `baggage`, which the handler then sees in its context), linked to
 * the context that was active, as the conventions ask. Only sizes of arguments and results are
 * measured; their content is never kept.
 *
 * Denials: a gateway denies a call by throwing `ToolDeniedError` (an McpError with code
 * `TOOL_DENIED_CODE`, -32003), or any McpError with that code (`data.reason` names the reason). The audit
 * record then has `allowed: false` and `denied_reason`, as go-micro writes it; `{ rateLimited: true }`
 * also sets `mcp.rate_limited`. McpServer turns errors thrown by a tool into `isError` results, so for
 * it the thrown error is also caught one level down (`McpServer.executeToolHandler`).
 */
import { context, isSpanContextValid, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type SpanStatus, type Tracer } from '@opentelemetry/api';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { Logger } from '../core/logger.ts';
import { LIMITS, type AuditRecordInput } from '../model/audit-event.ts';
import { newTraceId } from '../model/ids.ts';
import { MCP_ATTR, MCP_EXT_ATTR, MCP_SEMCONV, TOOL_CALL_SPAN } from '../model/span.ts';
import { jsonByteLength } from './json-size.ts';
import { parentContextFrom } from './tracing.ts';

/** JSON-RPC error code of a denied tool call (in the implementation-defined server error range). */
export const TOOL_DENIED_CODE = -32003;

export interface ToolDeniedOptions {
  /** Scopes the tool needs (`mcp.auth.scopes_required`). */
  scopesRequired?: string[];
  /** The call was refused by a rate limit (`mcp.rate_limited`). */
  rateLimited?: boolean;
}

/** Throw from a tool handler (or a gateway's policy check) to deny a call; it is audited as a denial. */
export class ToolDeniedError extends McpError {
  readonly reason: string;
  readonly scopesRequired: string[];
  readonly rateLimited: boolean;

  constructor(reason: string, options: ToolDeniedOptions = {}) {
    const scopesRequired = options.scopesRequired ?? [];
    const rateLimited = options.rateLimited ?? false;
    super(TOOL_DENIED_CODE, `Forbidden: ${reason}`, { reason, scopesRequired, rateLimited });
    this.name = 'ToolDeniedError';
    this.reason = reason;
    this.scopesRequired = scopesRequired;
    this.rateLimited = rateLimited;
  }
}

export interface InstrumentOptions {
  /** `mcp.transport` / `transport`; by default from the connected transport's class (stdio, http, ...). */
  transport?: string;
  /** The account of a call; by default the OAuth client id the transport authenticated. */
  accountId?: (extra: RequestExtra) => string | undefined;
}

export interface InstrumentDeps {
  /** Takes the record as is (it is not used again here), and never throws. */
  audit(record: AuditRecordInput): void;
  tracer: Tracer;
  logger: Logger;
}

/** The parts of the SDK's `RequestHandlerExtra` we read. */
export interface RequestExtra {
  sessionId?: string;
  /** The JSON-RPC id of the request (`jsonrpc.request.id`). */
  requestId?: string | number;
  authInfo?: { clientId?: string };
  [key: string]: unknown;
}

interface ToolCallRequest {
  method: string;
  params?: { name?: unknown; arguments?: unknown; _meta?: unknown };
}

type Handler = (this: unknown, request: ToolCallRequest, extra: RequestExtra) => Promise<unknown>;

interface LowLevelServer {
  setRequestHandler(...args: unknown[]): unknown;
  getClientVersion?(): { name?: string; version?: string } | undefined;
  readonly transport?: object;
  _requestHandlers?: unknown;
}

const WRAPPED = Symbol('mcp-analytics.wrapped');
const instrumented = new WeakSet<object>();

export function instrumentServer(server: McpServer | Server, deps: InstrumentDeps, options: InstrumentOptions = {}): void {
  const { logger } = deps;
  const mcp = server as unknown as { server?: unknown; executeToolHandler?: unknown };
  const low = (isLowLevelServer(mcp.server) ? mcp.server : server) as unknown as LowLevelServer;
  const handlers = low._requestHandlers;
  if (!isLowLevelServer(low) || !(handlers instanceof Map)) {
    logger.warn('instrumentServer: not an MCP SDK server (no request handler map); tool calls are not audited');
    return;
  }
  if (instrumented.has(low)) return;
  instrumented.add(low);

  /** Errors McpServer turned into `isError` results, by the call's `extra` object. */
  const thrown = new WeakMap<object, unknown>();
  if (low !== (server as unknown)) hookToolErrors(mcp, thrown, logger);

  const wrap = () => {
    const current = handlers.get('tools/call') as Handler | undefined;
    if (typeof current === 'function' && !(WRAPPED in current)) {
      handlers.set('tools/call', wrapHandler(current, low, thrown, deps, options));
    }
  };
  const setRequestHandler = low.setRequestHandler;
  low.setRequestHandler = function (this: unknown, ...args: unknown[]) {
    const result = setRequestHandler.apply(this, args);
    wrap();
    return result;
  };
  wrap();
}

function isLowLevelServer(value: unknown): value is LowLevelServer {
  return typeof value === 'object' && value !== null && typeof (value as LowLevelServer).setRequestHandler === 'function' && '_requestHandlers' in value;
}

function hookToolErrors(mcp: { executeToolHandler?: unknown }, thrown: WeakMap<object, unknown>, logger: Logger): void {
  const original = mcp.executeToolHandler;
  if (typeof original !== 'function') {
    logger.warn('instrumentServer: this McpServer version has no executeToolHandler; errors thrown by tools are audited from their isError results only');
    return;
  }
  mcp.executeToolHandler = async function (this: unknown, tool: unknown, args: unknown, extra: unknown) {
    try {
      return await original.call(this, tool, args, extra);
    } catch (error) {
      if (typeof extra === 'object' && extra !== null) thrown.set(extra, error);
      throw error;
    }
  };
}

interface Call {
  /** performance.now() at the start. */
  start: number;
  tool: string;
  traceId: string;
  span: Span;
  /** Where the handler runs: the span's context, with the client's baggage. */
  context: Context;
  requestBytes: number;
  accountId: string | undefined;
  transport: string;
  client: { name?: string; version?: string } | undefined;
}

const STATUS_OK: SpanStatus = Object.freeze({ code: SpanStatusCode.OK });

function wrapHandler(inner: Handler, low: LowLevelServer, thrown: WeakMap<object, unknown>, deps: InstrumentDeps, options: InstrumentOptions): Handler {
  // Not an async function: its state and awaits cost more garbage per call than one `then`.
  const wrapped: Handler = function (this: unknown, request, extra) {
    const call = begin(request, extra, low, deps, options);
    if (!call) return inner.call(this, request, extra);
    let pending: Promise<unknown>;
    try {
      pending = context.with(call.context, inner, this, request, extra);
    } catch (error) {
      end(call, extra, thrown, deps, undefined, error, true);
      return Promise.reject(error);
    }
    return Promise.resolve(pending).then(
      (result) => {
        end(call, extra, thrown, deps, result, undefined, false);
        return result;
      },
      (error: unknown) => {
        end(call, extra, thrown, deps, undefined, error, true);
        throw error;
      },
    );
  };
  Object.defineProperty(wrapped, WRAPPED, { value: true });
  return wrapped;
}

function begin(request: ToolCallRequest, extra: RequestExtra, low: LowLevelServer, deps: InstrumentDeps, options: InstrumentOptions): Call | undefined {
  try {
    const start = performance.now();
    const params = request?.params;
    const tool = clip(typeof params?.name === 'string' && params.name !== '' ? params.name : '(unnamed)', LIMITS.toolLength);
    const traceId = newTraceId();
    const accountId = options.accountId ? options.accountId(extra) : extra?.authInfo?.clientId;
    const transport = options.transport ?? transportName(low.transport);
    // Everything known before the call goes in at the start: one attribute check instead of one per key.
    const client = low.getClientVersion?.();
    const attributes: Attributes = {
      [MCP_ATTR.toolName]: tool,
      [MCP_ATTR.transport]: transport,
      [MCP_ATTR.traceId]: traceId,
      [MCP_SEMCONV.methodName]: MCP_SEMCONV.toolsCall,
      [MCP_SEMCONV.toolName]: tool,
      [MCP_SEMCONV.operationName]: MCP_SEMCONV.executeTool,
    };
    const network = NETWORK[transport];
    if (network) {
      attributes[MCP_SEMCONV.networkTransport] = network.transport;
      if (network.protocol) attributes[MCP_SEMCONV.networkProtocolName] = network.protocol;
    }
    const requestId = extra?.requestId;
    if (typeof requestId === 'string' || typeof requestId === 'number') attributes[MCP_SEMCONV.requestId] = String(requestId);
    if (accountId) attributes[MCP_ATTR.accountId] = accountId;
    if (client?.name) attributes[MCP_EXT_ATTR.clientName] = client.name;
    if (client?.version) attributes[MCP_EXT_ATTR.clientVersion] = client.version;
    // The same name in go-micro's additions (ours) and in the conventions.
    if (typeof extra?.sessionId === 'string') attributes[MCP_EXT_ATTR.sessionId] = extra.sessionId;
    const { parent, links } = parentContextFrom(params?._meta);
    const span = deps.tracer.startSpan(TOOL_CALL_SPAN, { kind: SpanKind.SERVER, attributes, links }, parent);
    return { start, tool, traceId, span, context: trace.setSpan(parent, span), requestBytes: jsonBytes(params?.arguments), accountId, transport, client };
  } catch (error) {
    deps.logger.debug({ err: error }, 'instrumentServer: could not start auditing a tool call');
    return undefined;
  }
}

function end(
  call: Call,
  extra: RequestExtra,
  thrown: WeakMap<object, unknown>,
  deps: InstrumentDeps,
  result: unknown,
  error: unknown,
  failed: boolean,
): void {
  try {
    const duration = Math.round((performance.now() - call.start) * 1e6);
    const cause = failed ? error : typeof extra === 'object' && extra !== null ? thrown.get(extra) : undefined;
    const denial = denialOf(cause);
    const isErrorResult = !failed && typeof result === 'object' && result !== null && (result as { isError?: unknown }).isError === true;
    const { span, client } = call;

    let errorText = '';
    if (denial) {
      span.setAttribute(MCP_SEMCONV.errorType, DENIED_CODE_TEXT);
      span.setAttribute(MCP_SEMCONV.responseStatusCode, DENIED_CODE_TEXT);
      span.setAttribute(MCP_ATTR.authAllowed, false);
      span.setAttribute(MCP_ATTR.authDeniedReason, denial.reason);
      if (denial.scopesRequired.length > 0) span.setAttribute(MCP_ATTR.scopesRequired, denial.scopesRequired);
      if (denial.rateLimited) span.setAttribute(MCP_ATTR.rateLimited, true);
      span.setStatus({ code: SpanStatusCode.ERROR, message: denial.reason });
    } else {
      span.setAttribute(MCP_ATTR.authAllowed, true);
      if (cause !== undefined || failed) {
        errorText = clip(messageOf(cause), LIMITS.textLength);
        // McpServer answers a thrown error with an isError result; the low-level Server, with a
        // JSON-RPC error (an McpError's code, else -32603).
        const code = failed ? jsonRpcCodeOf(cause) : undefined;
        span.setAttribute(MCP_SEMCONV.errorType, code ?? MCP_SEMCONV.toolError);
        if (code) span.setAttribute(MCP_SEMCONV.responseStatusCode, code);
        span.recordException(cause instanceof Error ? cause : errorText);
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorText });
      } else if (isErrorResult) {
        errorText = 'the tool returned an error result (isError: true)';
        span.setAttribute(MCP_SEMCONV.errorType, MCP_SEMCONV.toolError);
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorText });
      } else {
        span.setStatus(STATUS_OK);
      }
    }
    span.end();

    const spanContext = span.spanContext();
    const record: AuditRecordInput = {
      trace_id: call.traceId,
      timestamp: rfc3339Micros(performance.timeOrigin + call.start),
      tool: call.tool,
      allowed: !denial,
      duration,
      agent: clip(client?.name ?? '', LIMITS.nameLength),
      agent_version: clip(client?.version ?? '', LIMITS.nameLength),
      transport: call.transport,
      request_bytes: call.requestBytes,
      response_bytes: failed ? 0 : jsonBytes(result),
    };
    if (call.accountId) record.account_id = clip(call.accountId, LIMITS.nameLength);
    if (denial) {
      record.denied_reason = clip(denial.reason, LIMITS.textLength);
      if (denial.scopesRequired.length > 0) record.scopes_required = denial.scopesRequired.slice(0, LIMITS.scopes);
    }
    if (errorText) record.error = errorText;
    if (typeof extra?.sessionId === 'string') record.session_id = clip(extra.sessionId, LIMITS.idLength);
    if (isSpanContextValid(spanContext)) {
      record.otel_trace_id = spanContext.traceId;
      record.otel_span_id = spanContext.spanId;
    }
    deps.audit(record);
  } catch (failure) {
    deps.logger.debug({ err: failure }, 'instrumentServer: could not audit a tool call');
  }
}

const DENIED_CODE_TEXT = String(TOOL_DENIED_CODE);

/** The JSON-RPC error code the SDK answers `error` with, as text. */
function jsonRpcCodeOf(error: unknown): string {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'number' && Number.isInteger(code) ? String(code) : '-32603';
}

/** `network.transport` (and `network.protocol.name`) of our transport names, as the conventions ask: pipe for stdio, tcp for HTTP. */
const NETWORK: Record<string, { transport: string; protocol?: string } | undefined> = {
  stdio: { transport: 'pipe' },
  http: { transport: 'tcp', protocol: 'http' },
  websocket: { transport: 'tcp', protocol: 'websocket' },
};

interface Denial {
  reason: string;
  scopesRequired: string[];
  rateLimited: boolean;
}

/** A `ToolDeniedError`, or any error carrying code TOOL_DENIED_CODE (an McpError from another SDK copy). */
function denialOf(error: unknown): Denial | undefined {
  if (error instanceof ToolDeniedError) {
    return { reason: error.reason, scopesRequired: error.scopesRequired, rateLimited: error.rateLimited };
  }
  if (typeof error !== 'object' || error === null || (error as { code?: unknown }).code !== TOOL_DENIED_CODE) return undefined;
  const data = (error as { data?: unknown }).data as Partial<Record<keyof Denial, unknown>> | undefined;
  const scopes = Array.isArray(data?.scopesRequired) ? data.scopesRequired.filter((s): s is string => typeof s === 'string') : [];
  return {
    reason: typeof data?.reason === 'string' ? data.reason : messageOf(error),
    scopesRequired: scopes,
    rateLimited: data?.rateLimited === true,
  };
}

const transportNames = new WeakMap<object, string>();

/** go-micro's values where they apply: stdio, http (streamable HTTP and SSE); else the class name. */
function transportName(transport: object | undefined): string {
  if (!transport) return '';
  let name = transportNames.get(transport);
  if (name === undefined) {
    const className = transport.constructor?.name ?? '';
    if (/stdio/i.test(className)) name = 'stdio';
    else if (/http|sse/i.test(className)) name = 'http';
    else if (/websocket/i.test(className)) name = 'websocket';
    else if (/memory/i.test(className)) name = 'memory';
    else name = className.replace(/(Server)?Transport$/, '').toLowerCase() || 'unknown';
    transportNames.set(transport, name);
  }
  return name;
}

/** Size of the JSON of a call's arguments or result (0 when it has none, or cannot be measured). */
function jsonBytes(value: unknown): number {
  if (value === undefined) return 0;
  try {
    return jsonByteLength(value);
  } catch {
    return 0;
  }
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return typeof error === 'string' ? error : 'unknown error';
}

function clip(text: string, max: number): string {
  return text.length > max ? text.slice(0, max) : text;
}

/** The RFC 3339 text of the last whole second formatted: calls come many per second. */
let formattedSecond = { epochSecond: NaN, text: '' };

/** RFC 3339 UTC with microseconds, from epoch milliseconds with a fraction. */
function rfc3339Micros(epochMs: number): string {
  const micros = Math.floor(epochMs * 1000);
  const epochSecond = Math.floor(micros / 1_000_000);
  if (epochSecond !== formattedSecond.epochSecond) {
    formattedSecond = { epochSecond, text: new Date(epochSecond * 1000).toISOString().slice(0, 19) };
  }
  return `${formattedSecond.text}.${String(micros - epochSecond * 1_000_000).padStart(6, '0')}Z`;
}
