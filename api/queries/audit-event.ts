/** One audit event by its event_id. */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { formatClickHouse } from '../../model/timestamp.ts';
import { EVENT_COLUMNS, eventRow, MARKER_SOURCE, toEntry, type AuditLogEntry } from './audit-rows.ts';
import { selectRows } from './select-rows.ts';

// An event_id that is a UUIDv7 names its event's millisecond (the ids the model derives always do):
// audit_timeline_v1 is read at that millisecond, by its primary key. Whether the call's first report
// was replaced by the merge of both (audit_lookup_v1's 'replaced' key, as audit-rows.ts's
// replacedAmong reads it) does not depend on the row, so it is read in the same statement, a scalar
// subquery: one statement pays the engine's fixed cost once and waits for one turn in the read queue.
const AT_ITS_TIME = `
SELECT ${EVENT_COLUMNS},
    toBool((SELECT count() > 0 FROM audit_lookup_v1 WHERE tenant = {tenant:String} AND kind = 'replaced' AND key = {key:String})) AS replaced
FROM audit_timeline_v1
WHERE tenant = {tenant:String}
  AND source != '${MARKER_SOURCE}'
  AND timestamp >= {from:DateTime64(9, 'UTC')}
  AND timestamp < {to:DateTime64(9, 'UTC')}
  AND event_id = {id:UUID}`;

// Otherwise by primary key (tenant, event_id) in every partition of audit_events_v1, which gives the
// row's time, and the row from the timeline at that key. Of a call stored twice under one id (its
// first report, then the merge of both: sql/0005), the merged row, which may be stamped before the
// id's millisecond (at the call's start).
const ANYWHERE = `
SELECT ${EVENT_COLUMNS}
FROM audit_timeline_v1
WHERE tenant = {tenant:String}
  AND source != '${MARKER_SOURCE}'
  AND (timestamp, event_id) IN (SELECT timestamp, event_id FROM audit_events_v1 WHERE tenant = {tenant:String} AND event_id = {id:UUID})
ORDER BY counted ASC
LIMIT 1`;

// A row at its time: the event's columns and whether its call's first report was replaced.
const atItsTimeRow = z
  .looseObject({ replaced: z.boolean() })
  .transform(({ replaced, ...row }) => ({ replaced, row }))
  .pipe(z.object({ replaced: z.boolean(), row: eventRow }));

/** Past this a UUIDv7's millisecond is not a time DateTime64(9) holds. */
const LAST_MS = Date.UTC(2262, 3, 11);

/** Null when the tenant has no such event. */
export async function queryAuditEvent(tenant: string, clickhouse: ClickHouseClient, id: string): Promise<AuditLogEntry | null> {
  const ms = id[14] === '7' ? parseInt(id.slice(0, 8) + id.slice(9, 13), 16) : undefined;
  if (ms !== undefined && ms < LAST_MS) {
    const window = { from: formatClickHouse({ epochMs: ms, subMsNanos: 0 }), to: formatClickHouse({ epochMs: ms + 1, subMsNanos: 0 }) };
    const [found] = await selectRows(clickhouse, 'auditEvent', AT_ITS_TIME, { tenant, id, key: id, ...window }, atItsTimeRow);
    if (found && !(found.row.counted && found.replaced)) return toEntry(found.row);
  }
  const [row] = await selectRows(clickhouse, 'auditEvent', ANYWHERE, { tenant, id }, eventRow);
  return row ? toEntry(row) : null;
}
