/**
 * Spans into the pipeline. `createSpanProcessor` is a BatchSpanProcessor over an exporter that encodes
 * each batch as a protobuf `ExportTraceServiceRequest` (model/otlp.ts) and hands it to the collector's
 * queue for the `otlp_spans` topic (header `tenant`), through the same spool when Kafka is down.
 *
 * A gateway adds it to its own tracer provider; an OTLP backend can get the same spans from a second
 * processor at the same time:
 *
 *   const provider = new NodeTracerProvider({ spanProcessors: [
 *     collector.spanProcessor,
 *     new BatchSpanProcessor(new OTLPTraceExporter({ url: 'http://otel:4318/v1/traces' })),
 *   ] });
 *   provider.register();
 */
import { context, ROOT_CONTEXT, type Context, type TextMapGetter } from '@opentelemetry/api';
import { ExportResultCode, suppressTracing, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { BatchSpanProcessor, type BufferConfig, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { TENANT_HEADER } from '../core/publisher.ts';
import { encodeTraceRequest } from '../model/otlp.ts';
import type { SpoolRecord } from './spool.ts';

export interface SpanSinkOptions {
  topic: string;
  tenant: string;
  /** Messages above this are split (by halving the span list) before they reach Kafka. */
  maxMessageBytes: number;
  /** Hands one message to the collector; false when it had to be dropped. */
  enqueue(record: SpoolRecord): boolean;
}

export function createSpanExporter(options: SpanSinkOptions): SpanExporter {
  const headers = { [TENANT_HEADER]: options.tenant, 'content-type': 'application/x-protobuf' };
  let stopped = false;

  function encode(spans: ReadableSpan[], out: Buffer[]): void {
    const body = Buffer.from(encodeTraceRequest(spans));
    if (body.length > options.maxMessageBytes && spans.length > 1) {
      const half = Math.ceil(spans.length / 2);
      encode(spans.slice(0, half), out);
      encode(spans.slice(half), out);
    } else if (body.length > 0) {
      out.push(body);
    }
  }

  return {
    export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
      if (stopped) return done({ code: ExportResultCode.FAILED, error: new Error('the collector is shut down') });
      try {
        const bodies: Buffer[] = [];
        encode(spans, bodies);
        let accepted = true;
        for (const value of bodies) accepted = options.enqueue({ topic: options.topic, key: null, value, headers }) && accepted;
        done(accepted ? { code: ExportResultCode.SUCCESS } : { code: ExportResultCode.FAILED, error: new Error('collector queue full') });
      } catch (error) {
        done({ code: ExportResultCode.FAILED, error: error instanceof Error ? error : new Error(String(error)) });
      }
    },
    async shutdown() {
      stopped = true;
    },
    async forceFlush() {},
  };
}

/**
 * Export batches are small by default (64 spans, ~0.2 ms to encode) because encoding runs on the
 * gateway's event loop: a 512-span batch would block it for 1-2 ms at a time.
 */
export const SPAN_PROCESSOR_DEFAULTS: BufferConfig = { maxExportBatchSize: 64, maxQueueSize: 4096, scheduledDelayMillis: 1000 };

export function createSpanProcessor(options: SpanSinkOptions, config?: BufferConfig): SpanProcessor {
  return new BatchSpanProcessor(createSpanExporter(options), { ...SPAN_PROCESSOR_DEFAULTS, ...config });
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
