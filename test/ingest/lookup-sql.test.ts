import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LIMITS, type AuditRow } from '../../model/audit-event.ts';
import { callTimeBounds, jsonLiteral, stringList, timeBounds } from '../../ingest/lookup-sql.ts';

const DAY_S = 86_400;

function row(timestamp: string, allowed: 0 | 1, duration_ns: number): AuditRow {
  return { timestamp, allowed, duration_ns } as AuditRow;
}

/** The seconds a bound widens the batch's times by, read back from its SQL. */
function widening(bounds: string): number {
  const all = [...bounds.matchAll(/toIntervalSecond\((\d+)\)/g)].map((m) => Number(m[1]));
  assert.equal(all.length, 2, bounds);
  assert.equal(all[0], all[1], bounds);
  return all[0]!;
}

describe("the look-ups' time bounds", () => {
  test("from the earliest of the batch's times to the latest, widened on each side", () => {
    const bounds = timeBounds(
      [row('2026-11-24 10:00:00.000000002', 1, 1), row('2026-11-23 09:00:00.000000000', 1, 1), row('2026-11-24 10:00:00.000000001', 1, 1)],
      30,
    );
    assert.equal(
      bounds,
      "AND timestamp BETWEEN toDateTime64('2026-11-23 09:00:00.000000000', 9, 'UTC') - toIntervalSecond(30) AND toDateTime64('2026-11-24 10:00:00.000000002', 9, 'UTC') + toIntervalSecond(30)",
    );
  });

  test('no bound when a time is not in the canonical form (it would not sort as text)', () => {
    assert.equal(timeBounds([row('2026-11-24 10:00:00.000000000', 1, 1), row('2026-11-24T10:00:00Z', 1, 1)], 0), '');
  });

  test("a call's other report: within the batch's longest call and a day for clocks", () => {
    const at = '2026-11-24 10:00:00.000000000';
    // Denied calls tell no duration and last none: a day.
    assert.equal(widening(callTimeBounds([row(at, 0, 0), row(at, 0, 0)])), DAY_S);
    // The longest call of the batch, rounded up to a second.
    assert.equal(widening(callTimeBounds([row(at, 1, 1_500_000), row(at, 1, 3 * 3600e9 + 1)])), DAY_S + 3 * 3600 + 1);
    // An allowed call that tells no duration may have lasted as long as any call may.
    assert.equal(widening(callTimeBounds([row(at, 1, 5e9), row(at, 1, 0)])), DAY_S + LIMITS.maxDurationNs / 1e9);
  });
});

describe("the look-ups' lists", () => {
  test('a quote or a backslash in an id cannot end the literal', () => {
    assert.equal(jsonLiteral(['a', 'b']), `'["a","b"]'`);
    assert.equal(jsonLiteral(["it's", 'back\\slash']), `'["it\\'s","back\\\\\\\\slash"]'`);
    assert.equal(stringList(['acme', "o'brien"]), `('acme', 'o\\'brien')`);
  });
});
