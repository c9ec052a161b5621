/**
 * The calls of one MCP session, oldest first, a page at a time: keyset paging on (timestamp, event_id)
 * over the session's keys in audit_lookup_v1 (sorted by tenant, kind, id, timestamp, event_id), then
 * the page's rows from audit_timeline_v1 by their keys.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { eventsAt, keyOfRow, keyRow, pageOf, toEntry, type AuditLogEntry, type EventKey, type Page } from './audit-rows.ts';
import { selectRows } from './select-rows.ts';

function keysSql(after: boolean): string {
  return `
SELECT event_id, timestamp, span_fact
FROM audit_lookup_v1
WHERE tenant = {tenant:String}
  AND kind = 'session'
  AND key = {session:String}${
    after
      ? `
  AND timestamp >= {afterTime:DateTime64(9, 'UTC')}
  AND (timestamp, event_id) > ({afterTime:DateTime64(9, 'UTC')}, {afterId:UUID})`
      : ''
  }
ORDER BY timestamp ASC, event_id ASC
LIMIT {limit:UInt32}`;
}

export async function querySession(
  tenant: string,
  clickhouse: ClickHouseClient,
  session: string,
  first: number,
  after: EventKey | undefined,
  /** The AuditEvent fields asked for (all when undefined). */
  fields?: ReadonlySet<string>,
): Promise<Page<AuditLogEntry>> {
  const read = (from: EventKey | undefined, limit: number) =>
    selectRows(
      clickhouse,
      'sessionKeys',
      keysSql(from !== undefined),
      { tenant, session, limit, ...(from && { afterTime: from.timestamp, afterId: from.eventId }) },
      keyRow,
    );
  const page = await pageOf(read, (k) => k, clickhouse, tenant, first, after);
  const rows = await eventsAt(clickhouse, tenant, page.items, fields);
  return { items: rows.map((r) => ({ key: keyOfRow(r), node: toEntry(r) })), hasNextPage: page.hasNextPage };
}
