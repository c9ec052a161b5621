/**
 * Spans into the pipeline. `createSpanProcessor` batches the finished spans of the gateway's tracer
 * provider, encodes each batch as a protobuf `ExportTraceServiceRequest` (model/otlp.ts) and hands it to
 * the collector's queue for the `otlp_spans` topic (header `tenant`), through the same spool when Kafka
 * is down.
 *
 * A gateway adds it to its own tracer provider; an OTLP backend can get the same spans from a second
 * processor at the same time:
 *
 *   const provider = new NodeTracerProvider({ spanProcessors: [
 *     collector.spanProcessor,
 *     new BatchSpanProcessor(new OTLPTraceExporter({ url: 'http://otel:4318/v1/traces' })),
 *   ] });
 *   provider.register();
 *
 * Not the SDK's BatchSpanProcessor: that one exports a full batch synchronously inside the `span.end()`
 * that fills it, i.e. inside one tool call in 64, whose latency then carries the encoding of 64 spans.
 * Here `onEnd` only appends; batches are encoded on a later turn of the event loop, one per turn.
 */
import { context, ROOT_CONTEXT, TraceFlags, type Context, type TextMapGetter } from '@opentelemetry/api';
import { suppressTracing, W3CTraceContextPropagator } from '@opentelemetry/core';
import type { BufferConfig, ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { TENANT_HEADER } from '../core/publisher.ts';
import { encodeTraceRequest } from '../model/otlp.ts';
import type { SpoolRecord } from './spool.ts';
import type { Warnings } from './warnings.ts';

export interface SpanSinkOptions {
  topic: string;
  tenant: string;
  /** Messages above this are split (by halving the span list) before they reach Kafka. */
  maxMessageBytes: number;
  /** Hands one message to the collector; false when it had to be dropped. */
  enqueue(record: SpoolRecord): boolean;
  warnings: Warnings;
}

/**
 * Spans per message, spans waiting at most, and how long a span waits for its batch to fill. Batches
 * are small (64 spans, ~0.25 ms to encode) because encoding runs on the gateway's event loop.
 */
export const SPAN_PROCESSOR_DEFAULTS = { maxExportBatchSize: 64, maxQueueSize: 4096, scheduledDelayMillis: 1000 } as const;

export function createSpanProcessor(options: SpanSinkOptions, config: BufferConfig = {}): SpanProcessor {
  const batchSize = Math.max(1, config.maxExportBatchSize ?? SPAN_PROCESSOR_DEFAULTS.maxExportBatchSize);
  const maxQueue = Math.max(batchSize, config.maxQueueSize ?? SPAN_PROCESSOR_DEFAULTS.maxQueueSize);
  const delayMs = config.scheduledDelayMillis ?? SPAN_PROCESSOR_DEFAULTS.scheduledDelayMillis;
  const headers = { [TENANT_HEADER]: options.tenant, 'content-type': 'application/x-protobuf' };
  let finished: ReadableSpan[] = [];
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  let stopped = false;

  /** Encodes and enqueues up to `batchSize` spans. */
  function exportBatch(): void {
    const spans = finished.length <= batchSize ? finished : finished.slice(0, batchSize);
    finished = finished.length <= batchSize ? [] : finished.slice(batchSize);
    try {
      for (const value of encodeSpans(spans, options.maxMessageBytes)) {
        if (!options.enqueue({ topic: options.topic, key: null, value, headers })) {
          options.warnings.warn('spans-dropped', {}, 'the collector queue is full; spans are dropped');
        }
      }
    } catch (error) {
      options.warnings.warn('span-encoding', { err: error, count: spans.length }, 'could not encode spans; they are dropped');
    }
  }

  /** One full batch per turn of the event loop, so a backlog never blocks it for long. */
  function onImmediate(): void {
    immediate = undefined;
    if (finished.length >= batchSize) exportBatch();
    schedule();
  }

  function onTimer(): void {
    timer = undefined;
    if (finished.length > 0) exportBatch();
    schedule();
  }

  function schedule(): void {
    if (finished.length >= batchSize) {
      immediate ??= setImmediate(onImmediate).unref();
    } else if (finished.length > 0 && timer === undefined) {
      timer = setTimeout(onTimer, delayMs).unref();
    }
  }

  function flushAll(): Promise<void> {
    while (finished.length > 0) exportBatch();
    return Promise.resolve();
  }

  return {
    onStart() {},
    onEnd(span) {
      if (stopped || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
      if (finished.length >= maxQueue) {
        options.warnings.warn('spans-dropped', { maxQueueSize: maxQueue }, 'spans end faster than the collector takes them; spans are dropped');
        return;
      }
      finished.push(span);
      if (finished.length >= batchSize || timer === undefined) schedule();
    },
    forceFlush: flushAll,
    async shutdown() {
      await flushAll();
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      if (immediate !== undefined) clearImmediate(immediate);
    },
  };
}

/** A protobuf request per batch, halving a batch whose request would be larger than `maxMessageBytes`. */
export function encodeSpans(spans: ReadableSpan[], maxMessageBytes: number, out: Buffer[] = []): Buffer[] {
  const encoded = encodeTraceRequest(spans);
  const body = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  if (body.length > maxMessageBytes && spans.length > 1) {
    const half = Math.ceil(spans.length / 2);
    encodeSpans(spans.slice(0, half), maxMessageBytes, out);
    encodeSpans(spans.slice(half), maxMessageBytes, out);
  } else if (body.length > 0) {
    out.push(body);
  }
  return out;
}

// ---------------------------------------------------------------------------
// W3C trace context from a request's `_meta`

const w3c = new W3CTraceContextPropagator();

const metaGetter: TextMapGetter<Record<string, unknown>> = {
  get: (carrier, key) => {
    const value = carrier[key];
    return typeof value === 'string' ? value : undefined;
  },
  keys: (carrier) => Object.keys(carrier),
};

/** The parent context of a tool call: `_meta.traceparent`/`tracestate` when present, else the active context. */
export function parentContextFrom(meta: unknown): Context {
  const active = context.active();
  if (meta === null || typeof meta !== 'object' || typeof (meta as Record<string, unknown>)['traceparent'] !== 'string') return active;
  return w3c.extract(active, meta as Record<string, unknown>, metaGetter);
}

/** Runs `fn` where no span is recorded: the collector's own Kafka traffic must not trace itself. */
export function untraced<T>(fn: () => T): T {
  return context.with(suppressTracing(ROOT_CONTEXT), fn);
}
