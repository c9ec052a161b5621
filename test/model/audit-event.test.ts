import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeAuditRecord, serviceOfTool, toAuditRow } from '../../model/audit-event.ts';
import { goMicroAllowed } from '../helpers/go-micro.ts';

const goMicroDenied = {
  trace_id: '7a2d3b9f-4c5e-4f60-9bac-1d2e3f4a5b6c',
  timestamp: '2026-11-24T11:00:00+01:00',
  tool: 'billing.Billing.Charge',
  allowed: false,
  denied_reason: 'missing token',
};

describe('audit event model', () => {
  it('accepts go-micro records exactly as the gateway writes them', () => {
    const allowed = normalizeAuditRecord(goMicroAllowed);
    assert.ok(allowed.ok);
    assert.equal(allowed.value.tenant, 'default');
    assert.equal(allowed.value.service, 'users');
    assert.equal(allowed.value.timestamp, '2026-11-24T10:00:00.123456789Z');
    assert.equal(allowed.value.duration, 1523000);
    assert.deepEqual(allowed.value.scopes_required, ['users:read']);
    assert.match(allowed.value.event_id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

    const denied = normalizeAuditRecord(goMicroDenied);
    assert.ok(denied.ok);
    assert.equal(denied.value.timestamp, '2026-11-24T10:00:00.000000000Z', 'offset folded into UTC');
    assert.equal(denied.value.allowed, false);
    assert.equal(denied.value.denied_reason, 'missing token');
    assert.equal(denied.value.account_id, '');
    assert.equal(denied.value.duration, 0);
    assert.equal(denied.value.service, 'billing');
  });

  it('derives the same event_id for the same call reported twice, and keeps a given one', () => {
    const a = normalizeAuditRecord(goMicroAllowed);
    const b = normalizeAuditRecord({ ...goMicroAllowed });
    const other = normalizeAuditRecord({ ...goMicroAllowed, trace_id: 'another' });
    assert.ok(a.ok && b.ok && other.ok);
    assert.equal(a.value.event_id, b.value.event_id);
    assert.notEqual(a.value.event_id, other.value.event_id);
    const given = normalizeAuditRecord({ ...goMicroAllowed, event_id: '0193A2B4-C5D6-7E8F-9A0B-1C2D3E4F5A6B' });
    assert.ok(given.ok);
    assert.equal(given.value.event_id, '0193a2b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b');
  });

  it('accepts its own normalized output unchanged (what travels on the topic)', () => {
    const r = normalizeAuditRecord(goMicroDenied);
    assert.ok(r.ok);
    const again = normalizeAuditRecord(JSON.parse(JSON.stringify(r.value)));
    assert.deepEqual(again, r);
  });

  it('accepts the extended fields', () => {
    const r = normalizeAuditRecord({
      ...goMicroAllowed,
      tenant: 'acme',
      agent: 'claude-desktop',
      agent_version: '1.2.3',
      session_id: 's-1',
      service: 'identity',
      otel_trace_id: '0af7651916cd43dd8448eb211c80319c',
      otel_span_id: 'b7ad6b7169203331',
      request_bytes: 120,
      response_bytes: 4096,
      cost_usd: 0.0025,
      attributes: { region: 'eu-west-1' },
    });
    assert.ok(r.ok);
    assert.equal(r.value.service, 'identity');
    assert.equal(r.value.cost_usd, 0.0025);
    const row = toAuditRow(r.value);
    assert.equal(row.timestamp, '2026-11-24 10:00:00.123456789');
    assert.equal(row.allowed, 1);
    assert.equal(row.is_error, 0);
    assert.equal(row.source, 'audit');
  });

  const malformed: [string, Record<string, unknown>, string, RegExp][] = [
    ['missing tool', { ...goMicroAllowed, tool: undefined }, 'tool', /expected string/i],
    ['empty tool', { ...goMicroAllowed, tool: '' }, 'tool', /must not be empty/],
    ['timestamp not RFC 3339', { ...goMicroAllowed, timestamp: '24/11/2026 10:00' }, 'timestamp', /RFC 3339/],
    ['impossible date', { ...goMicroAllowed, timestamp: '2026-02-30T10:00:00Z' }, 'timestamp', /RFC 3339/],
    ['duration as a Go string', { ...goMicroAllowed, duration: '1.5ms' }, 'duration', /integer nanoseconds/],
    ['fractional duration', { ...goMicroAllowed, duration: 1.5 }, 'duration', /integer nanoseconds/],
    ['negative duration', { ...goMicroAllowed, duration: -1 }, 'duration', /negative/],
    ['allowed as a string', { ...goMicroAllowed, allowed: 'yes' }, 'allowed', /true or false/],
    ['scopes not an array', { ...goMicroAllowed, scopes_required: 'users:read' }, 'scopes_required', /array/],
    ['scope not a string', { ...goMicroAllowed, scopes_required: ['ok', 7] }, 'scopes_required.1', /string/],
    ['event_id not a UUID', { ...goMicroAllowed, event_id: 'abc' }, 'event_id', /UUID/],
    ['bad tenant', { ...goMicroAllowed, tenant: 'a b' }, 'tenant', /letters, digits/],
    ['bad otel trace id', { ...goMicroAllowed, otel_trace_id: 'xyz' }, 'otel_trace_id', /32 hex/],
    ['negative bytes', { ...goMicroAllowed, request_bytes: -5 }, 'request_bytes', /negative/],
    ['too long account', { ...goMicroAllowed, account_id: 'x'.repeat(300) }, 'account_id', /at most 256/],
    ['too many attributes', { ...goMicroAllowed, attributes: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) }, 'attributes', /at most 32/],
    ['attribute value not a string', { ...goMicroAllowed, attributes: { n: 5 } }, 'attributes.n', /string/],
    ['unknown payload version', { ...goMicroAllowed, v: 2 }, 'v', /must be 1/],
  ];
  for (const [name, input, path, message] of malformed) {
    it(`rejects ${name}, naming the field`, () => {
      const r = normalizeAuditRecord(input);
      assert.equal(r.ok, false);
      if (r.ok) return;
      const issue = r.issues.find((i) => i.path === path);
      assert.ok(issue, `expected an issue at ${path}, got ${JSON.stringify(r.issues)}`);
      assert.match(issue.message, message);
    });
  }

  it('rejects a record that is not an object', () => {
    for (const input of [null, 'x', 42, []]) assert.equal(normalizeAuditRecord(input).ok, false);
  });

  it('refuses a record claiming a tenant other than its sender', () => {
    const r = normalizeAuditRecord({ ...goMicroAllowed, tenant: 'globex' }, { tenant: 'acme' });
    assert.deepEqual(r, { ok: false, issues: [{ path: 'tenant', message: 'must be the sender\'s own tenant "acme"' }] });
    const own = normalizeAuditRecord(goMicroAllowed, { tenant: 'acme' });
    assert.ok(own.ok);
    assert.equal(own.value.tenant, 'acme');
  });

  it('derives the service from the tool name', () => {
    assert.equal(serviceOfTool('users.Users.Get'), 'users');
    assert.equal(serviceOfTool('search'), 'search');
  });
});
