/**
 * The producers' partitioner chooses what kafkajs's DefaultPartitioner (and Java's, for keys) chooses:
 * the same murmur2 of every key, and the same partition for every message.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import kafkajs, { type PartitionMetadata } from 'kafkajs';
import { DefaultPartitioner, murmur2 } from '../../core/kafka-partitioner.ts';

const require = createRequire(import.meta.url);
const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: Buffer | string) => number;

/** Keys of every length up to past the reused buffer, ASCII, multi-byte UTF-8 and raw bytes. */
function keys(): (string | Buffer)[] {
  const out: (string | Buffer)[] = ['', 'a', 'acme/claude-desktop', 'default/(unknown)', 'ü', 'acme/Cursor ✓', '日本語のエージェント', 'x'.repeat(256), 'é'.repeat(200)];
  for (let length = 0; length <= 300; length++) {
    const bytes = randomBytes(length);
    out.push(bytes);
    out.push(bytes.toString('base64').slice(0, length));
    out.push(bytes.toString('latin1'));
  }
  return out;
}

test('murmur2 equals kafkajs\'s for every key, string or bytes', () => {
  for (const key of keys()) assert.equal(murmur2(key), kafkajsMurmur2(key), `key ${JSON.stringify(key.toString())} (${typeof key})`);
});

test('murmur2 matches Kafka\'s own test vectors (UtilsTest.testMurmur2)', () => {
  const cases: [string, number][] = [
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
  ];
  for (const [key, hash] of cases) assert.equal(murmur2(key), hash, key);
});

const metadata = (count: number, leaderless: number[] = []): PartitionMetadata[] =>
  Array.from({ length: count }, (_, partitionId) => ({
    partitionId,
    leader: leaderless.includes(partitionId) ? -1 : 1,
    partitionErrorCode: 0,
    replicas: [1],
    isr: [1],
  }));

test('a keyed or placed message goes to the partition kafkajs\'s DefaultPartitioner chooses', () => {
  const ours = DefaultPartitioner();
  const theirs = kafkajs.Partitioners.DefaultPartitioner();
  for (const count of [1, 2, 3, 7, 12, 50]) {
    const partitionMetadata = metadata(count, [0]);
    for (const key of keys()) {
      const message = { key, value: 'v' };
      assert.equal(ours({ topic: 't', partitionMetadata, message }), theirs({ topic: 't', partitionMetadata, message }), `key ${JSON.stringify(key.toString())}, ${count} partitions`);
    }
    const placed = { key: 'acme/x', value: 'v', partition: count - 1 };
    assert.equal(ours({ topic: 't', partitionMetadata, message: placed }), count - 1);
  }
});

test('keyless messages take turns over the partitions that have a leader, per topic', () => {
  const partition = DefaultPartitioner();
  const partitionMetadata = metadata(4, [1]);
  const chosen = Array.from({ length: 30 }, () => partition({ topic: 'a', partitionMetadata, message: { value: 'v' } }));
  assert.ok(!chosen.includes(1), `partition 1 has no leader: ${chosen.join(',')}`);
  for (let i = 1; i < chosen.length; i++) {
    const [previous, next] = [[0, 2, 3].indexOf(chosen[i - 1]!), [0, 2, 3].indexOf(chosen[i]!)];
    assert.equal(next, (previous + 1) % 3, `round robin: ${chosen.join(',')}`);
  }
  // With no leader anywhere, still a partition of the topic.
  const none = metadata(3, [0, 1, 2]);
  for (let i = 0; i < 6; i++) assert.ok([0, 1, 2].includes(partition({ topic: 'b', partitionMetadata: none, message: { value: 'v' } })));
});
