/**
 * Recorded tool calls across the thread border. With the collector's worker threads, an ordinary call
 * (recorded, allowed, no error: tool-call-spans.ts) is not finished on the gateway's thread: its fixed
 * fields are copied into columns that are reused slice after slice (numbers in a Float64Array, strings
 * by reference in an array) and posted with the slice, and the encoder thread makes its ids, its
 * `mcp.tool.call` span and its audit record, with the same code as the gateway's thread would
 * (`createToolCallBatch`), so the same record and the same OTLP bytes. The gateway's thread then
 * allocates nothing per call after the call itself: no record, no id strings, no span encoding.
 *
 * Calls that are not ordinary (an error or a denial to read from the thrown value, a link, a parent's
 * trace state) are finished on the gateway's thread as before: their inputs are objects that do not
 * cross a thread border as they are.
 */
import type { Attributes } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { AuditRecordInput } from '../model/audit-event.ts';
import { writeTraceRequest } from '../model/otlp-span-writer.ts';
import type { SpoolRecord } from './spool.ts';
import { ToolCall } from './tool-call.ts';
import { createToolCallBatch, type FastRoute } from './tool-call-spans.ts';
import { createSpanSink } from './tracing.ts';
import type { Warnings } from './warnings.ts';

/** A slice of calls as posted: NUMBERS numbers and VALUES values per call, and the routes first used in it. */
export interface WireCalls {
  count: number;
  numbers: Float64Array;
  values: unknown[];
  routes: WireRoute[] | undefined;
}

/** A route's resource and scope as plain data: what the OTLP writer reads of them. */
interface WireRoute {
  id: number;
  resource: { attributes: Attributes; schemaUrl?: string };
  scope: InstrumentationScope;
}

// Per call, numbers: start, end, request bytes, response bytes, route id, sampled (1/0), parent's trace
// flags (-1: no parent), parent is remote (1/0).
const NUMBERS = 8;
// Per call, values (strings, numbers or undefined): tool, transport, account id, client name, client
// version, session id, request id, parent's trace id, parent's span id, OpenTelemetry trace id and span
// id (made at the start when a context manager is registered, else ''), per-call id ('' until made).
const VALUES = 12;

const isWireValue = (value: unknown) => value === undefined || typeof value === 'string' || typeof value === 'number';

/** Whether a finished recorded call can be finished in another thread: nothing in it but numbers and strings. */
export function wireable(call: ToolCall): boolean {
  return (
    call.route !== undefined &&
    call.span === undefined &&
    call.cause === undefined &&
    !call.failed &&
    !call.isErrorResult &&
    call.link === undefined &&
    call.parent?.traceState === undefined &&
    call.route.resource.asyncAttributesPending !== true &&
    isWireValue(call.accountId) &&
    isWireValue(call.sessionId) &&
    isWireValue(call.requestId) &&
    isWireValue(call.client?.name) &&
    isWireValue(call.client?.version)
  );
}

/**
 * The gateway's side: `add` copies a call into the columns, `take` gives the slice to post (the columns
 * themselves: post them before the next `add`), `clear` readies the columns for the next slice.
 */
export class ToolCallWriter {
  private readonly numbers: Float64Array;
  private readonly values: unknown[];
  private count = 0;
  /** Route ids, by route; -1 for a route whose resource cannot be posted. */
  private readonly routeIds = new Map<FastRoute, number>();
  private newRoutes: WireRoute[] | undefined;

  constructor(readonly capacity: number) {
    this.numbers = new Float64Array(capacity * NUMBERS);
    this.values = new Array<unknown>(capacity * VALUES).fill(undefined);
  }

  get length(): number {
    return this.count;
  }

  /** False (nothing written) when the slice is full, or the call's route cannot be posted. */
  add(call: ToolCall): boolean {
    if (this.count === this.capacity) return false;
    const route = this.routeId(call.route!);
    if (route < 0) return false;
    const n = this.count * NUMBERS;
    const numbers = this.numbers;
    const parent = call.parent;
    numbers[n] = call.start;
    numbers[n + 1] = call.end;
    numbers[n + 2] = call.requestBytes;
    numbers[n + 3] = call.responseBytes;
    numbers[n + 4] = route;
    numbers[n + 5] = call.sampled ? 1 : 0;
    numbers[n + 6] = parent ? parent.traceFlags : -1;
    numbers[n + 7] = parent?.isRemote ? 1 : 0;
    const v = this.count * VALUES;
    const values = this.values;
    values[v] = call.tool;
    values[v + 1] = call.transport;
    values[v + 2] = call.accountId;
    values[v + 3] = call.client?.name;
    values[v + 4] = call.client?.version;
    values[v + 5] = call.sessionId;
    values[v + 6] = call.requestId;
    values[v + 7] = parent?.traceId;
    values[v + 8] = parent?.spanId;
    values[v + 9] = call.otelTraceId;
    values[v + 10] = call.otelSpanId;
    values[v + 11] = call.traceId;
    this.count++;
    return true;
  }

  take(): WireCalls {
    const routes = this.newRoutes;
    this.newRoutes = undefined;
    return { count: this.count, numbers: this.numbers, values: this.values, routes };
  }

  /** After the slice is posted: its strings are let go. */
  clear(): void {
    this.values.fill(undefined, 0, this.count * VALUES);
    this.count = 0;
  }

  private routeId(route: FastRoute): number {
    let id = this.routeIds.get(route);
    if (id === undefined) {
      const { resource, scope } = route;
      const wire: WireRoute = {
        id: this.routeIds.size,
        resource: resource.schemaUrl === undefined ? { attributes: { ...resource.attributes } } : { attributes: { ...resource.attributes }, schemaUrl: resource.schemaUrl },
        scope: { name: scope.name, ...(scope.version !== undefined && { version: scope.version }), ...(scope.schemaUrl !== undefined && { schemaUrl: scope.schemaUrl }) },
      };
      try {
        structuredClone(wire);
        id = wire.id;
        (this.newRoutes ??= []).push(wire);
      } catch {
        id = -1;
      }
      this.routeIds.set(route, id);
    }
    return id;
  }
}

export interface ToolCallReaderOptions {
  tenant: string;
  spansTopic: string;
  maxMessageBytes: number;
  /** Filled into records that do not name a gateway. */
  gateway?: string;
  /** The gateway thread's `performance.timeOrigin` (the calls' times are relative to it). */
  timeOrigin: number;
  warnings: Warnings;
  onError(error: unknown): void;
}

export interface ReadCalls {
  /** The calls' audit records, to validate and encode as any other. */
  records: AuditRecordInput[];
  /** The calls' spans, encoded: messages for the spans topic. */
  spans: SpoolRecord[];
}

/** The worker's side: each posted slice (in the order posted: routes are announced once) into records and span messages. */
export function createToolCallReader(options: ToolCallReaderOptions): (wire: WireCalls) => ReadCalls {
  const { gateway } = options;
  const routes = new Map<number, FastRoute>();
  let out: ReadCalls = { records: [], spans: [] };
  const exportSpans = createSpanSink(
    {
      topic: options.spansTopic,
      tenant: options.tenant,
      maxMessageBytes: options.maxMessageBytes,
      warnings: options.warnings,
      enqueue: (record) => (out.spans.push(record), true),
    },
    writeTraceRequest,
  );
  const batch = createToolCallBatch({
    audit: (record) => {
      if (gateway !== undefined && record.gateway === undefined) record.gateway = gateway;
      out.records.push(record);
    },
    exportSpans: (spans) => void exportSpans(spans),
    onError: options.onError,
    timeOrigin: options.timeOrigin,
  });

  return (wire) => {
    for (const route of wire.routes ?? []) routes.set(route.id, { resource: route.resource as Resource, scope: route.scope });
    out = { records: [], spans: [] };
    for (let i = 0; i < wire.count; i++) {
      try {
        batch.add(callAt(wire, i, routes));
      } catch (error) {
        options.onError(error);
      }
    }
    batch.flush();
    return out;
  };
}

/** The `i`th call of a slice, as the gateway's thread recorded it. */
function callAt(wire: WireCalls, i: number, routes: Map<number, FastRoute>): ToolCall {
  const { numbers, values } = wire;
  const n = i * NUMBERS;
  const v = i * VALUES;
  const route = routes.get(numbers[n + 4]!);
  if (route === undefined) throw new Error(`tool call of an unknown route ${numbers[n + 4]}`);
  const clientName = values[v + 3] as string | undefined;
  const clientVersion = values[v + 4] as string | undefined;
  const client = clientName === undefined && clientVersion === undefined ? undefined : { name: clientName, version: clientVersion };
  const call = new ToolCall(numbers[n]!, values[v] as string, values[v + 1] as string, values[v + 2] as string | undefined, client, values[v + 5], values[v + 6]);
  call.end = numbers[n + 1]!;
  call.requestBytes = numbers[n + 2]!;
  call.responseBytes = numbers[n + 3]!;
  call.route = route;
  call.sampled = numbers[n + 5] === 1;
  const parentFlags = numbers[n + 6]!;
  if (parentFlags >= 0) {
    call.parent = { traceId: values[v + 7] as string, spanId: values[v + 8] as string, traceFlags: parentFlags, isRemote: numbers[n + 7] === 1 };
  }
  call.otelTraceId = values[v + 9] as string;
  call.otelSpanId = values[v + 10] as string;
  call.traceId = values[v + 11] as string;
  return call;
}
