/**
 * The receiver: the HTTP front door for gateways in any language (go-micro first).
 *
 *   POST /v1/audit    audit records: one JSON record, a JSON array, or NDJSON → `topics.audit`
 *   POST /v1/traces   OTLP/HTTP traces, protobuf or JSON, as the OpenTelemetry exporters send them
 *                     → `topics.spans`, the original bytes, one message per request
 *   GET  /healthz     liveness
 *
 * Every request is authenticated (a bearer API key with role `ingest` names the tenant), bounded (body
 * bytes before and after decompression, records per request), validated, published in one call, and
 * answered; back-pressure from the pipeline is a 503 with Retry-After. `handle` is a plain node:http
 * listener and never throws.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KeyStore } from '../api/plugins/use-auth.ts';
import type { Logger } from '../core/logger.ts';
import { auditMessageKey, BackpressureError, TENANT_HEADER, type OutboundMessage, type Publisher } from '../core/publisher.ts';
import { decodeTraceRequest, OtlpDecodeError, type DecodedTraceRequest } from '../model/otlp.ts';
import type { TimeWindow } from '../model/time-window.ts';
import { AUDIT_FORMATS, parseAuditBatch } from './receiver/audit-batch.ts';
import { authenticate, ingestCredentials } from './receiver/auth.ts';
import { contentCoding, readBody } from './receiver/body.ts';
import { exportTraceResponse, OTLP_CONTENT_TYPES, OTLP_ENCODINGS, rpcStatus, type OtlpEncoding } from './receiver/otlp-response.ts';
import { HttpError, mediaType, send, sendJson } from './receiver/respond.ts';

export interface ReceiverDeps {
  publisher: Publisher;
  logger: Logger;
  topics: { audit: string; spans: string };
  /** API keys: those with role `ingest` or `admin` send, to their tenant (core/api-keys.ts). */
  keys?: KeyStore;
  /**
   * INGEST_TOKENS' short form, bearer token → tenant, when no `keys` are given. No keys and no tokens:
   * tenant `default`, loopback senders only.
   */
  tokens?: Map<string, string>;
  /** Largest body accepted, on the wire and after decompression. */
  maxBodyBytes: number;
  /** Most audit records, or spans, in one request. */
  maxRecords: number;
  /** The audit timestamps accepted (RETENTION_DAYS back, MAX_CLOCK_SKEW_S ahead); unset: any. */
  timeWindow?: TimeWindow;
}

export interface Receiver {
  /** A node:http request listener: `http.createServer(receiver.handle)`. */
  handle(req: IncomingMessage, res: ServerResponse): void;
}

/** Retry-After when the publisher failed without saying when it will be back. */
const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;

const ALLOWED_METHODS: Readonly<Record<string, string>> = {
  '/v1/audit': 'POST',
  '/v1/traces': 'POST',
  '/healthz': 'GET, HEAD',
};

export function createReceiver(deps: ReceiverDeps): Receiver {
  const { publisher, logger, topics, maxBodyBytes, maxRecords, timeWindow } = deps;
  if (deps.keys && deps.tokens) throw new Error('createReceiver: give INGEST_TOKENS to the key store (openKeyStore({ ingestTokens })), not beside it');
  const keys = deps.keys ?? ingestCredentials(deps.tokens);
  let underBackpressure = false;

  async function serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const allowed = ALLOWED_METHODS[path];
    if (allowed === undefined) {
      throw new HttpError(404, `no such endpoint ${path}; the receiver serves POST /v1/audit, POST /v1/traces and GET /healthz`);
    }
    if (!allowed.split(', ').includes(req.method ?? '')) {
      throw new HttpError(405, `${req.method} is not allowed on ${path}; use ${allowed}`, {}, { Allow: allowed });
    }
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });

    const tenant = authenticate(req.headers.authorization, req.socket.remoteAddress, keys);
    if (path === '/v1/audit') return receiveAudit(req, res, tenant);
    return receiveTraces(req, res, tenant);
  }

  async function receiveAudit(req: IncomingMessage, res: ServerResponse, tenant: string): Promise<void> {
    const type = mediaType(req.headers['content-type']);
    const format = AUDIT_FORMATS[type];
    if (format === undefined) throw unsupportedMediaType(type, Object.keys(AUDIT_FORMATS));
    const body = await readBody(req, maxBodyBytes, contentCoding(req.headers['content-encoding']));

    const { events, rejected } = parseAuditBatch(body, format, { tenant, maxRecords, timeWindow });
    if (events.length > 0) {
      const messages = events.map((event) => ({ key: auditMessageKey(event), value: Buffer.from(JSON.stringify(event)) }));
      await publish(topics.audit, messages);
    }
    if (rejected.length === 0) return sendJson(res, 202, { accepted: events.length });
    logger.debug({ tenant, accepted: events.length, rejected: rejected.length }, 'audit records rejected');
    const error =
      `${rejected.length} of ${rejected.length + events.length} records rejected (see "rejected")` +
      (events.length > 0 ? `; the other ${events.length} were accepted` : '');
    sendJson(res, 400, { error, accepted: events.length, rejected });
  }

  async function receiveTraces(req: IncomingMessage, res: ServerResponse, tenant: string): Promise<void> {
    const type = mediaType(req.headers['content-type']);
    const encoding = OTLP_ENCODINGS[type];
    if (encoding === undefined) throw unsupportedMediaType(type, Object.keys(OTLP_ENCODINGS));
    const body = await readBody(req, maxBodyBytes, contentCoding(req.headers['content-encoding']));

    const { spans, rejected } = decodeTraces(body, encoding, tenant);
    const total = spans.length + rejected.length;
    if (total > maxRecords) {
      throw new HttpError(
        413,
        `too many spans: ${total} in one request, over the limit of ${maxRecords} (RECEIVER_MAX_RECORDS); export smaller batches`,
        { limit: maxRecords },
      );
    }
    if (spans.length > 0) {
      const contentType = OTLP_CONTENT_TYPES[encoding];
      await publish(topics.spans, [{ key: tenant, value: body, headers: { [TENANT_HEADER]: tenant, 'content-type': contentType } }]);
    }
    if (rejected.length > 0) logger.debug({ tenant, accepted: spans.length, rejected: rejected.length }, 'spans rejected');
    send(res, 200, OTLP_CONTENT_TYPES[encoding], exportTraceResponse(encoding, rejected));
  }

  function decodeTraces(body: Buffer, encoding: OtlpEncoding, tenant: string): DecodedTraceRequest {
    try {
      return decodeTraceRequest(body, encoding, tenant);
    } catch (error) {
      if (error instanceof OtlpDecodeError) throw new HttpError(400, `invalid OTLP request: ${error.message}`);
      throw error;
    }
  }

  /** Publishes, or throws HttpError 503 with Retry-After: the client keeps the data and retries. */
  async function publish(topic: string, messages: OutboundMessage[]): Promise<void> {
    try {
      await publisher.publish(topic, messages);
      underBackpressure = false;
    } catch (error) {
      let seconds = UNAVAILABLE_RETRY_AFTER_SECONDS;
      let message = 'the pipeline is unavailable; retry later';
      if (error instanceof BackpressureError) {
        seconds = Math.max(1, Math.ceil(error.retryAfterSeconds) || 1);
        message = error.message;
        if (!underBackpressure) logger.warn({ topic, retryAfterSeconds: seconds }, 'publisher is full; answering 503 until it drains');
        underBackpressure = true;
      } else {
        logger.error({ err: error, topic, messages: messages.length }, 'publish failed; answered 503');
      }
      throw new HttpError(503, message, { retryAfterSeconds: seconds }, { 'Retry-After': String(seconds) });
    }
  }

  function fail(req: IncomingMessage, res: ServerResponse, path: string, error: unknown): void {
    if (res.headersSent) {
      logger.error({ err: error, path }, 'receiver failed after answering');
      res.destroy();
      return;
    }
    const known = error instanceof HttpError;
    if (!known) logger.error({ err: error, method: req.method, path }, 'receiver handler failed');
    else logger.debug({ status: error.status, path, error: error.message }, 'request refused');
    const status = known ? error.status : 500;
    const message = known ? error.message : 'internal error';
    const headers = known ? { ...error.headers } : {};
    // A body we did not read to the end: close the connection rather than read (or buffer) the rest.
    if (!req.complete) headers['Connection'] = 'close';

    if (path === '/v1/traces' && mediaType(req.headers['content-type']) === 'application/x-protobuf') {
      send(res, status, OTLP_CONTENT_TYPES.protobuf, rpcStatus(status, message), headers);
    } else {
      sendJson(res, status, { error: message, ...(known ? error.details : {}) }, headers);
    }
  }

  return {
    handle(req, res) {
      const url = req.url ?? '/';
      const query = url.indexOf('?');
      const path = query < 0 ? url : url.slice(0, query);
      serve(req, res, path).catch((error: unknown) => {
        try {
          fail(req, res, path, error);
        } catch (failure) {
          logger.error({ err: failure, path }, 'receiver could not answer');
          res.destroy();
        }
      });
    },
  };
}

function unsupportedMediaType(type: string, accepted: string[]): HttpError {
  const list = `${accepted.slice(0, -1).join(', ')} or ${accepted.at(-1)}`;
  const problem = type === '' ? 'missing Content-Type' : `unsupported Content-Type "${type}"`;
  return new HttpError(415, `${problem}; use ${list}`, { accepted });
}
