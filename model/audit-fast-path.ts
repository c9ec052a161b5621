/**
 * A fast path to a validated audit event, for the collector's sender (collector/prepare.ts) and the
 * ingest's decoder (ingest/decode.ts): the checks of the model's `auditRecordSchema` written out for the
 * records gateways actually send, producing exactly what `normalizeAuditRecord` produces, at a tenth of
 * the cost (zod and a second timestamp parse were a third of the collector worker's CPU per record, and
 * most of the ingest's decoding).
 *
 * It can only say "valid, here is the event" or "not sure" (undefined). Whatever it does not accept
 * positively goes to `normalizeAuditRecord`, which decides and explains: a failed check, a
 * `__proto__` attribute, a string over its limit in UTF-16 units (the schema counts code points), an object that is not plain.
 * So it makes the sender faster, never more permissive. Fields with a pattern (ids, tenant) are checked
 * with the schema's own patterns (`PATTERNS`). test/model/audit-fast-path.test.ts holds it to the schema:
 * same output, nothing accepted that the schema refuses, and a failure if the schema gains a field
 * this file does not know.
 */
import {
  AUDIT_EVENT_VERSION,
  DEFAULT_TENANT,
  LIMITS,
  PATTERNS,
  serviceOfTool,
  type AuditEvent,
} from './audit-event.ts';
import { formatRfc3339, parseRfc3339 } from './timestamp.ts';

/** The input fields this file checks; the test compares them with the schema's. */
export const FAST_PATH_FIELDS = [
  'trace_id', 'timestamp', 'tool', 'account_id', 'scopes_required', 'allowed', 'denied_reason', 'duration', 'error',
  'v', 'event_id', 'tenant', 'agent', 'agent_version', 'session_id', 'gateway', 'transport', 'service',
  'otel_trace_id', 'otel_span_id', 'request_bytes', 'response_bytes', 'cost_usd', 'attributes',
] as const;

const NO_SCOPES: readonly string[] = Object.freeze([]);

/**
 * The normalized event of a record; undefined when `normalizeAuditRecord` must decide.
 * `trustedEventId`: the id the sender itself just stamped (a fresh UUIDv7, not re-checked).
 */
export type AuditFastPath = (input: unknown, trustedEventId?: string) => AuditEvent | undefined;

/**
 * `tenant`: the sender's own tenant, as `normalizeAuditRecord(input, { tenant })` (a record may only
 * name that one); without it, as `normalizeAuditRecord(input)`: the record's tenant, or the default.
 */
export function createAuditFastPath(tenant?: string): AuditFastPath {
  const canonicalTimestamp = createTimestampCanonicalizer();
  return (input, trustedEventId) => normalizeFast(input, tenant, trustedEventId, canonicalTimestamp);
}

function normalizeFast(
  input: unknown,
  tenant: string | undefined,
  trustedEventId: string | undefined,
  canonicalTimestamp: (text: string) => string | undefined,
): AuditEvent | undefined {
  if (typeof input !== 'object' || input === null || Object.getPrototypeOf(input) !== Object.prototype) return undefined;
  const r = input as Record<string, unknown>;

  const traceId = r['trace_id'];
  const tool = r['tool'];
  const allowed = r['allowed'];
  const timestamp = r['timestamp'];
  if (typeof traceId !== 'string' || traceId.length > LIMITS.idLength) return undefined;
  if (typeof tool !== 'string' || tool.length === 0 || tool.length > LIMITS.toolLength) return undefined;
  if (typeof allowed !== 'boolean' || typeof timestamp !== 'string') return undefined;

  const accountId = text(r['account_id'], LIMITS.nameLength);
  const deniedReason = text(r['denied_reason'], LIMITS.textLength);
  const error = text(r['error'], LIMITS.textLength);
  const agent = text(r['agent'], LIMITS.nameLength);
  const agentVersion = text(r['agent_version'], LIMITS.nameLength);
  const sessionId = text(r['session_id'], LIMITS.idLength);
  const gateway = text(r['gateway'], LIMITS.nameLength);
  const transport = text(r['transport'], 64);
  const service = text(r['service'], LIMITS.nameLength);
  if (
    accountId === undefined || deniedReason === undefined || error === undefined || agent === undefined ||
    agentVersion === undefined || sessionId === undefined || gateway === undefined || transport === undefined ||
    service === undefined
  ) {
    return undefined;
  }

  const duration = count(r['duration'], LIMITS.maxDurationNs);
  const requestBytes = count(r['request_bytes'], Number.MAX_SAFE_INTEGER);
  const responseBytes = count(r['response_bytes'], Number.MAX_SAFE_INTEGER);
  if (duration === undefined || requestBytes === undefined || responseBytes === undefined) return undefined;

  const scopes = scopeList(r['scopes_required']);
  if (scopes === undefined) return undefined;

  const cost = r['cost_usd'];
  if (cost != null && !(typeof cost === 'number' && cost >= 0 && cost <= LIMITS.maxCostUsd)) return undefined;
  const attributes = attributeMap(r['attributes']);
  if (attributes === undefined) return undefined;
  if (r['v'] !== undefined && r['v'] !== AUDIT_EVENT_VERSION) return undefined;

  const tenantField = r['tenant'];
  if (tenantField !== undefined) {
    if ((tenant !== undefined && tenantField !== tenant) || !matches(PATTERNS.tenant, tenantField)) return undefined;
  }
  const eventTenant = tenant ?? (tenantField as string | undefined) ?? DEFAULT_TENANT;

  let eventId = r['event_id'];
  if (eventId === undefined || (eventId !== trustedEventId && !matches(PATTERNS.uuid, eventId))) return undefined;
  eventId = (eventId as string).toLowerCase();

  const otelTraceId = r['otel_trace_id'];
  const otelSpanId = r['otel_span_id'];
  if (otelTraceId !== undefined && !matches(PATTERNS.otelTraceId, otelTraceId)) return undefined;
  if (otelSpanId !== undefined && !matches(PATTERNS.otelSpanId, otelSpanId)) return undefined;

  const canonical = canonicalTimestamp(timestamp);
  if (canonical === undefined) return undefined;

  return {
    v: AUDIT_EVENT_VERSION,
    event_id: eventId as string,
    tenant: eventTenant,
    trace_id: traceId,
    timestamp: canonical,
    tool,
    service: service || serviceOfTool(tool),
    account_id: accountId,
    scopes_required: scopes === NO_SCOPES ? [] : scopes,
    allowed,
    denied_reason: deniedReason,
    duration,
    error,
    agent,
    agent_version: agentVersion,
    session_id: sessionId,
    gateway,
    transport,
    otel_trace_id: otelTraceId === undefined ? '' : (otelTraceId as string).toLowerCase(),
    otel_span_id: otelSpanId === undefined ? '' : (otelSpanId as string).toLowerCase(),
    request_bytes: requestBytes,
    response_bytes: responseBytes,
    cost_usd: (cost as number | null | undefined) ?? null,
    attributes,
  };
}

/** A string the pattern matches, as the schema's `z.string().regex(pattern)`. */
function matches(pattern: RegExp, value: unknown): value is string {
  return typeof value === 'string' && pattern.test(value);
}

/** An optional string field: '' when absent, undefined when not certainly valid. */
function text(value: unknown, max: number): string | undefined {
  if (value === undefined) return '';
  return typeof value === 'string' && value.length <= max ? value : undefined;
}

/** An optional whole, non-negative number: 0 when absent, undefined when not certainly valid. */
function count(value: unknown, max: number): number | undefined {
  if (value === undefined) return 0;
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= max ? value : undefined;
}

/** `attributes` as the schema's record of strings makes it (a copy); undefined when not certainly valid. */
function attributeMap(value: unknown): Record<string, string> | undefined {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) return undefined;
  const out: Record<string, string> = {};
  let count = 0;
  for (const key in value) {
    if (!Object.hasOwn(value, key)) return undefined;
    const item: unknown = (value as Record<string, unknown>)[key];
    if (++count > LIMITS.attributes || key === '' || key === '__proto__' || key.length > LIMITS.attributeKeyLength) return undefined;
    if (typeof item !== 'string' || item.length > LIMITS.attributeValueLength) return undefined;
    out[key] = item;
  }
  return out;
}

function scopeList(value: unknown): string[] | undefined {
  if (value === undefined || value === null) return NO_SCOPES as string[];
  if (!Array.isArray(value) || value.length > LIMITS.scopes) return undefined;
  for (let i = 0; i < value.length; i++) {
    const scope: unknown = value[i];
    if (typeof scope !== 'string' || scope.length > LIMITS.scopeLength) return undefined;
  }
  return value as string[];
}

/**
 * `formatRfc3339(parseRfc3339(text))`, remembering whole seconds: a UTC timestamp
 * (`<second>[.<1-9 digits>]Z`) of a second seen before maps to that second's canonical form plus its
 * fraction padded to nine digits. That is what the model computes, because a fraction of a second
 * cannot carry into the next one; whether the date is valid depends only on the second. Other
 * timestamps (offsets, a new second) go through the model's functions. A batch from several Kafka
 * partitions interleaves a few seconds, so several are remembered (at most SECONDS_REMEMBERED: then
 * the memory starts again).
 */
function createTimestampCanonicalizer(): (text: string) => string | undefined {
  const canonicalSeconds = new Map<string, string>();
  return (text) => {
    const fraction = utcFraction(text);
    if (fraction !== undefined) {
      const canonicalSecond = canonicalSeconds.get(text.slice(0, SECOND_LENGTH));
      if (canonicalSecond !== undefined) return `${canonicalSecond}.${fraction.padEnd(9, '0')}Z`;
    }
    const instant = parseRfc3339(text);
    if (instant === undefined) return undefined;
    const canonical = formatRfc3339(instant);
    if (fraction !== undefined) {
      if (canonicalSeconds.size >= SECONDS_REMEMBERED) canonicalSeconds.clear();
      canonicalSeconds.set(text.slice(0, SECOND_LENGTH), canonical.slice(0, SECOND_LENGTH));
    }
    return canonical;
  };
}

const SECONDS_REMEMBERED = 1024;

/** `2026-11-24T10:00:00`.length */
const SECOND_LENGTH = 19;

/** The fraction digits ('' for none) of `<19 characters>[.<1-9 digits>](Z|z)`; undefined for any other shape. */
function utcFraction(text: string): string | undefined {
  const last = text.length - 1;
  if (last < SECOND_LENGTH || (text.charCodeAt(last) !== 0x5a && text.charCodeAt(last) !== 0x7a)) return undefined; // Z z
  if (last === SECOND_LENGTH) return '';
  if (text.charCodeAt(SECOND_LENGTH) !== 0x2e || last - SECOND_LENGTH - 1 > 9 || last - SECOND_LENGTH - 1 < 1) return undefined; // .
  for (let i = SECOND_LENGTH + 1; i < last; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
  }
  return text.slice(SECOND_LENGTH + 1, last);
}
