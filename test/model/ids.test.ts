import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deriveEventId, newEventId, newOtelSpanId, newOtelTraceId, newTraceId } from '../../model/ids.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The 48-bit Unix millisecond of a UUIDv7. */
const msOf = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
/** The 32-bit counter: 4 bits after the version, 8 more, 6 after the variant, 8 more, then 6. */
function counterOf(id: string): number {
  const hex = id.replaceAll('-', '');
  const b = (i: number) => parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return (((b(6) & 0x0f) << 28) | (b(7) << 20) | ((b(8) & 0x3f) << 14) | (b(9) << 6) | (b(10) >>> 2)) >>> 0;
}

describe('newEventId', () => {
  it('makes RFC 9562 version 7 UUIDs stamped with the current millisecond', () => {
    const before = Date.now();
    const id = newEventId();
    const after = Date.now();
    assert.match(id, UUID_V7);
    assert.ok(msOf(id) >= before && msOf(id) <= after, `${id}: ${msOf(id)} not in [${before}, ${after}]`);
  });

  it('never repeats, and ids of one thread sort in creation order (across many pool refills)', () => {
    const ids = Array.from({ length: 20_000 }, () => newEventId());
    assert.equal(new Set(ids).size, ids.length);
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} !< ${ids[i]}`);
    for (const id of ids) assert.match(id, UUID_V7);
  });

  it('counts up within a millisecond, and keeps order when the clock steps back', (t) => {
    const base = Date.now() + 60_000;
    let now = base;
    t.mock.method(Date, 'now', () => now);
    const first = newEventId();
    const second = newEventId();
    assert.equal(msOf(first), base);
    assert.equal(msOf(second), base);
    assert.equal(counterOf(second), counterOf(first) + 1);
    now = base - 5_000;
    const third = newEventId();
    assert.equal(msOf(third), base, 'the clock went back: the last millisecond is kept');
    assert.ok(second < third);
    now = base + 1;
    const fourth = newEventId();
    assert.equal(msOf(fourth), base + 1);
    assert.ok(third < fourth);
  });
});

describe('newTraceId', () => {
  it('makes random version 4 UUIDs, as crypto.randomUUID', () => {
    const ids = Array.from({ length: 20_000 }, () => newTraceId());
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // Every random nibble takes every value: the bytes are not stuck.
    for (const position of [0, 9, 15, 20, 35]) assert.equal(new Set(ids.map((id) => id[position])).size, 16, `position ${position}`);
  });

  it('leaves the UUIDv7 sequence alone (they share the random pool)', () => {
    const a = newEventId();
    newTraceId();
    assert.ok(a < newEventId());
  });
});

describe('deriveEventId', () => {
  it('is a deterministic UUIDv7 with the given millisecond', () => {
    const a = deriveEventId(1_795_000_000_123, ['t', 'trace', 'tool']);
    assert.match(a, UUID_V7);
    assert.equal(msOf(a), 1_795_000_000_123);
    assert.equal(deriveEventId(1_795_000_000_123, ['t', 'trace', 'tool']), a);
    assert.notEqual(deriveEventId(1_795_000_000_123, ['t', 'trace', 'tool2']), a);
  });
});

it('newOtelTraceId / newOtelSpanId: lowercase hex of 16 and 8 random bytes, valid and distinct', () => {
  const traces = Array.from({ length: 5_000 }, () => newOtelTraceId());
  const spans = Array.from({ length: 5_000 }, () => newOtelSpanId());
  for (const id of traces) assert.match(id, /^(?!0{32})[0-9a-f]{32}$/);
  for (const id of spans) assert.match(id, /^(?!0{16})[0-9a-f]{16}$/);
  assert.equal(new Set(traces).size, traces.length);
  assert.equal(new Set(spans).size, spans.length);
  // Every hex digit appears in every position over 5,000 ids (a stuck nibble would not).
  for (let i = 0; i < 32; i++) assert.equal(new Set(traces.map((id) => id[i])).size, 16, `digit ${i}`);
});
