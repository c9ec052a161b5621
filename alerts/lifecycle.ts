/**
 * What a pass's findings do to a tenant's alerts: one open alert per kind and subject, updated while
 * it fires (escalated when its severity rises), resolved by the detector once it has been quiet for
 * `resolveAfterMinutes`. A silenced subject opens nothing new. Pure: the caller reads and writes.
 */
import { alertId, eventOf, subjectKey, type Alert, type AlertEvent } from './alert-record.ts';
import type { Finding } from './findings.ts';
import type { Subject } from './sentences.ts';
import type { AlertKind, AlertSettings } from './settings.ts';

export const DETECTOR = 'detector';

export interface Silence {
  kind: AlertKind;
  /** Empty parts match any value. */
  subject: Subject;
  /** Epoch seconds. */
  until: number;
}

export interface Transition {
  /** Every alert whose row changes, in its new state. */
  alerts: Alert[];
  /** History rows; those with action opened, escalated or resolved are also sent to the webhook. */
  events: AlertEvent[];
}

export function isSilenced(silences: Silence[], kind: AlertKind, subject: Subject, at: number): boolean {
  return silences.some(
    (s) =>
      s.kind === kind &&
      s.until > at &&
      (['agent', 'tool', 'account', 'session'] as const).every((part) => s.subject[part] === '' || s.subject[part] === subject[part]),
  );
}

export function applyFindings(
  tenant: string,
  open: Alert[],
  findings: Finding[],
  silences: Silence[],
  at: number,
  settings: AlertSettings,
): Transition {
  const byKey = new Map(open.map((a) => [subjectKey(a.kind, a.subject), a]));
  const alerts: Alert[] = [];
  const events: AlertEvent[] = [];
  const atMs = at * 1000;
  const fired = new Set<string>();

  for (const f of findings) {
    const key = subjectKey(f.kind, f.subject);
    if (fired.has(key)) continue;
    fired.add(key);
    const current = byKey.get(key);
    const facts = {
      observed: f.observed,
      expected: f.expected,
      expectedLow: f.expectedLow,
      expectedHigh: f.expectedHigh,
      score: f.score,
      baseline: f.baseline,
      sentence: f.sentence,
      windowEnd: at,
      lastFiredAt: at,
    };
    if (current) {
      const escalated = current.severity === 'WARNING' && f.severity === 'CRITICAL';
      const next: Alert = { ...current, ...facts, severity: escalated ? 'CRITICAL' : current.severity, updatedAt: Math.max(atMs, current.updatedAt + 1) };
      alerts.push(next);
      events.push(eventOf(next, escalated ? 'escalated' : 'updated', atMs, DETECTOR));
      continue;
    }
    if (isSilenced(silences, f.kind, f.subject, at)) continue;
    // The window it was first seen in: the long one, or a spike kind's short window.
    const windowStart = at - f.windowMinutes * 60;
    const alert: Alert = {
      id: alertId(tenant, f.kind, f.subject, windowStart),
      tenant,
      kind: f.kind,
      severity: f.severity,
      status: 'OPEN',
      subject: f.subject,
      windowStart,
      ...facts,
      acknowledgedBy: '',
      acknowledgedAt: null,
      resolvedBy: '',
      resolvedAt: null,
      updatedAt: atMs,
    };
    alerts.push(alert);
    events.push(eventOf(alert, 'opened', atMs, DETECTOR));
  }

  for (const a of open) {
    if (fired.has(subjectKey(a.kind, a.subject))) continue;
    if (at - a.lastFiredAt < settings.resolveAfterMinutes * 60) continue;
    const resolved: Alert = { ...a, status: 'RESOLVED', resolvedBy: DETECTOR, resolvedAt: atMs, updatedAt: Math.max(atMs, a.updatedAt + 1) };
    alerts.push(resolved);
    events.push(eventOf(resolved, 'resolved', atMs, DETECTOR));
  }
  return { alerts, events };
}
