/**
 * The audit event: one MCP tool call, as a gateway reports it.
 *
 * The input shape is go-micro v6's `gateway/mcp.AuditRecord` JSON, exactly as a go-micro gateway writes
 * it (`account_id`, `scopes_required`, `denied_reason`, `duration` and `error` are omitted when empty),
 * extended with optional fields of ours. Every stage imports this file: the collector and receiver
 * validate with it, the ingest decodes Kafka messages with it, and `toAuditRow` is the only mapping to
 * the ClickHouse table.
 */
import { z } from 'zod';
import { deriveEventId } from './ids.ts';
import { issuesFromZod, type Validated } from './issues.ts';
import type { TimeWindow } from './time-window.ts';
import { formatClickHouse, formatRfc3339, parseRfc3339 } from './timestamp.ts';

/** Version of the payload on the `mcp-audit` topic (`v`) and of the `_v1` tables. */
export const AUDIT_EVENT_VERSION = 1;

export const LIMITS = {
  idLength: 128,
  nameLength: 256,
  toolLength: 256,
  textLength: 4096,
  scopes: 64,
  scopeLength: 128,
  attributes: 32,
  attributeKeyLength: 64,
  attributeValueLength: 512,
  /** A week, in nanoseconds: longer is a clock bug, not a tool call. */
  maxDurationNs: 7 * 24 * 3600 * 1e9,
  maxCostUsd: 1_000_000,
} as const;

/** The schema's patterns, exported for the fast path (model/audit-fast-path.ts), which tests them directly. */
export const PATTERNS = {
  tenant: /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
  uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i,
  otelTraceId: /^([0-9a-f]{32})?$/i,
  otelSpanId: /^([0-9a-f]{16})?$/i,
} as const;

const text = (max: number) => z.string().max(max, `must be at most ${max} characters`);
const optionalText = (max: number) => text(max).optional();
const byteCount = z.number().int('must be a whole number of bytes').nonnegative('must not be negative').max(Number.MAX_SAFE_INTEGER);

const timestamp = z.string().refine((s) => parseRfc3339(s) !== undefined, {
  message: 'must be an RFC 3339 timestamp, e.g. 2026-11-24T10:00:00.123456789Z',
});

export const auditRecordSchema = z.object({
  // go-micro v6 AuditRecord
  trace_id: text(LIMITS.idLength),
  timestamp,
  tool: text(LIMITS.toolLength).min(1, 'must not be empty'),
  account_id: optionalText(LIMITS.nameLength),
  scopes_required: z
    .array(text(LIMITS.scopeLength), 'must be an array of strings')
    .max(LIMITS.scopes, `must have at most ${LIMITS.scopes} scopes`)
    .nullish(),
  allowed: z.boolean('must be true or false'),
  denied_reason: optionalText(LIMITS.textLength),
  duration: z
    .number('must be a duration in integer nanoseconds')
    .int('must be a duration in integer nanoseconds')
    .nonnegative('must not be negative')
    .max(LIMITS.maxDurationNs, 'must be at most a week (in nanoseconds)')
    .optional(),
  error: optionalText(LIMITS.textLength),

  // Our extensions, all optional.
  v: z.literal(AUDIT_EVENT_VERSION, `must be ${AUDIT_EVENT_VERSION}`).optional(),
  event_id: z.string().regex(PATTERNS.uuid, 'must be a UUID (UUIDv7 preferred)').optional(),
  tenant: z.string().regex(PATTERNS.tenant, 'must be 1-64 letters, digits, dots, dashes or underscores').optional(),
  agent: optionalText(LIMITS.nameLength),
  agent_version: optionalText(LIMITS.nameLength),
  session_id: optionalText(LIMITS.idLength),
  gateway: optionalText(LIMITS.nameLength),
  transport: optionalText(64),
  service: optionalText(LIMITS.nameLength),
  otel_trace_id: z.string().regex(PATTERNS.otelTraceId, 'must be 32 hex digits').optional(),
  otel_span_id: z.string().regex(PATTERNS.otelSpanId, 'must be 16 hex digits').optional(),
  request_bytes: byteCount.optional(),
  response_bytes: byteCount.optional(),
  cost_usd: z
    .number('must be a number of US dollars')
    .nonnegative('must not be negative')
    .max(LIMITS.maxCostUsd, `must be at most ${LIMITS.maxCostUsd}`)
    .nullish(),
  attributes: z
    .record(
      text(LIMITS.attributeKeyLength).min(1, 'attribute names must not be empty'),
      text(LIMITS.attributeValueLength),
    )
    .refine((a) => Object.keys(a).length <= LIMITS.attributes, {
      message: `must have at most ${LIMITS.attributes} attributes`,
    })
    .optional(),
});

/** What a gateway may send. */
export type AuditRecordInput = z.input<typeof auditRecordSchema>;

/** A validated, normalized audit event: every field present, timestamps canonical, ids assigned. */
export interface AuditEvent {
  v: typeof AUDIT_EVENT_VERSION;
  event_id: string;
  tenant: string;
  trace_id: string;
  /** Canonical RFC 3339, UTC, nine fractional digits. */
  timestamp: string;
  tool: string;
  service: string;
  account_id: string;
  scopes_required: string[];
  allowed: boolean;
  denied_reason: string;
  duration: number;
  error: string;
  agent: string;
  agent_version: string;
  session_id: string;
  gateway: string;
  transport: string;
  otel_trace_id: string;
  otel_span_id: string;
  request_bytes: number;
  response_bytes: number;
  /** Null when the gateway did not know a price; the price list fills it in later. */
  cost_usd: number | null;
  attributes: Record<string, string>;
}

export interface NormalizeOptions {
  /** The tenant the sender is authenticated as. A record naming another tenant is refused. */
  tenant?: string;
  /** The timestamps accepted (model/time-window.ts); unset: any. */
  timeWindow?: TimeWindow;
}

export const DEFAULT_TENANT = 'default';

/** `users.Users.Get` → `users`: go-micro names tools service first. */
export function serviceOfTool(tool: string): string {
  const dot = tool.indexOf('.');
  return dot > 0 ? tool.slice(0, dot) : tool;
}

/** Validates one record (go-micro's shape or ours) and fills in every derived field. */
export function normalizeAuditRecord(input: unknown, options: NormalizeOptions = {}): Validated<AuditEvent> {
  const parsed = auditRecordSchema.safeParse(input);
  if (!parsed.success) return { ok: false, issues: issuesFromZod(parsed.error) };
  const r = parsed.data;

  const tenant = options.tenant ?? r.tenant ?? DEFAULT_TENANT;
  if (options.tenant !== undefined && r.tenant !== undefined && r.tenant !== options.tenant) {
    return { ok: false, issues: [{ path: 'tenant', message: `must be the sender's own tenant "${options.tenant}"` }] };
  }
  const instant = parseRfc3339(r.timestamp)!;
  const timestampText = formatRfc3339(instant);
  const outside = options.timeWindow?.check(timestampText);
  if (outside) return { ok: false, issues: [outside] };
  const duration = r.duration ?? 0;
  const accountId = r.account_id ?? '';

  return {
    ok: true,
    value: {
      v: AUDIT_EVENT_VERSION,
      event_id:
        r.event_id?.toLowerCase() ??
        deriveEventId(instant.epochMs, [tenant, r.trace_id, r.tool, timestampText, accountId, String(r.allowed), String(duration)]),
      tenant,
      trace_id: r.trace_id,
      timestamp: timestampText,
      tool: r.tool,
      service: r.service || serviceOfTool(r.tool),
      account_id: accountId,
      scopes_required: r.scopes_required ?? [],
      allowed: r.allowed,
      denied_reason: r.denied_reason ?? '',
      duration,
      error: r.error ?? '',
      agent: r.agent ?? '',
      agent_version: r.agent_version ?? '',
      session_id: r.session_id ?? '',
      gateway: r.gateway ?? '',
      transport: r.transport ?? '',
      otel_trace_id: r.otel_trace_id?.toLowerCase() ?? '',
      otel_span_id: r.otel_span_id?.toLowerCase() ?? '',
      request_bytes: r.request_bytes ?? 0,
      response_bytes: r.response_bytes ?? 0,
      cost_usd: r.cost_usd ?? null,
      attributes: r.attributes ?? {},
    },
  };
}

/**
 * Where an event came from: reported by a gateway's audit hook, or derived from the server span of a
 * tool call (model/tool-call-span.ts). A row that merges both reports of one call is 'audit'.
 */
export type EventSource = 'audit' | 'span';

/** The row written to `audit_events_v1` (column names match the table). */
export interface AuditRow {
  event_id: string;
  tenant: string;
  timestamp: string;
  trace_id: string;
  tool: string;
  service: string;
  account_id: string;
  scopes_required: string[];
  allowed: 0 | 1;
  denied_reason: string;
  duration_ns: number;
  error: string;
  is_error: 0 | 1;
  agent: string;
  agent_version: string;
  session_id: string;
  gateway: string;
  transport: string;
  otel_trace_id: string;
  otel_span_id: string;
  request_bytes: number;
  response_bytes: number;
  cost_usd: number | null;
  attributes: Record<string, string>;
  source: EventSource;
  /** 0 for a second report of a call already counted (see sql/0005); the rollups skip it. */
  counted?: 0 | 1;
  /** The report's own event_id when it is stored under another report's (sql/0005). */
  report_id?: string;
  /** For a merged row (not counted), the timestamp of the first row it replaces (sql/0024); else the row's own. */
  replaces_at?: string;
}

function canonicalToClickHouse(canonical: string): string {
  return canonical.length === 30 && canonical[10] === 'T' && canonical.endsWith('Z')
    ? `${canonical.slice(0, 10)} ${canonical.slice(11, 29)}`
    : formatClickHouse(parseRfc3339(canonical)!);
}

export function toAuditRow(event: AuditEvent, source: EventSource = 'audit'): AuditRow {
  return {
    event_id: event.event_id,
    tenant: event.tenant,
    // The canonical form (formatRfc3339) is `YYYY-MM-DDTHH:MM:SS.fffffffffZ`: no need to parse it again.
    timestamp: canonicalToClickHouse(event.timestamp),
    trace_id: event.trace_id,
    tool: event.tool,
    service: event.service,
    account_id: event.account_id,
    scopes_required: event.scopes_required,
    allowed: event.allowed ? 1 : 0,
    denied_reason: event.denied_reason,
    duration_ns: event.duration,
    error: event.error,
    is_error: event.error !== '' ? 1 : 0,
    agent: event.agent,
    agent_version: event.agent_version,
    session_id: event.session_id,
    gateway: event.gateway,
    transport: event.transport,
    otel_trace_id: event.otel_trace_id,
    otel_span_id: event.otel_span_id,
    request_bytes: event.request_bytes,
    response_bytes: event.response_bytes,
    cost_usd: event.cost_usd,
    attributes: event.attributes,
    source,
  };
}
