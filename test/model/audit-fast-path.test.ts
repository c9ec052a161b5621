import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createAuditFastPath, FAST_PATH_FIELDS } from '../../model/audit-fast-path.ts';
import { auditRecordSchema, normalizeAuditRecord } from '../../model/audit-event.ts';
import { goMicroAllowed } from '../helpers/go-micro.ts';

const TENANT = 'acme';
const EVENT_ID = '01a20f64-c9e1-74d3-92cf-2e71ca718516';

const goMicro = { ...goMicroAllowed, event_id: EVENT_ID };

/** What instrumentServer reports. */
const instrumented = {
  trace_id: '4c1b1a52-5f0e-4a55-9b43-7e0b2b0f1f3a',
  timestamp: '2026-11-24T10:00:00.123456Z',
  tool: 'search',
  allowed: false,
  duration: 2_000_123,
  agent: 'claude-code',
  agent_version: '1.2.3',
  transport: 'http',
  request_bytes: 17,
  response_bytes: 0,
  account_id: 'client-7',
  denied_reason: 'missing scope',
  scopes_required: ['search:read', 'search:write'],
  session_id: 'sess-1',
  otel_trace_id: '0AF7651916CD43DD8448EB211C80319C',
  otel_span_id: 'B7AD6B7169203331',
  event_id: EVENT_ID.toUpperCase(),
};

/** Per field: values to try, valid and not, edge cases first. */
const VALUES: Record<string, unknown[]> = {
  trace_id: ['', 'x'.repeat(128), 'x'.repeat(129), '😀'.repeat(64), '😀'.repeat(65), '😀'.repeat(100), 5, null, undefined],
  timestamp: [
    '2026-11-24T10:00:00Z', '2026-11-24t10:00:00z', '2026-11-24 10:00:00.5+01:00', '2026-02-29T00:00:00Z', '2028-02-29T00:00:00Z',
    '2026-12-31T23:59:60Z', '0050-01-01T00:00:00Z', '2026-13-01T00:00:00Z', '2026-11-24T10:00:00.1234567891Z', '2026-11-24',
    '2026-11-24T10:00:00+24:00', new Date(0), 0, undefined,
  ],
  tool: ['', 'a', 'noservice', '.leading', 'x'.repeat(256), 'x'.repeat(257), '😀'.repeat(128), '😀'.repeat(129), null, undefined],
  account_id: ['', 'acct', 'x'.repeat(256), 'x'.repeat(257), null, 7, undefined],
  scopes_required: [[], null, undefined, ['a', 'b'], ['x'.repeat(128)], ['x'.repeat(129)], Array(64).fill('s'), Array(65).fill('s'), [1], 'a', [, 'a'], { 0: 'a', length: 1 }], // eslint-disable-line no-sparse-arrays
  allowed: [true, false, 'true', 0, null, undefined],
  denied_reason: ['', 'no', 'x'.repeat(4096), 'x'.repeat(4097), null, undefined],
  duration: [0, -0, 1, 1.5, -1, 604_800_000_000_000, 604_800_000_000_001, NaN, Infinity, 2 ** 53, '5', null, undefined],
  error: ['', 'boom', 'x'.repeat(4097), null, undefined],
  v: [1, 2, '1', null, undefined],
  event_id: [EVENT_ID, EVENT_ID.toUpperCase(), '6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b', '6f1c2a8e-3b4d-9e5f-8a9b-0c1d2e3f4a5b', 'nope', '', 5, null, undefined],
  tenant: [TENANT, 'other', 'bad tenant', '', null, undefined],
  agent: ['', 'claude', 'x'.repeat(257), 1, undefined],
  agent_version: ['', '1.0', 'x'.repeat(257), undefined],
  session_id: ['', 's', 'x'.repeat(128), 'x'.repeat(129), undefined],
  gateway: ['', 'gw-1', 'x'.repeat(257), undefined],
  transport: ['', 'stdio', 'x'.repeat(64), 'x'.repeat(65), undefined],
  service: ['', 'billing', 'x'.repeat(257), null, undefined],
  otel_trace_id: ['', '0af7651916cd43dd8448eb211c80319c', '0AF7651916CD43DD8448EB211C80319C', '0af7', 'z'.repeat(32), null, undefined],
  otel_span_id: ['', 'b7ad6b7169203331', 'B7AD6B7169203331', 'b7ad', undefined],
  request_bytes: [0, 10, -1, 0.5, Number.MAX_SAFE_INTEGER, 2 ** 53, '1', undefined],
  response_bytes: [0, 10, -1, 0.5, NaN, undefined],
  cost_usd: [0, -0, 0.0123, 1_000_000, 1_000_001, -1, NaN, Infinity, null, '1', undefined],
  attributes: [
    {}, { region: 'eu' }, { '': 'x' }, 'x', null, undefined, [], { n: 1 }, { k: null }, { ['k'.repeat(64)]: 'v' }, { ['k'.repeat(65)]: 'v' },
    { k: 'v'.repeat(512) }, { k: 'v'.repeat(513) }, Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`a${i}`, 'v'])),
    Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`a${i}`, 'v'])), JSON.parse('{"__proto__": "x"}'), { 1: 'one', b: 'two' },
  ],
  unknown_field: ['ignored', undefined],
};

for (const tenant of [TENANT, undefined]) {
  const normalizeFast = createAuditFastPath(tenant);

  /** The property: whatever the fast path accepts, the schema accepts too, with the same event and JSON. */
  function check(input: unknown): 'fast' | 'fallback' {
    const fast = normalizeFast(input);
    if (fast === undefined) return 'fallback';
    const slow = normalizeAuditRecord(input, tenant === undefined ? {} : { tenant });
    assert.ok(slow.ok, `fast path accepted what the schema refuses: ${JSON.stringify(input)}\n${!slow.ok && JSON.stringify(slow.issues)}`);
    assert.deepEqual(fast, slow.value);
    assert.equal(JSON.stringify(fast), JSON.stringify(slow.value));
    return 'fast';
  }

  describe(`audit fast path, ${tenant === undefined ? 'tenant from the record (ingest)' : "the sender's own tenant (collector)"}`, () => {
    it('knows every field of the schema (a new field must be handled here first)', () => {
      assert.deepEqual([...FAST_PATH_FIELDS].sort(), Object.keys(auditRecordSchema.shape).sort());
    });

    it('accepts the records gateways send, with exactly the output of normalizeAuditRecord', () => {
      assert.equal(check(goMicro), 'fast');
      assert.equal(check(instrumented), 'fast');
      assert.equal(check({ ...goMicro, tenant: TENANT, v: 1, gateway: 'gw', service: 'custom', cost_usd: 0.5, scopes_required: null }), 'fast');
      // What the collector puts on the topic, as the ingest reads it back.
      const event = normalizeAuditRecord({ ...instrumented, attributes: { region: 'eu' } }, { tenant: TENANT });
      assert.ok(event.ok);
      assert.equal(check(JSON.parse(JSON.stringify(event.value))), 'fast');
    });

    it('takes the id the sender stamped without checking it again', () => {
      const { event_id: _id, ...record } = goMicro;
      assert.equal(normalizeFast(record), undefined, 'no event id: normalizeAuditRecord derives one');
      assert.equal(normalizeFast({ ...record, event_id: EVENT_ID }, EVENT_ID)?.event_id, EVENT_ID);
    });

    it('never accepts a value the schema refuses, field by field', () => {
      let fast = 0;
      for (const base of [goMicro, instrumented]) {
        for (const [key, values] of Object.entries(VALUES)) {
          for (const value of values) {
            if (check({ ...base, [key]: value }) === 'fast') fast++;
          }
        }
      }
      assert.ok(fast > 100, `the fast path took only ${fast} cases`);
    });

    it('never accepts a value the schema refuses, on random combinations', () => {
      let seed = 42;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const keys = Object.keys(VALUES);
      const counts = { fast: 0, fallback: 0 };
      for (let n = 0; n < 5_000; n++) {
        const record: Record<string, unknown> = { ...(random() < 0.5 ? goMicro : instrumented) };
        for (let k = Math.floor(random() * 4); k > 0; k--) {
          const key = keys[Math.floor(random() * keys.length)]!;
          const values = VALUES[key]!;
          record[key] = values[Math.floor(random() * values.length)];
        }
        counts[check(record)]++;
      }
      assert.ok(counts.fast > 500 && counts.fallback > 500, JSON.stringify(counts));
    });

    it('canonicalizes timestamps exactly as the model, also from its memory of seconds', () => {
      const seconds = ['2026-11-24T10:00:00', '2026-11-24t10:00:00', '2026-11-24 10:00:00', '2026-12-31T23:59:60', '2028-02-29T12:00:00', '0050-06-01T00:00:00', '1969-12-31T23:59:59', '2026-02-29T00:00:00', '2026-11-24T24:00:00'];
      const fractions = ['', '.', '.1', '.05', '.123456', '.000000001', '.999999999', '.1234567890', '.12a', '.+1'];
      const zones = ['Z', 'z', '+01:00', '-00:30', ''];
      let fast = 0;
      for (const second of seconds) {
        for (const fraction of fractions) {
          for (const zone of zones) {
            // Twice, and after a timestamp of the same second: the second time comes from memory.
            for (const timestamp of [`${second}.5Z`, `${second}${fraction}${zone}`, `${second}${fraction}${zone}`]) {
              if (check({ ...goMicro, timestamp }) === 'fast') fast++;
            }
          }
        }
      }
      assert.ok(fast > 300, `the fast path took only ${fast} cases`);
    });

    it('canonicalizes interleaved seconds exactly as the model, past the number of seconds it remembers', () => {
      // As a batch from several partitions: seconds interleave, more of them than the memory holds.
      const base = Date.UTC(2026, 1, 28, 23, 50, 0); // 25 minutes, over a day's and a month's end
      const timestamps: string[] = [];
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 1_500; i++) {
          const second = new Date(base + ((i * 7919) % 1_500) * 1000).toISOString().slice(0, 19);
          timestamps.push(`${second}.${String(i).padStart(3, '0')}Z`, `${second}Z`, `${second}.${i % 10}z`);
        }
      }
      timestamps.push('2026-02-29T00:00:00.1Z', '2026-02-28T23:59:60.5Z', '2026-02-28T23:59:60.5Z');
      let fast = 0;
      for (const timestamp of timestamps) if (check({ ...goMicro, timestamp }) === 'fast') fast++;
      assert.equal(fast, timestamps.length - 1, 'every valid timestamp takes the fast path');
    });

    it('leaves anything but a plain object to the schema', () => {
      class Record {
        constructor(readonly fields: object) {
          Object.assign(this, fields);
        }
      }
      for (const input of [null, undefined, 'x', 5, [goMicro], new Record(goMicro), Object.assign(Object.create(null), goMicro)]) {
        assert.equal(normalizeFast(input), undefined);
      }
    });
  });
}
