/** One audit event by its event_id. */
import type { ClickHouseClient } from '@clickhouse/client';
import { EVENT_COLUMNS, eventRow, toEntry, type AuditLogEntry } from './audit-rows.ts';
import { selectRows } from './select-rows.ts';

// By primary key (tenant, event_id) in every partition: an event's id says nothing sure about its day.
// Of a call stored twice under one id (its span fact, then its audit record: sql/0005), the audit
// record's row, the one not `counted`.
const SQL = `
SELECT ${EVENT_COLUMNS}
FROM audit_events_v1
WHERE tenant = {tenant:String}
  AND event_id = {id:UUID}
ORDER BY counted ASC
LIMIT 1`;

/** Null when the tenant has no such event. */
export async function queryAuditEvent(tenant: string, clickhouse: ClickHouseClient, id: string): Promise<AuditLogEntry | null> {
  const [row] = await selectRows(clickhouse, 'auditEvent', SQL, { tenant, id }, eventRow);
  return row ? toEntry(row) : null;
}
