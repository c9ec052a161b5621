/**
 * The fast path of `instrumentServer`: when the collector's span processor is the only one the tool
 * calls' tracer feeds (the usual set-up: `collector.spanProcessor` in the gateway's tracer provider,
 * with the SDK's default sampler, id generator and limits), an SDK Span per call would only be made to
 * be encoded by that processor. So the call path records a `ToolCall` (fixed fields, no ids, no SDK
 * objects), and the batch, on a later turn of the event loop, makes each call's ids, its
 * `mcp.tool.call` span (the same attributes, status, events, links and flags the SDK would make, as a
 * `ReadableSpan` for the same OTLP serializer) and its audit record. That was most of the gateway
 * thread's garbage per call (the SDK's startSpan, its ids, attribute copies and context copies).
 * With the collector's worker threads, the same batch runs in the encoder thread for the ordinary
 * calls, which are posted there as columns (tool-call-wire.ts).
 *
 * Anything else keeps the SDK span: another span processor (an OTLP exporter, an in-memory one), a
 * custom sampler or id generator, span limits below what a tool call uses, span metrics, or no SDK
 * tracer at all.
 */
import { SpanKind, SpanStatusCode, TraceFlags, type Attributes, type HrTime, type Link, type SpanContext, type SpanStatus, type TraceState } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, SpanProcessor, TimedEvent } from '@opentelemetry/sdk-trace-base';
import type { AuditRecordInput } from '../model/audit-event.ts';
import { newOtelSpanId, newOtelTraceId, newTraceId } from '../model/ids.ts';
import { TOOL_CALL_SPAN } from '../model/span.ts';
import { attributeSlots, auditRecordOf, fillStartAttributes, finishSpan, type SpanEnd, type ToolCall } from './tool-call.ts';

/** Where the fast path's spans go, and what they carry of the tracer. */
export interface FastRoute {
  resource: Resource;
  scope: InstrumentationScope;
}

/** The parts of the SDK's Tracer (sdk-trace 2.x) that decide whether the fast path makes the same spans. */
interface SdkTracer {
  _spanProcessor?: { _spanProcessors?: unknown };
  _sampler?: { toString(): string };
  _idGenerator?: object;
  _spanLimits?: { attributeCountLimit?: number; attributeValueLengthLimit?: number; eventCountLimit?: number; linkCountLimit?: number; attributePerEventCountLimit?: number };
  _tracerMetrics?: { startedSpans?: object };
  _resource?: Resource;
  instrumentationScope?: InstrumentationScope;
}

const DEFAULT_SAMPLER =
  'ParentBased{root=AlwaysOnSampler, remoteParentSampled=AlwaysOnSampler, remoteParentNotSampled=AlwaysOffSampler, localParentSampled=AlwaysOnSampler, localParentNotSampled=AlwaysOffSampler}';

/** The fast route of a tracer, or undefined when its SDK spans could differ from the recorded ones (or go elsewhere too). */
export function fastRouteOf(tracer: unknown, own: SpanProcessor): FastRoute | undefined {
  if (typeof tracer !== 'object' || tracer === null) return undefined;
  const t = tracer as SdkTracer;
  const processors = t._spanProcessor?._spanProcessors;
  if (!Array.isArray(processors) || processors.length !== 1 || processors[0] !== own) return undefined;
  if (t._sampler?.toString() !== DEFAULT_SAMPLER) return undefined;
  if (t._idGenerator?.constructor?.name !== 'RandomIdGenerator') return undefined;
  const limits = t._spanLimits;
  if (
    !limits ||
    (limits.attributeValueLengthLimit ?? Infinity) !== Infinity ||
    (limits.attributeCountLimit ?? 128) < 32 ||
    (limits.eventCountLimit ?? 128) < 1 ||
    (limits.linkCountLimit ?? 128) < 1 ||
    (limits.attributePerEventCountLimit ?? 128) < 3
  ) {
    return undefined;
  }
  // Span metrics (a meter provider given to the tracer provider) would not count recorded spans.
  if (!t._tracerMetrics?.startedSpans?.constructor?.name.startsWith('Noop')) return undefined;
  if (!t._resource || !t.instrumentationScope) return undefined;
  return { resource: t._resource, scope: t.instrumentationScope };
}

/** Spans per message (as the SDK path's batch processor): ~0.25 ms of encoding each. */
const BATCH_CALLS = 64;

export interface ToolCallBatchOptions {
  /** Takes each record as is, never throws. */
  audit(record: AuditRecordInput): void;
  /** Encodes and queues a batch of spans (the collector's span exporter, without the SDK's processor). */
  exportSpans(spans: ReadableSpan[]): void;
  onError(error: unknown): void;
  /** The `performance.timeOrigin` of the thread that timed the calls (default: this one's). */
  timeOrigin?: number;
}

export interface ToolCallBatch {
  /** Takes an ended call with its `route`. */
  add(call: ToolCall): void;
  /** Makes everything taken so far into spans and records, now. */
  flush(): void;
}

export function createToolCallBatch(options: ToolCallBatchOptions): ToolCallBatch {
  const timeOrigin = options.timeOrigin ?? TIME_ORIGIN;
  let calls: ToolCall[] = [];
  let scheduled = false;
  /**
   * The spans of one message, reused message after message: `exportSpans` encodes them before it
   * returns and keeps none of them.
   */
  const spans: RecordedSpan[] = [];
  const pool: RecordedSpan[] = [];

  function onTurn(): void {
    scheduled = false;
    flush();
  }

  function exportPending(): void {
    if (spans.length === 0) return;
    try {
      options.exportSpans(spans);
    } finally {
      spans.length = 0;
    }
  }

  /** Everything taken so far: one message per BATCH_CALLS spans of one route (its resource and scope). */
  function flush(): void {
    while (calls.length > 0) {
      const taken = calls;
      calls = [];
      for (let i = 0; i < taken.length; i++) {
        const call = taken[i]!;
        try {
          if (spans.length === BATCH_CALLS || (spans.length > 0 && call.route !== spans[0]!.route)) exportPending();
          const span = (pool[spans.length] ??= new RecordedSpan(timeOrigin));
          if (finish(call, span, options.audit, timeOrigin)) spans.push(span);
        } catch (error) {
          options.onError(error);
        }
      }
      try {
        exportPending();
      } catch (error) {
        options.onError(error);
      }
    }
  }

  return {
    add(call) {
      calls.push(call);
      if (!scheduled) {
        scheduled = true;
        setImmediate(onTurn).unref();
      }
    },
    flush,
  };
}

/** The call's ids, span (into `span`; true when sampled) and audit record. */
function finish(call: ToolCall, span: RecordedSpan, audit: (record: AuditRecordInput) => void, timeOrigin: number): boolean {
  if (call.otelSpanId === '') {
    call.otelTraceId = call.parent ? call.parent.traceId : newOtelTraceId();
    call.otelSpanId = newOtelSpanId();
  }
  let outcome;
  if (call.sampled) {
    span.reset(call, call.route!);
    outcome = finishSpan(call, span);
  } else {
    if (call.traceId === '') call.traceId = newTraceId();
    outcome = finishSpan(call, NOT_RECORDED);
  }
  audit(auditRecordOf(call, outcome, call.otelTraceId, call.otelSpanId, timeOrigin));
  return call.sampled;
}

/** Where an unsampled call's span attributes go: nowhere (the SDK's non-recording span). */
const NOT_RECORDED: SpanEnd = { setAttribute: () => undefined, setStatus: () => undefined, recordException: () => undefined };

/** performance.timeOrigin, read once: its getter makes a new number each time. */
const TIME_ORIGIN = performance.timeOrigin;

/** Epoch milliseconds (with a fraction) as the SDK's HrTime. */
function hrTime(epochMs: number): HrTime {
  return setHrTime([0, 0], epochMs);
}

function setHrTime(time: HrTime, epochMs: number): HrTime {
  const seconds = Math.floor(epochMs / 1000);
  time[0] = seconds;
  time[1] = Math.round((epochMs - seconds * 1000) * 1e6);
  return time;
}

const STATUS_UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });
const NO_LINKS: Link[] = Object.freeze([]) as unknown as Link[];
const NO_EVENTS: TimedEvent[] = Object.freeze([]) as unknown as TimedEvent[];

/**
 * A finished `mcp.tool.call` span as the SDK would hand it to its processors, reused from call to call
 * (the batch's pool). Its own span context is itself (`spanContext()` returns `this`).
 */
class RecordedSpan implements ReadableSpan, SpanEnd, SpanContext {
  readonly name = TOOL_CALL_SPAN;
  readonly kind = SpanKind.SERVER;
  traceId = '';
  spanId = '';
  readonly traceFlags = TraceFlags.SAMPLED;
  traceState: TraceState | undefined = undefined;
  parentSpanContext: SpanContext | undefined = undefined;
  readonly startTime: HrTime = [0, 0];
  readonly endTime: HrTime = [0, 0];
  readonly ended = true;
  status: SpanStatus = STATUS_UNSET;
  links: Link[] = NO_LINKS;
  events: TimedEvent[] = NO_EVENTS;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  resource!: Resource;
  instrumentationScope!: InstrumentationScope;
  route: FastRoute | undefined = undefined;
  /** Every attribute slot of a tool-call span, filled call after call. */
  readonly attributes: Attributes = attributeSlots();
  private startMs = 0;
  private endMs = 0;

  /** `timeOrigin`: the `performance.timeOrigin` of the thread that timed the calls. */
  constructor(private readonly timeOrigin: number) {}

  /** Becomes the span of `call`. */
  reset(call: ToolCall, route: FastRoute): void {
    fillStartAttributes(call, this.attributes);
    this.traceId = call.otelTraceId;
    this.spanId = call.otelSpanId;
    this.traceState = call.parent?.traceState;
    this.parentSpanContext = call.parent;
    this.startMs = this.timeOrigin + call.start;
    this.endMs = this.timeOrigin + call.end;
    setHrTime(this.startTime, this.startMs);
    setHrTime(this.endTime, this.endMs);
    this.status = STATUS_UNSET;
    this.links = call.link ? [{ context: call.link.context, attributes: {} }] : NO_LINKS;
    this.events = NO_EVENTS;
    this.route = route;
    this.resource = route.resource;
    this.instrumentationScope = route.scope;
  }

  get duration(): HrTime {
    return hrTime(this.endMs - this.startMs);
  }

  spanContext(): SpanContext {
    return this;
  }

  setAttribute(key: string, value: string | boolean | string[]): this {
    this.attributes[key] = Array.isArray(value) ? value.slice() : value;
    return this;
  }

  setStatus(status: SpanStatus): this {
    this.status = status;
    return this;
  }

  /** As the SDK's `Span.recordException`, at the end of the call. */
  recordException(exception: Error | string): this {
    const attributes: Attributes = {};
    if (typeof exception === 'string') {
      attributes['exception.message'] = exception;
    } else {
      const code = (exception as { code?: unknown }).code;
      if (code) attributes['exception.type'] = String(code);
      else if (exception.name) attributes['exception.type'] = exception.name;
      if (exception.message) attributes['exception.message'] = exception.message;
      if (exception.stack) attributes['exception.stacktrace'] = exception.stack;
    }
    if (attributes['exception.type'] || attributes['exception.message']) {
      if (this.events === NO_EVENTS) this.events = [];
      this.events.push({ name: 'exception', attributes, time: hrTime(this.endMs), droppedAttributesCount: 0 });
    }
    return this;
  }
}
