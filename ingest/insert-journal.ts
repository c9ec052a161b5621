/**
 * The insert journal: each audit insert is written to a directory before it is sent and removed once
 * it returns, so an insert cut off by a crash (which may have reached the raw table and not the views'
 * tables) is sent again, as it was, at the next start. Workers may share the directory.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { insertAuditBody } from './audit-insert.ts';
import { isPermanentInsertError } from './retry.ts';

const JOURNAL_SUFFIX = '.audit-insert';

/**
 * Writes the insert to `dir` (whole, or not at all: written aside, then renamed); returns its file.
 * Synchronous on purpose: it stands between a batch's look-ups and its insert, and each turn of the
 * event loop there lets other batches' work in first. Measured with two 20,000-row batches stored at
 * once (5.5 MB each): 100–250 ms from the call to the return with fs/promises, 70–90 ms with only the
 * write synchronous, ~2–7 ms all synchronous; the engine sat idle meanwhile.
 */
export function journalInsert(dir: string, dedupToken: string, body: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${dedupToken}${JOURNAL_SUFFIX}`);
  writeFileSync(`${file}.partial`, body);
  renameSync(`${file}.partial`, file);
  return file;
}

/** Removes a journal entry (`journalInsert`'s file) whose insert has returned, or was refused; none: nothing. */
export function forgetInsert(file: string | undefined): void {
  if (file !== undefined) rmSync(file, { force: true });
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
    forgetInsert(file);
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
