/**
 * Where alerts live: alerts_v1 (latest version of each alert), alert_history_v1, alert_silences_v1 and
 * alert_settings_v1. Every statement takes the tenant first, as a bound parameter. The backtest uses
 * `createMemoryAlertStore` instead, so trying settings writes nothing.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { selectRows } from '../api/queries/select-rows.ts';
import { ALERT_COLUMNS, alertRow, fromAlertRow, toAlertRow, toHistoryRow, type Alert, type AlertEvent } from './alert-record.ts';
import type { Silence } from './lifecycle.ts';
import { ALERT_KINDS, settingsOverride, type SettingsOverride } from './settings.ts';

export interface AlertStore {
  /** Alerts not yet resolved. */
  openAlerts(tenant: string): Promise<Alert[]>;
  silences(tenant: string, at: number): Promise<Silence[]>;
  settings(tenant: string): Promise<SettingsOverride | undefined>;
  write(alerts: Alert[], events: AlertEvent[]): Promise<void>;
}

const OPEN_SQL = `
SELECT ${ALERT_COLUMNS}
FROM alerts_v1 FINAL
WHERE tenant = {tenant:String} AND status != 'RESOLVED'`;

const SILENCES_SQL = `
SELECT kind, agent, tool, account_id, session_id, toUInt32(until) AS until
FROM alert_silences_v1 FINAL
WHERE tenant = {tenant:String} AND until > toDateTime({at:UInt32})`;

const SETTINGS_SQL = `
SELECT settings FROM alert_settings_v1 FINAL WHERE tenant = {tenant:String}`;

export async function readOverride(clickhouse: ClickHouseClient, tenant: string): Promise<SettingsOverride | undefined> {
  const rows = await selectRows(clickhouse, 'alert settings', SETTINGS_SQL, { tenant }, z.object({ settings: z.string() }));
  if (rows.length === 0) return undefined;
  return settingsOverride.parse(JSON.parse(rows[0]!.settings));
}

export function createClickHouseAlertStore(clickhouse: ClickHouseClient): AlertStore {
  return {
    async openAlerts(tenant) {
      const rows = await selectRows(clickhouse, 'open alerts', OPEN_SQL, { tenant }, alertRow);
      return rows.map(fromAlertRow);
    },
    async silences(tenant, at) {
      const rows = await selectRows(
        clickhouse,
        'alert silences',
        SILENCES_SQL,
        { tenant, at },
        z.object({ kind: z.enum(ALERT_KINDS), agent: z.string(), tool: z.string(), account_id: z.string(), session_id: z.string(), until: z.number() }),
      );
      return rows.map((r) => ({ kind: r.kind, subject: { agent: r.agent, tool: r.tool, account: r.account_id, session: r.session_id }, until: r.until }));
    },
    settings: (tenant) => readOverride(clickhouse, tenant),
    async write(alerts, events) {
      if (events.length > 0) await clickhouse.insert({ table: 'alert_history_v1', values: events.map(toHistoryRow), format: 'JSONEachRow' });
      if (alerts.length > 0) await clickhouse.insert({ table: 'alerts_v1', values: alerts.map(toAlertRow), format: 'JSONEachRow' });
    },
  };
}

/** Alerts kept in memory: what the backtest "would have raised", with no table written. */
export function createMemoryAlertStore(overrides = new Map<string, SettingsOverride>()) {
  const alerts = new Map<string, Alert>();
  const events: AlertEvent[] = [];
  const store: AlertStore & { alerts: Map<string, Alert>; events: AlertEvent[] } = {
    alerts,
    events,
    async openAlerts(tenant) {
      return [...alerts.values()].filter((a) => a.tenant === tenant && a.status !== 'RESOLVED');
    },
    async silences() {
      return [];
    },
    async settings(tenant) {
      return overrides.get(tenant);
    },
    async write(changed, happened) {
      for (const a of changed) alerts.set(`${a.tenant}\u0000${a.id}`, a);
      events.push(...happened);
    },
  };
  return store;
}

