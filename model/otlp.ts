/**
 * The OTLP trace codec. `decodeTraceRequest` turns an `ExportTraceServiceRequest` (protobuf or OTLP/JSON,
 * from `POST /v1/traces` or the `otlp_spans` topic) into `SpanRow`s; `encodeTraceRequest` writes our
 * collector's spans as protobuf; `toSpanInsertRow` is the one mapping to the `spans_v1` table.
 *
 * Limits: a span is telemetry, not an audit record, so a span over `SPAN_LIMITS` is truncated to fit
 * (the first N attributes and events in wire order, long names, keys and values cut at the maximum
 * length), never refused. Only structurally invalid spans (bad or all-zero ids, empty name, unusable
 * timestamps, an unknown kind or status name) are rejected, each with its index and issues.
 * Attributes with an empty key (or the key `__proto__`) are invalid in OTLP and are skipped.
 */
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { Issue } from './issues.ts';
import { decodeExportTraceRequest, parseOtlpJson } from './otlp-proto.ts';
import { SPAN_KINDS, SPAN_LIMITS, STATUS_CODES, validateSpanRow, type SpanRow } from './span.ts';
import { formatClickHouse, instantFromEpochNanos } from './timestamp.ts';

/** The body as a whole is not an `ExportTraceServiceRequest`: answer 400, or dead-letter the message. */
export class OtlpDecodeError extends Error {
  override readonly name = 'OtlpDecodeError';
  /** Where in the request the shape broke (OTLP/JSON field names), empty for the whole body. */
  readonly path: string;
  /** The message without the path. */
  readonly reason: string;

  constructor(reason: string, options: { path?: string; cause?: unknown } = {}) {
    super(options.path ? `${options.path}: ${reason}` : reason, { cause: options.cause });
    this.path = options.path ?? '';
    this.reason = reason;
  }
}

export interface RejectedSpan {
  /** Running index of the span across all resourceSpans and scopeSpans, in request order. */
  index: number;
  issues: Issue[];
}

export interface DecodedTraceRequest {
  spans: SpanRow[];
  rejected: RejectedSpan[];
}

export function decodeTraceRequest(body: Uint8Array, encoding: 'protobuf' | 'json', tenant: string): DecodedTraceRequest {
  const request = encoding === 'protobuf' ? parseProtobuf(body) : parseJson(body);
  const result: DecodedTraceRequest = { spans: [], rejected: [] };
  let index = 0;
  for (const [r, resourceSpans] of objects(request, 'resourceSpans', '').entries()) {
    const resourcePath = `resourceSpans.${r}`;
    const resource = optionalObject(resourceSpans, 'resource', resourcePath);
    const resourceAttributes = readAttributes(resource && get(resource, 'attributes'), `${resourcePath}.resource.attributes`);
    const service = truncate(resourceAttributes['service.name'] ?? '', 256);
    for (const [s, scopeSpans] of objects(resourceSpans, 'scopeSpans', resourcePath).entries()) {
      const scopePath = `${resourcePath}.scopeSpans.${s}`;
      const scope = optionalObject(scopeSpans, 'scope', scopePath);
      const context: SpanContext = {
        tenant,
        service,
        scope_name: truncate(text(scope && get(scope, 'name')), 256),
        scope_version: truncate(text(scope && get(scope, 'version')), 128),
        resource_attributes: resourceAttributes,
      };
      for (const span of list(scopeSpans, 'spans', scopePath)) {
        const outcome = flattenSpan(span, context);
        if (outcome.ok) result.spans.push(outcome.value);
        else result.rejected.push({ index, issues: outcome.issues });
        index++;
      }
    }
  }
  return result;
}

/** Our collector's spans as a protobuf `ExportTraceServiceRequest`, the `otlp_proto` form on Kafka. */
export function encodeTraceRequest(spans: ReadableSpan[]): Uint8Array {
  return ProtobufTraceSerializer.serializeRequest(spans) ?? new Uint8Array();
}

export interface SpanInsertEvent {
  /** DateTime64(9, 'UTC') text. */
  time: string;
  name: string;
  attributes: Record<string, string>;
}

/** One JSONEachRow row of `spans_v1`. */
export type SpanInsertRow = Omit<SpanRow, 'start_time_unix_nano' | 'duration_ns' | 'events'> & {
  /** DateTime64(9, 'UTC') text, `YYYY-MM-DD HH:MM:SS.fffffffff`. */
  start_time: string;
  /** UInt64: a number while it is exact, else its decimal text (ClickHouse reads both). */
  duration_ns: number | string;
  /** `Array(Tuple(time, name, attributes))`: named tuples are JSON objects in JSONEachRow. */
  events: SpanInsertEvent[];
};

export function toSpanInsertRow(row: SpanRow): SpanInsertRow {
  const { start_time_unix_nano, duration_ns, events, ...rest } = row;
  const duration = Number(duration_ns);
  return {
    ...rest,
    start_time: clickHouseTime(start_time_unix_nano),
    duration_ns: Number.isSafeInteger(duration) ? duration : duration_ns,
    events: events.map((e) => ({ time: clickHouseTime(e.time_unix_nano), name: e.name, attributes: e.attributes })),
  };
}

const clickHouseTime = (nanos: string) => formatClickHouse(instantFromEpochNanos(BigInt(nanos)));

// ---- the request envelope -------------------------------------------------------------------------

type Json = Record<string, unknown>;

function parseProtobuf(body: Uint8Array): Json {
  try {
    return decodeExportTraceRequest(body);
  } catch (error) {
    throw new OtlpDecodeError(`not a protobuf ExportTraceServiceRequest (${(error as Error).message})`, { cause: error });
  }
}

function parseJson(body: Uint8Array): Json {
  let parsed: unknown;
  try {
    parsed = parseOtlpJson(body);
  } catch (error) {
    throw new OtlpDecodeError(`not OTLP/JSON (${(error as Error).message})`, { cause: error });
  }
  if (!isObject(parsed)) throw new OtlpDecodeError('an OTLP/JSON ExportTraceServiceRequest must be a JSON object');
  return parsed;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/** A field by its OTLP/JSON name, or by its proto name as the Collector also accepts; null is absent. */
function get(message: Json, name: string): unknown {
  const value = message[name] ?? message[name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)];
  return value ?? undefined;
}

function list(message: Json, name: string, path: string): unknown[] {
  const value = get(message, name);
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new OtlpDecodeError('must be an array', { path: join(path, name) });
  return value;
}

function objects(message: Json, name: string, path: string): Json[] {
  return list(message, name, path).map((item, i) => {
    if (!isObject(item)) throw new OtlpDecodeError('must be an object', { path: join(path, `${name}.${i}`) });
    return item;
  });
}

function optionalObject(message: Json, name: string, path: string): Json | undefined {
  const value = get(message, name);
  if (value === undefined || isObject(value)) return value;
  throw new OtlpDecodeError('must be an object', { path: join(path, name) });
}

const join = (path: string, name: string) => (path ? `${path}.${name}` : name);

// ---- one span ---------------------------------------------------------------------------------------

type SpanContext = Pick<SpanRow, 'tenant' | 'service' | 'scope_name' | 'scope_version' | 'resource_attributes'>;

type Outcome = { ok: true; value: SpanRow } | { ok: false; issues: Issue[] };

function flattenSpan(span: unknown, context: SpanContext): Outcome {
  if (!isObject(span)) return { ok: false, issues: [{ path: '', message: 'must be an object' }] };
  const issues: Issue[] = [];
  const nanos = (value: unknown, path: string): bigint => {
    const n = toUint64(value);
    if (n === undefined) issues.push({ path, message: 'must be an unsigned 64-bit count of nanoseconds' });
    return n ?? 0n;
  };
  let row: SpanRow | undefined;
  try {
    const traceId = idToHex(get(span, 'traceId'), 16);
    const spanId = idToHex(get(span, 'spanId'), 8);
    const parentSpanId = idToHex(get(span, 'parentSpanId'), 8);
    if (/^0{32}$/.test(traceId)) issues.push({ path: 'trace_id', message: 'must not be all zeros' });
    if (/^0{16}$/.test(spanId)) issues.push({ path: 'span_id', message: 'must not be all zeros' });
    const start = nanos(get(span, 'startTimeUnixNano'), 'start_time_unix_nano');
    const end = nanos(get(span, 'endTimeUnixNano'), 'end_time_unix_nano');
    const statusValue = get(span, 'status');
    const status = isObject(statusValue) ? statusValue : {};
    const kind = enumValue(get(span, 'kind'), SPAN_KINDS, 'SPAN_KIND_');
    const statusCode = enumValue(get(status, 'code'), STATUS_CODES, 'STATUS_CODE_');
    if (kind === undefined) issues.push({ path: 'kind', message: 'must be one of SPAN_KIND_UNSPECIFIED … SPAN_KIND_CONSUMER or 0–5' });
    if (statusCode === undefined) issues.push({ path: 'status_code', message: 'must be one of STATUS_CODE_UNSET, _OK, _ERROR or 0–2' });
    row = {
      ...context,
      trace_id: traceId,
      span_id: spanId,
      // An all-zero parent is how some bridges (Zipkin, Jaeger) spell "no parent".
      parent_span_id: /^0{16}$/.test(parentSpanId) ? '' : parentSpanId,
      name: truncate(text(get(span, 'name')), SPAN_LIMITS.nameLength),
      kind: kind ?? 'unspecified',
      start_time_unix_nano: start.toString(),
      duration_ns: (end > start ? end - start : 0n).toString(),
      status_code: statusCode ?? 'unset',
      status_message: truncate(text(get(status, 'message')), SPAN_LIMITS.statusMessageLength),
      attributes: readAttributes(get(span, 'attributes'), 'attributes'),
      events: list(span, 'events', '')
        .slice(0, SPAN_LIMITS.events)
        .map((event, i) => {
          const e = isObject(event) ? event : {};
          return {
            time_unix_nano: nanos(get(e, 'timeUnixNano'), `events.${i}.time_unix_nano`).toString(),
            name: truncate(text(get(e, 'name')), SPAN_LIMITS.nameLength),
            attributes: readAttributes(get(e, 'attributes'), `events.${i}.attributes`),
          };
        }),
    };
  } catch (error) {
    if (!(error instanceof OtlpDecodeError)) throw error;
    issues.push({ path: error.path, message: error.reason });
  }
  if (!row) return { ok: false, issues };
  const validated = validateSpanRow(row);
  if (validated.ok && issues.length === 0) return validated;
  return { ok: false, issues: [...issues, ...(validated.ok ? [] : validated.issues)] };
}

/**
 * Ids as lowercase hex. Protobuf carries bytes. OTLP/JSON carries case-insensitive hex, but SDKs that
 * use a generic proto3 JSON mapper (opentelemetry-swift, Dart, protobuf-java JsonFormat) send base64,
 * which cannot be mistaken for hex: a right-length base64 id is 24 or 22 (12 or 11) characters, not 32
 * (16). Anything else is returned as it came, for validation to refuse.
 */
function idToHex(value: unknown, bytes: number): string {
  if (value === undefined) return '';
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (typeof value !== 'string') return String(value);
  if (value.length === bytes * 2 && /^[0-9a-fA-F]+$/.test(value)) return value.toLowerCase();
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(value) && value.length <= Math.ceil(bytes / 3) * 4) {
    const decoded = Buffer.from(value, 'base64');
    if (decoded.length === bytes) return decoded.toString('hex');
  }
  return value;
}

const UINT64_MAX = 2n ** 64n - 1n;

function toUint64(value: unknown): bigint | undefined {
  if (value === undefined) return 0n; // proto3: absent is zero
  const n = toInteger(value);
  return n !== undefined && n >= 0n && n <= UINT64_MAX ? n : undefined;
}

/** A 64-bit integer from protobufjs (decimal string) or OTLP/JSON (string or number). */
function toInteger(value: unknown): bigint | undefined {
  if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) return BigInt(value);
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  return undefined;
}

/** Enum values as numbers (protobuf, OTLP/JSON) or names (proto3 JSON mappers); unknown numbers are the zero value. */
function enumValue<T extends string>(value: unknown, names: readonly T[], prefix: string): T | undefined {
  if (value === undefined) return names[0];
  if (typeof value === 'number' && Number.isInteger(value)) return names[value] ?? names[0];
  if (typeof value !== 'string') return undefined;
  const upper = value.toUpperCase();
  return names.find((name) => upper === `${prefix}${name.toUpperCase()}`);
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : value === undefined ? '' : String(value);
}

/** Cuts to `max` UTF-16 units (what the zod limits count) without splitting a surrogate pair. */
function truncate(value: string, max: number): string {
  if (value.length <= max) return value;
  const code = value.charCodeAt(max - 1);
  return value.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

// ---- attribute values -------------------------------------------------------------------------------

function readAttributes(value: unknown, path: string): Record<string, string> {
  if (value === undefined) return {};
  if (!Array.isArray(value)) throw new OtlpDecodeError('must be an array of key-value pairs', { path });
  const attributes: Record<string, string> = {};
  let count = 0;
  for (const kv of value) {
    if (count === SPAN_LIMITS.attributes) break;
    const key = isObject(kv) ? get(kv, 'key') : undefined;
    if (typeof key !== 'string' || key === '' || key === '__proto__') continue;
    const name = truncate(key, SPAN_LIMITS.attributeKeyLength);
    if (Object.hasOwn(attributes, name)) continue; // keys must be unique: the first one wins
    attributes[name] = truncate(anyValueText(get(kv as Json, 'value')), SPAN_LIMITS.attributeValueLength);
    count++;
  }
  return attributes;
}

/** string as is, bool `true`/`false`, int decimal, double as JS prints it, bytes base64, arrays and kvlists JSON. */
function anyValueText(value: unknown): string {
  const v = anyValue(value, 0);
  if (v === null) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

type Plain = string | number | boolean | null | Plain[] | { [key: string]: Plain };

const MAX_NESTING = 32;

/** An AnyValue as plain JSON; ints beyond 2^53 stay strings, NaN and ±Infinity become strings. */
function anyValue(value: unknown, depth: number): Plain {
  if (!isObject(value) || depth > MAX_NESTING) return null;
  let v: unknown;
  if ((v = get(value, 'stringValue')) !== undefined) return text(v);
  if ((v = get(value, 'boolValue')) !== undefined) return typeof v === 'boolean' ? v : text(v);
  if ((v = get(value, 'intValue')) !== undefined) {
    const n = toInteger(v);
    if (n === undefined) return text(v);
    return Number.isSafeInteger(Number(n)) ? Number(n) : n.toString();
  }
  if ((v = get(value, 'doubleValue')) !== undefined) {
    const n = typeof v === 'number' ? v : Number(v);
    return Number.isFinite(n) ? n : String(n);
  }
  if ((v = get(value, 'bytesValue')) !== undefined) return v instanceof Uint8Array ? Buffer.from(v).toString('base64') : text(v);
  if ((v = get(value, 'arrayValue')) !== undefined) {
    const values = isObject(v) ? get(v, 'values') : undefined;
    return Array.isArray(values) ? values.map((item) => anyValue(item, depth + 1)) : [];
  }
  if ((v = get(value, 'kvlistValue')) !== undefined) {
    const values = isObject(v) ? get(v, 'values') : undefined;
    const out: { [key: string]: Plain } = {};
    for (const kv of Array.isArray(values) ? values : []) {
      const key = isObject(kv) ? get(kv, 'key') : undefined;
      if (typeof key === 'string' && key !== '__proto__' && !Object.hasOwn(out, key)) out[key] = anyValue(get(kv as Json, 'value'), depth + 1);
    }
    return out;
  }
  return null;
}
