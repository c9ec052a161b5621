/**
 * The on-disk form of spooled messages. A segment file is a sequence of frames:
 *
 *   u32 payload length | u32 CRC-32 of the payload | payload
 *
 * and a payload is one Kafka message (all integers big-endian):
 *
 *   u8 format version (1) | u16 topic length | topic | i32 key length (-1: null) | key
 *   | u16 header count | (u16 name length | name | u32 value length | value)* | u32 value length | value
 *
 * A crash can leave a torn last frame (short, or failing its CRC): `scanFrames` stops before it.
 */
import zlib from 'node:zlib';
import type { OutboundMessage } from '../core/publisher.ts';

export const FRAME_HEADER_BYTES = 8;
/** Larger than any Kafka message we send: a length above this is garbage, not a frame. */
export const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
const FORMAT_VERSION = 1;

export interface SpoolRecord extends OutboundMessage {
  topic: string;
}

export function encodeFrame(record: SpoolRecord): Buffer {
  const topic = Buffer.from(record.topic, 'utf8');
  const key = record.key === null ? null : Buffer.from(record.key, 'utf8');
  const headers = Object.entries(record.headers ?? {}).map(([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(v, 'utf8')] as const);
  let size = 1 + 2 + topic.length + 4 + (key?.length ?? 0) + 2 + 4 + record.value.length;
  for (const [k, v] of headers) size += 2 + k.length + 4 + v.length;

  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + size);
  let at = FRAME_HEADER_BYTES;
  at = frame.writeUInt8(FORMAT_VERSION, at);
  at = frame.writeUInt16BE(topic.length, at);
  at += topic.copy(frame, at);
  at = frame.writeInt32BE(key === null ? -1 : key.length, at);
  if (key) at += key.copy(frame, at);
  at = frame.writeUInt16BE(headers.length, at);
  for (const [k, v] of headers) {
    at = frame.writeUInt16BE(k.length, at);
    at += k.copy(frame, at);
    at = frame.writeUInt32BE(v.length, at);
    at += v.copy(frame, at);
  }
  at = frame.writeUInt32BE(record.value.length, at);
  record.value.copy(frame, at);

  frame.writeUInt32BE(size, 0);
  frame.writeUInt32BE(crc32(frame.subarray(FRAME_HEADER_BYTES)), 4);
  return frame;
}

export interface ScannedFrame {
  /** Offset of the frame in the buffer. */
  start: number;
  /** Offset just after the frame. */
  end: number;
  payload: Buffer;
}

export interface ScanResult {
  frames: ScannedFrame[];
  /** End of the last whole, intact frame: where a torn or corrupt tail starts (or the buffer's end). */
  validEnd: number;
  /** True when bytes after `validEnd` are not a frame (a torn write or corruption), not just cut by the buffer. */
  corrupt: boolean;
}

/**
 * Reads whole frames from `buffer`, starting at `from`, at most `maxFrames`. A frame cut by the end of
 * the buffer ends the scan without being corrupt (`end` of the buffer may not be the end of the file).
 */
export function scanFrames(buffer: Buffer, from = 0, maxFrames = Infinity): ScanResult {
  const frames: ScannedFrame[] = [];
  let at = from;
  while (frames.length < maxFrames) {
    if (buffer.length - at < FRAME_HEADER_BYTES) return { frames, validEnd: at, corrupt: false };
    const length = buffer.readUInt32BE(at);
    if (length === 0 || length > MAX_PAYLOAD_BYTES) return { frames, validEnd: at, corrupt: true };
    const end = at + FRAME_HEADER_BYTES + length;
    if (end > buffer.length) return { frames, validEnd: at, corrupt: false };
    const payload = buffer.subarray(at + FRAME_HEADER_BYTES, end);
    if (crc32(payload) !== buffer.readUInt32BE(at + 4)) return { frames, validEnd: at, corrupt: true };
    frames.push({ start: at, end, payload });
    at = end;
  }
  return { frames, validEnd: at, corrupt: false };
}

/** Needed bytes to complete the frame at `at` (header included), or undefined if its header is cut. */
export function frameLengthAt(buffer: Buffer, at: number): number | undefined {
  return buffer.length - at < FRAME_HEADER_BYTES ? undefined : FRAME_HEADER_BYTES + buffer.readUInt32BE(at);
}

/** Thrown for a payload that passed its CRC but does not parse: a bug or a newer format version. */
export class SpoolFormatError extends Error {
  override readonly name = 'SpoolFormatError';
}

export function decodePayload(payload: Buffer): SpoolRecord {
  try {
    let at = 0;
    const version = payload.readUInt8(at);
    at += 1;
    if (version !== FORMAT_VERSION) throw new SpoolFormatError(`unknown spool record format ${version}`);
    const topicLength = payload.readUInt16BE(at);
    at += 2;
    const topic = payload.toString('utf8', at, (at += topicLength));
    const keyLength = payload.readInt32BE(at);
    at += 4;
    const key = keyLength < 0 ? null : payload.toString('utf8', at, (at += keyLength));
    const headerCount = payload.readUInt16BE(at);
    at += 2;
    const headers: Record<string, string> = {};
    for (let i = 0; i < headerCount; i++) {
      const nameLength = payload.readUInt16BE(at);
      at += 2;
      const name = payload.toString('utf8', at, (at += nameLength));
      const valueLength = payload.readUInt32BE(at);
      at += 4;
      headers[name] = payload.toString('utf8', at, (at += valueLength));
    }
    const valueLength = payload.readUInt32BE(at);
    at += 4;
    if (at + valueLength !== payload.length) throw new SpoolFormatError('spool record length mismatch');
    // A copy: the payload is a view of a large read buffer that should not be kept alive.
    const value = Buffer.from(payload.subarray(at, at + valueLength));
    return { topic, key, value, headers };
  } catch (error) {
    if (error instanceof SpoolFormatError) throw error;
    throw new SpoolFormatError(`malformed spool record: ${(error as Error).message}`);
  }
}

// ---------------------------------------------------------------------------
// CRC-32 (IEEE): node:zlib has it from Node 20.15 / 22.2; a table-driven fallback for older 20.x.

type Crc32 = (data: Uint8Array) => number;

const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

let table: Uint32Array | undefined;
function tableCrc32(data: Uint8Array): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export const crc32: Crc32 = nativeCrc32 ? (data) => nativeCrc32(data) : tableCrc32;
/** For the unit test: both implementations must agree. */
export const crc32Fallback: Crc32 = tableCrc32;
