/**
 * The disk spool: where messages wait while Kafka is unreachable or the in-memory queue overflows.
 *
 * - Append-only segment files `<first batch sequence, 16 digits>.seg` of CRC-framed records
 *   (spool-format.ts); each append is one write plus fsync, so an acknowledged append survives a crash.
 * - Bounded by bytes: an append that does not fit is cut, and the caller counts the rest as dropped.
 * - Read in sequence order, oldest first; a segment is deleted only once every record in it was
 *   acknowledged (`ack`, after Kafka acknowledged them). Progress inside the oldest segment is kept in
 *   `<seq>.ack` (best effort, no fsync): after a crash at worst a few batches are sent twice, never lost.
 * - Opening scans the existing segments: a torn or corrupt tail (a crash mid-write) is cut off and
 *   reported; the sequence counter continues after the highest segment so new records sort after old.
 *
 * Batch sequence numbers come from the caller (`nextSeq`), taken when a batch leaves the memory queue.
 * A batch that failed to send after newer ones were already spooled still sorts first: an append with a
 * sequence lower than the current segment's opens its own segment, named by that lower number.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../core/logger.ts';
import { decodePayload, encodeFrame, FRAME_HEADER_BYTES, frameLengthAt, scanFrames, type SpoolRecord } from './spool-format.ts';

export type { SpoolRecord };

export interface SpoolOptions {
  dir: string;
  maxBytes: number;
  /** A segment takes appends until it is this large (default maxBytes/8, 64 KiB to 16 MiB). */
  segmentMaxBytes?: number;
  logger: Logger;
}

/** Records read from the spool; pass it to `ack` once they are safely delivered. */
export interface SpoolBatch {
  records: SpoolRecord[];
  /** Frames covered, including any that could not be decoded (skipped). */
  readonly frames: number;
  readonly segment: number;
  readonly end: number;
}

export interface SpoolStats {
  bytes: number;
  records: number;
}

export interface Spool {
  /** The next batch sequence number (greater than any already on disk). */
  nextSeq(): number;
  /** Appends records durably; returns how many fit (a prefix), the rest did not fit in maxBytes. */
  append(seq: number, records: SpoolRecord[]): Promise<number>;
  /**
   * The oldest unacknowledged records, at most `maxRecords`, and never past the end of the batch they
   * were appended with (by this process); undefined when there are none.
   */
  read(maxRecords: number): Promise<SpoolBatch | undefined>;
  ack(batch: SpoolBatch): Promise<void>;
  /** True while records wait on disk or an append is under way. */
  hasPending(): boolean;
  stats(): SpoolStats;
  close(): Promise<void>;
}

interface Segment {
  seq: number;
  file: string;
  /** Bytes of whole, durable frames. */
  size: number;
  records: number;
  acked: number;
  ackedRecords: number;
  /** Highest batch sequence appended (for segments written by this process). */
  lastSeq: number;
  /**
   * For segments written by this process: the record count at the end of each appended batch. Reads
   * stop there, so a batch that was on its way to Kafka when it failed is sent again exactly as it
   * was (the same records, so the same per-partition sequence numbers of the idempotent producer):
   * if the broker had stored it before failing, it recognises it as a duplicate instead of storing
   * it twice.
   */
  batchEnds?: number[];
  handle?: fs.FileHandle;
}

const SEGMENT_NAME = /^(\d{16})\.seg$/;
const READ_CHUNK_BYTES = 1024 * 1024;

const segmentName = (seq: number) => `${String(seq).padStart(16, '0')}.seg`;
const ackName = (seq: number) => `${String(seq).padStart(16, '0')}.ack`;

export async function openSpool(options: SpoolOptions): Promise<Spool> {
  const { dir, maxBytes, logger } = options;
  const segmentMaxBytes = options.segmentMaxBytes ?? Math.min(16 * 1024 * 1024, Math.max(64 * 1024, Math.floor(maxBytes / 8)));
  await fs.mkdir(dir, { recursive: true });

  /** Segments with unacknowledged records, in sequence order. */
  const live: Segment[] = [];
  for (const name of (await fs.readdir(dir)).sort()) {
    const match = SEGMENT_NAME.exec(name);
    if (!match) continue;
    const segment = await loadSegment(dir, Number(match[1]), logger);
    // Fully acknowledged: a crash came between the last ack and the delete.
    if (segment.acked >= segment.size) await removeSegment(dir, segment);
    else live.push(segment);
  }

  let seqCounter = live.reduce((max, s) => Math.max(max, s.lastSeq), 0);
  let totalBytes = live.reduce((sum, s) => sum + s.size, 0);
  let totalRecords = live.reduce((sum, s) => sum + s.records - s.ackedRecords, 0);
  /** The segment this process appends to; every other one is sealed. */
  let current: Segment | undefined;
  let appending = 0;
  let cache: { seq: number; start: number; buffer: Buffer } | undefined;
  let chain: Promise<unknown> = Promise.resolve();

  if (live.length > 0) {
    logger.info({ dir, segments: live.length, records: totalRecords, bytes: totalBytes }, 'the spool holds records from an earlier run; they are sent first');
  }

  /** Spool operations run one at a time. */
  function serial<T>(operation: () => Promise<T>): Promise<T> {
    const run = chain.then(operation, operation);
    chain = run.catch(() => {});
    return run;
  }

  async function append(seq: number, records: SpoolRecord[]): Promise<number> {
    const frames: Buffer[] = [];
    let bytes = 0;
    for (const record of records) {
      const frame = encodeFrame(record);
      if (totalBytes + bytes + frame.length > maxBytes) break;
      frames.push(frame);
      bytes += frame.length;
    }
    if (frames.length === 0) return 0;

    const segment = current && seq > current.lastSeq && current.size < segmentMaxBytes ? current : await createSegment(seq);
    const handle = segment.handle ?? (segment.handle = await fs.open(segment.file, 'a'));
    const buffer = frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes);
    try {
      await handle.write(buffer, 0, buffer.length);
      await handle.sync();
    } catch (error) {
      // Never leave a half-written frame for later appends to follow.
      await handle.truncate(segment.size).catch(() => {});
      throw error;
    } finally {
      if (segment !== current) {
        segment.handle = undefined;
        await handle.close().catch(() => {});
      }
    }
    segment.size += bytes;
    segment.records += frames.length;
    segment.batchEnds?.push(segment.records);
    segment.lastSeq = Math.max(segment.lastSeq, seq);
    totalBytes += bytes;
    totalRecords += frames.length;
    return frames.length;
  }

  /** A new segment named `seq`; it becomes the current one unless an older batch is being put back. */
  async function createSegment(seq: number): Promise<Segment> {
    const segment: Segment = { seq, file: path.join(dir, segmentName(seq)), size: 0, records: 0, acked: 0, ackedRecords: 0, lastSeq: seq, batchEnds: [] };
    segment.handle = await fs.open(segment.file, 'a');
    await syncDir(dir);
    let i = live.length;
    while (i > 0 && live[i - 1]!.seq > seq) i--;
    live.splice(i, 0, segment);
    if (!current || seq > current.lastSeq) {
      const previous = current;
      current = segment;
      if (previous?.handle) {
        await previous.handle.close().catch(() => {});
        previous.handle = undefined;
      }
    }
    return segment;
  }

  async function read(wanted: number): Promise<SpoolBatch | undefined> {
    const segment = live.find((s) => s.acked < s.size);
    if (!segment) return undefined;
    const batchEnd = segment.batchEnds?.find((end) => end > segment.ackedRecords);
    const maxRecords = batchEnd === undefined ? wanted : Math.min(wanted, batchEnd - segment.ackedRecords);
    const records: SpoolRecord[] = [];
    let frameCount = 0;
    let at = segment.acked;
    while (frameCount < maxRecords && at < segment.size) {
      let { buffer, offset } = await bytesAt(segment, at, FRAME_HEADER_BYTES);
      const needed = frameLengthAt(buffer, offset) ?? FRAME_HEADER_BYTES;
      if (offset + needed > buffer.length) ({ buffer, offset } = await bytesAt(segment, at, needed));
      const { frames } = scanFrames(buffer, offset, maxRecords - frameCount);
      if (frames.length === 0) {
        // Only disk corruption after the spool was opened can get here: give up the rest of the segment.
        const lost = segment.records - segment.ackedRecords - frameCount;
        logger.error({ segment: segment.file, offset: at, lost }, 'unreadable record in a spool segment; the rest of the segment is lost');
        segment.records -= lost;
        totalRecords -= lost;
        segment.size = at;
        break;
      }
      for (const frame of frames) {
        frameCount++;
        try {
          records.push(decodePayload(frame.payload));
        } catch (error) {
          logger.error({ err: error, segment: segment.file }, 'skipping a spool record that cannot be decoded');
        }
      }
      at = cache!.start + frames[frames.length - 1]!.end;
    }
    return { records, frames: frameCount, segment: segment.seq, end: at };
  }

  /** Bytes of `segment` from `at`, at least `minLength` of them when the segment has them. */
  async function bytesAt(segment: Segment, at: number, minLength: number): Promise<{ buffer: Buffer; offset: number }> {
    const want = Math.min(minLength, segment.size - at);
    if (cache && cache.seq === segment.seq && at >= cache.start && at + want <= cache.start + cache.buffer.length) {
      return { buffer: cache.buffer, offset: at - cache.start };
    }
    const length = Math.min(segment.size - at, Math.max(READ_CHUNK_BYTES, minLength));
    const buffer = Buffer.allocUnsafe(length);
    const handle = await fs.open(segment.file, 'r');
    try {
      const { bytesRead } = await handle.read(buffer, 0, length, at);
      cache = { seq: segment.seq, start: at, buffer: buffer.subarray(0, bytesRead) };
    } finally {
      await handle.close();
    }
    return { buffer: cache.buffer, offset: 0 };
  }

  async function ack(batch: SpoolBatch): Promise<void> {
    const segment = live.find((s) => s.seq === batch.segment);
    if (!segment || batch.end <= segment.acked) return;
    segment.acked = batch.end;
    segment.ackedRecords += batch.frames;
    totalRecords -= batch.frames;
    if (segment.acked < segment.size) {
      await writeAck(dir, segment).catch((error) => logger.debug({ err: error }, 'could not record the spool read position'));
      return;
    }
    if (segment === current) current = undefined;
    await segment.handle?.close().catch(() => {});
    segment.handle = undefined;
    live.splice(live.indexOf(segment), 1);
    totalBytes -= segment.size;
    if (cache?.seq === segment.seq) cache = undefined;
    await removeSegment(dir, segment);
  }

  return {
    nextSeq: () => ++seqCounter,
    append(seq, records) {
      appending++;
      return serial(() => append(seq, records)).finally(() => appending--);
    },
    read: (maxRecords) => serial(() => read(maxRecords)),
    ack: (batch) => serial(() => ack(batch)),
    hasPending: () => appending > 0 || totalRecords > 0,
    stats: () => ({ bytes: totalBytes, records: totalRecords }),
    close: () =>
      serial(async () => {
        const handle = current?.handle;
        if (current) current.handle = undefined;
        current = undefined;
        await handle?.close().catch(() => {});
      }),
  };
}

/** Validates an existing segment: cuts a torn or corrupt tail, counts records, restores the ack offset. */
async function loadSegment(dir: string, seq: number, logger: Logger): Promise<Segment> {
  const file = path.join(dir, segmentName(seq));
  const buffer = await fs.readFile(file);
  const { frames, validEnd } = scanFrames(buffer);
  if (validEnd < buffer.length) {
    logger.warn({ segment: file, ignoredBytes: buffer.length - validEnd }, 'spool segment ends in a torn or corrupt record (an interrupted write); it is ignored');
    await fs.truncate(file, validEnd);
  }
  let acked = 0;
  let ackedRecords = 0;
  const saved = await readAck(dir, seq);
  if (saved !== undefined) {
    const index = frames.findIndex((f) => f.end === saved);
    if (index >= 0) {
      acked = saved;
      ackedRecords = index + 1;
    }
  }
  return { seq, file, size: validEnd, records: frames.length, acked, ackedRecords, lastSeq: seq };
}

async function readAck(dir: string, seq: number): Promise<number | undefined> {
  try {
    const text = await fs.readFile(path.join(dir, ackName(seq)), 'utf8');
    return /^\d{1,15}$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

async function writeAck(dir: string, segment: Segment): Promise<void> {
  const file = path.join(dir, ackName(segment.seq));
  const temp = `${file}.tmp`;
  await fs.writeFile(temp, String(segment.acked));
  await fs.rename(temp, file);
}

async function removeSegment(dir: string, segment: Segment): Promise<void> {
  await fs.rm(segment.file, { force: true });
  await fs.rm(path.join(dir, ackName(segment.seq)), { force: true });
}

async function syncDir(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch {
    // Not supported everywhere (Windows); the file's own fsync still protects its contents.
  } finally {
    await handle?.close().catch(() => {});
  }
}
