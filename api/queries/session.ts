/**
 * The calls of one MCP session, oldest first, a page at a time, in one statement: keyset paging on
 * (timestamp, event_id) over the session's keys in audit_lookup_v1 (sorted by tenant, kind, id,
 * timestamp, event_id), and the page's rows from audit_timeline_v1 by those keys (its primary key).
 *
 * A call whose first report was replaced by the merge of both (sql/0005) has two rows under its
 * event_id, and the replacement is stamped no later than the first (ingest/merge-reports.ts: the
 * earlier of the two reports' times, on the stored row's day). So of one event_id's keys the earliest
 * is the one shown (on a tie, the key not of a span fact), chosen over all the session's keys before
 * the cursor applies, so that a page never shows a call an earlier page showed. Of two rows under one
 * key, the replacement (not `counted`), and never the marker of a replaced row (sql/0024). A span fact
 * whose replacement went to another session (its audit record named another) is left out there as
 * audit-rows.ts says: by the 'replaced' key of its event_id, looked up for the session's span facts only.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { EVENT_COLUMNS, eventRow, keyOfRow, MARKER_SOURCE, toEntry, type AuditLogEntry, type EventKey, type Page } from './audit-rows.ts';
import { selectRows } from './select-rows.ts';

function pageSql(after: boolean): string {
  return `
SELECT ${EVENT_COLUMNS}
FROM audit_timeline_v1
WHERE tenant = {tenant:String}
  AND source != '${MARKER_SOURCE}'
  AND (timestamp, event_id) IN (
    SELECT timestamp, event_id
    FROM
    (
        SELECT timestamp, event_id, span_fact
        FROM audit_lookup_v1
        WHERE tenant = {tenant:String} AND kind = 'session' AND key = {session:String}
        ORDER BY event_id ASC, timestamp ASC, span_fact ASC
        LIMIT 1 BY event_id
    )
    WHERE NOT (span_fact AND toString(event_id) IN (
        SELECT key
        FROM audit_lookup_v1
        WHERE tenant = {tenant:String}
          AND kind = 'replaced'
          AND key IN (
            SELECT toString(event_id)
            FROM audit_lookup_v1
            WHERE tenant = {tenant:String} AND kind = 'session' AND key = {session:String} AND span_fact)))${
      after
        ? `
      AND (timestamp, event_id) > ({afterTime:DateTime64(9, 'UTC')}, {afterId:UUID})`
        : ''
    }
    ORDER BY timestamp ASC, event_id ASC
    LIMIT {limit:UInt32})
ORDER BY timestamp ASC, event_id ASC, counted ASC
LIMIT 1 BY timestamp, event_id
SETTINGS max_threads = 1`;
}

export async function querySession(
  tenant: string,
  clickhouse: ClickHouseClient,
  session: string,
  first: number,
  after: EventKey | undefined,
): Promise<Page<AuditLogEntry>> {
  const rows = await selectRows(
    clickhouse,
    'session',
    pageSql(after !== undefined),
    { tenant, session, limit: first + 1, ...(after && { afterTime: after.timestamp, afterId: after.eventId }) },
    eventRow,
  );
  return {
    items: rows.slice(0, first).map((r) => ({ key: keyOfRow(r), node: toEntry(r) })),
    hasNextPage: rows.length > first,
  };
}
