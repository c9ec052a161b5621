/**
 * The producers' partitioner: the partitions kafkajs's `DefaultPartitioner` (and Java's default
 * partitioner for keyed records) chooses, computed with 32-bit integer math. kafkajs hashes each key
 * with a `Long` object per 4 bytes and filters the partition list for every message; in the collector's
 * Kafka thread that was about a tenth of its CPU at one keyed audit message per tool call.
 */
import type { ICustomPartitioner } from 'kafkajs';

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/** Keys up to this many UTF-8 bytes are hashed from one reused buffer, without a Buffer per key. */
const scratch = Buffer.alloc(256);

/** Kafka's `Utils.murmur2` of a key's UTF-8 bytes (a signed 32-bit integer, as Java returns it). */
export function murmur2(key: Buffer | string): number {
  if (typeof key !== 'string') return murmur2Bytes(key, key.length);
  const length = Buffer.byteLength(key);
  return length > scratch.length ? murmur2Bytes(Buffer.from(key), length) : murmur2Bytes(scratch, scratch.write(key));
}

function murmur2Bytes(data: Uint8Array, length: number): number {
  let h = SEED ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  // The last 1 to 3 bytes, as Java's switch falls through its cases.
  const tail = length & ~3;
  const rest = length & 3;
  if (rest === 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) h = Math.imul(h ^ data[tail]!, M);
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Java's `Utils.toPositive`: the sign bit dropped, not the absolute value. */
const toPositive = (x: number) => x & 0x7fffffff;

/**
 * kafkajs's `DefaultPartitioner`, decision for decision: a message's own partition; else, with a key,
 * `toPositive(murmur2(key)) % partitions`; else round robin over the partitions that have a leader,
 * from a random start per topic (over all partitions when none has one).
 */
export const DefaultPartitioner: ICustomPartitioner = () => {
  const counters = new Map<string, number>();
  return ({ topic, partitionMetadata, message }) => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    if (message.key !== null && message.key !== undefined) return toPositive(murmur2(message.key)) % partitionMetadata.length;
    let counter = counters.get(topic);
    if (counter === undefined) counter = Math.floor(Math.random() * 0x100000000);
    counters.set(topic, ++counter);
    const available = partitionMetadata.filter((p) => p.leader >= 0);
    if (available.length > 0) return available[toPositive(counter) % available.length]!.partitionId;
    return toPositive(counter) % partitionMetadata.length;
  };
};
