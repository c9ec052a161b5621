/**
 * The demo's MCP gateway: an `McpServer` per session over the SDK's Streamable HTTP transport, with six
 * tools in four services, instrumented by the collector like any TypeScript gateway would be.
 *
 *   users.Users.Get, users.Users.List      users:read      a database lookup, ~15 / ~45 ms
 *   billing.Invoices.Get                   billing:read    ~35 ms
 *   billing.Invoices.Create                billing:write   a payment provider call, ~180 ms, fails now and then
 *   search.Docs.Query                      search:read     ~120 ms, a long tail
 *   files.Files.Read                       files:read      ~25 ms, unknown paths fail
 *
 * Policy, as a gateway enforces it: a bearer token names the account and its scopes; a call without
 * the tool's scope, or over the account's rate limit (10 calls/s, bursts of 20), is denied with the
 * collector's `ToolDeniedError`, so it is audited as a denial. Latencies are log-normal; each tool
 * opens a child span for its backend, so traces have more than one level.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { ToolDeniedError, type Collector } from '../collector/index.ts';
import type { Random } from './random.ts';

/** What the gateway's backends hold: agents pick arguments from this (and sometimes miss). */
export const DEMO_DATA = {
  firstUserId: 1001,
  users: 400,
  firstInvoiceId: 20001,
  invoices: 4000,
  files: [
    'README.md',
    'docs/architecture.md',
    'docs/runbook.md',
    'src/index.ts',
    'src/api/routes.ts',
    'src/db/schema.sql',
    'exports/users/part-0001.csv',
    'exports/users/part-0002.csv',
    'exports/users/part-0003.csv',
    'exports/users/part-0004.csv',
    'exports/users/part-0006.csv',
  ],
  approvalLimitUsd: 10_000,
} as const;

export interface Account {
  accountId: string;
  scopes: string[];
}

export interface GatewayOptions {
  collector: Collector;
  /** Bearer token → account. */
  accounts: ReadonlyMap<string, Account>;
  /** Latencies and backend failures. */
  random: Random;
  host?: string;
  port?: number;
}

export interface GatewayStats {
  calls: number;
  errors: number;
  denied: number;
  sessions: number;
}

export interface Gateway {
  /** The MCP endpoint, e.g. `http://127.0.0.1:51234/mcp`. */
  url: string;
  stats(): GatewayStats;
  close(): Promise<void>;
}

const RATE_PER_SECOND = 10;
const RATE_BURST = 20;
const MAX_BODY_BYTES = 1024 * 1024;

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { collector, accounts, random } = options;
  const tracer = trace.getTracer('demo-gateway', '0.1.0');
  const counts = { calls: 0, errors: 0, denied: 0 };
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const buckets = new Map<string, { tokens: number; at: number }>();

  /** Token bucket per account: false when the call is over the limit. */
  function withinRateLimit(accountId: string): boolean {
    const now = Date.now();
    const bucket = buckets.get(accountId) ?? { tokens: RATE_BURST, at: now };
    bucket.tokens = Math.min(RATE_BURST, bucket.tokens + ((now - bucket.at) / 1000) * RATE_PER_SECOND);
    bucket.at = now;
    buckets.set(accountId, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** The gateway's policy, then the tool: counted, and denials thrown as ToolDeniedError. */
  function guarded<A>(scope: string, run: (args: A) => Promise<unknown>) {
    return async (args: A, extra: { authInfo?: AuthInfo }) => {
      counts.calls++;
      try {
        const auth = extra.authInfo;
        if (!auth?.scopes.includes(scope)) throw new ToolDeniedError(`missing scope ${scope}`, { scopesRequired: [scope] });
        if (!withinRateLimit(auth.clientId)) {
          throw new ToolDeniedError(`rate limit of ${RATE_PER_SECOND} calls/s exceeded`, { scopesRequired: [scope], rateLimited: true });
        }
        const result = await run(args);
        return { content: [{ type: 'text' as const, text: JSON.stringify(result) }] };
      } catch (error) {
        if (error instanceof ToolDeniedError) counts.denied++;
        else counts.errors++;
        throw error;
      }
    };
  }

  /** A backend call: a CLIENT span under the tool call, a log-normal wait, maybe a failure. */
  async function backend<T>(name: string, attributes: Record<string, string>, medianMs: number, sigma: number, work: () => T): Promise<T> {
    return tracer.startActiveSpan(name, { kind: SpanKind.CLIENT, attributes }, async (span) => {
      try {
        await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, random.logNormal(medianMs, sigma))));
        return work();
      } catch (error) {
        span.recordException(error as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
        throw error;
      } finally {
        span.end();
      }
    });
  }

  const db = (statement: string) => ({ 'db.system': 'postgresql', 'db.statement': statement });
  const userExists = (id: string) => {
    const n = Number(id.replace(/^u-/, ''));
    return Number.isInteger(n) && n >= DEMO_DATA.firstUserId && n < DEMO_DATA.firstUserId + DEMO_DATA.users;
  };

  function createServer(): McpServer {
    const server = new McpServer({ name: 'demo-gateway', version: '0.1.0' });

    server.registerTool(
      'users.Users.Get',
      { description: 'One user by id', inputSchema: { id: z.string() } },
      guarded('users:read', ({ id }: { id: string }) =>
        backend('SELECT users', db('SELECT * FROM users WHERE id = $1'), 15, 0.5, () => {
          if (!userExists(id)) throw new Error(`user ${id} not found`);
          return { id, name: `User ${id}`, plan: Number(id.slice(2)) % 3 === 0 ? 'enterprise' : 'team' };
        }),
      ),
    );
    server.registerTool(
      'users.Users.List',
      { description: 'A page of users', inputSchema: { page: z.number().int().min(1), pageSize: z.number().int().max(200).optional() } },
      guarded('users:read', ({ page, pageSize = 50 }: { page: number; pageSize?: number | undefined }) =>
        backend('SELECT users', db('SELECT * FROM users ORDER BY id LIMIT $1 OFFSET $2'), 45, 0.6, () => {
          const from = DEMO_DATA.firstUserId + (page - 1) * pageSize;
          const to = Math.min(DEMO_DATA.firstUserId + DEMO_DATA.users, from + pageSize);
          return { page, users: Array.from({ length: Math.max(0, to - from) }, (_, i) => `u-${from + i}`) };
        }),
      ),
    );
    server.registerTool(
      'billing.Invoices.Get',
      { description: 'One invoice', inputSchema: { id: z.string() } },
      guarded('billing:read', ({ id }: { id: string }) =>
        backend('SELECT invoices', db('SELECT * FROM invoices WHERE id = $1'), 35, 0.5, () => {
          const n = Number(id.replace(/^inv-/, ''));
          if (!(n >= DEMO_DATA.firstInvoiceId && n < DEMO_DATA.firstInvoiceId + DEMO_DATA.invoices)) throw new Error(`invoice ${id} not found`);
          return { id, amountUsd: (n % 977) + 0.99, status: n % 5 === 0 ? 'overdue' : 'paid' };
        }),
      ),
    );
    server.registerTool(
      'billing.Invoices.Create',
      { description: 'Bill a customer', inputSchema: { customerId: z.string(), amountUsd: z.number().positive() } },
      guarded('billing:write', async ({ customerId, amountUsd }: { customerId: string; amountUsd: number }) => {
        if (amountUsd > DEMO_DATA.approvalLimitUsd) throw new Error(`amount ${amountUsd} USD is over the approval limit of ${DEMO_DATA.approvalLimitUsd} USD`);
        const charge = await backend('POST /v1/charges', { 'http.request.method': 'POST', 'server.address': 'payments.example.com' }, 180, 0.5, () => {
          if (random.chance(0.03)) throw new Error('payment provider timed out');
          return { charge: `ch_${randomUUID().slice(0, 8)}` };
        });
        return { id: `inv-${DEMO_DATA.firstInvoiceId + DEMO_DATA.invoices + random.int(0, 1e6)}`, customerId, amountUsd, ...charge };
      }),
    );
    server.registerTool(
      'search.Docs.Query',
      { description: 'Full-text search over the docs', inputSchema: { q: z.string(), limit: z.number().int().max(50).optional() } },
      guarded('search:read', ({ q, limit = 10 }: { q: string; limit?: number | undefined }) =>
        backend('search docs-v3', { 'db.system': 'opensearch', 'db.operation': 'search' }, 120, 0.8, () => {
          if (random.chance(0.02)) throw new Error('search cluster: shard failure');
          return { q, hits: Array.from({ length: Math.min(limit, 3) }, (_, i) => ({ doc: DEMO_DATA.files[i % 6], score: 1 / (i + 1) })) };
        }),
      ),
    );
    server.registerTool(
      'files.Files.Read',
      { description: 'Read a file from the workspace', inputSchema: { path: z.string() } },
      guarded('files:read', ({ path }: { path: string }) =>
        backend('GET object', { 'rpc.system': 's3', 'server.address': 'files.internal' }, 25, 0.7, () => {
          if (!(DEMO_DATA.files as readonly string[]).includes(path)) throw new Error(`ENOENT: no such file ${path}`);
          return { path, bytes: 512 + (path.length * 97) % 4096 };
        }),
      ),
    );
    return server;
  }

  async function handle(req: http.IncomingMessage & { auth?: AuthInfo }, res: http.ServerResponse): Promise<void> {
    if ((req.url ?? '').split('?')[0] !== '/mcp') return reply(res, 404, { error: 'the MCP endpoint is /mcp' });
    const token = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const account = token === undefined ? undefined : accounts.get(token);
    if (token === undefined || account === undefined) return reply(res, 401, { error: 'a valid bearer token is required' });
    req.auth = { token, clientId: account.accountId, scopes: account.scopes };

    const sessionHeader = req.headers['mcp-session-id'];
    let transport = typeof sessionHeader === 'string' ? sessions.get(sessionHeader) : undefined;
    if (req.method !== 'POST') {
      if (!transport) return reply(res, 404, { error: 'unknown session' });
      return transport.handleRequest(req, res);
    }
    const body = await readJson(req);
    if (!transport) {
      if (sessionHeader !== undefined || !isInitializeRequest(body)) {
        return reply(res, 404, { jsonrpc: '2.0', error: { code: -32000, message: 'unknown session; initialize first' }, id: null });
      }
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        enableJsonResponse: true,
        onsessioninitialized: (id) => void sessions.set(id, created),
      });
      created.onclose = () => {
        if (created.sessionId) sessions.delete(created.sessionId);
      };
      const server = createServer();
      collector.instrumentServer(server);
      await server.connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res, body);
  }

  const httpServer = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) reply(res, 400, { error: (error as Error).message });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve);
  });
  const { address, port } = httpServer.address() as AddressInfo;

  return {
    url: `http://${address}:${port}/mcp`,
    stats: () => ({ ...counts, sessions: sessions.size }),
    async close() {
      await Promise.allSettled([...sessions.values()].map((t) => t.close()));
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
    },
  };
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
}
