/** The alert lifecycle without I/O: open, update, escalate, silence, resolve. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { alertId } from '../../alerts/alert-record.ts';
import type { Finding } from '../../alerts/findings.ts';
import { applyFindings, isSilenced } from '../../alerts/lifecycle.ts';
import { DEFAULT_SETTINGS } from '../../alerts/settings.ts';

const AT = 1_800_000_000 - (1_800_000_000 % 600);
const subject = { agent: 'a', tool: 't', account: '', session: '' };
const finding = (severity: Finding['severity'], observed: number): Finding => ({
  kind: 'CALL_SPIKE', subject, windowMinutes: 10, severity, observed, expected: 5, expectedLow: 4, expectedHigh: 8, score: severity === 'CRITICAL' ? 20 : 9, baseline: 'recent', sentence: `a called t ${observed} times`,
});

test('opens with a deterministic id, updates, escalates once, resolves after the quiet time', () => {
  const opened = applyFindings('acme', [], [finding('WARNING', 40)], [], AT, DEFAULT_SETTINGS);
  assert.deepEqual(opened.events.map((e) => e.action), ['opened']);
  const [alert] = opened.alerts;
  assert.equal(alert!.id, alertId('acme', 'CALL_SPIKE', subject, AT - 600));
  assert.equal(alert!.windowStart, AT - 600);

  const escalated = applyFindings('acme', [alert!], [finding('CRITICAL', 90)], [], AT + 60, DEFAULT_SETTINGS);
  assert.deepEqual(escalated.events.map((e) => e.action), ['escalated']);
  assert.deepEqual([escalated.alerts[0]!.id, escalated.alerts[0]!.severity, escalated.alerts[0]!.observed, escalated.alerts[0]!.windowStart], [alert!.id, 'CRITICAL', 90, AT - 600]);

  // Still critical, then weaker: updated, never de-escalated.
  const weaker = applyFindings('acme', [escalated.alerts[0]!], [finding('WARNING', 30)], [], AT + 120, DEFAULT_SETTINGS);
  assert.deepEqual([weaker.events[0]!.action, weaker.alerts[0]!.severity], ['updated', 'CRITICAL']);

  const quiet = weaker.alerts[0]!;
  assert.deepEqual(applyFindings('acme', [quiet], [], [], AT + 120 + 14 * 60, DEFAULT_SETTINGS).alerts, []);
  const resolved = applyFindings('acme', [quiet], [], [], AT + 120 + 15 * 60, DEFAULT_SETTINGS);
  assert.deepEqual([resolved.events[0]!.action, resolved.alerts[0]!.status, resolved.alerts[0]!.resolvedBy, resolved.alerts[0]!.resolvedAt], ['resolved', 'RESOLVED', 'detector', (AT + 1020) * 1000]);
});

test('a silence opens nothing new, and its empty parts match anything', () => {
  const silence = { kind: 'CALL_SPIKE' as const, subject: { agent: 'a', tool: '', account: '', session: '' }, until: AT + 3600 };
  assert.equal(isSilenced([silence], 'CALL_SPIKE', subject, AT), true);
  assert.equal(isSilenced([silence], 'CALL_LOOP', subject, AT), false);
  assert.equal(isSilenced([silence], 'CALL_SPIKE', { ...subject, agent: 'b' }, AT), false);
  assert.equal(isSilenced([silence], 'CALL_SPIKE', subject, AT + 3600), false);
  assert.deepEqual(applyFindings('acme', [], [finding('WARNING', 40)], [silence], AT, DEFAULT_SETTINGS), { alerts: [], events: [] });
});
