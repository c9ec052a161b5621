// The audit record's timestamp text (written in place, second by second) against Date's own formatting;
// the pool of calls reused once posted to the worker threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rfc3339Micros, ToolCall, ToolCallPool } from '../../collector/tool-call.ts';

function expected(epochMs: number): string {
  const micros = Math.floor(epochMs * 1000);
  const second = Math.floor(micros / 1_000_000);
  return `${new Date(second * 1000).toISOString().slice(0, 19)}.${String(micros - second * 1_000_000).padStart(6, '0')}Z`;
}

test('rfc3339Micros: microseconds, across seconds, in any order', () => {
  const base = Date.UTC(2026, 11, 4, 17, 59, 59);
  const instants = [base, base + 0.001, base + 999.999, base + 1000, base + 1000.5, base - 0.0004, 0, 1.5, Date.UTC(2099, 0, 1) + 123.456];
  for (let i = 0; i < 2000; i++) instants.push(base + Math.random() * 5000);
  for (const ms of instants) assert.equal(rfc3339Micros(ms), expected(ms), String(ms));
  assert.equal(rfc3339Micros(base + 1.5), '2026-12-04T17:59:59.001500Z');
});

test('ToolCallPool: a released call holds on to nothing and comes back as a new call; at most `max` are kept', () => {
  const pool = new ToolCallPool(2);
  const fresh = () => new ToolCall(5, 'b.tool', 'stdio', undefined, undefined, undefined, undefined);
  const used = pool.take(1, 'a.tool', 'http', 'acct', { name: 'claude-code' }, 'session-1', 7);
  assert.deepEqual({ ...used }, { ...new ToolCall(1, 'a.tool', 'http', 'acct', { name: 'claude-code' }, 'session-1', 7) }, 'an empty pool makes a new call');
  Object.assign(used, { end: 9, traceId: 't', requestBytes: 3, responseBytes: 4, failed: true, isErrorResult: true, cause: new Error('x'), span: {}, parent: {}, link: {}, otelTraceId: 'o', otelSpanId: 's', sampled: false, route: {}, context: {} });
  pool.release(used);
  assert.equal(pool.size, 1);
  assert.ok(Object.values(used).every((v) => v === undefined || v === '' || v === 0 || v === false || v === true), 'released: no reference kept');
  const again = pool.take(5, 'b.tool', 'stdio', undefined, undefined, undefined, undefined);
  assert.equal(again, used, 'the released call is reused');
  assert.deepEqual({ ...again }, { ...fresh() }, 'as a new call');
  assert.equal(pool.size, 0);
  for (const call of [fresh(), fresh(), fresh()]) pool.release(call);
  assert.equal(pool.size, 2);
});
