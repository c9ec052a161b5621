/**
 * kafkajs as installed, with patches/kafkajs+2.2.4.patch: the producer groups a batch's messages by
 * partition in one pass and encodes without a zero-filled Buffer per varint or per encoder, writes a
 * record's headers and 32-bit timestamp delta in place, builds a record batch in one buffer of its
 * exact size, and sends the same bytes as before. The expected bytes
 * below were written by the unpatched kafkajs 2.2.4.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);

interface EncoderInstance {
  buf: Buffer;
  readonly buffer: Buffer;
  writeVarInt(value: number): EncoderInstance;
  writeUVarInt(value: number): EncoderInstance;
  writeBytes(value: Buffer): EncoderInstance;
  writeVarLong(value: number | string): EncoderInstance;
}
const Encoder = require('kafkajs/src/protocol/encoder.js') as (new (initialSize?: number) => EncoderInstance) & { sizeOfVarLong(value: number | string): number };
const Long = require('kafkajs/src/utils/long.js') as { fromInt(value: number): unknown };
const produceRequest = require('kafkajs/src/protocol/requests/produce/v3/request.js') as (options: object) => { encode(): Promise<{ buffer: Buffer }> };
const compression = require('kafkajs/src/protocol/message/compression/index.js') as {
  Types: Record<'None' | 'GZIP' | 'Snappy', number>;
  Codecs: Record<number, (() => { compress(encoder: { buffer: Buffer }): Promise<Buffer>; decompress(buffer: Buffer): Promise<Buffer> }) | undefined>;
};
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as { RecordBatch(options: object): Promise<EncoderInstance & { offset: number }> };
const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (options: object) => EncoderInstance & { offset: number };
type Grouping = (options: { topic: string; partitionMetadata: unknown[]; messages: unknown[]; partitioner: (args: { message: unknown }) => number }) => Record<string, unknown[]>;
const groupMessagesPerPartition = require('kafkajs/src/producer/groupMessagesPerPartition.js') as Grouping;

interface Message {
  key: string | Buffer | null;
  value: string | null;
  timestamp: string;
  headers?: Record<string, string | Buffer | (string | Buffer)[]>;
}

/** Keys of every kind, values from empty to 70 KB (past several doublings of an encoder), headers of every kind. */
function messages(n: number, seed: string): Message[] {
  const out: Message[] = [];
  for (let i = 0; i < n; i++) {
    const size = [0, 10, 600, 5000, 70000][i % 5]!;
    out.push({
      key: i % 7 === 0 ? null : i % 3 === 0 ? Buffer.from(`key-${seed}-${i}`) : `key-${seed}-${i}`,
      value: i % 11 === 0 ? null : 'v'.repeat(size) + i,
      timestamp: String(1_700_000_000_000 + i * 1234567),
      headers: i % 2 ? { 'x-tenant': 'acme', 'x-list': ['a', Buffer.from('b')], 'x-n': Buffer.alloc(i % 300, 7) } : undefined,
    });
  }
  return out;
}

/**
 * A produce request of two topics, three partitions and messages of every kind (what the expected
 * hashes were written for), with `options` beside the fixed ones, encoded.
 */
const twoTopicRequest = (options: object) =>
  produceRequest({
    acks: -1,
    timeout: 30000,
    producerId: Long.fromInt(4242),
    producerEpoch: 3,
    topicData: [
      { topic: 'audit', partitions: [{ partition: 0, firstSequence: 5, messages: messages(3, 'a') }, { partition: 2, firstSequence: 70000, messages: messages(400, 'b') }] },
      { topic: 'spans', partitions: [{ partition: 1, firstSequence: 0, messages: messages(130, 'c') }] },
    ],
    ...options,
  }).encode();

const SMALL_REQUEST_HEX =
  'ffffffff0000753000000001000561756469740000000100000000000002f30000000000000000000002e7000000000216c0' +
  'db230000000000020000018bcfe568000000018bd00b150e0000000000001092000300000005000000030c00000001010082' +
  '01008eda9601020e6b65792d612d311676767676767676767676310810782d74656e616e740861636d650c782d6c69737402' +
  '610c782d6c697374026206782d6e0207d409009cb4ad02040e6b65792d612d32b20976767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '7676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676767676' +
  '767676767676767676767676767676767676767676767676767676767676767676763200';

test('a produce request is encoded to the same bytes as by the unpatched kafkajs', async () => {
  const small = await produceRequest({
    acks: -1,
    timeout: 30000,
    producerId: Long.fromInt(4242),
    producerEpoch: 3,
    topicData: [{ topic: 'audit', partitions: [{ partition: 0, firstSequence: 5, messages: messages(3, 'a') }] }],
  }).encode();
  assert.equal(small.buffer.toString('hex'), SMALL_REQUEST_HEX);

  const big = await twoTopicRequest({ transactionalId: 'tx' });
  assert.equal(big.buffer.length, 7386322);
  assert.equal(createHash('sha256').update(big.buffer).digest('hex'), 'db3f74fa4833877bae3860a59c0196112fa496bb278283b7bf98a3870ce4a3b9');
});

test('a compressed produce request is encoded to the same bytes as by the unpatched kafkajs', async (t) => {
  // A stand-in codec (each byte plus one, reversed) in Snappy's slot: the bytes around the compressed
  // records are kafkajs's, and no zlib version enters the expected hash.
  const { Types, Codecs } = compression;
  const installed = Codecs[Types.Snappy];
  Codecs[Types.Snappy] = () => ({
    compress: async (encoder) => Buffer.from(encoder.buffer.map((b) => (b + 1) & 0xff)).reverse(),
    decompress: async (buffer) => buffer,
  });
  t.after(() => {
    Codecs[Types.Snappy] = installed;
  });
  const request = await twoTopicRequest({ compression: Types.Snappy });
  assert.equal(request.buffer.length, 7386320);
  assert.equal(createHash('sha256').update(request.buffer).digest('hex'), '8bdfeb74c843f519da90c9c0491c919752b3c841f2a88cd423532138737f6393');
});

test('a record batch and its records are each one buffer of their exact size', async () => {
  const records = messages(60, 'd').map((message, i) => Record({ ...message, offsetDelta: i, timestampDelta: 0 }));
  for (const record of records) assert.equal(record.buf.length, record.offset);
  for (const codec of [compression.Types.None, compression.Types.GZIP]) {
    const batch = await RecordBatch({ compression: codec, records, firstTimestamp: 1, maxTimestamp: 2 });
    assert.equal(batch.buf.length, batch.offset);
    // Length: what follows FirstOffset and itself.
    assert.equal(batch.buf.readInt32BE(8), batch.offset - 12);
  }
});

test('varints are written as the unpatched kafkajs wrote them, and after bytes already in the encoder', () => {
  const ints = [0, 1, -1, 63, -64, 64, -65, 300, 8191, 8192, 2 ** 20, 2 ** 31 - 1, -(2 ** 31)];
  assert.deepEqual(
    ints.map((v) => new Encoder().writeVarInt(v).buffer.toString('hex')),
    ["00", "02", "01", "7e", "7f", "8001", "8101", "d804", "fe7f", "808001", "80808001", "feffffff0f", "ffffffff0f"],
  );
  const unsigned = [0, 1, 127, 128, 16383, 16384, 2 ** 28, 2 ** 32 - 1];
  assert.deepEqual(
    unsigned.map((v) => new Encoder().writeUVarInt(v).buffer.toString('hex')),
    ["00", "01", "7f", "8001", "ff7f", "808001", "8080808001", "ffffffff0f"],
  );
  // A varint that lands on the end of the encoder's buffer makes it grow, keeping what came before.
  const filler = Buffer.alloc(506, 0xab);
  const encoder = new Encoder(511).writeBytes(filler).writeUVarInt(2 ** 32 - 1);
  assert.equal(encoder.buffer.toString('hex'), `000001fa${filler.toString('hex')}ffffffff0f`);
});

test('varlongs (a record\'s timestamp delta) are written and sized as the unpatched kafkajs did, 32-bit or not', () => {
  const values = [0, -0, 1, -1, 63, -64, 64, -65, 2 ** 20, -(2 ** 20), 2 ** 30, -(2 ** 30), 2 ** 31 - 1, -(2 ** 31), 2 ** 31, -(2 ** 31) - 1, 2 ** 32, 2 ** 40 + 5, -(2 ** 45), Number.MAX_SAFE_INTEGER, 1.5e9, 1_700_000_000_000, '12345', '-99'];
  assert.deepEqual(
    values.map((v) => `${new Encoder().writeVarLong(v).buffer.toString('hex')}:${Encoder.sizeOfVarLong(v)}`),
    ["00:1", "00:1", "02:1", "01:1", "7e:1", "7f:1", "8001:2", "8101:2", "80808001:4", "ffff7f:3", "8080808008:5", "ffffffff07:5", "feffffff0f:5", "ffffffff0f:5", "8080808010:5", "8180808010:5", "8080808020:5", "8a8080808040:6", "ffffffffffff0f:7", "feffffffffffff1f:8", "80bcc1960b:5", "80a0abfef962:6", "f2c001:3", "c501:2"],
  );
});

test('the patch is applied: an encoder starts in Node\'s shared Buffer pool, not in a zero-filled buffer of its own', () => {
  assert.equal(new Encoder().buf.buffer.byteLength, Buffer.poolSize);
});

test('a batch is grouped by partition in the order of its messages', () => {
  const batch = Array.from({ length: 10_000 }, (_, i) => ({ i }));
  const grouped = groupMessagesPerPartition({
    topic: 't',
    partitionMetadata: [{}, {}, {}],
    messages: batch,
    partitioner: ({ message }) => ((message as { i: number }).i * 7) % 3,
  });
  assert.deepEqual(Object.keys(grouped).sort(), ['0', '1', '2']);
  for (const [partition, group] of Object.entries(grouped)) {
    assert.deepEqual(group, batch.filter((m) => String((m.i * 7) % 3) === partition));
  }
  assert.deepEqual(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages: batch, partitioner: () => 0 }), {});
});
