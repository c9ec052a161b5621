/** Money is exact: decimal text from ClickHouse becomes integer micro-units, rounded half-even. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatMicros, microsFromDecimal, money } from '../../api/money.ts';

test('decimal text to micro-units, half-even at the sixth decimal', () => {
  assert.equal(microsFromDecimal('12.3456785'), 12_345_678n); // tie, 8 is even: kept
  assert.equal(microsFromDecimal('12.3456795'), 12_345_680n); // tie, 9 is odd: up
  assert.equal(microsFromDecimal('12.34567851'), 12_345_679n); // above the tie: up
  assert.equal(microsFromDecimal('0.000000499'), 0n);
  assert.equal(microsFromDecimal('-1.5'), -1_500_000n);
  assert.equal(microsFromDecimal('-0.0000004'), 0n);
  assert.equal(microsFromDecimal('123456789012345678.000001'), 123_456_789_012_345_678_000_001n);
});

test('refuses text that is not a decimal', () => {
  for (const bad of ['', '1e3', 'NaN', '1.2.3', '١٢']) assert.throws(() => microsFromDecimal(bad), /not a decimal amount/);
});

test('formatted at the edge only', () => {
  assert.equal(formatMicros(-12_345_678n), '-12.345678');
  assert.equal(formatMicros(5n), '0.000005');
  assert.equal(formatMicros(12_345_678n, 2), '12.34');
  assert.deepEqual(money(1_230_000n), { amount: '1.230000', micros: '1230000', currency: 'USD' });
});
