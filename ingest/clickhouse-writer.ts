/**
 * Rows → ClickHouse, exactly once in effect.
 *
 * - Audit events: an event_id already stored is never inserted again (a look-up by event_id, and one
 *   of the calls' earlier reports in call_reports_v2, per batch), so the materialized-view rollups
 *   never count a call twice, even when Kafka redelivers a batch after a crash or the same call is
 *   reported again. A call reported both as an audit record and as a span is one row that keeps what
 *   both reports know (merge-reports.ts), stored under the first report's event_id.
 * - Every insert carries an insert_deduplication_token computed from its content, so an insert that
 *   reached the server but whose answer was lost is not applied twice when retried; an audit insert
 *   stays in a journal until it returns, so one cut off by a crash is sent again (insert-journal.ts),
 *   and one that failed is sent again before any other insert (`settle`).
 * - Both tables are ReplacingMergeTree on their identity, so readers using FINAL are exact regardless.
 *
 * Speed, measured on the embedded engine (10,000-row batches): the engine runs one statement at a
 * time, so look-ups and inserts add up. Look-up lists travel as one JSON string literal in the query
 * text (parsed in ~4 ms; as an `Array(UUID)` query parameter, ~20 ms), which also keeps them out of
 * the URL on a server; openClickHouse raises max_query_size for them (core/clickhouse.ts;
 * lookup-sql.ts). A list with several ids per granule of its table is scanned for rather than
 * checked against the primary key first (`indexSetting`). A batch's own work in JavaScript (its
 * insert lines, what its insert stores for the batches overlapping it) is done while the engine runs
 * its statements (`whileRunning`): with two 20,000-row batches at once, the engine went from ~74% to
 * ~92% busy, the writer from ~62k to ~67–70k rows/s.
 */
import { createHash } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ClickHouseClient } from '@clickhouse/client';
import type { AuditRow } from '../model/audit-event.ts';
import { toSpanInsertRow } from '../model/otlp.ts';
import type { SpanRow } from '../model/span.ts';
import { auditInsertBody, auditInsertLine, insertAuditBody, insertBody } from './audit-insert.ts';
import { forgetInsert, journalInsert } from './insert-journal.ts';
import { auditRowFromStored, callKey, mergeReports, sameContent, STORED_ROW_COLUMNS, type StoredRowJson } from './merge-reports.ts';
import { callTimeBounds, chunks, granuleCounter, jsonLiteral, KEYS_PER_GRANULE_TO_SCAN, stringList, timeBounds } from './lookup-sql.ts';
import { isPermanentInsertError } from './retry.ts';

export interface WriteResult {
  inserted: number;
  /** Rows whose identity was already stored (redeliveries, repeats). */
  duplicates: number;
}

export interface ClickHouseWriter {
  writeAudit(rows: readonly AuditRow[]): Promise<WriteResult>;
  writeSpans(rows: readonly SpanRow[]): Promise<WriteResult>;
}

export interface WriterOptions {
  /**
   * Where each audit insert is kept until it has returned (see `replayInsertJournal`): without it, a
   * process killed in the middle of an insert can leave the rollups without that block.
   */
  journalDir?: string;
}

export function createClickHouseWriter(clickhouse: ClickHouseClient, options: WriterOptions = {}): ClickHouseWriter {
  /** Settles when the latest `writeAudit` call has inserted, or failed. */
  let lastInsert: Promise<void> = Promise.resolve();
  /** Of each `writeAudit` call in progress: what other calls inserted since it began. */
  const watchers = new Set<Stored[]>();

  const granules = granuleCounter(clickhouse);

  /** A look-up: its lists are in the query text, which the client opened by openClickHouse takes up to MAX_QUERY_SIZE. */
  async function select<T>(query: string): Promise<T[]> {
    return (await clickhouse.query({ query, format: 'JSONEachRow' })).json<T>();
  }

  /**
   * `SETTINGS use_index_for_in_with_subqueries = 0` when `keys` (random ids: event ids, trace ids) are
   * at least KEYS_PER_GRANULE_TO_SCAN per granule of `table`. Checking a list against the primary key
   * first sorts it and checks it granule by granule; with that many random keys it would skip at most
   * e^-3 (5%) of the granules, so the check costs more than it saves (20,000 ids at 400k stored rows,
   * embedded engine: events 37 → 24 ms, calls 65 → 38 ms). The whole table's granules are counted, not
   * just those of the days read, so the index is given up only when it could not have helped.
   */
  async function indexSetting(table: string, keys: number): Promise<string> {
    const counted = await granules();
    if (counted === undefined) return '';
    return keys >= KEYS_PER_GRANULE_TO_SCAN * (counted.get(table) ?? 0) ? 'SETTINGS use_index_for_in_with_subqueries = 0' : '';
  }

  /**
   * Events already stored under their own event_id (reports folded into another call's: `storedCalls`).
   * An event's timestamp is part of its content, so only the days of the batch's own timestamps are
   * read (audit_events_v1 is partitioned by day), not every day kept.
   */
  async function storedEvents(rows: readonly AuditRow[]): Promise<string[]> {
    const found = await select<{ id: string }>(
      `SELECT toString(event_id) AS id FROM audit_events_v1
       WHERE tenant IN ${stringList(distinct(rows.map((r) => r.tenant)))}
         AND event_id IN (SELECT arrayJoin(JSONExtract(${jsonLiteral(rows.map((r) => r.event_id))}, 'Array(UUID)')))
         ${timeBounds(rows, 0)}
       ${await indexSetting('audit_events_v1', rows.length)}`,
    );
    return found.map((r) => r.id);
  }

  /**
   * Calls already stored (by `callKey`), each as its row now stands (merged, if both reports came), and
   * the ids of the reports stored under another report's event_id (sql/0005), which only happens to
   * calls with a trace id. call_reports_v2, sorted by the hour first (sql/0025), finds the calls' event
   * ids in the hours where their other reports can be stamped (callTimeBounds: the batch's timestamps
   * widened by its longest call and a day), not every month kept; their rows are then read by event_id,
   * in the same statement.
   */
  async function storedCalls(rows: readonly AuditRow[]): Promise<{ calls: Map<string, AuditRow>; folded: string[] }> {
    const keyed = rows.filter((r) => r.trace_id !== '');
    if (keyed.length === 0) return { calls: new Map(), folded: [] };
    const traceIds = distinct(keyed.map((r) => r.trace_id));
    const tenants = stringList(distinct(keyed.map((r) => r.tenant)));
    const bounds = callTimeBounds(keyed);
    // One statement: its look-up list and its settings are call_reports_v2's (see indexSetting); the
    // rows are then read by their event ids, which are few.
    const stored = await select<StoredRowJson>(
      `WITH reported AS (
         SELECT DISTINCT event_id FROM call_reports_v2
         WHERE tenant IN ${tenants}
           AND trace_id IN (SELECT arrayJoin(JSONExtract(${jsonLiteral(traceIds)}, 'Array(String)')))
           ${bounds}
       )
       SELECT ${STORED_ROW_COLUMNS} FROM audit_events_v1
       WHERE tenant IN ${tenants} AND event_id IN (SELECT event_id FROM reported) ${bounds}
       ${await indexSetting('call_reports_v2', traceIds.length)}`,
    );
    // Of the rows stored under one event_id, the one a second report was merged into stands for the
    // call (without FINAL, the table may still hold the row it replaced).
    const byEvent = new Map<string, AuditRow>();
    for (const json of stored) {
      const row = auditRowFromStored(json);
      const other = byEvent.get(row.event_id);
      if (other === undefined || row.report_id !== row.event_id) byEvent.set(row.event_id, row);
    }
    const calls = new Map<string, AuditRow>();
    const folded: string[] = [];
    // The earliest event of a key is its call (a second audit record of a call is a row of its own).
    for (const row of [...byEvent.values()].sort((a, b) => (a.event_id < b.event_id ? -1 : 1))) {
      if (row.report_id && row.report_id !== row.event_id) folded.push(row.report_id);
      const key = callKey(row);
      if (key !== undefined && !calls.has(key)) calls.set(key, row);
    }
    return { calls, folded };
  }

  /**
   * Audit inserts that failed other than for their content, oldest first. Each may have reached some
   * tables and not others (the raw table, and not a view's target), and a retry's look-ups would then
   * find its rows stored and skip them: so each is sent again as it was (`settle`) before any other
   * insert. Its journal file, if any, stays until then.
   */
  const unsettled: { rows: readonly AuditRow[]; body: string; dedupToken: string; file: string | undefined }[] = [];

  /** `lines`: rows' insert lines already made (see writeAudit), by row. */
  async function insertAudit(rows: readonly AuditRow[], lines: Map<AuditRow, string>): Promise<void> {
    const body = auditInsertBody(rows, (row) => lines.get(row) ?? auditInsertLine(row));
    const dedupToken = token('audit', rows.map((r) => `${r.event_id}/${r.report_id ?? ''}`));
    const file = options.journalDir ? journalInsert(options.journalDir, dedupToken, body) : undefined;
    try {
      await insertAuditBody(clickhouse, 'audit_events_v1', body, dedupToken);
    } catch (error) {
      // Refused for its content: a block is refused while it is parsed, before it is written anywhere
      // (blocks before it, if the batch made several, went into every table, and a retry's look-ups
      // find them). Nothing to send again; the caller sets the rows aside.
      if (isPermanentInsertError(error)) {
        forgetInsert(file);
      } else {
        unsettled.push({ rows, body, dedupToken, file });
      }
      throw error;
    }
    // Returned: every table has the block.
    forgetInsert(file);
  }

  /**
   * Sends each unsettled insert again, oldest first, in turn with the other inserts; the calls in
   * progress learn what each stored. Throws, keeping it and the rest, if one fails other than for its
   * content; one refused for its content is dropped (its rows are set aside as any refused rows are).
   */
  async function settle(): Promise<void> {
    const before = lastInsert;
    let settled!: () => void;
    lastInsert = new Promise<void>((resolve) => (settled = resolve));
    try {
      await before;
      while (unsettled.length > 0) {
        const { rows, body, dedupToken, file } = unsettled[0]!;
        let stored: Stored | undefined = { ids: new Set(), calls: new Map() };
        try {
          await insertAuditBody(clickhouse, 'audit_events_v1', body, dedupToken);
          for (const row of rows) learn(stored, row);
        } catch (error) {
          if (!isPermanentInsertError(error)) throw error;
          stored = undefined;
        }
        unsettled.shift();
        forgetInsert(file);
        if (stored) for (const watcher of watchers) watcher.push(stored);
      }
    } finally {
      settled();
    }
  }

  return {
    async writeAudit(rows) {
      if (unsettled.length > 0) await settle();
      const unique = uniqueBy(rows, (r) => r.event_id);
      if (unique.length === 0) return { inserted: 0, duplicates: rows.length };
      // Calls may overlap: each one's look-ups start at once, its insert waits for the insert of the
      // call before it, and what inserts complete meanwhile (which its look-ups may have missed) it
      // learns from `insertedSince`.
      const insertedSince: Stored[] = [];
      watchers.add(insertedSince);
      const before = lastInsert;
      let inserted!: () => void;
      lastInsert = new Promise<void>((resolve) => (inserted = resolve));
      try {
        // The two look-ups run together: the calls are looked up for every row, stored or not (what is
        // stored of a call does not depend on which rows ask).
        const found: Stored = { ids: new Set(), calls: new Map() };
        const lookedUp = Promise.all(
          [...chunks(unique)].flatMap((chunk) => [
            storedEvents(chunk).then((ids) => ids.forEach((id) => found.ids.add(id))),
            storedCalls(chunk).then(({ calls, folded }) => {
              calls.forEach((call, key) => {
                if (!found.calls.has(key)) found.calls.set(key, call);
              });
              folded.forEach((id) => found.ids.add(id));
            }),
          ]),
        );
        // While the engine looks up, the rows' insert lines are made (most rows are new): the insert
        // then waits only for the look-ups, not for this too.
        const lines = new Map<AuditRow, string>();
        await whileRunning(lookedUp, unique, (row) => lines.set(row, auditInsertLine(row)));
        await before;
        // An insert before this one failed: this one's look-ups may have missed part of it, so nothing
        // goes in after it until it is sent again (by the next call, at its start: a retry of this one).
        if (unsettled.length > 0) throw new Error('an earlier audit insert failed and must be sent again first; retry');
        const known = [found, ...insertedSince];
        const fresh = unique.filter((r) => !known.some((k) => k.ids.has(r.event_id)));
        const toInsert = countEachCallOnce(fresh, (key) => knownCall(known, key));
        if (toInsert.length > 0) {
          // What the calls overlapping this one must learn, made while the engine inserts.
          const stored: Stored = { ids: new Set(), calls: new Map() };
          await whileRunning(insertAudit(toInsert, lines), toInsert, (row) => learn(stored, row));
          for (const watcher of watchers) if (watcher !== insertedSince) watcher.push(stored);
        }
        return { inserted: toInsert.length, duplicates: rows.length - toInsert.length };
      } finally {
        watchers.delete(insertedSince);
        inserted();
      }
    },

    async writeSpans(rows) {
      const spanKey = (r: SpanRow) => `${r.tenant}/${r.trace_id}/${r.span_id}`;
      const unique = uniqueBy(rows, spanKey);
      if (unique.length > 0) {
        let body = '';
        for (const row of unique) body += `${JSON.stringify(toSpanInsertRow(row))}\n`;
        await insertBody(clickhouse, 'INSERT INTO spans_v1', 'JSONEachRow', body, token('spans', unique.map(spanKey)));
      }
      return { inserted: unique.length, duplicates: rows.length - unique.length };
    },
  };
}

/** What is stored, as a call's look-ups found it or as an insert made it: event ids (and report ids), and calls by `callKey` as their rows stand. */
interface Stored {
  ids: Set<string>;
  calls: Map<string, AuditRow>;
}

/** Adds what inserting `row` stores: a call keeps its first event_id, and its latest row under it. */
function learn(stored: Stored, row: AuditRow): void {
  stored.ids.add(row.event_id);
  if (row.report_id) stored.ids.add(row.report_id);
  const key = callKey(row);
  if (key === undefined) return;
  const call = stored.calls.get(key);
  if (call === undefined || call.event_id === row.event_id) stored.calls.set(key, row);
}

/**
 * `work` on each of `items` while the engine runs `running`, SLICE items between turns of the event
 * loop; once `running` has returned, the rest at once. Then returns what `running` did, or throws what
 * it threw (leaving the rest undone). So from a batch's look-ups to its insert, and from its insert to
 * the next batch's, no turn of the event loop lets other work in first (see journalInsert).
 */
async function whileRunning<T, R>(running: Promise<R>, items: readonly T[], work: (item: T) => void): Promise<R> {
  const state = { returned: false, failed: false };
  running.then(() => (state.returned = true), () => (state.failed = true));
  for (let i = 0; i < items.length && !state.failed; i += SLICE) {
    if (!state.returned) await nextTurn();
    if (state.failed) break;
    for (const item of items.slice(i, i + SLICE)) work(item);
  }
  return running;
}

/** A call as `known` tell it, oldest first: the first event_id known for it, as its latest row under that id stands. */
function knownCall(known: readonly Stored[], key: string): AuditRow | undefined {
  let call: AuditRow | undefined;
  for (const { calls } of known) {
    const row = calls.get(key);
    if (row !== undefined && (call === undefined || row.event_id === call.event_id)) call = row;
  }
  return call;
}

/**
 * An audit record and a span of the same call (`callKey`) count once, and are stored as one row that
 * keeps what both say (`mergeReports`):
 * - the first report of a call is stored as it is, counted;
 * - the other kind of report, in a later batch, is merged into the stored row and stored under its
 *   event_id with `counted = false`, its own id in `report_id` (sql/0005) and the stored row's time in
 *   `replaces_at` (sql/0024): the raw table (FINAL) shows the merged row, the rollups keep one call, the
 *   audit log hides the stored row by a marker at its key; if it adds nothing, nothing is stored;
 * - both in one batch: one row, merged, counted, with the second report's id in `report_id`;
 * - a span of a call whose row already holds a span is not stored; a second audit record of a call is
 *   stored as a row of its own, as any record with its own event_id.
 */
function countEachCallOnce(rows: readonly AuditRow[], stored: (key: string) => AuditRow | undefined): AuditRow[] {
  /** Of each call this batch stores a row for: its index in `out`. */
  const inBatch = new Map<string, number>();
  const out: AuditRow[] = [];
  for (const row of rows) {
    const key = callKey(row);
    if (key === undefined) {
      out.push(row);
      continue;
    }
    const index = inBatch.get(key);
    const call = index !== undefined ? out[index]! : stored(key);
    if (call === undefined) {
      inBatch.set(key, out.push(row) - 1);
      continue;
    }
    const merged = mergeReports(call, row);
    if (merged === undefined) {
      if (row.source === 'audit') out.push(row);
      continue;
    }
    if (sameContent(merged, call)) continue;
    const identity =
      index !== undefined
        ? { event_id: call.event_id, report_id: row.event_id, counted: call.counted ?? 1, replaces_at: call.replaces_at }
        : { event_id: call.event_id, report_id: row.event_id, counted: 0 as const, replaces_at: call.timestamp };
    if (index !== undefined) out[index] = { ...merged, ...identity };
    else inBatch.set(key, out.push({ ...merged, ...identity }) - 1);
  }
  return out;
}

/** Insert lines, and what an insert stored, are made this many rows at a time between turns of the event loop (`whileRunning`), as the pipeline decodes. */
const SLICE = 1_000;

function distinct(values: readonly string[]): string[] {
  return [...new Set(values)];
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
