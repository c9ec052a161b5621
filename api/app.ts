/**
 * The API service as one node:http request listener: GraphQL at `/graphql` (GraphiQL when a browser GETs
 * it), yoga's readiness check at `/health`, and the built dashboard (`ui/dist`) everywhere else.
 * `createApi` builds it from its dependencies; `bin/*` wires it to a server and listens.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import { GraphQLError } from 'graphql';
import { createYoga } from 'graphql-yoga';
import { Registry } from 'prom-client';
import type { AlertWebhooks } from '../alerts/webhook-announcer.ts';
import type { Logger } from '../core/logger.ts';
import { CHARGEBACK_PATH, createChargebackHandler } from './chargeback-http.ts';
import { useAuth, type KeyStore } from './plugins/use-auth.ts';
import { useLimits } from './plugins/use-limits.ts';
import { useMetrics } from './plugins/use-metrics.ts';
import { useReadScheduling } from './plugins/use-read-scheduling.ts';
import { useRoles } from './plugins/use-roles.ts';
import { createClosedBucketCache, type ClosedBucketCache, type ClosedBuckets } from './queries/closed-buckets.ts';
import { createReadClient } from './read-client.ts';
import { createReadScheduler, type ReadScheduler } from './read-scheduler.ts';
import { createApiSchema } from './schema.ts';

export interface ApiDependencies {
  clickhouse: ClickHouseClient;
  logger: Logger;
  /** Directory of the built dashboard (`ui/dist`). Without it only the API is served. */
  uiDir?: string;
  /** API keys; without any, the API serves the tenant `default` to loopback callers only. */
  keys?: KeyStore;
  /** Limits on the API's ClickHouse reads (API_QUERY_TIMEOUT_MS, API_READ_*); DEFAULT_READ_LIMITS when omitted. */
  reads?: Partial<ReadLimits>;
  /** The process's metrics registry, served at `/metrics` by the caller; a registry of its own when omitted. */
  registry?: Registry;
  /** The aggregates' cache of closed time buckets (api/queries/closed-buckets.ts); one of its own when omitted. */
  closedBuckets?: ClosedBuckets;
  /** The tables are replicated (CLICKHOUSE_CLUSTER); see ClosedBucketOptions.replicated. */
  replicated?: boolean;
  /** Announces a person's acknowledgement or resolution of an alert to its webhook (alerts/webhook-announcer.ts). */
  alertWebhooks?: AlertWebhooks;
}

export interface ReadLimits {
  /** Longest one ClickHouse statement may run (`max_execution_time`), in milliseconds. */
  timeoutMs: number;
  /** Reads sent to ClickHouse at once, all callers together. */
  concurrency: number;
  /** Threads ClickHouse gives one read (`max_threads`). */
  threads: number;
  /** Reads one API key may have waiting before more are refused (TOO_MANY_REQUESTS). */
  maxQueuedPerCaller: number;
}

export const DEFAULT_READ_LIMITS: ReadLimits = { timeoutMs: 10_000, concurrency: 2, threads: 1, maxQueuedPerCaller: 64 };

/**
 * Reads at once of the work that outlives its request (the aggregates' cache fills), in a lane of
 * their own beside `ReadLimits.concurrency`: the embedded engine gets a connection for each too.
 */
export const BACKGROUND_READS = 1;

export interface Api {
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** The fair queue in front of ClickHouse reads. */
  scheduler: ReadScheduler;
  registry: Registry;
  /** Resolves once the work requests left running in the background (closed-bucket fills) has ended. */
  settled(): Promise<void>;
}

const GRAPHQL_PATH = '/graphql';
const HEALTH_PATH = '/health';
/** Paths that belong to an API: never answered with the dashboard's index.html. */
const API_PREFIXES = [GRAPHQL_PATH, HEALTH_PATH, '/v1/', '/export/'];

export function createApi({ clickhouse, logger, uiDir, keys, reads, registry = new Registry(), closedBuckets: given, replicated, alertWebhooks }: ApiDependencies): Api {
  const limits = { ...DEFAULT_READ_LIMITS, ...reads };
  const scheduler = createReadScheduler(limits);
  const background = createReadScheduler({ concurrency: BACKGROUND_READS, maxQueuedPerCaller: limits.maxQueuedPerCaller });
  const readClient = createReadClient(clickhouse, { scheduler, background, timeoutMs: limits.timeoutMs, threads: limits.threads });
  // Background fills read in their own lane, as their caller's background work, not on their request.
  const closedBuckets = given ?? createClosedBucketCache({ detach: readClient.detached, replicated });
  const yoga = createYoga({
    schema: createApiSchema({ clickhouse: readClient.client, closedBuckets, alertWebhooks }),
    // Metrics first, so they see every request, refused ones too; limits before anything is executed.
    plugins: [useMetrics({ registry, scheduler, background }), useLimits(), useAuth(keys), useRoles(), useReadScheduling(readClient)],
    graphqlEndpoint: GRAPHQL_PATH,
    healthCheckEndpoint: HEALTH_PATH,
    landingPage: false,
    graphiql: { title: 'MCP audit analytics' },
    // GraphiQL from the installed package (scripts and styles inline), so it works with no internet.
    renderGraphiQL,
    // The dashboard is served from this origin; other origins get no CORS grant.
    cors: false,
    // Yoga logs every error it masks through this logger: log the cause, with its stack; a request whose
    // client went away (its reads were dropped) is routine, a debug line without a stack.
    logging: {
      debug: (...args: unknown[]) => logger.debug({ args }, 'graphql-yoga'),
      info: (...args: unknown[]) => logger.info({ args }, 'graphql-yoga'),
      warn: (...args: unknown[]) => logger.warn({ args }, 'graphql-yoga'),
      error: (...args: unknown[]) => {
        if (isClientGone(args[0])) logger.debug({ path: args[0] instanceof GraphQLError ? args[0].path : undefined }, 'graphql request abandoned: the client went away');
        else logger.error(describeError(args[0]), 'graphql request failed');
      },
    },
    // Errors we create (GraphQLError with extensions.code, e.g. BAD_USER_INPUT) reach the client as
    // they are; anything else becomes "Unexpected error." Never revealed, whatever NODE_ENV says.
    maskedErrors: { isDev: false },
  });
  const serveUi = createStaticHandler(uiDir, logger);
  const chargeback = createChargebackHandler({ reads: readClient, keys, logger });

  return {
    scheduler,
    registry,
    settled: () => ('settled' in closedBuckets ? (closedBuckets as ClosedBucketCache).settled() : Promise.resolve()),
    handle(req, res) {
      const pathname = (req.url ?? '/').split('?', 1)[0]!;
      if (pathname === GRAPHQL_PATH || pathname === HEALTH_PATH) {
        void yoga(req, res);
        return;
      }
      if (pathname === CHARGEBACK_PATH) {
        void chargeback(req, res);
        return;
      }
      if (API_PREFIXES.some((p) => pathname.startsWith(p))) {
        sendText(res, 404, `Not found: ${req.method} ${pathname}. The GraphQL API is at ${GRAPHQL_PATH}.\n`);
        return;
      }
      serveUi(req, res, pathname).catch((err: unknown) => {
        logger.error({ err, url: req.url }, 'serving the dashboard failed');
        if (!res.headersSent) sendText(res, 500, 'Internal server error\n');
        else res.destroy();
      });
    },
  };
}

/**
 * An error that only says the request's signal aborted: the client closed the connection (whatwg-node
 * aborts the request's signal then, and the read scheduler rejects that request's waiting reads with the
 * signal's reason). Decided by the DOMException's name, its type.
 */
function isClientGone(error: unknown): boolean {
  const cause = error instanceof GraphQLError ? error.originalError : error;
  return cause instanceof DOMException && cause.name === 'AbortError';
}

function describeError(error: unknown): Record<string, unknown> {
  if (error instanceof GraphQLError) return { err: error.originalError ?? error, path: error.path };
  return { err: error };
}

// ---- the dashboard's static files -------------------------------------------------------------------

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};

/** Vite puts content-hashed files here: their name changes whenever their content does. */
const HASHED_ASSETS = '/assets/';
const IMMUTABLE = 'public, max-age=31536000, immutable';
const REVALIDATE = 'no-cache';

type StaticHandler = (req: IncomingMessage, res: ServerResponse, pathname: string) => Promise<void>;

function createStaticHandler(uiDir: string | undefined, logger: Logger): StaticHandler {
  const root = uiDir === undefined ? undefined : path.resolve(uiDir);
  let warned = false;

  return async (req, res, pathname) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendText(res, 405, `Method ${req.method} not allowed here. The GraphQL API is at ${GRAPHQL_PATH}.\n`);
      return;
    }
    if (root !== undefined) {
      const file = resolveInside(root, pathname);
      if (file === null) return sendText(res, 400, 'Bad path\n');
      const hashed = pathname.startsWith(HASHED_ASSETS);
      if (await sendFile(req, res, file, hashed)) return;
      // A missing hashed asset is a real 404: a browser must not get HTML for a script.
      if (hashed) return sendText(res, 404, 'Not found\n');
      // Any other path is a dashboard route: index.html, which routes on the client.
      if (await sendFile(req, res, path.join(root, 'index.html'), false)) return;
    }
    if (!warned) {
      warned = true;
      logger.warn({ uiDir: root ?? null }, 'dashboard not built: run `npm run build:ui`');
    }
    sendHtml(res, 404, NOT_BUILT_PAGE);
  };
}

/**
 * The file a URL path names inside root; null when the path is malformed or escapes root
 * (`..`, encoded separators, NUL bytes).
 */
function resolveInside(root: string, pathname: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const file = path.resolve(root, `.${path.posix.normalize(`/${decoded}`)}`);
  return file === root || file.startsWith(root + path.sep) ? file : null;
}

/** Sends the file when it exists and is a regular file; false otherwise (nothing sent). */
async function sendFile(req: IncomingMessage, res: ServerResponse, file: string, immutable: boolean): Promise<boolean> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) return false;

  const etag = `W/"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
  res.setHeader('Content-Type', CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream');
  res.setHeader('Cache-Control', immutable ? IMMUTABLE : REVALIDATE);
  res.setHeader('ETag', etag);
  res.setHeader('Last-Modified', info.mtime.toUTCString());
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (req.headers['if-none-match'] === etag) {
    res.statusCode = 304;
    res.end();
    return true;
  }
  res.statusCode = 200;
  res.setHeader('Content-Length', info.size);
  if (req.method === 'HEAD') {
    res.end();
    return true;
  }
  await new Promise<void>((resolve, reject) => {
    const stream = createReadStream(file);
    stream.on('error', reject);
    res.on('close', resolve);
    stream.pipe(res);
  });
  return true;
}

function sendText(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(body);
}

function sendHtml(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': REVALIDATE,
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(body);
}

const NOT_BUILT_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>MCP audit analytics</title>
<p>The dashboard is not built. Run <code>npm run build:ui</code> (or <code>npm install</code>), then reload.</p>
<p>The GraphQL API is at <a href="${GRAPHQL_PATH}">${GRAPHQL_PATH}</a>.</p>
`;
