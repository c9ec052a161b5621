/**
 * The demo's agents: five MCP SDK clients, each with its own clientInfo (what the collector records as
 * `agent` / `agent_version`), bearer token (account and scopes) and habits, talking to the gateway over
 * Streamable HTTP.
 *
 *   claude-desktop  a person's assistant: turns of 1-5 calls (search, files, users), pauses to read
 *   chatgpt         fewer turns; now and then tries to create an invoice without billing:write (denied)
 *   cursor          a coding agent: quick turns of file reads; every 4 minutes (first after 90 s) it
 *                   gets stuck for 20 s re-reading a missing file 25 times a second (errors, then
 *                   rate-limit denials): the abnormal agent
 *   support-bot     a steady stream of tickets: look up the user, the invoice, sometimes bill
 *   nightly-etl     a batch job every minute (a night, compressed), first 2 s after start: reads the
 *                   export files (one is missing) and pages through every user as fast as it can, over
 *                   the rate limit
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DEMO_DATA, type Account } from './gateway.ts';
import { createRandom, hash, type Random } from './random.ts';

export interface AgentContext {
  random: Random;
  /** Calls a tool; tool errors and denials are results, not exceptions. */
  call(tool: string, args: Record<string, unknown>): Promise<void>;
  /** Waits; false once the agent is stopped (the wait then ends early). */
  sleep(ms: number): Promise<boolean>;
  readonly stopped: boolean;
  /** Milliseconds since the agents started. */
  elapsedMs(): number;
}

export interface AgentProfile {
  name: string;
  version: string;
  token: string;
  account: Account;
  habit(ctx: AgentContext): Promise<void>;
}

export interface AgentsStats {
  /** Tool calls made (answered or not). */
  calls: number;
  /** Calls that got no answer (gateway gone, protocol error). */
  failed: number;
}

export interface Agents {
  stats(): AgentsStats;
  /** Ends every habit, closes every session. */
  stop(): Promise<void>;
}

// ---- what agents ask for ---------------------------------------------------------------------------

const MISSING_FILES = ['src/legacy/old-client.ts', 'notes/todo.md', 'docs/drafts/q3-plan.md', '.env.production'];
const QUERIES = ['rate limits', 'refund policy', 'oauth scopes', 'rollback a deploy', 'overdue invoices', 'sso setup', 'webhook retries'];

const userId = (r: Random, missing = 0): string =>
  r.chance(missing) ? `u-${9000 + r.int(0, 999)}` : `u-${DEMO_DATA.firstUserId + r.int(0, DEMO_DATA.users - 1)}`;
const invoiceId = (r: Random, missing = 0): string =>
  r.chance(missing) ? `inv-${90000 + r.int(0, 999)}` : `inv-${DEMO_DATA.firstInvoiceId + r.int(0, DEMO_DATA.invoices - 1)}`;
const filePath = (r: Random, missing = 0): string => (r.chance(missing) ? r.pick(MISSING_FILES) : r.pick(DEMO_DATA.files));
const search = (r: Random) => ({ q: r.pick(QUERIES), limit: r.pick([5, 10, 20]) });

type Step = (r: Random) => [tool: string, args: Record<string, unknown>];

/** A person-driven agent: a turn of a few calls in quick succession, then a pause. */
function interactive(options: { turnGapMs: number; callsPerTurn: [number, number]; stepGapMs: [number, number]; mix: [Step, number][] }) {
  return async (ctx: AgentContext): Promise<void> => {
    const r = ctx.random;
    let pause = r.int(200, 1_500); // the first request comes soon after the app opens
    while (await ctx.sleep(pause)) {
      for (let i = r.int(...options.callsPerTurn); i > 0 && !ctx.stopped; i--) {
        await ctx.call(...r.weighted(options.mix)(r));
        await ctx.sleep(r.int(...options.stepGapMs));
      }
      pause = r.exponential(options.turnGapMs);
    }
  };
}

const claudeDesktop = interactive({
  turnGapMs: 4_000,
  callsPerTurn: [1, 5],
  stepGapMs: [150, 600],
  mix: [
    [(r) => ['search.Docs.Query', search(r)], 40],
    [(r) => ['files.Files.Read', { path: filePath(r, 0.1) }], 35],
    [(r) => ['users.Users.Get', { id: userId(r, 0.05) }], 25],
  ],
});

const chatgpt = interactive({
  turnGapMs: 5_000,
  callsPerTurn: [1, 3],
  stepGapMs: [300, 900],
  mix: [
    [(r) => ['search.Docs.Query', search(r)], 45],
    [(r) => ['users.Users.Get', { id: userId(r, 0.03) }], 25],
    [(r) => ['billing.Invoices.Get', { id: invoiceId(r, 0.05) }], 20],
    [(r) => ['billing.Invoices.Create', { customerId: userId(r), amountUsd: Math.round(r.logNormal(90, 0.6) * 100) / 100 }], 10],
  ],
});

const CURSOR_ANOMALY_EVERY_MS = 4 * 60_000;
const CURSOR_ANOMALY_FIRST_MS = 90_000;
const CURSOR_ANOMALY_LENGTH_MS = 20_000;

async function cursor(ctx: AgentContext): Promise<void> {
  const normal = interactive({
    turnGapMs: 2_500,
    callsPerTurn: [2, 6],
    stepGapMs: [80, 250],
    mix: [
      [(rr) => ['files.Files.Read', { path: filePath(rr, 0.08) }], 70],
      [(rr) => ['search.Docs.Query', search(rr)], 30],
    ],
  });
  const stuck = () => {
    const t = ctx.elapsedMs() - CURSOR_ANOMALY_FIRST_MS;
    return t >= 0 && t % CURSOR_ANOMALY_EVERY_MS < CURSOR_ANOMALY_LENGTH_MS;
  };
  // Its normal habit, seen through a context that ends (between two calls) once the loop is due.
  const untilStuck: AgentContext = {
    ...ctx,
    sleep: async (ms) => !stuck() && (await ctx.sleep(ms)) && !stuck(),
    get stopped() {
      return ctx.stopped || stuck();
    },
  };
  while (!ctx.stopped) {
    if (stuck()) {
      // The same failing read, retried without backoff: what an agent loop gone wrong looks like.
      await Promise.all([ctx.call('files.Files.Read', { path: 'src/generated/api-client.ts' }), ctx.sleep(40)]);
    } else {
      await normal(untilStuck);
    }
  }
}

async function supportBot(ctx: AgentContext): Promise<void> {
  const r = ctx.random;
  let gap = r.int(100, 1_000);
  while (await ctx.sleep(gap)) {
    gap = r.exponential(1_500);
    const customer = userId(r, 0.04);
    await ctx.call('users.Users.Get', { id: customer });
    await ctx.call('billing.Invoices.Get', { id: invoiceId(r, 0.02) });
    if (r.chance(0.3)) {
      const amountUsd = r.chance(0.05) ? r.int(12_000, 25_000) : Math.round(r.logNormal(120, 0.7) * 100) / 100;
      await ctx.call('billing.Invoices.Create', { customerId: customer, amountUsd });
    }
  }
}

const ETL_EVERY_MS = 60_000;
const ETL_FIRST_MS = 2_000;

async function nightlyEtl(ctx: AgentContext): Promise<void> {
  let next = ETL_FIRST_MS;
  while (await ctx.sleep(next - ctx.elapsedMs())) {
    next += ETL_EVERY_MS;
    // The export parts, three at a time; part 5 was never written.
    const parts = Array.from({ length: 6 }, (_, i) => `exports/users/part-${String(i + 1).padStart(4, '0')}.csv`);
    await inParallel(parts, 3, (path) => ctx.call('files.Files.Read', { path }), ctx);
    // Every user, ten per page, four pages at a time: well over the gateway's rate limit.
    const pages = Array.from({ length: Math.ceil(DEMO_DATA.users / 10) }, (_, i) => i + 1);
    await inParallel(pages, 4, (page) => ctx.call('users.Users.List', { page, pageSize: 10 }), ctx);
  }
}

async function inParallel<T>(items: T[], width: number, run: (item: T) => Promise<void>, ctx: AgentContext): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length && !ctx.stopped) await run(items[next++]!);
  };
  await Promise.all(Array.from({ length: width }, lane));
}

export const AGENTS: readonly AgentProfile[] = [
  { name: 'claude-desktop', version: '0.14.10', token: 'demo-token-alice', account: { accountId: 'acct-alice', scopes: ['users:read', 'search:read', 'files:read'] }, habit: claudeDesktop },
  { name: 'chatgpt', version: '1.2025.330', token: 'demo-token-bob', account: { accountId: 'acct-bob', scopes: ['users:read', 'search:read', 'billing:read'] }, habit: chatgpt },
  { name: 'cursor', version: '1.7.2', token: 'demo-token-carol', account: { accountId: 'acct-carol', scopes: ['files:read', 'search:read'] }, habit: cursor },
  { name: 'support-bot', version: '2.3.1', token: 'demo-token-support', account: { accountId: 'svc-support', scopes: ['users:read', 'billing:read', 'billing:write'] }, habit: supportBot },
  { name: 'nightly-etl', version: '1.0.0', token: 'demo-token-etl', account: { accountId: 'svc-etl', scopes: ['users:read', 'files:read'] }, habit: nightlyEtl },
];

// ---- running them ----------------------------------------------------------------------------------

export interface StartAgentsOptions {
  /** The gateway's MCP endpoint. */
  url: string;
  seed: number;
  profiles?: readonly AgentProfile[];
  /** Told about calls that got no answer (not about tool errors or denials: those are answers). */
  onFailure?(agent: string, error: unknown): void;
}

export async function startAgents(options: StartAgentsOptions): Promise<Agents> {
  const profiles = options.profiles ?? AGENTS;
  const counts: AgentsStats = { calls: 0, failed: 0 };
  const stop = new AbortController();
  const started = Date.now();

  const sleep = (ms: number): Promise<boolean> =>
    new Promise((resolve) => {
      if (stop.signal.aborted) return resolve(false);
      const done = () => {
        clearTimeout(timer);
        resolve(!stop.signal.aborted);
      };
      const timer = setTimeout(() => {
        stop.signal.removeEventListener('abort', done);
        done();
      }, Math.max(0, ms));
      stop.signal.addEventListener('abort', done, { once: true });
    });

  const connected = await Promise.all(
    profiles.map(async (profile) => {
      const client = new Client({ name: profile.name, version: profile.version });
      const transport = new StreamableHTTPClientTransport(new URL(options.url), {
        requestInit: { headers: { authorization: `Bearer ${profile.token}` } },
      });
      await client.connect(transport);
      return { profile, client, transport };
    }),
  );

  const running = connected.map(async ({ profile, client }) => {
    const ctx: AgentContext = {
      random: createRandom(hash(`${options.seed}/${profile.name}`)),
      async call(tool, args) {
        if (stop.signal.aborted) return;
        counts.calls++;
        try {
          await client.callTool({ name: tool, arguments: args });
        } catch (error) {
          counts.failed++;
          options.onFailure?.(profile.name, error);
        }
      },
      sleep,
      get stopped() {
        return stop.signal.aborted;
      },
      elapsedMs: () => Date.now() - started,
    };
    try {
      await profile.habit(ctx);
    } catch (error) {
      options.onFailure?.(profile.name, error);
    }
  });

  return {
    stats: () => ({ ...counts }),
    async stop() {
      stop.abort();
      await Promise.all(running);
      await Promise.allSettled(
        connected.map(async ({ client, transport }) => {
          await transport.terminateSession();
          await client.close();
        }),
      );
    },
  };
}
