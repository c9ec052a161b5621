/**
 * An alert as stored in alerts_v1 and as the API and webhooks show it, and its history rows
 * (alert_history_v1). The mapping between the two lives here, once.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { BaselineKind, Subject } from './sentences.ts';
import { ALERT_KINDS, type AlertKind } from './settings.ts';
import type { Severity } from './findings.ts';

export const ALERT_STATUSES = ['OPEN', 'ACKNOWLEDGED', 'RESOLVED'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];

export interface Alert {
  id: string;
  tenant: string;
  kind: AlertKind;
  severity: Severity;
  status: AlertStatus;
  subject: Subject;
  /** Epoch seconds: start of the window it first fired in, end of the latest window it fired in. */
  windowStart: number;
  windowEnd: number;
  lastFiredAt: number;
  observed: number;
  expected: number;
  expectedLow: number;
  expectedHigh: number;
  score: number;
  baseline: BaselineKind;
  sentence: string;
  acknowledgedBy: string;
  /** Epoch milliseconds, or null. */
  acknowledgedAt: number | null;
  resolvedBy: string;
  resolvedAt: number | null;
  /** Epoch milliseconds; the version ReplacingMergeTree keeps the latest of. */
  updatedAt: number;
}

export type AlertAction = 'opened' | 'updated' | 'escalated' | 'acknowledged' | 'resolved';

export interface AlertEvent {
  tenant: string;
  alertId: string;
  /** Epoch milliseconds. */
  at: number;
  action: AlertAction;
  by: string;
  severity: Severity;
  observed: number;
  score: number;
}

/**
 * The same alert id from every detector process that sees the same anomaly first fire in the same
 * window: a hash of the tenant, kind, subject and that window's start.
 */
export function alertId(tenant: string, kind: AlertKind, subject: Subject, windowStart: number): string {
  const text = JSON.stringify([tenant, kind, subject.agent, subject.tool, subject.account, subject.session, windowStart]);
  return createHash('sha256').update(text).digest('hex').slice(0, 32);
}

export function subjectKey(kind: AlertKind, s: Subject): string {
  return JSON.stringify([kind, s.agent, s.tool, s.account, s.session]);
}

const toDateTime = (seconds: number) => new Date(seconds * 1000).toISOString().slice(0, 19).replace('T', ' ');
const toDateTime64 = (ms: number) => new Date(ms).toISOString().slice(0, 23).replace('T', ' ');
const fromDateTime = (text: string) => Date.parse(`${text.replace(' ', 'T')}Z`);

export function toAlertRow(a: Alert) {
  return {
    tenant: a.tenant,
    alert_id: a.id,
    kind: a.kind,
    severity: a.severity,
    status: a.status,
    agent: a.subject.agent,
    tool: a.subject.tool,
    account_id: a.subject.account,
    session_id: a.subject.session,
    window_start: toDateTime(a.windowStart),
    window_end: toDateTime(a.windowEnd),
    last_fired_at: toDateTime(a.lastFiredAt),
    observed: a.observed,
    expected: a.expected,
    expected_low: a.expectedLow,
    expected_high: a.expectedHigh,
    score: a.score,
    baseline: a.baseline,
    sentence: a.sentence,
    acknowledged_by: a.acknowledgedBy,
    acknowledged_at: a.acknowledgedAt === null ? null : toDateTime64(a.acknowledgedAt),
    resolved_by: a.resolvedBy,
    resolved_at: a.resolvedAt === null ? null : toDateTime64(a.resolvedAt),
    updated_at: toDateTime64(a.updatedAt),
  };
}

export const ALERT_COLUMNS = `tenant, alert_id, kind, severity, status, agent, tool, account_id, session_id,
    window_start, window_end, last_fired_at, observed, expected, expected_low, expected_high, score, baseline,
    sentence, acknowledged_by, acknowledged_at, resolved_by, resolved_at, updated_at`;

export const alertRow = z.object({
  tenant: z.string(),
  alert_id: z.string(),
  kind: z.enum(ALERT_KINDS),
  severity: z.enum(['WARNING', 'CRITICAL']),
  status: z.enum(ALERT_STATUSES),
  agent: z.string(),
  tool: z.string(),
  account_id: z.string(),
  session_id: z.string(),
  window_start: z.string(),
  window_end: z.string(),
  last_fired_at: z.string(),
  observed: z.number(),
  expected: z.number(),
  expected_low: z.number(),
  expected_high: z.number(),
  score: z.number(),
  baseline: z.enum(['hour-of-week', 'recent', 'none']),
  sentence: z.string(),
  acknowledged_by: z.string(),
  acknowledged_at: z.string().nullable(),
  resolved_by: z.string(),
  resolved_at: z.string().nullable(),
  updated_at: z.string(),
});

export function fromAlertRow(r: z.output<typeof alertRow>): Alert {
  return {
    id: r.alert_id,
    tenant: r.tenant,
    kind: r.kind,
    severity: r.severity,
    status: r.status,
    subject: { agent: r.agent, tool: r.tool, account: r.account_id, session: r.session_id },
    windowStart: fromDateTime(r.window_start) / 1000,
    windowEnd: fromDateTime(r.window_end) / 1000,
    lastFiredAt: fromDateTime(r.last_fired_at) / 1000,
    observed: r.observed,
    expected: r.expected,
    expectedLow: r.expected_low,
    expectedHigh: r.expected_high,
    score: r.score,
    baseline: r.baseline,
    sentence: r.sentence,
    acknowledgedBy: r.acknowledged_by,
    acknowledgedAt: r.acknowledged_at === null ? null : fromDateTime(r.acknowledged_at),
    resolvedBy: r.resolved_by,
    resolvedAt: r.resolved_at === null ? null : fromDateTime(r.resolved_at),
    updatedAt: fromDateTime(r.updated_at),
  };
}

export function toHistoryRow(e: AlertEvent) {
  return { tenant: e.tenant, alert_id: e.alertId, at: toDateTime64(e.at), action: e.action, by: e.by, severity: e.severity, observed: e.observed, score: e.score };
}

export function eventOf(a: Alert, action: AlertAction, at: number, by: string): AlertEvent {
  return { tenant: a.tenant, alertId: a.id, at, action, by, severity: a.severity, observed: a.observed, score: a.score };
}
