/**
 * Spans of one resource and one instrumentation scope as a protobuf `ExportTraceServiceRequest`,
 * written straight into one reused buffer: the same fields and values as `encodeTraceRequest` (the
 * OpenTelemetry serializer), without its per-id byte arrays (two passes, each turning every trace and
 * span id into a new Uint8Array: most of the garbage of encoding a span). The collector's recorded
 * tool-call spans go this way (collector/tool-call-spans.ts); test/model/otlp-span-writer.test.ts holds
 * it to the serializer by decoding both.
 */
import type { Attributes, AttributeValue, HrTime, Link, SpanStatus } from '@opentelemetry/api';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';

let buf = Buffer.allocUnsafeSlow(64 * 1024);
let pos = 0;

/** A copy of the request (the buffer is reused by the next call); every span has the first one's resource and scope. */
export function writeTraceRequest(spans: readonly ReadableSpan[]): Buffer {
  if (spans.length === 0) return Buffer.alloc(0);
  const { resource, instrumentationScope: scope } = spans[0]!;
  pos = 0;
  tag(1, 2);
  const resourceSpans = startMessage();
  tag(1, 2);
  const resourceStart = startMessage();
  writeAttributes(resource.attributes, 1);
  tag(2, 0);
  varint(0);
  endMessage(resourceStart);
  tag(2, 2);
  const scopeSpans = startMessage();
  tag(1, 2);
  const scopeStart = startMessage();
  tag(1, 2);
  string(scope.name);
  if (scope.version) {
    tag(2, 2);
    string(scope.version);
  }
  endMessage(scopeStart);
  // Indexed loops throughout: an iterator per loop is garbage per span.
  for (let i = 0; i < spans.length; i++) {
    tag(2, 2);
    writeSpan(spans[i]!);
  }
  if (scope.schemaUrl) {
    tag(3, 2);
    string(scope.schemaUrl);
  }
  endMessage(scopeSpans);
  if (resource.schemaUrl) {
    tag(3, 2);
    string(resource.schemaUrl);
  }
  endMessage(resourceSpans);
  return Buffer.from(buf.subarray(0, pos));
}

const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;

function writeSpan(span: ReadableSpan): void {
  const start = startMessage();
  const context = span.spanContext();
  tag(1, 2);
  hexBytes(context.traceId);
  tag(2, 2);
  hexBytes(context.spanId);
  const traceState = context.traceState?.serialize();
  if (traceState) {
    tag(3, 2);
    string(traceState);
  }
  const parent = span.parentSpanContext;
  if (parent?.spanId) {
    tag(4, 2);
    hexBytes(parent.spanId);
  }
  tag(5, 2);
  string(span.name);
  const kind = span.kind == null ? 0 : span.kind + 1;
  if (kind !== 0) {
    tag(6, 0);
    varint(kind);
  }
  tag(7, 1);
  fixed64Time(span.startTime);
  tag(8, 1);
  fixed64Time(span.endTime);
  writeAttributes(span.attributes, 9);
  tag(10, 0);
  varint(span.droppedAttributesCount);
  const events = span.events;
  for (let i = 0; i < events.length; i++) {
    tag(11, 2);
    writeEvent(events[i]!);
  }
  tag(12, 0);
  varint(span.droppedEventsCount);
  const links = span.links;
  for (let i = 0; i < links.length; i++) {
    tag(13, 2);
    writeLink(links[i]!);
  }
  tag(14, 0);
  varint(span.droppedLinksCount);
  tag(15, 2);
  writeStatus(span.status);
  tag(16, 5);
  fixed32((context.traceFlags & 0xff) | HAS_IS_REMOTE | (parent?.isRemote ? IS_REMOTE : 0));
  endMessage(start);
}

function writeEvent(event: TimedEvent): void {
  const start = startMessage();
  tag(1, 1);
  fixed64Time(event.time);
  tag(2, 2);
  string(event.name);
  if (event.attributes) writeAttributes(event.attributes, 3);
  tag(4, 0);
  varint(event.droppedAttributesCount || 0);
  endMessage(start);
}

function writeLink(link: Link): void {
  const start = startMessage();
  const context = link.context;
  tag(1, 2);
  hexBytes(context.traceId);
  tag(2, 2);
  hexBytes(context.spanId);
  const traceState = context.traceState?.serialize();
  if (traceState) {
    tag(3, 2);
    string(traceState);
  }
  if (link.attributes) writeAttributes(link.attributes, 4);
  tag(5, 0);
  varint(link.droppedAttributesCount || 0);
  tag(6, 5);
  fixed32((context.traceFlags & 0xff) | HAS_IS_REMOTE | (context.isRemote ? IS_REMOTE : 0));
  endMessage(start);
}

function writeStatus(status: SpanStatus): void {
  const start = startMessage();
  if (status.message) {
    tag(2, 2);
    string(status.message);
  }
  tag(3, 0);
  varint(status.code);
  endMessage(start);
}

function writeAttributes(attributes: Attributes, field: number): void {
  for (const key in attributes) {
    // An undefined value is no attribute (the SDK's spans never hold one; reused objects do).
    if (!Object.hasOwn(attributes, key) || attributes[key] === undefined) continue;
    tag(field, 2);
    const start = startMessage();
    tag(1, 2);
    string(key);
    tag(2, 2);
    const value = startMessage();
    writeAnyValue(attributes[key]);
    endMessage(value);
    endMessage(start);
  }
}

function writeAnyValue(value: AttributeValue | undefined | null): void {
  if (typeof value === 'string') {
    tag(1, 2);
    string(value);
  } else if (typeof value === 'boolean') {
    tag(2, 0);
    varint(value ? 1 : 0);
  } else if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
      tag(3, 0);
      int64(value);
    } else {
      tag(4, 1);
      ensure(8);
      buf.writeDoubleLE(value, pos);
      pos += 8;
    }
  } else if (Array.isArray(value)) {
    tag(5, 2);
    const array = startMessage();
    for (let i = 0; i < value.length; i++) {
      tag(1, 2);
      const itemStart = startMessage();
      writeAnyValue(value[i]);
      endMessage(itemStart);
    }
    endMessage(array);
  }
}

// ---------------------------------------------------------------------------
// The wire format, into `buf` at `pos`

function ensure(bytes: number): void {
  if (pos + bytes <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + bytes) size *= 2;
  const grown = Buffer.allocUnsafeSlow(size);
  buf.copy(grown, 0, 0, pos);
  buf = grown;
}

function tag(field: number, wireType: number): void {
  varint((field << 3) | wireType);
}

function varint(value: number): void {
  ensure(10);
  let v = value;
  while (v > 0x7f) {
    buf[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[pos++] = v;
}

/** int64 as protobuf writes it: a negative number as its 64-bit two's complement (ten bytes). */
function int64(value: number): void {
  if (value >= 0) return varint(value);
  let v = BigInt.asUintN(64, BigInt(value));
  ensure(10);
  while (v > 0x7fn) {
    buf[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  buf[pos++] = Number(v);
}

function fixed32(value: number): void {
  ensure(4);
  buf.writeUInt32LE(value >>> 0, pos);
  pos += 4;
}

/** HrTime as fixed64 nanoseconds, exact (seconds × 1e9 exceeds 2^53: split in 32-bit halves). */
function fixed64Time(time: HrTime): void {
  const seconds = time[0];
  const nanos = time[1];
  const low16 = (seconds & 0xffff) * 1e9;
  const high = ((seconds / 0x10000) >>> 0) * 1e9;
  const lowWithCarry = (low16 >>> 0) + (((high & 0xffff) * 0x10000) >>> 0) + nanos;
  const carry = Math.floor(lowWithCarry / 0x100000000);
  ensure(8);
  buf.writeUInt32LE(lowWithCarry >>> 0, pos);
  buf.writeUInt32LE((Math.floor(low16 / 0x100000000) + ((high / 0x10000) >>> 0) + carry) >>> 0, pos + 4);
  pos += 8;
}

function string(text: string): void {
  // Most texts here are short and ASCII (attribute keys, names, ids): written by char, as their length
  // in bytes is then their length in chars; anything else goes through Buffer's UTF-8 writer, whose
  // two native calls cost more than these texts' bytes do.
  const chars = text.length;
  if (chars < 0x80) {
    ensure(1 + chars);
    const at = pos + 1;
    let i = 0;
    for (; i < chars; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) break;
      buf[at + i] = code;
    }
    if (i === chars) {
      buf[pos] = chars;
      pos = at + chars;
      return;
    }
  }
  const length = Buffer.byteLength(text, 'utf8');
  varint(length);
  ensure(length);
  pos += buf.write(text, pos, length, 'utf8');
}

/** A hex id as its bytes (what the serializer's hexToBinary makes of it). */
function hexBytes(hex: string): void {
  const length = hex.length >>> 1;
  varint(length);
  ensure(length);
  for (let i = 0; i < length; i++) buf[pos++] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
}

function nibble(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  return code - 55;
}

/**
 * Where a length-delimited message starts. One byte is kept for its length, which `endMessage` writes
 * there: enough for most messages (an attribute, a status); a longer one is moved up to make room.
 */
function startMessage(): number {
  ensure(1);
  return pos++;
}

function endMessage(start: number): void {
  const length = pos - start - 1;
  if (length < 0x80) {
    buf[start] = length;
    return;
  }
  let size = 1;
  for (let v = length; v > 0x7f; v = Math.floor(v / 0x80)) size++;
  ensure(size - 1);
  buf.copyWithin(start + size, start + 1, pos);
  const end = pos + size - 1;
  pos = start;
  varint(length);
  pos = end;
}
