/**
 * `instrumentServer`: every `tools/call` of an MCP SDK server (`McpServer` or the low-level `Server`)
 * is audited and traced, with no other change to the gateway.
 *
 * How: the SDK keeps one request handler per method in `Server._requestHandlers` (a Map) and every
 * registration goes through `Server.setRequestHandler`. The `tools/call` entry is wrapped now, and again
 * after any later `setRequestHandler` call (McpServer registers it lazily, with its first tool).
 * The wrapper runs the handler inside a `mcp.tool.call` SERVER span (go-micro's name and attribute
 * names, and beside them those of OpenTelemetry's MCP semantic conventions: MCP_SEMCONV), then reports
 * one audit record. A call's end is read from its response as the server's transport sends it (the
 * transport's `send` is hooked; in-flight.ts holds the calls meanwhile, with nothing allocated per
 * call), and from its handler's promise when that cannot be (not dispatched by the SDK's Protocol, a
 * task's request, a non-integer id) or when the response is given up (cancelled, connection closed)
 * or is an error (what the handler threw is read from the promise). The span continues the client's
 * trace from the request's `params._meta` (`traceparent`, `tracestate`, and `baggage`, which the
 * handler then sees in its context), linked to the context that was active, as the conventions ask.
 * Only sizes of arguments and results are measured; their content is never kept. The span is an SDK
 * span, or, when the collector's span processor is the only one the tracer feeds, recorded and made
 * in the batch (tool-call-spans.ts); what both ways share is in tool-call.ts.
 *
 * Denials: a gateway denies a call by throwing `ToolDeniedError` (an McpError with code
 * `TOOL_DENIED_CODE`, -32003), or any McpError with that code (`data.reason` names the reason). The audit
 * record then has `allowed: false` and `denied_reason`, as go-micro writes it; `{ rateLimited: true }`
 * also sets `mcp.rate_limited`. McpServer turns errors thrown by a tool into `isError` results, so for
 * it the error is read one level down: `McpServer.executeToolHandler`'s promise is kept on the call
 * held for its response (else on its `extra`, as a non-enumerable symbol property), and read (a turn
 * later) only when the result is an `isError` one.
 */
import { context, createContextKey, isSpanContextValid, SpanKind, trace, TraceFlags, type Context, type Tracer } from '@opentelemetry/api';
import { isTracingSuppressed } from '@opentelemetry/core';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { Logger } from '../core/logger.ts';
import { LIMITS, type AuditRecordInput } from '../model/audit-event.ts';
import { newOtelSpanId, newOtelTraceId } from '../model/ids.ts';
import { TOOL_CALL_SPAN } from '../model/span.ts';
import { InFlightCalls } from './in-flight.ts';
import { auditRecordOf, clip, finishSpan, jsonBytes, startAttributes, ToolCall, type ToolCallPool } from './tool-call.ts';
import type { FastRoute, ToolCallBatch } from './tool-call-spans.ts';
import { parentContextFrom } from './tracing.ts';

export { ToolDeniedError, TOOL_DENIED_CODE, type ToolDeniedOptions } from './tool-call.ts';

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
  /** The fast path (tool-call-spans.ts): the tracer's route now, when its spans can be recorded without the SDK. */
  fast?: { route(): FastRoute | undefined; batch: ToolCallBatch };
  /** Where calls are taken from (and given back to, once finished elsewhere); else each call is a new one. */
  calls?: ToolCallPool;
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

  const inFlight = responsePath(low, deps);
  if (low !== (server as unknown)) hookToolErrors(mcp, low, inFlight, logger);

  const wrap = () => {
    const current = handlers.get('tools/call') as Handler | undefined;
    if (typeof current === 'function' && !(WRAPPED in current)) {
      handlers.set('tools/call', wrapHandler(current, low, deps, options, inFlight));
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

/** A call's tool execution: its promise, or the error it threw at once. */
type Execution = Promise<unknown> | { error: unknown };

/** Where a call's `extra` holds its execution. */
const EXECUTION = Symbol('mcp-analytics.execution');

/**
 * Keeps each call's `executeToolHandler` promise on its held call, or on its `extra` as a
 * non-enumerable symbol property (invisible to the tool's spreads and JSON), so that it lives exactly
 * as long as the request. Not a
 * WeakMap: with 10,000 calls in flight, V8 marked its ephemerons in the atomic pause of each full GC of
 * the gateway, up to ~130 ms. Nothing is attached to the promise (a handler on every call's promise
 * was ~450 B of garbage per call, for the few that fail).
 */
function hookToolErrors(mcp: { executeToolHandler?: unknown }, low: LowLevelServer, inFlight: InFlightCalls | undefined, logger: Logger): void {
  const original = mcp.executeToolHandler;
  if (typeof original !== 'function') {
    logger.warn('instrumentServer: this McpServer version has no executeToolHandler; errors thrown by tools are audited from their isError results only');
    return;
  }
  mcp.executeToolHandler = function (this: unknown, tool: unknown, args: unknown, extra: unknown) {
    const keyed = typeof extra === 'object' && extra !== null;
    let pending: unknown;
    try {
      pending = original.call(this, tool, args, extra);
    } catch (error) {
      if (keyed) keepExecution(extra, { error }, low, inFlight);
      throw error;
    }
    if (keyed && pending instanceof Promise) keepExecution(extra, pending, low, inFlight);
    return pending;
  };
}

/**
 * On the call, when it is held for its response (in flight since its handler started, which awaits
 * before it executes the tool); else on `extra`. A frozen or sealed `extra` keeps nothing: its call's
 * error is then read from the isError result only.
 */
function keepExecution(extra: object, execution: Execution, low: LowLevelServer, inFlight: InFlightCalls | undefined): void {
  const call = inFlight?.find((extra as RequestExtra).requestId, low.transport);
  if (call !== undefined && call.extra === extra) call.execution = execution;
  else Reflect.defineProperty(extra, EXECUTION, { value: execution, writable: true, configurable: true, enumerable: false });
}

function executionOf(extra: RequestExtra): Execution | undefined {
  return (extra as { [EXECUTION]?: Execution })[EXECUTION];
}

function wrapHandler(inner: Handler, low: LowLevelServer, deps: InstrumentDeps, options: InstrumentOptions, inFlight: InFlightCalls | undefined): Handler {
  // Not an async function: its state and awaits cost more garbage per call than one `then`.
  const wrapped: Handler = function (this: unknown, request, extra) {
    const call = begin(request, extra, low, deps, options);
    if (!call) return inner.call(this, request, extra);
    let pending: Promise<unknown>;
    try {
      pending = call.context ? context.with(call.context, inner, this, request, extra) : inner.call(this, request, extra);
    } catch (error) {
      end(call, extra, deps, undefined, error, true);
      return Promise.reject(error);
    }
    call.extra = extra;
    call.reporter = deps;
    if (inFlight !== undefined && holdForResponse(call, request, pending, low, inFlight, deps)) return pending;
    return Promise.resolve(pending).then((call.onFulfilled ??= fulfilled(call)), (call.onRejected ??= rejected(call)));
  };
  Object.defineProperty(wrapped, WRAPPED, { value: true });
  return wrapped;
}

/** The `_meta` key of a request that belongs to a task: its response may be queued, not sent. */
const RELATED_TASK = 'io.modelcontextprotocol/related-task';

type Transport = { send: (message: unknown, options?: unknown) => unknown };

/** The transports whose `send` reports responses, each to the calls of its server (null: it could not be hooked). */
const responseHooks = new WeakMap<object, InFlightCalls | null>();

/** The parts of the SDK's Protocol that the response path reads or hooks. */
interface Protocol {
  _oncancel?: unknown;
  _onclose?: unknown;
  /** The requests it dispatched and has not answered or given up: id → their AbortController. */
  _requestHandlerAbortControllers?: unknown;
}

/**
 * Where the server's calls can be held until their response is sent (in-flight.ts): when the SDK's
 * Protocol has the two places where a request's response is given up (`_oncancel`, `_onclose`),
 * hooked here so that those calls are then ended by their handler's promise, and its map of the
 * requests it dispatched. Else undefined: every call is ended by a reaction on its handler's promise.
 */
function responsePath(low: LowLevelServer, deps: InstrumentDeps): InFlightCalls | undefined {
  const protocol = low as unknown as Protocol;
  const oncancel = protocol._oncancel;
  const onclose = protocol._onclose;
  if (typeof oncancel !== 'function' || typeof onclose !== 'function' || !(protocol._requestHandlerAbortControllers instanceof Map)) return undefined;
  const inFlight = new InFlightCalls();
  // What these hooks do never keeps the SDK's own cancel or close from running.
  protocol._oncancel = function (this: unknown, notification: unknown) {
    try {
      const requestId = (notification as { params?: { requestId?: unknown } } | undefined)?.params?.requestId;
      const call = inFlight.take(requestId, low.transport);
      if (call !== undefined) endWithHandler(call, deps);
    } catch (failure) {
      deps.logger.debug({ err: failure }, 'instrumentServer: could not audit a cancelled tool call');
    }
    return oncancel.call(this, notification);
  };
  protocol._onclose = function (this: unknown) {
    try {
      inFlight.takeAll(low.transport, (call) => endWithHandler(call, deps));
    } catch (failure) {
      deps.logger.debug({ err: failure }, 'instrumentServer: could not audit the tool calls of a closed connection');
    }
    return onclose.call(this);
  };
  return inFlight;
}

/**
 * Holds the call until its response is sent, when it can be: a request the SDK's Protocol dispatched
 * (its `extra.signal` is the one the Protocol keeps for its id: not a handler called directly), not a
 * task's request, sent on a transport whose `send` can be hooked, an integer id with a free slot. The
 * handler's promise is kept for the calls whose response is given up or is an error.
 */
function holdForResponse(call: ToolCall, request: ToolCallRequest, pending: unknown, low: LowLevelServer, inFlight: InFlightCalls, deps: InstrumentDeps): boolean {
  if (!(pending instanceof Promise)) return false;
  const dispatched = (low as unknown as Protocol)._requestHandlerAbortControllers;
  const signal = (call.extra as RequestExtra | undefined)?.signal;
  if (!(dispatched instanceof Map) || signal === undefined || (dispatched.get(call.requestId) as AbortController | undefined)?.signal !== signal) return false;
  const params = request?.params as { task?: unknown; _meta?: unknown } | undefined;
  if (params?.task !== undefined) return false;
  if (typeof params?._meta === 'object' && params._meta !== null && RELATED_TASK in params._meta) return false;
  const transport = low.transport as Transport | undefined;
  if (transport === undefined || !hookResponses(transport, inFlight, deps)) return false;
  call.pending = pending;
  if (inFlight.hold(call, transport)) return true;
  call.pending = undefined;
  return false;
}

/** Whether the transport's responses reach `inFlight`: its `send` is hooked once, for one server. */
function hookResponses(transport: Transport, inFlight: InFlightCalls, deps: InstrumentDeps): boolean {
  const owner = responseHooks.get(transport);
  if (owner !== undefined) return owner === inFlight;
  const send = transport.send;
  const hooked = function (this: unknown, message: unknown, options?: unknown) {
    if (inFlight.size > 0) endWithResponse(message, transport, inFlight, deps);
    return send.call(this, message, options);
  };
  try {
    if (typeof send === 'function') transport.send = hooked;
  } catch {
    // A frozen transport: its calls are ended by their handler's promise.
  }
  const isHooked = transport.send === hooked;
  responseHooks.set(transport, isHooked ? inFlight : null);
  return isHooked;
}

/** A response (a message with an id and a result or an error) ends the call held under its id. */
function endWithResponse(message: unknown, via: object, inFlight: InFlightCalls, deps: InstrumentDeps): void {
  try {
    if (typeof message !== 'object' || message === null) return;
    const response = message as { id?: unknown; result?: unknown; error?: unknown };
    if (typeof response.id !== 'number') return;
    const failed = response.error !== undefined;
    if (!failed && !('result' in response)) return;
    const call = inFlight.take(response.id, via);
    if (call === undefined) return;
    // An error response: the handler threw, and what it threw is read from its promise.
    if (failed) endWithHandler(call, deps);
    else end(call, call.extra as RequestExtra, deps, response.result, undefined, false);
  } catch (failure) {
    deps.logger.debug({ err: failure }, 'instrumentServer: could not audit a tool call');
  }
}

/** Ends a call no longer held for its response when its handler's promise settles (cancelled, closed, failed). */
function endWithHandler(call: ToolCall, deps: InstrumentDeps): void {
  const pending = call.pending;
  call.pending = undefined;
  pending?.then(
    (result) => end(call, call.extra as RequestExtra, deps, result, undefined, false),
    (error: unknown) => end(call, call.extra as RequestExtra, deps, undefined, error, true),
  );
}

/**
 * The callbacks of a call's handler promise. They take the call's `extra` and deps from its fields, not
 * from a closure per call: two closures and the context they share, kept while the call is in flight,
 * are that many more objects for every scavenge of the gateway to copy.
 */
function fulfilled(call: ToolCall): (result: unknown) => unknown {
  return (result) => {
    end(call, call.extra as RequestExtra, call.reporter as InstrumentDeps, result, undefined, false);
    return result;
  };
}

function rejected(call: ToolCall): (error: unknown) => never {
  return (error) => {
    end(call, call.extra as RequestExtra, call.reporter as InstrumentDeps, undefined, error, true);
    throw error;
  };
}

function begin(request: ToolCallRequest, extra: RequestExtra, low: LowLevelServer, deps: InstrumentDeps, options: InstrumentOptions): ToolCall | undefined {
  try {
    const start = performance.now();
    const params = request?.params;
    const tool = clip(typeof params?.name === 'string' && params.name !== '' ? params.name : '(unnamed)', LIMITS.toolLength);
    const accountId = options.accountId ? options.accountId(extra) : extra?.authInfo?.clientId;
    const transport = options.transport ?? transportName(low.transport);
    const client = low.getClientVersion?.();
    const call = deps.calls
      ? deps.calls.take(start, tool, transport, accountId, client, extra?.sessionId, extra?.requestId)
      : new ToolCall(start, tool, transport, accountId, client, extra?.sessionId, extra?.requestId);
    call.requestBytes = jsonBytes(params?.arguments);
    const active = context.active();
    const route = isTracingSuppressed(active) ? undefined : deps.fast?.route();
    if (route) beginRecorded(call, route, active, params?._meta);
    else beginSdkSpan(call, deps.tracer, params?._meta);
    return call;
  } catch (error) {
    deps.logger.debug({ err: error }, 'instrumentServer: could not start auditing a tool call');
    return undefined;
  }
}

/** The SDK path: an SDK span, started now, in whose context the handler runs. */
function beginSdkSpan(call: ToolCall, tracer: Tracer, meta: unknown): void {
  const { parent, links } = parentContextFrom(meta);
  const span = tracer.startSpan(TOOL_CALL_SPAN, { kind: SpanKind.SERVER, attributes: startAttributes(call), links }, parent);
  call.span = span;
  call.context = trace.setSpan(parent, span);
}

/**
 * The fast path: the parent and the link as the SDK would find them, and the sampling decision of its
 * default sampler. Ids are made in the batch, unless a context manager is registered: then the handler
 * runs in a context holding the call's span context (non-recording) and the client's baggage.
 */
function beginRecorded(call: ToolCall, route: FastRoute, active: Context, meta: unknown): void {
  call.route = route;
  let parentContext = active;
  const carrier = typeof meta === 'object' && meta !== null ? (meta as Record<string, unknown>) : undefined;
  if (carrier && (typeof carrier['traceparent'] === 'string' || typeof carrier['baggage'] === 'string')) {
    const { parent, links } = parentContextFrom(meta);
    parentContext = parent;
    call.link = links?.[0];
  }
  const parent = trace.getSpanContext(parentContext);
  if (parent !== undefined && isSpanContextValid(parent)) {
    call.parent = parent;
    call.sampled = (parent.traceFlags & TraceFlags.SAMPLED) !== 0;
  }
  if (contextManagerRegistered()) {
    call.otelTraceId = call.parent ? call.parent.traceId : newOtelTraceId();
    call.otelSpanId = newOtelSpanId();
    const traceFlags = call.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE;
    call.context = trace.setSpanContext(parentContext, { traceId: call.otelTraceId, spanId: call.otelSpanId, traceFlags, traceState: call.parent?.traceState });
  }
}

const PROBE = context.active().setValue(createContextKey('mcp-analytics.probe'), true);
const probeActive = () => context.active() === PROBE;

/** Whether `context.with` reaches the handler: without a context manager the handler's context is ROOT anyway. */
function contextManagerRegistered(): boolean {
  return context.with(PROBE, probeActive);
}

function end(call: ToolCall, extra: RequestExtra, deps: InstrumentDeps, result: unknown, error: unknown, failed: boolean): void {
  try {
    call.end = performance.now();
    call.failed = failed;
    call.isErrorResult = !failed && typeof result === 'object' && result !== null && (result as { isError?: unknown }).isError === true;
    call.responseBytes = failed ? 0 : jsonBytes(result);
    if (failed) return complete(call, deps, error);
    const execution = call.isErrorResult && typeof extra === 'object' && extra !== null ? ((call.execution as Execution | undefined) ?? executionOf(extra)) : undefined;
    if (execution === undefined) return complete(call, deps, undefined);
    if (!(execution instanceof Promise)) return complete(call, deps, execution.error);
    // Settled already: its error (if it threw rather than returned isError) a turn later.
    execution.then(
      () => complete(call, deps, undefined),
      (cause: unknown) => complete(call, deps, cause),
    );
  } catch (failure) {
    deps.logger.debug({ err: failure }, 'instrumentServer: could not audit a tool call');
  }
}

/** The call's span ended (or its recording queued) and its record reported, `cause` the error it failed with. */
function complete(call: ToolCall, deps: InstrumentDeps, cause: unknown): void {
  try {
    call.cause = cause;
    const span = call.span;
    if (span === undefined) {
      deps.fast!.batch.add(call);
      return;
    }
    const outcome = finishSpan(call, span);
    span.end();
    const spanContext = span.spanContext();
    const valid = isSpanContextValid(spanContext);
    deps.audit(auditRecordOf(call, outcome, valid ? spanContext.traceId : '', valid ? spanContext.spanId : ''));
  } catch (failure) {
    deps.logger.debug({ err: failure }, 'instrumentServer: could not audit a tool call');
  }
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
