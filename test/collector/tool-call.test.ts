// The audit record's timestamp text (written in place, second by second) against Date's own formatting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rfc3339Micros } from '../../collector/tool-call.ts';

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
