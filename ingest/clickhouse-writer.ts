/**
 * Rows → ClickHouse, exactly once in effect.
 *
 * - Audit events: an event_id already stored is never inserted again (a look-up by event_id, and one
 *   of the calls' earlier reports in call_reports_v1, per batch), so the materialized-view rollups
 *   never count a call twice, even when Kafka redelivers a batch after a crash or the same call is
 *   reported again.
 * - Every insert carries an insert_deduplication_token computed from its content, so an insert that
 *   reached the server but whose answer was lost is not applied twice when retried; an audit insert
 *   stays in a journal until it returns, so one cut off by a crash is sent again (`replayInsertJournal`),
 *   and one that failed is sent again before any other insert (`settle`).
 * - Both tables are ReplacingMergeTree on their identity, so readers using FINAL are exact regardless.
 *
 * Speed, measured on the embedded engine (10,000-row batches): the engine runs one statement at a
 * time, so look-ups and inserts add up. Look-up lists travel as one JSON string literal in the query
 * text (parsed in ~4 ms; as an `Array(UUID)` query parameter, ~20 ms), which also keeps them out of
 * the URL on a server; openClickHouse raises max_query_size for them (core/clickhouse.ts). A list with
 * several ids per granule of its table is scanned for rather than checked against the primary key
 * first (`indexSetting`). A batch's own work in JavaScript (its insert lines, what its insert stores
 * for the batches overlapping it) is done while the engine runs its statements (`whileRunning`):
 * with two 20,000-row batches at once, the engine went from ~74% to ~92% busy, the writer from ~62k
 * to ~67–70k rows/s.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { finished } from 'node:stream/promises';
import type { ClickHouseClient } from '@clickhouse/client';
import { LIMITS, type AuditRow } from '../model/audit-event.ts';
import { toSpanInsertRow } from '../model/otlp.ts';
import type { SpanRow } from '../model/span.ts';
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
   * Calls already stored, by tenant + trace_id + tool, with how they were reported, and the reports
   * stored under another report's event_id (sql/0005), which only happens to calls with a trace id.
   * Reports of one call are stamped at most its duration apart (the audit record at its end, the span
   * at its start), and no call lasts longer than LIMITS.maxDurationNs, so only REPORTS_APART_MAX_DAYS
   * around the batch's timestamps are read (call_reports_v1 is partitioned by month), not every month kept.
   */
  async function storedCalls(rows: readonly AuditRow[]): Promise<Map<string, StoredCall & { folded: string[] }>> {
    const keyed = rows.filter((r) => r.trace_id !== '');
    if (keyed.length === 0) return new Map();
    const traceIds = distinct(keyed.map((r) => r.trace_id));
    const found = await select<{ tenant: string; trace_id: string; tool: string; sources: string[]; span_id: string; folded: string[] }>(
      `SELECT tenant, trace_id, tool, groupUniqArray(source) AS sources,
              toString(anyIf(event_id, source = 'span' AND counted)) AS span_id,
              arrayMap(id -> toString(id), groupArrayIf(report_id, NOT counted)) AS folded
       FROM call_reports_v1
       WHERE tenant IN ${stringList(distinct(keyed.map((r) => r.tenant)))}
         AND trace_id IN (SELECT arrayJoin(JSONExtract(${jsonLiteral(traceIds)}, 'Array(String)')))
         ${timeBounds(keyed, REPORTS_APART_MAX_DAYS)}
       GROUP BY tenant, trace_id, tool
       ${await indexSetting('call_reports_v1', traceIds.length)}`,
    );
    return new Map(
      found.map((c) => [
        callKey(c),
        { hasAudit: c.sources.includes('audit'), spanEventId: c.sources.includes('span') ? c.span_id : undefined, folded: c.folded },
      ]),
    );
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
    let body = '';
    for (const row of rows) body += `${lines.get(row) ?? auditInsertLine(row)}\n`;
    const dedupToken = token('audit', rows.map((r) => `${r.event_id}/${r.report_id ?? ''}`));
    const file = options.journalDir ? journalInsert(options.journalDir, dedupToken, body) : undefined;
    try {
      await insertAuditBody(clickhouse, 'audit_events_v1', body, dedupToken);
    } catch (error) {
      // Refused for its content: a block is refused while it is parsed, before it is written anywhere
      // (blocks before it, if the batch made several, went into every table, and a retry's look-ups
      // find them). Nothing to send again; the caller sets the rows aside.
      if (isPermanentInsertError(error)) {
        if (file) rmSync(file, { force: true });
      } else {
        unsettled.push({ rows, body, dedupToken, file });
      }
      throw error;
    }
    // Returned: every table has the block.
    if (file) rmSync(file, { force: true });
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
        if (file) rmSync(file, { force: true });
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
            storedCalls(chunk).then((calls) =>
              calls.forEach(({ folded, ...call }, key) => {
                found.calls.set(key, call);
                folded.forEach((id) => found.ids.add(id));
              }),
            ),
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

/**
 * The columns of an audit insert, in the order of `auditInsertValues`. Rows go as JSONCompactEachRow,
 * arrays rather than objects: on the embedded engine a 10,000-row insert took ~25% less time than as
 * JSONEachRow (no key names to write, or to read back).
 */
export const AUDIT_INSERT_COLUMNS: [string, ...string[]] = [
  'event_id', 'tenant', 'timestamp', 'trace_id', 'tool', 'service', 'account_id', 'scopes_required', 'allowed',
  'denied_reason', 'duration_ns', 'error', 'is_error', 'agent', 'agent_version', 'session_id', 'gateway', 'transport',
  'otel_trace_id', 'otel_span_id', 'request_bytes', 'response_bytes', 'cost_usd', 'attributes', 'source', 'counted',
  'report_id',
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
 */
async function insertBody(clickhouse: ClickHouseClient, insert: string, format: string, body: string, dedupToken: string): Promise<void> {
  const result = await clickhouse.exec({
    query: `${insert} SETTINGS insert_deduplication_token = '${dedupToken}', deduplicate_blocks_in_dependent_materialized_views = 1, max_partitions_per_insert_block = 0 FORMAT ${format}`,
    values: Readable.from([body]),
  });
  await finished(result.stream.resume());
}

const JOURNAL_SUFFIX = '.audit-insert';

/**
 * Writes the insert to `dir` (whole, or not at all: written aside, then renamed); returns its file.
 * Synchronous on purpose: it stands between a batch's look-ups and its insert, and each turn of the
 * event loop there lets other batches' work in first. Measured with two 20,000-row batches stored at
 * once (5.5 MB each): 100–250 ms from the call to the return with fs/promises, 70–90 ms with only the
 * write synchronous, ~2–7 ms all synchronous; the engine sat idle meanwhile.
 */
function journalInsert(dir: string, dedupToken: string, body: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${dedupToken}${JOURNAL_SUFFIX}`);
  writeFileSync(`${file}.partial`, body);
  renameSync(`${file}.partial`, file);
  return file;
}

/**
 * Makes the journal directory and writes a file in it, or throws saying so: the ingest checks this
 * before it consumes, as an audit insert can't be sent without its journal entry.
 */
export async function checkInsertJournal(dir: string): Promise<void> {
  try {
    mkdirSync(dir, { recursive: true });
    const probe = path.join(dir, `.probe-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (error) {
    throw new Error(`the insert journal ${dir} can't be written (${(error as NodeJS.ErrnoException).code ?? error}): set DATA_DIR to a directory this user can write`, { cause: error });
  }
}

/**
 * Sends again, oldest first, each audit insert the journal still holds: inserts a process did not see
 * return (killed, or failed). Same body, same deduplication token: every table that already has the
 * block skips it (sql/0007), a view's target that missed it takes it. Run before consuming. Returns
 * how many were sent, and how many ClickHouse refused for their content (dropped: their messages,
 * never committed, come again and their rows are set aside as refused rows are). Throws, keeping
 * the rest, on any other failure.
 */
export async function replayInsertJournal(clickhouse: ClickHouseClient, dir: string): Promise<{ sent: number; refused: number }> {
  const names = await unlessGone(readdir(dir));
  if (names === undefined) return { sent: 0, refused: 0 };
  // Written aside and never renamed: its insert never started. (In a directory the workers share,
  // a live worker's then fails before its insert, and its batch is retried.)
  await Promise.all(names.filter((n) => n.endsWith(`${JOURNAL_SUFFIX}.partial`)).map((n) => rm(path.join(dir, n), { force: true })));
  // A file gone meanwhile was sent by another worker sharing the directory, or returned.
  const entries = (
    await Promise.all(
      names.filter((n) => n.endsWith(JOURNAL_SUFFIX)).map(async (n) => ({ n, at: (await unlessGone(stat(path.join(dir, n))))?.mtimeMs })),
    )
  ).filter((e): e is { n: string; at: number } => e.at !== undefined);
  entries.sort((a, b) => a.at - b.at);
  let sent = 0;
  let refused = 0;
  for (const { n } of entries) {
    const file = path.join(dir, n);
    const body = await unlessGone(readFile(file, 'utf8'));
    if (body === undefined) continue;
    try {
      await insertAuditBody(clickhouse, 'audit_events_v1', body, n.slice(0, -JOURNAL_SUFFIX.length));
      sent++;
    } catch (error) {
      if (!isPermanentInsertError(error)) throw error;
      refused++;
    }
    await rm(file, { force: true });
  }
  return { sent, refused };
}

/** What `reading` reads, or undefined if the file is not there. */
async function unlessGone<T>(reading: Promise<T>): Promise<T | undefined> {
  try {
    return await reading;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** A row's line in a JSONCompactEachRow insert body. */
export function auditInsertLine(r: AuditRow): string {
  return JSON.stringify(auditInsertValues(r));
}

/** The body of an insert of `rows` (for `insertAuditBody`): each row's line, ended by a newline. */
export function auditInsertBody(rows: readonly AuditRow[]): string {
  let body = '';
  for (const row of rows) body += `${auditInsertLine(row)}\n`;
  return body;
}

export function auditInsertValues(r: AuditRow): unknown[] {
  return [
    r.event_id, r.tenant, r.timestamp, r.trace_id, r.tool, r.service, r.account_id, r.scopes_required, r.allowed,
    r.denied_reason, r.duration_ns, r.error, r.is_error, r.agent, r.agent_version, r.session_id, r.gateway, r.transport,
    r.otel_trace_id, r.otel_span_id, r.request_bytes, r.response_bytes, r.cost_usd, r.attributes, r.source, r.counted ?? 1,
    r.report_id ?? r.event_id,
  ];
}

interface StoredCall {
  hasAudit: boolean;
  /** event_id of the counted span fact of this call, if a span reported it. */
  spanEventId: string | undefined;
}

/** What is stored, as a call's look-ups found it or as an insert made it: event ids (and report ids) and calls by `callKey`. */
interface Stored {
  ids: Set<string>;
  calls: Map<string, StoredCall>;
}

/** Adds what inserting `row` stores. */
function learn(stored: Stored, row: AuditRow): void {
  stored.ids.add(row.event_id);
  if (row.report_id) stored.ids.add(row.report_id);
  if (row.trace_id === '') return;
  const key = callKey(row);
  const call = stored.calls.get(key) ?? { hasAudit: false, spanEventId: undefined };
  if (row.source === 'audit') call.hasAudit = true;
  else if (row.source === 'span' && (row.counted ?? 1)) call.spanEventId ??= row.event_id;
  stored.calls.set(key, call);
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

/** A call as all of `known` tell it, the first of them first (a span fact's event_id: the first one known). */
function knownCall(known: readonly Stored[], key: string): StoredCall | undefined {
  let merged: StoredCall | undefined;
  for (const { calls } of known) {
    const call = calls.get(key);
    if (call === undefined) continue;
    merged ??= { hasAudit: false, spanEventId: undefined };
    merged.hasAudit ||= call.hasAudit;
    merged.spanEventId ??= call.spanEventId;
  }
  return merged;
}

function callKey(r: { tenant: string; trace_id: string; tool: string }): string {
  return `${r.tenant}\u0000${r.trace_id}\u0000${r.tool}`;
}

/**
 * An audit record and an `mcp.tool.call` span of the same call (same tenant, trace_id and tool) count
 * once. A span fact of a call already known (stored, or audited in this batch) is not stored; an
 * audit record of a call a span already reported is stored under that span's event_id, not counted
 * again, so it replaces the span fact in the raw table while the rollups keep one call.
 */
function countEachCallOnce(rows: readonly AuditRow[], stored: (key: string) => StoredCall | undefined): AuditRow[] {
  let auditedInBatch: Set<string> | undefined; // made for the first span fact, if any
  const spanInBatch = new Set<string>();
  const out: AuditRow[] = [];
  for (const row of rows) {
    if (row.trace_id === '') {
      out.push(row);
      continue;
    }
    const key = callKey(row);
    const known = stored(key);
    if (row.source === 'span') {
      auditedInBatch ??= new Set(rows.filter((r) => r.source === 'audit' && r.trace_id !== '').map(callKey));
      if (known || auditedInBatch.has(key) || spanInBatch.has(key)) continue;
      spanInBatch.add(key);
      out.push(row);
    } else if (known?.spanEventId && !known.hasAudit) {
      out.push({ ...row, event_id: known.spanEventId, report_id: row.event_id, counted: 0 });
    } else {
      out.push(row);
    }
  }
  return out;
}

/**
 * Look-ups go in slices of at most this many ids, which bounds their query text (MAX_QUERY_SIZE in
 * core/clickhouse.ts). Slicing began when the lists were `Array(UUID)` parameters, which the embedded
 * engine's analyzer turned from linear to seconds past ~65k elements (30k ids 62 ms, 70k ids 8 s).
 */
const LOOKUP_SLICE = 10_000;

/** Insert lines, and what an insert stored, are made this many rows at a time between turns of the event loop (`whileRunning`), as the pipeline decodes. */
const SLICE = 1_000;

function* chunks<T>(rows: readonly T[]): Generator<T[]> {
  for (let i = 0; i < rows.length; i += LOOKUP_SLICE) yield rows.slice(i, i + LOOKUP_SLICE);
}

/**
 * Values as one ClickHouse string literal holding their JSON array, for `JSONExtract`. In a ClickHouse
 * string literal a backslash escapes and a quote ends, so both are escaped; JSON has no other way to
 * end the literal.
 */
function jsonLiteral(values: readonly string[]): string {
  return stringLiteral(JSON.stringify(values));
}

/** A ClickHouse string literal: a backslash escapes and a quote ends, so both are escaped. */
function stringLiteral(text: string): string {
  // Most lists are of UUIDs and hex ids: nothing to escape, and no copy of a large string to make.
  if (!text.includes('\\') && !text.includes("'")) return `'${text}'`;
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * `('a', 'b')`: a short list (the batch's tenants) as literals, which the primary key is checked
 * against whatever `indexSetting` says about the lists of ids.
 */
function stringList(values: readonly string[]): string {
  return `(${values.map(stringLiteral).join(', ')})`;
}

/** See `indexSetting`: with 3 random keys per granule, e^-3 of the granules hold none of them. */
const KEYS_PER_GRANULE_TO_SCAN = 3;

/** How long a count of the tables' granules is used before it is counted again. */
const GRANULES_COUNTED_FOR_MS = 10_000;

/**
 * The granules (marks) of each table in the current database's active parts (a table with none has no
 * entry), counted again when the count is older than GRANULES_COUNTED_FOR_MS. Undefined if
 * `system.parts` can't be read: then every look-up checks the primary key, as ClickHouse does by default.
 */
function granuleCounter(clickhouse: ClickHouseClient): () => Promise<Map<string, number> | undefined> {
  let counting: Promise<Map<string, number> | undefined> | undefined;
  let countedAt = -Infinity;
  return () => {
    if (counting === undefined || performance.now() - countedAt > GRANULES_COUNTED_FOR_MS) {
      countedAt = performance.now();
      counting = clickhouse
        .query({
          query: `SELECT table, sum(marks) AS marks FROM system.parts
                  WHERE active AND database = currentDatabase() AND table IN ('audit_events_v1', 'call_reports_v1')
                  GROUP BY table`,
          format: 'JSONEachRow',
        })
        .then((r) => r.json<{ table: string; marks: string | number }>())
        .then((rows) => new Map(rows.map((r) => [r.table, Number(r.marks)])))
        .catch(() => undefined);
    }
    return counting;
  };
}

/**
 * How far apart two reports of one call can be stamped: the longest call (LIMITS.maxDurationNs, a
 * week), plus a day for the clocks of whatever stamped them.
 */
export const REPORTS_APART_MAX_DAYS = Math.ceil(LIMITS.maxDurationNs / 86_400e9) + 1;

/** `YYYY-MM-DD HH:MM:SS.fffffffff`, as toAuditRow writes a timestamp. */
const CLICKHOUSE_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{9}$/;

/**
 * `AND timestamp BETWEEN ...`: from the earliest of `rows`' timestamps to the latest, widened by
 * `days` on each side. Empty (no bound) if a timestamp is not in the canonical form, which sorts as
 * text in time order.
 */
function timeBounds(rows: readonly AuditRow[], days: number): string {
  let min = rows[0]!.timestamp;
  let max = min;
  for (const { timestamp } of rows) {
    if (!CLICKHOUSE_TIME.test(timestamp)) return '';
    if (timestamp < min) min = timestamp;
    else if (timestamp > max) max = timestamp;
  }
  return `AND timestamp BETWEEN toDateTime64('${min}', 9, 'UTC') - INTERVAL ${days} DAY AND toDateTime64('${max}', 9, 'UTC') + INTERVAL ${days} DAY`;
}

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
