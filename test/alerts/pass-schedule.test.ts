/** When the live detector runs and which boundaries it judges; the backtest judges the same ones. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextPass, passBoundaries } from '../../alerts/detector.ts';

const at = (iso: string) => Date.parse(iso);

test('each minute is judged just after it ends plus the settle time, never before', () => {
  assert.deepEqual(nextPass(at('2026-12-05T12:00:05Z'), 60, 10), { at: at('2026-12-05T12:00:00Z'), runAt: at('2026-12-05T12:00:10Z') });
  assert.deepEqual(nextPass(at('2026-12-05T12:00:09.999Z'), 60, 10), { at: at('2026-12-05T12:00:00Z'), runAt: at('2026-12-05T12:00:10Z') });
  // At or after the run time: the next minute.
  assert.deepEqual(nextPass(at('2026-12-05T12:00:10Z'), 60, 10), { at: at('2026-12-05T12:01:00Z'), runAt: at('2026-12-05T12:01:10Z') });
  assert.deepEqual(nextPass(at('2026-12-05T12:00:59Z'), 60, 10), { at: at('2026-12-05T12:01:00Z'), runAt: at('2026-12-05T12:01:10Z') });
  // A 5-minute interval: the next multiple of 5 minutes.
  assert.deepEqual(nextPass(at('2026-12-05T12:03:00Z'), 300, 10), { at: at('2026-12-05T12:05:00Z'), runAt: at('2026-12-05T12:05:10Z') });
});

test('the backtest judges the boundaries within its range', () => {
  assert.deepEqual(passBoundaries(at('2026-12-05T12:00:30Z'), at('2026-12-05T12:03:00Z'), 60), [
    at('2026-12-05T12:01:00Z'),
    at('2026-12-05T12:02:00Z'),
    at('2026-12-05T12:03:00Z'),
  ]);
  assert.deepEqual(passBoundaries(at('2026-12-05T12:00:00Z'), at('2026-12-05T12:20:00Z'), 600), [at('2026-12-05T12:00:00Z'), at('2026-12-05T12:10:00Z'), at('2026-12-05T12:20:00Z')]);
});
