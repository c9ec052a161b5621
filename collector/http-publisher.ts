/**
 * A Publisher that sends to a remote receiver over HTTP instead of Kafka: a TypeScript gateway (or the
 * demo) feeds `npm start`, or a receiver in front of Kafka, with the collector unchanged.
 *
 *   const collector = createCollector({
 *     publisher: createHttpPublisher({ url: 'https://mcp-audit.example.com', token: process.env.INGEST_TOKEN }),
 *     spoolDir: '/var/spool/mcp',
 *   });
 *
 * The audit topic becomes one `POST /v1/audit` of NDJSON per batch (gzip above 1 KB); each spans message,
 * already a protobuf `ExportTraceServiceRequest`, becomes one `POST /v1/traces`. Failures are classified
 * the way the collector's sender expects: `BackpressureError` (503, 429) and `PublishError` with
 * `retryable: true` (network errors, timeouts, other 5xx) send the records to the disk spool for a later
 * try; `PublishError` with `retryable: false` (401, 403, 413, 415, a batch refused whole) drops them.
 * The collector's `tenant` must be the tenant the token stands for: the receiver refuses records naming
 * another one.
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import protobuf from 'protobufjs';
import { PublishError } from '../core/kafka.ts';
import type { Logger } from '../core/logger.ts';
import { BackpressureError, type OutboundMessage, type Publisher } from '../core/publisher.ts';

export interface HttpPublisherOptions {
  /** The receiver's base URL, e.g. `http://127.0.0.1:4318`; `/v1/audit` and `/v1/traces` are appended. */
  url: string;
  /** Bearer token (`INGEST_TOKENS` on the receiver); not needed for a token-less receiver on this machine. */
  token?: string;
  /** Longest a request may take, response included. Default 10 s. */
  timeoutMs?: number;
  /** The collector's topics (its `topics` option); which endpoint a message goes to. */
  topics?: { audit?: string; spans?: string };
  /** Audit bodies above this many bytes are gzipped. Default 1024. */
  gzipMinBytes?: number;
  /** Where records the receiver refused are reported. Default: nowhere (they are counted in `stats`). */
  logger?: Logger;
  /** Default the global `fetch`. */
  fetch?: typeof fetch;
}

export interface HttpPublisherStats {
  /** Requests answered 2xx (including partial 400s). */
  requests: number;
  /** Audit records the receiver refused as invalid while accepting the rest of their batch. */
  rejected: number;
  /** Spans the receiver refused as invalid (OTLP `partial_success`). */
  rejectedSpans: number;
}

export interface HttpPublisher extends Publisher {
  stats(): HttpPublisherStats;
}

/** A failed request to the receiver; `status` is absent when no answer came (network error, timeout). */
export class HttpPublishError extends PublishError {
  constructor(
    retryable: boolean,
    readonly status: number | undefined,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(retryable, { cause: options.cause });
    this.message = message;
  }
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_GZIP_MIN_BYTES = 1024;
/** When a 503 or 429 does not say when to come back. */
const DEFAULT_RETRY_AFTER_SECONDS = 1;
const USER_AGENT = 'mcp-audit-analytics-collector/0.1.0';
const NEWLINE = 0x0a;
const SPACE = 0x20;

const gzip = promisify(zlib.gzip);

/** The receiver's JSON error body (collector/receiver/respond.ts). */
interface ErrorBody {
  error?: unknown;
  accepted?: unknown;
  rejected?: unknown;
  retryAfterSeconds?: unknown;
}

interface Answer {
  status: number;
  headers: Headers;
  body: Buffer;
}

export function createHttpPublisher(options: HttpPublisherOptions): HttpPublisher {
  const base = parseBaseUrl(options.url);
  const auditUrl = new URL('v1/audit', base).toString();
  const tracesUrl = new URL('v1/traces', base).toString();
  const auditTopic = options.topics?.audit ?? 'mcp-audit';
  const spansTopic = options.topics?.spans ?? 'otlp_spans';
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const gzipMinBytes = options.gzipMinBytes ?? DEFAULT_GZIP_MIN_BYTES;
  const doFetch = options.fetch ?? fetch;
  const { logger } = options;
  const counters: HttpPublisherStats = { requests: 0, rejected: 0, rejectedSpans: 0 };
  if (!(timeoutMs > 0)) throw new RangeError(`createHttpPublisher: timeoutMs must be positive, got ${timeoutMs}`);

  const commonHeaders: Record<string, string> = { 'user-agent': USER_AGENT };
  if (options.token) commonHeaders['authorization'] = `Bearer ${options.token}`;

  /** One request; the response body is read within the same deadline. */
  async function post(url: string, headers: Record<string, string>, body: Buffer): Promise<Answer> {
    try {
      const res = await doFetch(url, {
        method: 'POST',
        headers: { ...commonHeaders, ...headers },
        body: body as Uint8Array<ArrayBuffer>, // a Buffer is never backed by a SharedArrayBuffer here
        signal: AbortSignal.timeout(timeoutMs),
      });
      return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
    } catch (error) {
      // fetch rejects only when no complete answer came: refused, reset, DNS, TLS, timeout.
      throw new HttpPublishError(true, undefined, `the receiver at ${url} did not answer: ${describe(error, timeoutMs)}`, { cause: error });
    }
  }

  async function publishAudit(messages: OutboundMessage[]): Promise<void> {
    const ndjson = Buffer.concat(messages.flatMap((m) => [oneLine(m.value), Buffer.of(NEWLINE)]));
    const headers: Record<string, string> = { 'content-type': 'application/x-ndjson' };
    let body = ndjson;
    if (ndjson.length > gzipMinBytes) {
      body = await gzip(ndjson);
      headers['content-encoding'] = 'gzip';
    }
    const res = await post(auditUrl, headers, body);
    if (res.status === 400) {
      const answer = parseJson(res.body);
      if (Array.isArray(answer?.rejected)) return partial(answer, messages.length);
    }
    check(auditUrl, res);
  }

  /**
   * Records the receiver found invalid although the collector validated them with the same model: a
   * version mismatch. Retrying cannot help; the rest of the batch was accepted, so resolve and tell.
   */
  function partial(answer: ErrorBody, sent: number): void {
    const rejected = (answer.rejected as unknown[]).length;
    const accepted = typeof answer.accepted === 'number' ? answer.accepted : sent - rejected;
    if (accepted === 0) {
      throw new HttpPublishError(false, 400, `the receiver refused all ${rejected} audit records: ${firstReason(answer)}`);
    }
    counters.requests++;
    counters.rejected += rejected;
    logger?.warn(
      { rejected, accepted, reason: firstReason(answer) },
      'the receiver refused some audit records the collector had validated (collector and receiver versions differ?); they are dropped',
    );
  }

  async function publishSpans(messages: OutboundMessage[]): Promise<void> {
    // One request per message: each is one ExportTraceServiceRequest, as an OTLP exporter sends it.
    for (const message of messages) {
      const res = await post(tracesUrl, { 'content-type': 'application/x-protobuf' }, message.value);
      check(tracesUrl, res);
      const refused = partialSuccess(res.body);
      if (refused) {
        counters.rejectedSpans += refused.rejectedSpans;
        logger?.warn(refused, 'the receiver refused some spans; they are dropped');
      }
    }
  }

  /** Resolves on 2xx; otherwise throws, retryable or not by status. */
  function check(url: string, res: Answer): void {
    const { status } = res;
    if (status >= 200 && status < 300) {
      counters.requests++;
      return;
    }
    const protobufAnswer = res.headers.get('content-type')?.startsWith('application/x-protobuf') ?? false;
    const answer = protobufAnswer ? undefined : parseJson(res.body);
    const reason =
      (protobufAnswer ? rpcStatusMessage(res.body) : typeof answer?.error === 'string' ? answer.error : res.body.toString('utf8', 0, 200)) ||
      `HTTP ${status}`;
    if (status === 503 || status === 429) {
      throw new BackpressureError(retryAfterSeconds(res.headers.get('retry-after'), answer), `the receiver is busy (${status}): ${reason}`);
    }
    const retryable = status === 408 || (status >= 500 && status !== 501 && status !== 505);
    throw new HttpPublishError(retryable, status, `the receiver at ${url} answered ${status}: ${reason}`);
  }

  return {
    async publish(topic, messages) {
      if (topic !== auditTopic && topic !== spansTopic) {
        throw new HttpPublishError(false, undefined, `no receiver endpoint for topic "${topic}": the HTTP publisher knows "${auditTopic}" and "${spansTopic}"`);
      }
      if (messages.length === 0) return;
      if (topic === auditTopic) await publishAudit(messages);
      else await publishSpans(messages);
    },
    stats: () => ({ ...counters }),
  };
}

function parseBaseUrl(url: string): URL {
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (parsed?.protocol !== 'http:' && parsed?.protocol !== 'https:') {
    throw new TypeError(`createHttpPublisher: url must be an absolute http(s) URL such as http://127.0.0.1:4318, got "${url}"`);
  }
  // A base with a path (`https://host/ingest`) keeps it: endpoints resolve under it.
  if (!parsed.pathname.endsWith('/')) parsed.pathname += '/';
  return parsed;
}

/** Retry-After in seconds (RFC 9110: delay-seconds or an HTTP date), else the body's, else 1. */
function retryAfterSeconds(header: string | null, answer: ErrorBody | undefined): number {
  if (header !== null) {
    const trimmed = header.trim();
    if (/^\d+$/.test(trimmed)) return Number(trimmed);
    const date = Date.parse(trimmed);
    if (!Number.isNaN(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
  }
  if (typeof answer?.retryAfterSeconds === 'number' && answer.retryAfterSeconds >= 0) return answer.retryAfterSeconds;
  return DEFAULT_RETRY_AFTER_SECONDS;
}

/** Raw newlines in JSON can only be whitespace between tokens (strings escape theirs): spaces keep the meaning. */
function oneLine(json: Buffer): Buffer {
  if (!json.includes(NEWLINE)) return json;
  const copy = Buffer.from(json);
  for (let i = copy.indexOf(NEWLINE); i >= 0; i = copy.indexOf(NEWLINE, i + 1)) copy[i] = SPACE;
  return copy;
}

function parseJson(body: Buffer): ErrorBody | undefined {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return typeof value === 'object' && value !== null ? (value as ErrorBody) : undefined;
  } catch {
    return undefined;
  }
}

/** The first rejected record's first problem, e.g. `#0 duration: must be ...`. */
function firstReason(answer: ErrorBody): string {
  const first = (answer.rejected as { index?: unknown; errors?: { path?: unknown; message?: unknown }[] }[])[0];
  const issue = first?.errors?.[0];
  if (!issue) return typeof answer.error === 'string' ? answer.error : 'no reason given';
  return `#${String(first.index)} ${issue.path ? `${String(issue.path)}: ` : ''}${String(issue.message)}`;
}

/**
 * The fields of a protobuf message by number (varints and length-delimited ones; the last occurrence
 * wins); empty when the bytes are not protobuf. Enough to read the receiver's two small answers.
 */
function protobufFields(bytes: Uint8Array): Map<number, number | Uint8Array> {
  const fields = new Map<number, number | Uint8Array>();
  try {
    const reader = protobuf.Reader.create(bytes);
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const wireType = tag & 7;
      if (wireType === 0) {
        const value = reader.int64();
        fields.set(tag >>> 3, protobuf.util.LongBits.from(value).toNumber());
      } else if (wireType === 2) {
        fields.set(tag >>> 3, reader.bytes());
      } else {
        reader.skipType(wireType);
      }
    }
  } catch {
    fields.clear();
  }
  return fields;
}

const utf8 = (value: number | Uint8Array | undefined): string => (value instanceof Uint8Array ? Buffer.from(value).toString('utf8') : '');

/** `google.rpc.Status.message` (field 2): the receiver's error text for an OTLP protobuf request. */
function rpcStatusMessage(body: Buffer): string {
  return utf8(protobufFields(body).get(2));
}

/** `ExportTraceServiceResponse.partial_success` (field 1): `rejected_spans` (1), `error_message` (2). */
function partialSuccess(body: Buffer): { rejectedSpans: number; errorMessage: string } | undefined {
  const partial = protobufFields(body).get(1);
  if (!(partial instanceof Uint8Array)) return undefined;
  const fields = protobufFields(partial);
  const rejectedSpans = fields.get(1);
  if (typeof rejectedSpans !== 'number' || rejectedSpans <= 0) return undefined;
  return { rejectedSpans, errorMessage: utf8(fields.get(2)) };
}

/** Why no answer came: the timeout, the socket error's code (ECONNREFUSED...), or the message. */
function describe(error: unknown, timeoutMs: number): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return `timed out after ${timeoutMs} ms`;
  const code = (error.cause as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : error.message;
}
