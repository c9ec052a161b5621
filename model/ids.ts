import { createHash } from 'node:crypto';
import { v7 } from 'uuid';

/** A fresh UUIDv7 (RFC 9562): time-ordered, for events a gateway stamps itself. */
export function newEventId(): string {
  return v7();
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
