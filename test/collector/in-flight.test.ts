// InFlightCalls: calls held by JSON-RPC id until their response; the table grows with the calls in
// flight and never displaces one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InFlightCalls } from '../../collector/in-flight.ts';
import { ToolCall } from '../../collector/tool-call.ts';

const newCall = (requestId: unknown) => new ToolCall(0, 'users.Users.Get', 'http', undefined, undefined, undefined, requestId);

test('calls are held and taken by id and transport; ids sharing a slot grow the table', () => {
  const calls = new InFlightCalls();
  const via = {};
  const held = new Map<number, ToolCall>();
  // 0, 16, 32, ...: every id in slot 0 of the first 16 slots; then sequential, negative and large ids.
  const ids = [...Array.from({ length: 40 }, (_, i) => i * 16), ...Array.from({ length: 3000 }, (_, i) => 100_000 + i), -1, -17, 2 ** 52 + 7];
  for (const id of ids) {
    const call = newCall(id);
    assert.ok(calls.hold(call, via), `id ${id} held`);
    held.set(id, call);
  }
  assert.equal(calls.size, ids.length);
  for (const id of ids) assert.equal(calls.find(id, via), held.get(id), `id ${id} found after the table grew`);
  assert.equal(calls.take(5, via), undefined, 'an id never held');
  assert.equal(calls.take(16, {}), undefined, 'the same id on another transport');
  assert.equal(calls.take(16, via), held.get(16));
  assert.equal(calls.take(16, via), undefined, 'taken once');
  assert.equal(calls.size, ids.length - 1);
});

test('ids that are not integers are not held; a transport closed takes all of its calls', () => {
  const calls = new InFlightCalls();
  for (const id of ['7', 1.5, NaN, Infinity, undefined, null, 2 ** 53]) assert.equal(calls.hold(newCall(id), {}), false, `id ${String(id)}`);
  const closed = {};
  const open = {};
  const a = newCall(1);
  const b = newCall(2);
  const c = newCall(3);
  calls.hold(a, closed);
  calls.hold(b, open);
  calls.hold(c, closed);
  const taken: ToolCall[] = [];
  calls.takeAll(closed, (call) => taken.push(call));
  assert.deepEqual(new Set(taken), new Set([a, c]));
  assert.equal(calls.size, 1);
  assert.equal(calls.find(2, open), b);
  assert.equal(calls.find(1, closed), undefined);
});

test('a slot held by a call in flight is not given to another id of the same slot at the largest size', () => {
  const calls = new InFlightCalls();
  const via = {};
  assert.ok(calls.hold(newCall(0), via));
  // 65,536 slots at most: id 65,536 shares slot 0 with id 0 at every size.
  assert.equal(calls.hold(newCall(65_536), via), false);
  assert.equal(calls.size, 1);
});
