/**
 * Rows → ClickHouse, exactly once in effect.
 *
 * - Audit events: an event_id already stored is never inserted again (one indexed look-up on the
 *   table's own sort key per batch), so the materialized-view rollups never count a call twice, even
 *   when Kafka redelivers a batch after a crash or the same call is reported again.
 * - Every insert carries an insert_deduplication_token computed from its content, so an insert that
 *   reached the server but whose answer was lost is not applied twice when retried.
 * - Both tables are ReplacingMergeTree on their identity, so readers using FINAL are exact regardless.
 */
import { createHash } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import type { AuditRow } from '../model/audit-event.ts';
import { toSpanInsertRow } from '../model/otlp.ts';
import type { SpanRow } from '../model/span.ts';

export interface WriteResult {
  inserted: number;
  /** Rows whose identity was already stored (redeliveries, repeats). */
  duplicates: number;
}

export interface ClickHouseWriter {
  writeAudit(rows: readonly AuditRow[]): Promise<WriteResult>;
  writeSpans(rows: readonly SpanRow[]): Promise<WriteResult>;
}

export function createClickHouseWriter(clickhouse: ClickHouseClient): ClickHouseWriter {
  async function storedEventIds(rows: readonly AuditRow[]): Promise<Set<string>> {
    const tenants = [...new Set(rows.map((r) => r.tenant))];
    const result = await clickhouse.query({
      query: `SELECT toString(event_id) AS id FROM audit_events_v1
              WHERE tenant IN {tenants:Array(String)} AND event_id IN {ids:Array(UUID)}`,
      query_params: { tenants, ids: rows.map((r) => r.event_id) },
      format: 'JSONEachRow',
    });
    return new Set((await result.json<{ id: string }>()).map((r) => r.id));
  }

  return {
    async writeAudit(rows) {
      const unique = uniqueBy(rows, (r) => r.event_id);
      if (unique.length === 0) return { inserted: 0, duplicates: rows.length };
      const stored = await storedEventIds(unique);
      const fresh = unique.filter((r) => !stored.has(r.event_id));
      if (fresh.length > 0) {
        await clickhouse.insert({
          table: 'audit_events_v1',
          values: fresh,
          format: 'JSONEachRow',
          clickhouse_settings: { insert_deduplication_token: token('audit', fresh.map((r) => r.event_id)) },
        });
      }
      return { inserted: fresh.length, duplicates: rows.length - fresh.length };
    },

    async writeSpans(rows) {
      const unique = uniqueBy(rows, (r) => `${r.tenant}/${r.trace_id}/${r.span_id}`);
      if (unique.length > 0) {
        await clickhouse.insert({
          table: 'spans_v1',
          values: unique.map(toSpanInsertRow),
          format: 'JSONEachRow',
          clickhouse_settings: {
            insert_deduplication_token: token('spans', unique.map((r) => `${r.tenant}/${r.trace_id}/${r.span_id}`)),
          },
        });
      }
      return { inserted: unique.length, duplicates: rows.length - unique.length };
    },
  };
}

function uniqueBy<T>(rows: readonly T[], key: (row: T) => string): T[] {
  const seen = new Set<string>();
  return rows.filter((row) => {
    const k = key(row);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function token(table: string, ids: readonly string[]): string {
  return createHash('sha256').update(table).update('\n').update(ids.join('\n')).digest('hex');
}
