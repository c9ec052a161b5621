/**
 * Arguments of the raw-record questions (auditLog, auditEvent, trace, session), checked at the GraphQL
 * border. Each bad argument is BAD_USER_INPUT with a message that names it.
 */
import { PATTERNS } from '../../model/audit-event.ts';
import { formatClickHouse, formatRfc3339, parseRfc3339, type Instant } from '../../model/timestamp.ts';
import type { Outcome } from './audit-rows.ts';
import { badInput, parseFilter } from './params.ts';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;
/** Longest id (trace, session) a gateway may send, as the model limits it. */
const MAX_ID_LENGTH = 128;

/** What DateTime64(9, 'UTC') can hold: 1970-01-01 up to 2262-04-11T23:47:16Z. */
const LAST_MS = Date.UTC(2262, 3, 11, 23, 47, 16);

export interface AuditLogFilterInput {
  from?: string | null;
  to?: string | null;
  agent?: string | null;
  service?: string | null;
  tool?: string | null;
  account?: string | null;
  outcome?: Outcome | null;
  session?: string | null;
  traceId?: string | null;
  text?: string | null;
}

/** A checked filter: times as ClickHouse DateTime64(9) text, [from, to). */
export interface AuditLogFilter {
  from?: string;
  to?: string;
  agent?: string;
  service?: string;
  tool?: string;
  account?: string;
  outcome?: Outcome;
  session?: string;
  traceId?: string;
  text?: string;
}

export function parseAuditLogFilter(input: AuditLogFilterInput | null | undefined): AuditLogFilter {
  const f = input ?? {};
  const from = f.from == null ? undefined : parseTime(f.from, 'filter.from');
  const to = f.to == null ? undefined : parseTime(f.to, 'filter.to');
  if (from && to && !(from.epochMs < to.epochMs || (from.epochMs === to.epochMs && from.subMsNanos < to.subMsNanos))) {
    throw badInput(`filter.from (${formatRfc3339(from)}) must be before filter.to (${formatRfc3339(to)})`, 'filter.from');
  }
  const text = parseFilter(f.text, 'filter.text');
  if (text === '') throw badInput('filter.text must not be empty: omit it to match every record', 'filter.text');
  const out: AuditLogFilter = {
    from: from && formatClickHouse(from),
    to: to && formatClickHouse(to),
    agent: parseFilter(f.agent, 'filter.agent'),
    service: parseFilter(f.service, 'filter.service'),
    tool: parseFilter(f.tool, 'filter.tool'),
    account: parseFilter(f.account, 'filter.account'),
    outcome: f.outcome ?? undefined,
    session: parseFilter(f.session, 'filter.session', MAX_ID_LENGTH),
    traceId: parseFilter(f.traceId, 'filter.traceId', MAX_ID_LENGTH),
    text,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as AuditLogFilter;
}

/** `first`: how many records a page holds, 1 to MAX_PAGE_SIZE. */
export function parseFirst(first: number | null | undefined, fallback = DEFAULT_PAGE_SIZE): number {
  const value = first ?? fallback;
  if (!Number.isInteger(value) || value < 1 || value > MAX_PAGE_SIZE) {
    throw badInput(`first must be a whole number from 1 to ${MAX_PAGE_SIZE}, got ${value}`, 'first');
  }
  return value;
}

/** An event id: a UUID, lowercase as stored. */
export function parseEventId(id: string, argument = 'id'): string {
  if (!PATTERNS.uuid.test(id)) throw badInput(`${argument} must be an event id (a UUID), got ${JSON.stringify(id)}`, argument);
  return id.toLowerCase();
}

/** A trace or session id as a gateway sent it: 1 to 128 characters. */
export function parseId(id: string, argument = 'id'): string {
  if (id.length === 0 || id.length > MAX_ID_LENGTH) {
    throw badInput(`${argument} must be 1 to ${MAX_ID_LENGTH} characters, got ${id.length}`, argument);
  }
  return id;
}

/** The OpenTelemetry trace id `id` could be (32 hex digits, not all zero), lowercase; else undefined. */
export function otelTraceIdOf(id: string): string | undefined {
  return /^[0-9a-f]{32}$/i.test(id) && !/^0+$/.test(id) ? id.toLowerCase() : undefined;
}

function parseTime(text: string, argument: string): Instant {
  const instant = parseRfc3339(text);
  if (!instant) {
    throw badInput(`${argument} must be an ISO-8601 date-time with a time zone, e.g. 2026-11-24T10:00:00Z, got ${JSON.stringify(text)}`, argument);
  }
  if (instant.epochMs < 0 || instant.epochMs > LAST_MS) {
    throw badInput(`${argument} must be between 1970-01-01T00:00:00Z and 2262-04-11T23:47:16Z, got ${JSON.stringify(text)}`, argument);
  }
  return instant;
}
