import { createHash, randomFillSync } from 'node:crypto';

/**
 * Random bytes for `newEventId` and `newTraceId`, drawn from the OS CSPRNG 16 KiB at a time. One
 * `crypto.getRandomValues` call per id (what the `uuid` package does) costs 1-8 µs, most of it call
 * overhead; a refill costs ~20 µs for ~1,000 ids. Node's own `crypto.randomUUID` caches its entropy the
 * same way. Each thread has its own pool (and its own ordering state).
 */
const POOL_BYTES = 16 * 1024;
const pool = Buffer.allocUnsafeSlow(POOL_BYTES);
let poolOffset = POOL_BYTES;

/** Offset in `pool` of `count` fresh random bytes. */
function randomAt(count: number): number {
  if (poolOffset + count > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const at = poolOffset;
  poolOffset += count;
  return at;
}

/** The 16 bytes of the id being made, and its text: written in place, read as one string (no concatenations). */
const bytes = Buffer.alloc(16);
const text = Buffer.alloc(36, 0x2d); // '-' at 8, 13, 18, 23 stay
const TEXT_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

function uuidText(): string {
  for (let i = 0; i < 16; i++) {
    const b = bytes[i]!;
    text[TEXT_AT[i]!] = HEX_DIGITS[b >>> 4]!;
    text[TEXT_AT[i]! + 1] = HEX_DIGITS[b & 0x0f]!;
  }
  return text.toString('latin1');
}

/** Millisecond and counter of the last UUIDv7: ids of one thread sort in the order they were made. */
let lastMs = -Infinity;
let seq = 0;

/**
 * A fresh UUIDv7 (RFC 9562): time-ordered, for events a gateway stamps itself.
 *
 * Layout as the `uuid` package's v7 (RFC 9562 §6.2 method 1, a 32-bit counter seeded randomly at each
 * new millisecond): 48-bit Unix ms | version 7 | counter bits 31-20 | variant 10 | counter bits 19-0 |
 * 42 random bits. Within a millisecond the counter increments, so ids are strictly increasing; if the
 * clock steps back, the last millisecond is kept; a counter overflow moves to the next millisecond.
 */
export function newEventId(): string {
  const r = randomAt(10);
  const now = Date.now();
  if (now > lastMs) {
    seq = ((pool[r]! & 0x7f) << 24) | (pool[r + 1]! << 16) | (pool[r + 2]! << 8) | pool[r + 3]!;
    lastMs = now;
  } else {
    seq = (seq + 1) | 0;
    if (seq === 0) lastMs++;
  }
  bytes.writeUIntBE(lastMs, 0, 6);
  bytes[6] = 0x70 | ((seq >>> 28) & 0x0f);
  bytes[7] = (seq >>> 20) & 0xff;
  bytes[8] = 0x80 | ((seq >>> 14) & 0x3f);
  bytes[9] = (seq >>> 6) & 0xff;
  bytes[10] = ((seq << 2) & 0xff) | (pool[r + 4]! & 0x03);
  for (let i = 0; i < 5; i++) bytes[11 + i] = pool[r + 5 + i]!;
  return uuidText();
}

/** A random UUIDv4, as `crypto.randomUUID()` (what go-micro's gateway puts in `trace_id`), for a tenth of its garbage. */
export function newTraceId(): string {
  const r = randomAt(16);
  // Byte by byte: Buffer#copy of part of a buffer makes a Uint8Array view per call.
  for (let i = 0; i < 16; i++) bytes[i] = pool[r + i]!;
  bytes[6] = 0x40 | (bytes[6]! & 0x0f);
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  return uuidText();
}

/**
 * A UUIDv7 whose time field is the event's own millisecond and whose 74 "random" bits come from a
 * SHA-256 of the given parts. The same call reported twice (a retried HTTP batch, a replayed spool,
 * an audit record and its span) gets the same id, which is what makes exactly-once possible for
 * gateways that do not assign `event_id` themselves.
 */
export function deriveEventId(epochMs: number, parts: readonly string[]): string {
  const digest = createHash('sha256').update(parts.join('\u0000')).digest();
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(Math.max(0, Math.floor(epochMs)), 0, 6);
  digest.copy(bytes, 6, 0, 10);
  bytes[6] = 0x70 | (bytes[6]! & 0x0f); // version 7
  bytes[8] = 0x80 | (bytes[8]! & 0x3f); // RFC 9562 variant
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const hex32 = Buffer.alloc(32);

/** `count` random bytes of the pool as lowercase hex (never all zero: an OpenTelemetry id must not be). */
function randomHex(count: number): string {
  const r = randomAt(count);
  let any = 0;
  for (let i = 0; i < count; i++) {
    const b = pool[r + i]!;
    any |= b;
    hex32[2 * i] = HEX_DIGITS[b >>> 4]!;
    hex32[2 * i + 1] = HEX_DIGITS[b & 0x0f]!;
  }
  if (any === 0) hex32[2 * count - 1] = 0x31; // '1'
  return hex32.toString('latin1', 0, 2 * count);
}

/** A random OpenTelemetry trace id (32 hex digits), as the SDK's RandomIdGenerator makes it. */
export function newOtelTraceId(): string {
  return randomHex(16);
}

/** A random OpenTelemetry span id (16 hex digits). */
export function newOtelSpanId(): string {
  return randomHex(8);
}
