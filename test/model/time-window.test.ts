import assert from 'node:assert/strict';
import { it } from 'node:test';
import { normalizeAuditRecord } from '../../model/audit-event.ts';
import { createTimeWindow } from '../../model/time-window.ts';

const NOW = Date.UTC(2026, 10, 24, 12, 0, 0); // 2026-11-24T12:00:00Z
const window = createTimeWindow({ retentionDays: 30, maxClockSkewSeconds: 300 }, () => NOW);
const FROM = '2026-10-25T12:00:00Z'; // NOW − 30 × 24 h
const TO = '2026-11-24T12:05:00Z'; // NOW + 300 s

function record(timestamp: string) {
  return { trace_id: 't', timestamp, tool: 'users.Users.Get', allowed: true, duration: 1 };
}

it('accepts timestamps from RETENTION_DAYS ago to MAX_CLOCK_SKEW_S ahead, both edges included, in any zone', () => {
  for (const timestamp of [FROM, TO, '2026-11-24T12:00:00Z', '2026-11-24T13:04:59.999999999+01:00', '2026-10-25T07:00:00-05:00']) {
    const result = normalizeAuditRecord(record(timestamp), { timeWindow: window });
    assert.ok(result.ok, `${timestamp}: ${JSON.stringify(!result.ok && result.issues)}`);
  }
});

it('refuses a timestamp one nanosecond outside either edge, naming timestamp and the window', () => {
  const cases: Array<[string, string]> = [
    [
      '2026-10-25T11:59:59.999999999Z',
      `2026-10-25T11:59:59.999999999Z is before the retention window (RETENTION_DAYS=30); accepted from ${FROM} to ${TO}; send the time of the call, from a synchronized clock`,
    ],
    [
      '1970-01-01T00:00:00Z',
      `1970-01-01T00:00:00.000000000Z is before the retention window (RETENTION_DAYS=30); accepted from ${FROM} to ${TO}; send the time of the call, from a synchronized clock`,
    ],
    [
      '2026-11-24T12:05:00.000000001Z',
      `2026-11-24T12:05:00.000000001Z is more than 300 s ahead of the server's clock (MAX_CLOCK_SKEW_S); accepted from ${FROM} to ${TO}; send the time of the call, from a synchronized clock`,
    ],
    [
      '2099-01-01T00:00:00+02:00',
      `2098-12-31T22:00:00.000000000Z is more than 300 s ahead of the server's clock (MAX_CLOCK_SKEW_S); accepted from ${FROM} to ${TO}; send the time of the call, from a synchronized clock`,
    ],
  ];
  for (const [timestamp, message] of cases) {
    assert.deepEqual(normalizeAuditRecord(record(timestamp), { timeWindow: window }), { ok: false, issues: [{ path: 'timestamp', message }] });
  }
});

it('moves with the clock', () => {
  let now = NOW;
  const moving = createTimeWindow({ retentionDays: 1, maxClockSkewSeconds: 60 }, () => now);
  const ts = '2026-11-24T12:01:30.000000000Z';
  assert.equal(moving.check(ts)?.path, 'timestamp'); // 90 s ahead
  now += 30_000;
  assert.equal(moving.check(ts), undefined); // 60 s ahead
  now += 24 * 3600 * 1000 + 90_001;
  assert.equal(moving.check(ts)?.path, 'timestamp'); // a day and 1 ms old
});

it('without a window, any valid timestamp is accepted (the model alone does not read the clock)', () => {
  assert.ok(normalizeAuditRecord(record('1970-01-01T00:00:00Z')).ok);
});

it('keeps whole seconds: a window opened mid-second starts at the next second and ends at the last whole one', () => {
  const w = createTimeWindow({ retentionDays: 1, maxClockSkewSeconds: 60 }, () => NOW + 400);
  assert.equal(w.check('2026-11-23T12:00:00.400000000Z')?.message.includes('accepted from 2026-11-23T12:00:01Z to 2026-11-24T12:01:00Z;'), true);
  assert.equal(w.check('2026-11-23T12:00:01.000000000Z'), undefined);
  assert.equal(w.check('2026-11-24T12:01:00.000000000Z'), undefined);
  assert.equal(w.check('2026-11-24T12:01:00.000000001Z')?.path, 'timestamp');
});
