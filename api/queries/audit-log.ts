/**
 * The audit log: one tenant's calls, newest first, a page at a time.
 *
 * Keyset paging on (timestamp, event_id): a page holds the records strictly before the cursor, so one
 * stored while a client pages (newer than its first page) never shifts, repeats or skips a record.
 * A page is read from audit_timeline_v1 (sorted by tenant, timestamp, event_id: the newest granules
 * are read first and the read stops at the page's end), filtered on its columns; a session or trace
 * filter narrows it to the keys audit_lookup_v1 holds for that id. Of the rows, those to show
 * (audit-rows.ts); a page short of them reads on. One thread: a page is a granule or two at the end
 * of each part, which more threads only read in more streams to merge.
 *
 * A call's first row replaced by the merge of its two reports is hidden by the marker at its key
 * (sql/0024), which a read by time and key meets with it: such a page is one statement per read. A
 * filter on another column (agent, service, tool, account, outcome, text) would leave the markers out
 * (they have no such column), so those reads leave them out and look the replacements of their first
 * rows up in audit_lookup_v1, a second statement.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { AuditLogFilter } from './audit-params.ts';
import { otelTraceIdOf } from './audit-params.ts';
import { EVENT_COLUMNS, eventRow, keyOfRow, MARKER_SOURCE, pageOf, shownInKeyOrder, toEntry, visible, type AuditLogEntry, type EventKey, type EventRow, type Page } from './audit-rows.ts';
import { formatClickHouse, parseRfc3339 } from '../../model/timestamp.ts';
import { selectRows } from './select-rows.ts';

export type { AuditLogEntry };

// Each filter adds a fixed condition; the values are always bound parameters.
export const CONDITIONS: Record<keyof AuditLogFilter, string> = {
  from: 'timestamp >= {from:DateTime64(9, \'UTC\')}',
  to: 'timestamp < {to:DateTime64(9, \'UTC\')}',
  agent: 'agent = {agent:String}',
  service: 'service = {service:String}',
  tool: 'tool = {tool:String}',
  account: 'account_id = {account:String}',
  outcome: "multiIf(NOT allowed, 'DENIED', is_error, 'ERROR', 'OK') = {outcome:String}",
  session: `(timestamp, event_id) IN (
      SELECT timestamp, event_id FROM audit_lookup_v1
      WHERE tenant = {tenant:String} AND kind = 'session' AND key = {session:String})`,
  traceId: `(timestamp, event_id) IN (
      SELECT timestamp, event_id FROM audit_lookup_v1
      WHERE tenant = {tenant:String} AND ((kind = 'trace' AND key = {traceId:String}) OR (kind = 'otel_trace' AND key = {otelTraceId:String})))`,
  text: '(positionCaseInsensitiveUTF8(error, {text:String}) > 0 OR positionCaseInsensitiveUTF8(denied_reason, {text:String}) > 0)',
};

/** The filters a marker (sql/0024) passes as the row it hides does: by time and by key. */
const BY_KEY: ReadonlySet<keyof AuditLogFilter> = new Set(['from', 'to', 'session', 'traceId']);

const NO_MARKERS = `source != '${MARKER_SOURCE}'`;

const AFTER = `timestamp <= {afterTime:DateTime64(9, 'UTC')}
  AND (timestamp, event_id) < ({afterTime:DateTime64(9, 'UTC')}, {afterId:UUID})`;

// Of the rows under one key (timestamp, event_id), the merged row of a call first (not `counted`), then
// the first report it replaced (sql/0005: a span's fact and its merged row share the key when the span
// came first and started first). A read that reaches its limit between the two then ends on the merged
// row, and the next read, which starts after that key, skips only the replaced one. In the other order
// a read could end on the replaced row, hidden, and the next one skip the merged row: the call would be
// listed nowhere. The engine gives no order among equal keys unless asked.
export function pageSql(conditions: string[]): string {
  return `
SELECT ${EVENT_COLUMNS}
FROM audit_timeline_v1
WHERE tenant = {tenant:String}${conditions.map((c) => `\n  AND ${c}`).join('')}
ORDER BY timestamp DESC, event_id DESC, counted ASC
LIMIT {limit:UInt32}
SETTINGS max_threads = 1`;
}

/** How far back from a page's end its rows are looked for first. */
const RECENT_MS = 3_600_000;

/** The conditions of the first read of a page that looks in the hour before its end, and of the read before that hour. */
export const RECENT = "timestamp >= {windowStart:DateTime64(9, 'UTC')}";
const BEFORE_RECENT = "timestamp < {windowStart:DateTime64(9, 'UTC')}";

/**
 * The start of the hour before `end` (a cursor's or the filter's upper bound, ClickHouse text; now when
 * neither), or undefined when that is not after `from`. An unfiltered page's rows lie in the last hour
 * of its range unless the tenant sends under a page an hour: a read that asks for those first touches
 * only the parts (by their min-max time index) and granules of that hour, not the tail of every part of
 * every month. A page short of its rows there reads the rest before the hour, in a second statement.
 */
export function recentWindowStart(end: string | undefined, from: string | undefined): string | undefined {
  const endMs = end === undefined ? Date.now() : parseRfc3339(`${end.replace(' ', 'T')}Z`)!.epochMs;
  const start = formatClickHouse({ epochMs: Math.max(0, endMs - RECENT_MS), subMsNanos: 0 });
  return from === undefined || start > from ? start : undefined;
}

/**
 * Per tenant and kind of page (by time and key, or filtered on another column), the share of the rows
 * its last page read that the page showed. Where a tenant's calls are reported twice, a page's rows
 * include the merged rows' markers and the rows they hide (sql/0024): the first read of a page asks
 * for its size over this share, so it is not short and read again. At most MAX_SHARES kept, the
 * least recently updated dropped.
 */
const shownShares = new Map<string, number>();
const MAX_SHARES = 10_000;
/** A first read asks for at most this many times the page's size. */
const MIN_SHOWN_SHARE = 0.25;

function remember(key: string, share: number): void {
  shownShares.delete(key);
  shownShares.set(key, share);
  if (shownShares.size > MAX_SHARES) shownShares.delete(shownShares.keys().next().value!);
}

export async function queryAuditLog(
  tenant: string,
  clickhouse: ClickHouseClient,
  filter: AuditLogFilter,
  first: number,
  after: EventKey | undefined,
): Promise<Page<AuditLogEntry>> {
  const active = (Object.keys(CONDITIONS) as Array<keyof AuditLogFilter>).filter((k) => filter[k] !== undefined);
  const byKey = active.every((k) => BY_KEY.has(k));
  const params: Record<string, unknown> = { tenant, ...filter };
  if (filter.traceId !== undefined) params.otelTraceId = otelTraceIdOf(filter.traceId) ?? '';
  const select = (from: EventKey | undefined, limit: number, bounds: string[], extra: Record<string, unknown> = {}) =>
    selectRows(
      clickhouse,
      'auditLog',
      pageSql([...active.map((k) => CONDITIONS[k]), ...(byKey ? [] : [NO_MARKERS]), ...(from ? [AFTER] : []), ...bounds]),
      { ...params, ...extra, limit, ...(from && { afterTime: from.timestamp, afterId: from.eventId }) },
      eventRow,
    );
  const read = async (from: EventKey | undefined, limit: number) => {
    const windowStart = active.every((k) => k === 'from' || k === 'to') ? recentWindowStart(from?.timestamp ?? filter.to, filter.from) : undefined;
    if (windowStart === undefined) return select(from, limit, []);
    const recent = await select(from, limit, [RECENT], { windowStart });
    if (recent.length === limit) return recent;
    return [...recent, ...(await select(from, limit - recent.length, [BEFORE_RECENT], { windowStart }))];
  };
  const show = byKey ? shownInKeyOrder : (rows: EventRow[]) => visible(clickhouse, tenant, rows, keyOfRow);
  const share = `${tenant}\u0000${byKey}`;
  const page = await pageOf(read, keyOfRow, show, first, after, shownShares.get(share) ?? 1);
  // A page whose reads reached their limits: a tail or a look-up by id of a few rows says little.
  if (page.rowsRead > first) remember(share, Math.max(MIN_SHOWN_SHARE, page.rowsShown / page.rowsRead));
  return { items: page.items.map((r) => ({ key: keyOfRow(r), node: toEntry(r) })), hasNextPage: page.hasNextPage };
}
