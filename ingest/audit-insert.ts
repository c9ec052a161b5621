/**
 * The inserts the ingest sends: audit rows as JSONCompactEachRow lines, and the one INSERT statement
 * every insert goes through, with its deduplication token and settings in the statement.
 */
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ClickHouseClient } from '@clickhouse/client';
import type { AuditRow } from '../model/audit-event.ts';

/**
 * The columns of an audit insert, in the order of `auditInsertValues`. Rows go as JSONCompactEachRow,
 * arrays rather than objects: on the embedded engine a 10,000-row insert took ~25% less time than as
 * JSONEachRow (no key names to write, or to read back).
 */
export const AUDIT_INSERT_COLUMNS: [string, ...string[]] = [
  'event_id', 'tenant', 'timestamp', 'trace_id', 'tool', 'service', 'account_id', 'scopes_required', 'allowed',
  'denied_reason', 'duration_ns', 'error', 'is_error', 'agent', 'agent_version', 'session_id', 'gateway', 'transport',
  'otel_trace_id', 'otel_span_id', 'request_bytes', 'response_bytes', 'cost_usd', 'attributes', 'source', 'counted',
  'report_id', 'replaces_at',
];

/**
 * One INSERT of audit rows into `table`: `body` holds one `auditInsertLine` per row, each ended by a
 * newline.
 */
export async function insertAuditBody(clickhouse: ClickHouseClient, table: string, body: string, dedupToken: string): Promise<void> {
  await insertBody(clickhouse, `INSERT INTO ${table} (${AUDIT_INSERT_COLUMNS.join(', ')})`, 'JSONCompactEachRow', body, dedupToken);
}

/**
 * `insert` (`INSERT INTO table (columns)`) of `body` in `format`, with its settings in the statement's
 * SETTINGS clause: as client settings, the embedded engine gets them as separate `SET` statements,
 * which cost ~20 ms more per 10,000-row insert.
 * - insert_deduplication_token: `dedupToken` (a hex digest).
 * - deduplicate_blocks_in_dependent_materialized_views = 1: a block sent again with its token (after a
 *   crash, from the journal) goes on to the views, and each view's target takes it only if it missed it.
 *   (The default since ClickHouse 24.x, including the embedded engine's 26.7; older servers default to 0.)
 * - max_partitions_per_insert_block = 0: the tables are partitioned by day (or month), and a batch
 *   whose rows span more than the server's default of 100 days (a backlog, a replay, a gateway with
 *   a wrong clock) would otherwise be refused on every retry, and block its partitions. The rows make
 *   the same parts however they are split into inserts.
 *
 * Not parallel_view_processing: with the views of an insert (17 for audit_events_v1) on several
 * threads, an insert returned sooner when the engine had idle cores, but on the embedded engine, whose
 * cores the API's reads share, inserts were no faster and the reads' tail was longer while they ran.
 * A server with cores to spare can enable it in the ClickHouse user's profile; this statement leaves it
 * to the profile.
 */
export async function insertBody(clickhouse: ClickHouseClient, insert: string, format: string, body: string, dedupToken: string): Promise<void> {
  const result = await clickhouse.exec({
    query: `${insert} SETTINGS insert_deduplication_token = '${dedupToken}', deduplicate_blocks_in_dependent_materialized_views = 1, max_partitions_per_insert_block = 0 FORMAT ${format}`,
    values: Readable.from([body]),
  });
  await finished(result.stream.resume());
}

/** A row's line in a JSONCompactEachRow insert body. */
export function auditInsertLine(r: AuditRow): string {
  return JSON.stringify(auditInsertValues(r));
}

/**
 * The body of an insert of `rows` (for `insertAuditBody`): each row's line, ended by a newline. `line`
 * makes a row's line (lines already made can be given back).
 */
export function auditInsertBody(rows: readonly AuditRow[], line: (row: AuditRow) => string = auditInsertLine): string {
  let body = '';
  for (const row of rows) body += `${line(row)}\n`;
  return body;
}

export function auditInsertValues(r: AuditRow): unknown[] {
  return [
    r.event_id, r.tenant, r.timestamp, r.trace_id, r.tool, r.service, r.account_id, r.scopes_required, r.allowed,
    r.denied_reason, r.duration_ns, r.error, r.is_error, r.agent, r.agent_version, r.session_id, r.gateway, r.transport,
    r.otel_trace_id, r.otel_span_id, r.request_bytes, r.response_bytes, r.cost_usd, r.attributes, r.source, r.counted ?? 1,
    r.report_id ?? r.event_id, r.replaces_at ?? r.timestamp,
  ];
}
