/**
 * Opaque page cursors: a record's place in its list, (timestamp, event_id), with the list it belongs
 * to and a checksum, as base64url. A cursor that does not decode, names another list or fails its
 * checksum is the caller's mistake (BAD_USER_INPUT). A cursor carries no tenant: whatever it says, a
 * page is read from the caller's own tenant.
 */
import { createHash } from 'node:crypto';
import { PATTERNS } from '../../model/audit-event.ts';
import { parseRfc3339 } from '../../model/timestamp.ts';
import type { EventKey } from './audit-rows.ts';
import { badInput } from './params.ts';

/** The lists a cursor can point into. */
export type CursorList = 'auditLog' | 'session';

const VERSION = 'c1';
const CLICKHOUSE_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9}$/;

function checksum(body: string): string {
  return createHash('sha256').update(body).digest('base64url').slice(0, 12);
}

export function encodeCursor(list: CursorList, key: EventKey): string {
  const body = `${VERSION}|${list}|${key.timestamp}|${key.eventId}`;
  return Buffer.from(`${body}|${checksum(body)}`).toString('base64url');
}

export function decodeCursor(list: CursorList, cursor: string, argument = 'after'): EventKey {
  const invalid = () => badInput(`${argument} is not a cursor of this list: pass an endCursor exactly as ${list} returned it`, argument);
  if (cursor.length > 200 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  const parts = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (parts.length !== 5) throw invalid();
  const [version, named, timestamp, eventId, sum] = parts as [string, string, string, string, string];
  const body = `${version}|${named}|${timestamp}|${eventId}`;
  if (version !== VERSION || named !== list || sum !== checksum(body)) throw invalid();
  if (!CLICKHOUSE_TIME.test(timestamp) || !parseRfc3339(`${timestamp.replace(' ', 'T')}Z`) || !PATTERNS.uuid.test(eventId)) throw invalid();
  return { timestamp, eventId };
}
