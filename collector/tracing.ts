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
 * Encoding waits for a later turn of the event loop than the `span.end()` that completes a batch
 * (see `createSpanExporter`).
 */
import { context, isSpanContextValid, ROOT_CONTEXT, trace, type Context, type Link, type TextMapGetter } from '@opentelemetry/api';
import { CompositePropagator, ExportResultCode, suppressTracing, W3CBaggagePropagator, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { BatchSpanProcessor, type BufferConfig, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
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
export const SPAN_PROCESSOR_DEFAULTS: BufferConfig = { maxExportBatchSize: 64, maxQueueSize: 4096, scheduledDelayMillis: 1000 };

/** The SDK's BatchSpanProcessor over the collector's exporter (`createSpanExporter`). */
export function createSpanProcessor(options: SpanSinkOptions, config: BufferConfig = {}): SpanProcessor {
  return new BatchSpanProcessor(createSpanExporter(options), { ...SPAN_PROCESSOR_DEFAULTS, ...config });
}

/**
 * Encodes each batch and hands it to the collector's queue, on a later turn of the event loop: the
 * BatchSpanProcessor exports a full batch synchronously inside the `span.end()` that fills it, i.e.
 * inside one tool call in 64, whose latency would otherwise carry the encoding of 64 spans.
 */
export function createSpanExporter(options: SpanSinkOptions): SpanExporter {
  const exportNow = createSpanSink(options);
  let stopped = false;

  return {
    export(spans, done) {
      if (stopped) return done({ code: ExportResultCode.FAILED, error: new Error('the collector is shut down') });
      setImmediate(() => done(exportNow(spans)));
    },
    async shutdown() {
      stopped = true;
    },
    async forceFlush() {},
  };
}

/** Encodes a batch of spans (with `encode`, by default the OpenTelemetry serializer) and hands it to the collector's queue, now. */
export function createSpanSink(options: SpanSinkOptions, encode: (spans: ReadableSpan[]) => Uint8Array = encodeTraceRequest): (spans: ReadableSpan[]) => ExportResult {
  const headers = { [TENANT_HEADER]: options.tenant, 'content-type': 'application/x-protobuf' };

  return function exportNow(spans: ReadableSpan[]): ExportResult {
    try {
      let accepted = true;
      for (const value of encodeSpans(spans, options.maxMessageBytes, encode)) {
        accepted = options.enqueue({ topic: options.topic, key: null, value, headers }) && accepted;
      }
      if (accepted) return { code: ExportResultCode.SUCCESS };
      options.warnings.warn('spans-dropped', {}, 'the collector queue is full; spans are dropped');
      return { code: ExportResultCode.FAILED, error: new Error('the collector queue is full') };
    } catch (error) {
      options.warnings.warn('span-encoding', { err: error, count: spans.length }, 'could not encode spans; they are dropped');
      return { code: ExportResultCode.FAILED, error: error instanceof Error ? error : new Error(String(error)) };
    }
  };
}

/** A protobuf request per batch, halving a batch whose request would be larger than `maxMessageBytes`. */
function encodeSpans(spans: ReadableSpan[], maxMessageBytes: number, encode: (spans: ReadableSpan[]) => Uint8Array, out: Buffer[] = []): Buffer[] {
  const encoded = encode(spans);
  const body = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  if (body.length > maxMessageBytes && spans.length > 1) {
    const half = Math.ceil(spans.length / 2);
    encodeSpans(spans.slice(0, half), maxMessageBytes, encode, out);
    encodeSpans(spans.slice(half), maxMessageBytes, encode, out);
  } else if (body.length > 0) {
    out.push(body);
  }
  return out;
}

// ---------------------------------------------------------------------------
// W3C trace context and baggage from a request's `_meta`

const w3c = new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] });

const metaGetter: TextMapGetter<Record<string, unknown>> = {
  get: (carrier, key) => {
    const value = carrier[key];
    return typeof value === 'string' ? value : undefined;
  },
  keys: (carrier) => Object.keys(carrier),
};

/**
 * The parent of a tool call's span: the client's trace from `_meta.traceparent`/`tracestate`, with
 * `_meta.baggage`, when present, else the active context. A span active at the same time (an HTTP
 * server span of the transport) is then linked, not the parent, as OpenTelemetry's MCP conventions ask.
 */
export function parentContextFrom(meta: unknown): { parent: Context; links: Link[] | undefined } {
  const active = context.active();
  if (meta === null || typeof meta !== 'object') return { parent: active, links: undefined };
  const carrier = meta as Record<string, unknown>;
  if (typeof carrier['traceparent'] !== 'string' && typeof carrier['baggage'] !== 'string') return { parent: active, links: undefined };
  const parent = w3c.extract(active, carrier, metaGetter);
  const ambient = trace.getSpanContext(active);
  const remote = trace.getSpanContext(parent);
  const linked = ambient !== undefined && isSpanContextValid(ambient) && remote !== ambient;
  return { parent, links: linked ? [{ context: ambient }] : undefined };
}

/** Runs `fn` where no span is recorded: the collector's own Kafka traffic must not trace itself. */
export function untraced<T>(fn: () => T): T {
  return context.with(suppressTracing(ROOT_CONTEXT), fn);
}
