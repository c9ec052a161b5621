/**
 * One instrumented tool call, and what is made of it: the `mcp.tool.call` span's attributes and status,
 * and the audit record. Shared by both ways a call is traced (instrument-server.ts): through the host's
 * OpenTelemetry SDK span, or recorded here and turned into a span in the batch (tool-call-spans.ts).
 * Either way the same attributes, in the same order, and the same record.
 */
import { SpanStatusCode, type Attributes, type Context, type Link, type Span, type SpanContext, type SpanStatus } from '@opentelemetry/api';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { LIMITS, type AuditRecordInput } from '../model/audit-event.ts';
import { newTraceId } from '../model/ids.ts';
import { MCP_ATTR, MCP_EXT_ATTR, MCP_SEMCONV } from '../model/span.ts';
import { jsonByteLength } from './json-size.ts';
import type { FastRoute } from './tool-call-spans.ts';

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

/**
 * The call, as known at its start and at its end: fixed fields, nothing computed that can wait. A
 * call finished elsewhere (posted as columns, tool-call-wire.ts) is reused for a later call
 * (`ToolCallPool`): `init` sets every field.
 */
export class ToolCall {
  /** performance.now() at the start and at the end. */
  start = 0;
  end = 0;
  /** The per-call id (`mcp.trace_id`, the record's `trace_id`): made at the start for an SDK span, else in the batch. */
  traceId = '';
  requestBytes = 0;
  responseBytes = 0;
  /** The handler threw (`cause`), or returned `isError: true`. */
  failed = false;
  isErrorResult = false;
  cause: unknown = undefined;
  /** The SDK span (SDK path). */
  span: Span | undefined = undefined;
  /** The recorded span (fast path): its parent (remote from `_meta`, or the active span), the active span when linked. */
  parent: SpanContext | undefined = undefined;
  link: Link | undefined = undefined;
  otelTraceId = '';
  otelSpanId = '';
  /** Sampled by the default sampler: a root call, or a sampled parent. Unsampled calls have ids but no span. */
  sampled = true;
  /** The tracer's fast route at the start (fast path). */
  route: FastRoute | undefined = undefined;
  /** Where the handler runs: the span's context, with the client's baggage (undefined: the active one). */
  context: Context | undefined = undefined;
  tool = '';
  transport = '';
  accountId: string | undefined = undefined;
  client: { name?: string; version?: string } | undefined = undefined;
  sessionId: unknown = undefined;
  requestId: unknown = undefined;
  /** While its handler runs (instrument-server.ts): the request's `extra`, and where the call is reported. */
  extra: unknown = undefined;
  reporter: unknown = undefined;
  /**
   * The callbacks the handler's promise settles into (instrument-server.ts). They read the fields above,
   * so they are made once per ToolCall and kept when it is reused (`init` leaves them): a call taken
   * from the pool allocates no closure.
   */
  onFulfilled: ((result: unknown) => unknown) | undefined = undefined;
  onRejected: ((error: unknown) => never) | undefined = undefined;
  /**
   * A call whose end is read from its response (in-flight.ts, under its `requestId`): its handler's
   * promise, the transport it is held for, and the tool's execution (McpServer), kept here rather than
   * on the request's `extra`.
   */
  pending: Promise<unknown> | undefined = undefined;
  heldVia: object | undefined = undefined;
  execution: unknown = undefined;

  constructor(
    start: number,
    tool: string,
    transport: string,
    accountId: string | undefined,
    client: { name?: string; version?: string } | undefined,
    sessionId: unknown,
    requestId: unknown,
  ) {
    this.init(start, tool, transport, accountId, client, sessionId, requestId);
  }

  /** Becomes a new call: the fields given, every other one as a new call's. */
  init(
    start: number,
    tool: string,
    transport: string,
    accountId: string | undefined,
    client: { name?: string; version?: string } | undefined,
    sessionId: unknown,
    requestId: unknown,
  ): this {
    this.start = start;
    this.end = 0;
    this.traceId = '';
    this.requestBytes = 0;
    this.responseBytes = 0;
    this.failed = false;
    this.isErrorResult = false;
    this.cause = undefined;
    this.span = undefined;
    this.parent = undefined;
    this.link = undefined;
    this.otelTraceId = '';
    this.otelSpanId = '';
    this.sampled = true;
    this.route = undefined;
    this.context = undefined;
    this.tool = tool;
    this.transport = transport;
    this.accountId = accountId;
    this.client = client;
    this.sessionId = sessionId;
    this.requestId = requestId;
    this.extra = undefined;
    this.reporter = undefined;
    this.pending = undefined;
    this.heldVia = undefined;
    this.execution = undefined;
    return this;
  }
}

/**
 * Calls to reuse: the ones whose fields were copied out (posted as columns) come back, emptied, and
 * the next calls take them, so that a call in the steady state allocates no ToolCall. At most `max`
 * are kept; a fixed array with a top index (pop and push would shrink and regrow its store).
 */
export class ToolCallPool {
  private readonly free: (ToolCall | undefined)[];
  private top = 0;

  constructor(readonly max: number) {
    this.free = new Array<ToolCall | undefined>(max).fill(undefined);
  }

  get size(): number {
    return this.top;
  }

  take(
    start: number,
    tool: string,
    transport: string,
    accountId: string | undefined,
    client: { name?: string; version?: string } | undefined,
    sessionId: unknown,
    requestId: unknown,
  ): ToolCall {
    if (this.top === 0) return new ToolCall(start, tool, transport, accountId, client, sessionId, requestId);
    const call = this.free[--this.top]!;
    this.free[this.top] = undefined;
    return call.init(start, tool, transport, accountId, client, sessionId, requestId);
  }

  /** Takes back a call nothing refers to any more (emptied here: it holds on to nothing of its call). */
  release(call: ToolCall): void {
    if (this.top === this.max) return;
    this.free[this.top++] = call.init(0, '', '', undefined, undefined, undefined, undefined);
  }
}

/** The attributes known at the start (one attribute check in the SDK instead of one per key). */
export function startAttributes(call: ToolCall): Attributes {
  if (call.traceId === '') call.traceId = newTraceId();
  // Written out (MCP_ATTR.toolName, MCP_ATTR.transport, MCP_ATTR.traceId, MCP_SEMCONV.methodName,
  // .toolName, .operationName; the tests check them against those names): computed keys would make V8
  // grow the object key by key, ~1.5x the garbage of this literal.
  const attributes: Attributes = {
    'mcp.tool.name': call.tool,
    'mcp.transport': call.transport,
    'mcp.trace_id': call.traceId,
    'mcp.method.name': 'tools/call',
    'gen_ai.tool.name': call.tool,
    'gen_ai.operation.name': 'execute_tool',
  };
  const network = NETWORK[call.transport];
  if (network) {
    attributes[MCP_SEMCONV.networkTransport] = network.transport;
    if (network.protocol) attributes[MCP_SEMCONV.networkProtocolName] = network.protocol;
  }
  const requestId = call.requestId;
  if (typeof requestId === 'string' || typeof requestId === 'number') attributes[MCP_SEMCONV.requestId] = String(requestId);
  if (call.accountId) attributes[MCP_ATTR.accountId] = call.accountId;
  if (call.client?.name) attributes[MCP_EXT_ATTR.clientName] = call.client.name;
  if (call.client?.version) attributes[MCP_EXT_ATTR.clientVersion] = call.client.version;
  // The same name in go-micro's additions (ours) and in the conventions.
  if (typeof call.sessionId === 'string') attributes[MCP_EXT_ATTR.sessionId] = call.sessionId;
  return attributes;
}

/**
 * Every attribute a tool-call span can have, undefined until set: an object to reuse span after span
 * (undefined values are not written, model/otlp-span-writer.ts). The start attributes in
 * `startAttributes`'s order, then the end ones.
 */
export function attributeSlots(): Attributes {
  return {
    'mcp.tool.name': undefined,
    'mcp.transport': undefined,
    'mcp.trace_id': undefined,
    'mcp.method.name': undefined,
    'gen_ai.tool.name': undefined,
    'gen_ai.operation.name': undefined,
    'network.transport': undefined,
    'network.protocol.name': undefined,
    'jsonrpc.request.id': undefined,
    'mcp.account.id': undefined,
    'mcp.client.name': undefined,
    'mcp.client.version': undefined,
    'mcp.session.id': undefined,
    'mcp.auth.allowed': undefined,
    'error.type': undefined,
    'rpc.response.status_code': undefined,
    'mcp.auth.denied_reason': undefined,
    'mcp.auth.scopes_required': undefined,
    'mcp.rate_limited': undefined,
  };
}

/** `startAttributes` into slots from `attributeSlots` (every other slot emptied). */
export function fillStartAttributes(call: ToolCall, slots: Attributes): void {
  if (call.traceId === '') call.traceId = newTraceId();
  slots['mcp.tool.name'] = call.tool;
  slots['mcp.transport'] = call.transport;
  slots['mcp.trace_id'] = call.traceId;
  slots['mcp.method.name'] = 'tools/call';
  slots['gen_ai.tool.name'] = call.tool;
  slots['gen_ai.operation.name'] = 'execute_tool';
  const network = NETWORK[call.transport];
  slots['network.transport'] = network?.transport;
  slots['network.protocol.name'] = network?.protocol;
  const requestId = call.requestId;
  slots['jsonrpc.request.id'] = typeof requestId === 'string' || typeof requestId === 'number' ? String(requestId) : undefined;
  slots['mcp.account.id'] = call.accountId || undefined;
  slots['mcp.client.name'] = call.client?.name || undefined;
  slots['mcp.client.version'] = call.client?.version || undefined;
  slots['mcp.session.id'] = typeof call.sessionId === 'string' ? call.sessionId : undefined;
  slots['mcp.auth.allowed'] = undefined;
  slots['error.type'] = undefined;
  slots['rpc.response.status_code'] = undefined;
  slots['mcp.auth.denied_reason'] = undefined;
  slots['mcp.auth.scopes_required'] = undefined;
  slots['mcp.rate_limited'] = undefined;
}

/** What a span needs of the end of a call: the SDK's Span, or the recorded one. */
export interface SpanEnd {
  setAttribute(key: string, value: string | boolean | string[]): unknown;
  setStatus(status: SpanStatus): unknown;
  recordException(exception: Error | string): unknown;
}

export interface Outcome {
  denial: Denial | undefined;
  /** The record's `error` ('' when none). */
  errorText: string;
}

const STATUS_OK: SpanStatus = Object.freeze({ code: SpanStatusCode.OK });

/** Sets the end attributes and the status of the call's span, and says what the record reports. */
export function finishSpan(call: ToolCall, span: SpanEnd): Outcome {
  const { cause, failed } = call;
  const denial = denialOf(cause);
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
    } else if (call.isErrorResult) {
      errorText = 'the tool returned an error result (isError: true)';
      span.setAttribute(MCP_SEMCONV.errorType, MCP_SEMCONV.toolError);
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorText });
    } else {
      span.setStatus(STATUS_OK);
    }
  }
  return { denial, errorText };
}

/**
 * The call's audit record; `otelTraceId`/`otelSpanId` empty when the call has no valid span context.
 * `timeOrigin`: the `performance.timeOrigin` of the thread that timed the call.
 */
export function auditRecordOf(call: ToolCall, outcome: Outcome, otelTraceId: string, otelSpanId: string, timeOrigin = TIME_ORIGIN): AuditRecordInput {
  const { client } = call;
  const { denial } = outcome;
  const record: AuditRecordInput = {
    trace_id: call.traceId,
    timestamp: rfc3339Micros(timeOrigin + call.start),
    tool: call.tool,
    allowed: !denial,
    duration: Math.round((call.end - call.start) * 1e6),
    agent: clip(client?.name ?? '', LIMITS.nameLength),
    agent_version: clip(client?.version ?? '', LIMITS.nameLength),
    transport: call.transport,
    request_bytes: call.requestBytes,
    response_bytes: call.responseBytes,
  };
  if (call.accountId) record.account_id = clip(call.accountId, LIMITS.nameLength);
  if (denial) {
    record.denied_reason = clip(denial.reason, LIMITS.textLength);
    if (denial.scopesRequired.length > 0) record.scopes_required = denial.scopesRequired.slice(0, LIMITS.scopes);
  }
  if (outcome.errorText) record.error = outcome.errorText;
  if (typeof call.sessionId === 'string') record.session_id = clip(call.sessionId, LIMITS.idLength);
  if (otelTraceId !== '') {
    record.otel_trace_id = otelTraceId;
    record.otel_span_id = otelSpanId;
  }
  return record;
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

export interface Denial {
  reason: string;
  scopesRequired: string[];
  rateLimited: boolean;
}

/** A `ToolDeniedError`, or any error carrying code TOOL_DENIED_CODE (an McpError from another SDK copy). */
function denialOf(error: unknown): Denial | undefined {
  if (error instanceof ToolDeniedError) {
    return { reason: error.reason, scopesRequired: error.scopesRequired, rateLimited: error.rateLimited };
  }
  if (typeof error !== 'object' || error === null) return undefined;
  if ((error as { code?: unknown }).code !== TOOL_DENIED_CODE) return undefined;
  const data = (error as { data?: unknown }).data as Partial<Record<keyof Denial, unknown>> | undefined;
  const scopes = Array.isArray(data?.scopesRequired) ? data.scopesRequired.filter((s): s is string => typeof s === 'string') : [];
  return {
    reason: typeof data?.reason === 'string' ? data.reason : messageOf(error),
    scopesRequired: scopes,
    rateLimited: data?.rateLimited === true,
  };
}

/** Size of the JSON of a call's arguments or result (0 when it has none, or cannot be measured). */
export function jsonBytes(value: unknown): number {
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

export function clip(text: string, max: number): string {
  return text.length > max ? text.slice(0, max) : text;
}

/** performance.timeOrigin, read once: its getter makes a new number each time. */
const TIME_ORIGIN = performance.timeOrigin;

/** `<second>.<micros>Z`, written in place: the text of a second is written once (calls come many per second), then six digits per call. */
const timestampText = Buffer.alloc(27, 0x30);
timestampText[19] = 0x2e; // .
timestampText[26] = 0x5a; // Z
let formattedSecond = NaN;

/** RFC 3339 UTC with microseconds, from epoch milliseconds with a fraction: one string per call, nothing else. */
export function rfc3339Micros(epochMs: number): string {
  const micros = Math.floor(epochMs * 1000);
  const epochSecond = Math.floor(micros / 1_000_000);
  if (epochSecond !== formattedSecond) {
    formattedSecond = epochSecond;
    timestampText.write(new Date(epochSecond * 1000).toISOString().slice(0, 19), 0, 'latin1');
  }
  let fraction = micros - epochSecond * 1_000_000;
  for (let at = 25; at >= 20; at--) {
    timestampText[at] = 0x30 + (fraction % 10);
    fraction = Math.floor(fraction / 10);
  }
  return timestampText.toString('latin1');
}
