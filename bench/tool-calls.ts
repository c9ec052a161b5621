/**
 * Recorded tool calls for the collector's benches, made as the gateway's thread makes them: on the
 * route instrumentServer takes (fastRouteOf) for the collector's tracer on a default tracer provider.
 */
import { BasicTracerProvider, NoopSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { INSTRUMENTATION_SCOPE, VERSION } from '../collector/index.ts';
import { createPrepare } from '../collector/prepare.ts';
import type { SpoolRecord } from '../collector/spool-format.ts';
import { ToolCall } from '../collector/tool-call.ts';
import { fastRouteOf, type FastRoute } from '../collector/tool-call-spans.ts';
import { createToolCallReader, type WireCalls } from '../collector/tool-call-wire.ts';
import { createWarnings } from '../collector/warnings.ts';

/** The collector's route on a tracer provider that feeds only the collector's processor, with the SDK's defaults. */
export function collectorRoute(): FastRoute {
  const own = new NoopSpanProcessor();
  const route = fastRouteOf(new BasicTracerProvider({ spanProcessors: [own] }).getTracer(INSTRUMENTATION_SCOPE, VERSION), own);
  if (!route) throw new Error('a default tracer provider gave no fast route');
  return route;
}

export interface RecordedCallFields {
  transport: string;
  accountId?: string;
  client: { name: string; version: string };
  sessionId?: string;
  requestId: number;
  durationMs: number;
  requestBytes: number;
  responseBytes: number;
}

/** An ordinary recorded call (sampled, allowed, no error), ended, as the gateway's thread leaves it. */
export function recordedCall(route: FastRoute, start: number, f: RecordedCallFields): ToolCall {
  const call = new ToolCall(start, 'users.Users.Get', f.transport, f.accountId, f.client, f.sessionId, f.requestId);
  call.end = start + f.durationMs;
  call.requestBytes = f.requestBytes;
  call.responseBytes = f.responseBytes;
  call.route = route;
  call.sampled = true;
  return call;
}

/**
 * The encoder thread's work on posted calls (collector/encoder-entry.ts), for tenant `default`: their
 * spans' messages and audit records (`createToolCallReader`), and the records encoded for Kafka
 * (`createPrepare`). Any error throws.
 */
export function callEncoder(topics: { audit: string; spans: string }): (wire: WireCalls) => { records: SpoolRecord[]; spans: SpoolRecord[] } {
  const warnings = createWarnings(() => undefined);
  const onError = (error: unknown): never => {
    throw error;
  };
  const read = createToolCallReader({ tenant: 'default', spansTopic: topics.spans, maxMessageBytes: 1_000_000, timeOrigin: performance.timeOrigin, warnings, onError });
  const prepare = createPrepare({ tenant: 'default', auditTopic: topics.audit, warnings });
  const counters = { sent: 0, spilled: 0, dropped: 0, failed: 0, invalid: 0 };
  return (wire) => {
    const made = read(wire);
    return { records: prepare(made.records, counters), spans: made.spans };
  };
}
