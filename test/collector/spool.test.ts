// The disk spool on its own (no Kafka): order, byte bound, crash safety.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { openSpool, type Spool, type SpoolRecord } from '../../collector/spool.ts';
import { crc32, crc32Fallback, decodePayload, encodeFrame, scanFrames } from '../../collector/spool-format.ts';
import { captureLogger, tempDir } from './helpers.ts';

const record = (i: number, size = 100): SpoolRecord => ({
  topic: 'mcp-audit',
  key: i % 3 === 0 ? null : `tenant/agent-${i % 2}`,
  value: Buffer.from(`record-${i}-`.padEnd(size, 'x')),
  headers: { tenant: 'acme', n: String(i) },
});

async function readAll(spool: Spool, batchSize = 7): Promise<string[]> {
  const values: string[] = [];
  for (;;) {
    const batch = await spool.read(batchSize);
    if (!batch) return values;
    for (const r of batch.records) values.push(r.value.toString().split('-x')[0]!.replace(/x+$/, ''));
    await spool.ack(batch);
  }
}

const names = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `record-${from + i}-`);

test('spool: frames round-trip key, null key, headers and binary values', () => {
  const binary: SpoolRecord = { topic: 'otlp_spans', key: null, value: randomBytes(300), headers: {} };
  for (const r of [record(1), record(3), binary]) {
    const { frames, validEnd, corrupt } = scanFrames(encodeFrame(r));
    assert.equal(frames.length, 1);
    assert.equal(corrupt, false);
    assert.equal(validEnd, frames[0]!.end);
    assert.deepEqual(decodePayload(frames[0]!.payload), { ...r, headers: r.headers ?? {} });
  }
});

test('spool: the CRC-32 fallback agrees with node:zlib', () => {
  for (const data of [Buffer.alloc(0), Buffer.from('123456789'), randomBytes(4096)]) assert.equal(crc32Fallback(data), crc32(data));
  assert.equal(crc32Fallback(Buffer.from('123456789')), 0xcbf43926);
});

test('spool: reads back in sequence order across segments and deletes acknowledged segments', async () => {
  const dir = await tempDir('spool-order');
  const { logger } = captureLogger();
  const spool = await openSpool({ dir, maxBytes: 10_000_000, segmentMaxBytes: 1_000, logger });
  for (let b = 0; b < 10; b++) {
    const seq = spool.nextSeq();
    assert.equal(await spool.append(seq, Array.from({ length: 5 }, (_, i) => record(b * 5 + i))), 5);
  }
  assert.equal(spool.stats().records, 50);
  assert.ok((await fs.readdir(dir)).filter((f) => f.endsWith('.seg')).length > 1, 'several segments');
  assert.equal(spool.hasPending(), true);

  const values = (await readAll(spool)).map((v) => `${v}-`);
  assert.deepEqual(values, names(0, 50));
  assert.equal(spool.hasPending(), false);
  assert.deepEqual(spool.stats(), { bytes: 0, records: 0 });
  assert.deepEqual((await fs.readdir(dir)).filter((f) => f.endsWith('.seg')), []);
  await spool.close();
});

test('spool: a batch put back with a lower sequence is read before newer batches', async () => {
  const dir = await tempDir('spool-putback');
  const { logger } = captureLogger();
  const spool = await openSpool({ dir, maxBytes: 10_000_000, logger });
  const older = spool.nextSeq(); // in flight to Kafka...
  const newer = spool.nextSeq(); // ...while this one was spilled
  await spool.append(newer, [record(10), record(11)]);
  await spool.append(older, [record(1), record(2)]); // the send failed: back to the spool
  await spool.append(spool.nextSeq(), [record(12)]);
  assert.deepEqual((await readAll(spool, 100)).map((v) => `${v}-`), ['record-1-', 'record-2-', 'record-10-', 'record-11-', 'record-12-']);
  await spool.close();
});

test('spool: bounded by bytes; an append that does not fit is cut and reported', async () => {
  const dir = await tempDir('spool-bound');
  const { logger } = captureLogger();
  const sized = (i: number): SpoolRecord => ({ topic: 'mcp-audit', key: 'k', value: Buffer.alloc(200, i), headers: {} });
  const frameBytes = encodeFrame(sized(0)).length;
  const maxBytes = frameBytes * 10 + 5;
  const spool = await openSpool({ dir, maxBytes, logger });
  assert.equal(await spool.append(spool.nextSeq(), Array.from({ length: 6 }, (_, i) => sized(i))), 6);
  assert.equal(await spool.append(spool.nextSeq(), Array.from({ length: 6 }, (_, i) => sized(6 + i))), 4);
  assert.equal(await spool.append(spool.nextSeq(), [sized(99)]), 0);
  assert.equal(spool.stats().bytes, frameBytes * 10);
  const onDisk = (await Promise.all((await fs.readdir(dir)).map((f) => fs.stat(path.join(dir, f))))).reduce((s, st) => s + st.size, 0);
  assert.equal(onDisk, frameBytes * 10);
  assert.ok(onDisk <= maxBytes);
  assert.equal((await readAll(spool)).length, 10);
  // Acknowledged records free their space.
  assert.equal(await spool.append(spool.nextSeq(), [sized(100)]), 1);
  await spool.close();
});

test('spool: a torn tail record (crash mid-write) is detected and ignored; later appends follow', async () => {
  const dir = await tempDir('spool-torn');
  const first = captureLogger();
  const spool = await openSpool({ dir, maxBytes: 10_000_000, logger: first.logger });
  await spool.append(spool.nextSeq(), [record(0), record(1), record(2)]);
  await spool.close();

  // Simulate the crash: half of a fourth frame at the end of the segment.
  const [segment] = (await fs.readdir(dir)).filter((f) => f.endsWith('.seg'));
  const torn = encodeFrame(record(3));
  await fs.appendFile(path.join(dir, segment!), torn.subarray(0, torn.length - 17));

  const second = captureLogger();
  const reopened = await openSpool({ dir, maxBytes: 10_000_000, logger: second.logger });
  assert.equal(reopened.stats().records, 3);
  const warning = second.lines.find((l) => /torn or corrupt/.test(l.msg));
  assert.ok(warning, 'the torn tail is reported');
  assert.equal(warning['ignoredBytes'], torn.length - 17);
  await reopened.append(reopened.nextSeq(), [record(4)]);
  assert.deepEqual((await readAll(reopened)).map((v) => `${v}-`), ['record-0-', 'record-1-', 'record-2-', 'record-4-']);
  await reopened.close();
});

test('spool: a last record failing its CRC is ignored too', async () => {
  const dir = await tempDir('spool-crc');
  const { logger } = captureLogger();
  const spool = await openSpool({ dir, maxBytes: 10_000_000, logger });
  await spool.append(spool.nextSeq(), [record(0), record(1)]);
  await spool.close();
  const [segment] = (await fs.readdir(dir)).filter((f) => f.endsWith('.seg'));
  const file = path.join(dir, segment!);
  const bytes = await fs.readFile(file);
  bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0xff; // flip a bit in the last record's value
  await fs.writeFile(file, bytes);

  const reopened = await openSpool({ dir, maxBytes: 10_000_000, logger });
  assert.deepEqual((await readAll(reopened)).map((v) => `${v}-`), ['record-0-']);
  await reopened.close();
});

test('spool: after a restart, reading resumes after the acknowledged records and new records sort last', async () => {
  const dir = await tempDir('spool-restart');
  const { logger } = captureLogger();
  const spool = await openSpool({ dir, maxBytes: 10_000_000, logger });
  await spool.append(spool.nextSeq(), Array.from({ length: 10 }, (_, i) => record(i)));
  const batch = await spool.read(4);
  await spool.ack(batch!);
  await spool.close();

  const reopened = await openSpool({ dir, maxBytes: 10_000_000, logger });
  assert.equal(reopened.stats().records, 6);
  await reopened.append(reopened.nextSeq(), [record(10), record(11)]);
  assert.deepEqual((await readAll(reopened)).map((v) => `${v}-`), names(4, 12));
  await reopened.close();
});

test('spool: a read stops at the end of the batch it starts in, so a failed send is replayed exactly as it was', async () => {
  const dir = await tempDir('spool-batches');
  const { logger } = captureLogger();
  const spool = await openSpool({ dir, maxBytes: 10_000_000, logger });
  await spool.append(spool.nextSeq(), [record(1), record(2), record(3)]);
  await spool.append(spool.nextSeq(), [record(4), record(5), record(6), record(7), record(8)]);
  const sizes: number[] = [];
  for (let batch = await spool.read(4); batch; batch = await spool.read(4)) {
    sizes.push(batch.records.length);
    await spool.ack(batch);
  }
  assert.deepEqual(sizes, [3, 4, 1], 'at most 4, never across the two batches');
  await spool.close();

  // Batches an earlier process spilled have no known ends here: a read takes what it is allowed.
  const dir2 = await tempDir('spool-batches-restart');
  const first = await openSpool({ dir: dir2, maxBytes: 10_000_000, logger });
  await first.append(first.nextSeq(), [record(1), record(2)]);
  await first.append(first.nextSeq(), [record(3), record(4)]);
  await first.close();
  const second = await openSpool({ dir: dir2, maxBytes: 10_000_000, logger });
  assert.equal((await second.read(4))?.records.length, 4);
  await second.close();
});
