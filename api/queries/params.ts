/**
 * Query arguments, checked once at the GraphQL border and turned into ClickHouse query parameters.
 * A bad argument is the caller's mistake: a GraphQL error with `extensions.code = BAD_USER_INPUT` and a
 * message that says what to send instead. Times going back out are canonical RFC 3339 (ISO-8601) text.
 */
import { createGraphQLError } from 'graphql-yoga';
import { auditRecordSchema, DEFAULT_TENANT } from '../../model/audit-event.ts';
import { epochNanos, formatClickHouse, formatRfc3339, instantFromEpochNanos, parseRfc3339, type Instant } from '../../model/timestamp.ts';

export { DEFAULT_TENANT };

/** When `from` is omitted, a range ends `to` and starts this long before it. */
export const DEFAULT_RANGE_MS = 60 * 60 * 1000;
export const MAX_LIMIT = 1000;

/**
 * Times the API accepts: what ClickHouse's DateTime64(9) holds (nanoseconds since the epoch in a signed
 * 64-bit integer, so up to 2262-04-11T23:47:16.854775807Z), from the epoch on (the rollups' DateTime
 * starts there). Outside, ClickHouse would overflow or answer zeros.
 */
export const EARLIEST_TIME: Instant = { epochMs: 0, subMsNanos: 0 };
export const LATEST_TIME: Instant = instantFromEpochNanos(2n ** 63n - 1n);

/** A validated half-open time range [from, to), as ClickHouse `DateTime64(9, 'UTC')` parameter text. */
export interface TimeRange {
  from: string;
  to: string;
}

export function badInput(message: string, argument?: string) {
  return createGraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', ...(argument && { argument }) } });
}

// The model's own tenant rule, so the API accepts exactly the tenants the receiver can store.
const tenantSchema = auditRecordSchema.shape.tenant.unwrap();

export function parseTenant(tenant: string | null | undefined): string {
  const value = tenant ?? DEFAULT_TENANT;
  if (!tenantSchema.safeParse(value).success) {
    throw badInput(`tenant ${JSON.stringify(value)} is not a tenant name: 1-64 letters, digits, dots, dashes or underscores`, 'tenant');
  }
  return value;
}

/** `to` defaults to now and `from` to an hour before `to`; `from` must be before `to`. */
export function parseTimeRange(args: { from?: string | null; to?: string | null }, now = Date.now()): TimeRange {
  const to = args.to == null ? { epochMs: now, subMsNanos: 0 } : parseInstant(args.to, 'to');
  const from = args.from == null ? hourBefore(to) : parseInstant(args.from, 'from');
  if (from.epochMs > to.epochMs || (from.epochMs === to.epochMs && from.subMsNanos >= to.subMsNanos)) {
    throw badInput(`from (${formatRfc3339(from)}) must be before to (${formatRfc3339(to)})`, 'from');
  }
  return { from: formatClickHouse(from), to: formatClickHouse(to) };
}

export function parseLimit(limit: number | null | undefined, fallback: number): number {
  const value = limit ?? fallback;
  if (!Number.isInteger(value) || value < 1 || value > MAX_LIMIT) {
    throw badInput(`limit must be a whole number from 1 to ${MAX_LIMIT}, got ${value}`, 'limit');
  }
  return value;
}

/** An OpenTelemetry trace id: 32 hex digits (normalized to lowercase, as spans are stored). */
export function parseTraceId(traceId: string): string {
  if (!/^[0-9a-f]{32}$/i.test(traceId) || /^0+$/.test(traceId)) {
    throw badInput(`traceId must be an OpenTelemetry trace id (32 hex digits, not all zero), got ${JSON.stringify(traceId)}`, 'traceId');
  }
  return traceId.toLowerCase();
}

/** An optional exact-match filter: omitted or null means "any"; an empty string matches the empty value. */
export function parseFilter(value: string | null | undefined, argument: string, maxLength = 256): string | undefined {
  if (value == null) return undefined;
  if (value.length > maxLength) throw badInput(`${argument} must be at most ${maxLength} characters`, argument);
  return value;
}

/** `2026-11-24 10:00:00.123456789` (how ClickHouse returns DateTime64(9, 'UTC')) → `2026-11-24T10:00:00.123456789Z`. */
export function isoFromClickHouse(text: string): string {
  const instant = parseRfc3339(`${text}Z`);
  if (!instant) throw new Error(`ClickHouse returned an unexpected time: ${JSON.stringify(text)}`);
  return formatRfc3339(instant);
}

/** Nanoseconds → milliseconds, rounded to the microsecond; NaN/null (no data) → null. */
export function msFromNs(ns: number | null): number | null {
  if (ns === null || !Number.isFinite(ns)) return null;
  return Math.round(ns / 1000) / 1000;
}

function parseInstant(text: string, argument: string): Instant {
  const instant = parseRfc3339(text);
  if (!instant) {
    throw badInput(
      `${argument} must be an ISO-8601 date-time with a time zone, e.g. 2026-11-24T10:00:00Z, got ${JSON.stringify(text)}`,
      argument,
    );
  }
  const nanos = epochNanos(instant);
  if (nanos < epochNanos(EARLIEST_TIME) || nanos > epochNanos(LATEST_TIME)) {
    throw badInput(
      `${argument} must be from ${formatRfc3339(EARLIEST_TIME)} to ${formatRfc3339(LATEST_TIME)} (what ClickHouse's DateTime64(9) holds), got ${JSON.stringify(text)}`,
      argument,
    );
  }
  return instant;
}

/** The default start of a range: an hour before its end, but not before the earliest time. */
function hourBefore(to: Instant): Instant {
  const nanos = epochNanos(to) - BigInt(DEFAULT_RANGE_MS) * 1_000_000n;
  return nanos > 0n ? instantFromEpochNanos(nanos) : EARLIEST_TIME;
}
