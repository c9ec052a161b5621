/**
 * Alerts of one tenant: the list (newest first, by cursor), one alert with its history and the series
 * around it, and the changes people make (acknowledge, resolve, silence, settings). The tenant is the
 * first argument of each and a bound parameter of every statement.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { ALERT_COLUMNS, alertRow, eventOf, fromAlertRow, toAlertRow, toHistoryRow, type Alert, type AlertStatus } from '../../alerts/alert-record.ts';
import { readOverride } from '../../alerts/alert-store.ts';
import { WINDOW_METRICS } from '../../alerts/rollup-windows.ts';
import type { Subject } from '../../alerts/sentences.ts';
import { combineOverrides, DEFAULT_SETTINGS, mergeSettings, settingsOverride, settingsProblem, type AlertKind, type AlertSettings, type SettingsOverride } from '../../alerts/settings.ts';
import { count, selectRows } from './select-rows.ts';
import { badInput } from './params.ts';

export interface AlertFilter {
  status?: AlertStatus;
  kind?: AlertKind;
  agent?: string;
  /** Epoch seconds: alerts whose windows overlap [from, to). */
  from?: number;
  to?: number;
}

/** Position after which a page starts: the last alert's window start and id. */
export interface AlertCursor {
  windowStart: number;
  id: string;
}

const LIST_SQL = `
SELECT ${ALERT_COLUMNS}
FROM alerts_v1 FINAL
WHERE tenant = {tenant:String}
  AND ({status:String} = '' OR status = {status:String})
  AND ({kind:String} = '' OR kind = {kind:String})
  AND ({has_agent:Bool} = false OR agent = {agent:String})
  AND window_end >= toDateTime({from:UInt32}) AND window_start < toDateTime({to:UInt32})
  AND (toUInt32(window_start), alert_id) < ({after_start:UInt32}, {after_id:String})
ORDER BY window_start DESC, alert_id DESC
LIMIT {limit:UInt32}`;

export async function listAlerts(clickhouse: ClickHouseClient, tenant: string, filter: AlertFilter, first: number, after?: AlertCursor): Promise<{ alerts: Alert[]; hasNextPage: boolean }> {
  const rows = await selectRows(
    clickhouse,
    'alerts',
    LIST_SQL,
    {
      tenant,
      status: filter.status ?? '',
      kind: filter.kind ?? '',
      has_agent: filter.agent !== undefined,
      agent: filter.agent ?? '',
      from: filter.from ?? 0,
      to: filter.to ?? 4_294_967_295,
      // No cursor: (the largest UInt32, '') is above every stored alert.
      after_start: after?.windowStart ?? 4_294_967_295,
      after_id: after?.id ?? '',
      limit: first + 1,
    },
    alertRow,
  );
  return { alerts: rows.slice(0, first).map(fromAlertRow), hasNextPage: rows.length > first };
}

const ONE_SQL = `SELECT ${ALERT_COLUMNS} FROM alerts_v1 FINAL WHERE tenant = {tenant:String} AND alert_id = {id:String}`;

export async function getAlert(clickhouse: ClickHouseClient, tenant: string, id: string): Promise<Alert | undefined> {
  const rows = await selectRows(clickhouse, 'alert', ONE_SQL, { tenant, id }, alertRow);
  return rows[0] && fromAlertRow(rows[0]);
}

export interface HistoryEntry {
  at: number;
  action: string;
  by: string;
  severity: string;
  observed: number;
  score: number;
}

const HISTORY_SQL = `
SELECT toUnixTimestamp64Milli(at) AS at, action, by, severity, observed, score
FROM alert_history_v1 FINAL
WHERE tenant = {tenant:String} AND alert_id = {id:String}
ORDER BY at, action`;

export async function alertHistory(clickhouse: ClickHouseClient, tenant: string, id: string): Promise<HistoryEntry[]> {
  return selectRows(
    clickhouse,
    'alert history',
    HISTORY_SQL,
    { tenant, id },
    z.object({ at: z.coerce.number(), action: z.string(), by: z.string(), severity: z.string(), observed: z.number(), score: z.number() }),
  );
}

export interface SeriesPoint {
  /** Epoch seconds of the minute. */
  minute: number;
  calls: number;
  errors: number;
  denials: number;
  costUsd: number;
  p95Ms: number | null;
}

/** Per minute, two hours before the alert's window to 30 minutes after it, for the alert's subject. */
const SERIES_SQL = `
SELECT
    minute,
    ${WINDOW_METRICS}
FROM tool_calls_1m_v1
WHERE tenant = {tenant:String}
  AND minute >= toDateTime({from:UInt32}) AND minute < toDateTime({to:UInt32})
  AND ({agent:String} = '' OR agent = {agent:String})
  AND ({tool:String} = '' OR tool = {tool:String})
  AND ({account:String} = '' OR account_id = {account:String})
GROUP BY minute
ORDER BY minute WITH FILL FROM toDateTime({from:UInt32}) TO toDateTime({to:UInt32}) STEP INTERVAL 1 MINUTE`;

export async function alertSeries(clickhouse: ClickHouseClient, tenant: string, alert: Alert): Promise<SeriesPoint[]> {
  const rows = await selectRows(
    clickhouse,
    'alert series',
    SERIES_SQL,
    { tenant, from: alert.windowStart - 2 * 3600, to: alert.windowEnd + 30 * 60, agent: alert.subject.agent, tool: alert.subject.tool, account: alert.subject.account },
    z.object({ minute: z.string(), calls: count, errors: count, denials: count, cost_usd: z.number(), p95_ms: z.number().nullable() }),
  );
  return rows.map((r) => ({ minute: Date.parse(`${r.minute.replace(' ', 'T')}Z`) / 1000, calls: r.calls, errors: r.errors, denials: r.denials, costUsd: r.cost_usd, p95Ms: r.p95_ms !== null && Number.isFinite(r.p95_ms) && r.calls > 0 ? r.p95_ms : null }));
}

/**
 * A person acknowledges or resolves an alert: a new version of its row (who and when) and a history
 * row. Resolving a resolved alert, or acknowledging an acknowledged one, changes nothing and returns
 * it as it is (`changed` false).
 */
export async function changeAlertStatus(
  clickhouse: ClickHouseClient,
  tenant: string,
  id: string,
  change: 'acknowledged' | 'resolved',
  by: string,
  nowMs: number,
): Promise<{ alert: Alert; changed: boolean } | undefined> {
  const alert = await getAlert(clickhouse, tenant, id);
  if (!alert) return undefined;
  if (alert.status === 'RESOLVED' || (change === 'acknowledged' && alert.status === 'ACKNOWLEDGED')) return { alert, changed: false };
  const updatedAt = Math.max(nowMs, alert.updatedAt + 1);
  const next: Alert =
    change === 'acknowledged'
      ? { ...alert, status: 'ACKNOWLEDGED', acknowledgedBy: by, acknowledgedAt: nowMs, updatedAt }
      : { ...alert, status: 'RESOLVED', resolvedBy: by, resolvedAt: nowMs, updatedAt };
  await clickhouse.insert({ table: 'alert_history_v1', values: [toHistoryRow(eventOf(next, change, nowMs, by))], format: 'JSONEachRow' });
  await clickhouse.insert({ table: 'alerts_v1', values: [toAlertRow(next)], format: 'JSONEachRow' });
  return { alert: next, changed: true };
}

export interface SilenceRecord {
  kind: AlertKind;
  subject: Subject;
  /** Epoch seconds. */
  until: number;
  createdBy: string;
}

export async function silenceSubject(clickhouse: ClickHouseClient, tenant: string, silence: SilenceRecord, nowMs: number): Promise<SilenceRecord> {
  await clickhouse.insert({
    table: 'alert_silences_v1',
    format: 'JSONEachRow',
    values: [
      {
        tenant,
        kind: silence.kind,
        agent: silence.subject.agent,
        tool: silence.subject.tool,
        account_id: silence.subject.account,
        session_id: silence.subject.session,
        until: new Date(silence.until * 1000).toISOString().slice(0, 19).replace('T', ' '),
        created_by: silence.createdBy,
        created_at: new Date(nowMs).toISOString().slice(0, 23).replace('T', ' '),
      },
    ],
  });
  return silence;
}

/** The tenant's effective settings: the defaults with its stored overrides. */
export async function alertSettings(clickhouse: ClickHouseClient, tenant: string): Promise<AlertSettings> {
  return mergeSettings(DEFAULT_SETTINGS, await readOverride(clickhouse, tenant));
}

/** Stores `change` on top of the tenant's overrides; returns the effective settings. */
export async function setAlertSettings(clickhouse: ClickHouseClient, tenant: string, change: SettingsOverride, by: string, nowMs: number): Promise<AlertSettings> {
  const combined = settingsOverride.parse(combineOverrides((await readOverride(clickhouse, tenant)) ?? {}, change));
  // Each setting was checked alone (parseSettings); together with the stored ones they must agree too.
  const problem = settingsProblem(mergeSettings(DEFAULT_SETTINGS, combined));
  if (problem) throw badInput(`settings.${problem.path}: ${problem.message}`, `settings.${problem.path}`);
  await clickhouse.insert({
    table: 'alert_settings_v1',
    format: 'JSONEachRow',
    values: [{ tenant, settings: JSON.stringify(combined), updated_by: by, updated_at: new Date(nowMs).toISOString().slice(0, 23).replace('T', ' ') }],
  });
  return mergeSettings(DEFAULT_SETTINGS, combined);
}
