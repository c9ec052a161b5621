/**
 * The API bench's clients: concurrent loops of requests, timed as a client sees them, and the GraphQL
 * client they send with.
 *
 * The timed clients run in a process of their own (`ClientProcess`, this file forked), as a dashboard or
 * a script would: their HTTP and JSON work does not share the API's event loop, and the API process's
 * RSS is the API's and its engine's. They still share the machine's cores with it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

export interface Timing {
  times: number[];
  /** The warm-up call's time. */
  first?: number;
  error?: string;
  /** CPU milliseconds of the clients' process over the calls, warm-up included (ClientProcess only). */
  clientCpuMs?: number;
}

/**
 * Up to `count` calls over `clients` concurrent loops, stopping at the budget, after one warm-up call
 * (timed alone: `first`), `warm` when given, and one untimed call per client at once. Without that
 * round the timed calls began as a burst of `clients` in lockstep, each the first to read what the
 * warm-up left behind (a cache entry just filled, its parts' marks), and that burst could set the p99 alone.
 */
export async function drive(
  clients: number,
  count: number,
  budgetMs: number,
  call: (i: number) => Promise<unknown>,
  warm?: () => Promise<void>,
): Promise<Timing> {
  const times: number[] = [];
  let first: number;
  try {
    const started = performance.now();
    await call(count); // warm-up, with an index no timed call uses
    first = performance.now() - started;
    await warm?.();
    await Promise.all(Array.from({ length: clients }, (_, k) => call(count + 1 + k)));
  } catch (error) {
    return { times, error: (error as Error).message };
  }
  const deadline = performance.now() + budgetMs;
  let next = 0;
  let failure: string | undefined;
  const loop = async () => {
    while (next < count && failure === undefined && performance.now() < deadline) {
      const i = next++;
      const started = performance.now();
      try {
        await call(i);
      } catch (error) {
        failure = (error as Error).message;
        return;
      }
      times.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: clients }, loop));
  return { times, first, error: failure };
}

export class GraphQLClient {
  constructor(
    readonly url: string,
    readonly key: string,
  ) {}

  async request(query: string): Promise<Record<string, unknown>> {
    const response = await fetch(this.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${this.key}` },
      body: JSON.stringify({ query }),
    });
    const text = await response.text();
    let body: { data?: Record<string, unknown>; errors?: { message: string; extensions?: { code?: string } }[] };
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`HTTP ${response.status}: ${text.slice(0, 200)}`);
    }
    if (body.errors?.length) {
      const e = body.errors[0]!;
      throw new Error(`${e.extensions?.code ?? `HTTP ${response.status}`}: ${e.message}`);
    }
    if (!response.ok || !body.data) throw new Error(`HTTP ${response.status}: ${text.slice(0, 200)}`);
    return body.data;
  }
}

/** One operation's requests: `queries[i]` is request i's document (`count` timed, then the warm-up, then one per client). */
interface DriveMessage {
  url: string;
  key: string;
  clients: number;
  count: number;
  budgetMs: number;
  queries: string[];
  /** Ask the parent, after the warm-up, to wait for the API's background work (`warmed`, answered by `go`). */
  settle: boolean;
}

type FromClients = { type: 'warmed' } | { type: 'done'; timing: Timing };

/** The clients' process, driven one operation at a time. */
export class ClientProcess {
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  constructor() {
    this.child = fork(fileURLToPath(import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  /** `drive` in the clients' process, sending `query(i)` to `client`; `warm` runs here, between the warm-up and the timed calls. */
  drive(client: GraphQLClient, clients: number, count: number, budgetMs: number, query: (i: number) => string, warm?: () => Promise<void>): Promise<Timing> {
    const message: DriveMessage = {
      url: client.url,
      key: client.key,
      clients,
      count,
      budgetMs,
      queries: Array.from({ length: count + 1 + clients }, (_, i) => query(i)),
      settle: warm !== undefined,
    };
    return new Promise((resolve, reject) => {
      // However the operation ends, its listeners go, so the next operation's messages are its own.
      const done = () => {
        this.child.off('message', onMessage);
        this.child.off('exit', onExit);
      };
      const fail = (error: unknown) => {
        done();
        reject(error);
      };
      const onExit = (code: number | null) => fail(new Error(`the clients' process exited (${code}) during an operation`));
      const onMessage = (m: FromClients) => {
        if (m.type === 'warmed') {
          warm!().then(() => this.child.send('go'), fail);
          return;
        }
        done();
        resolve(m.timing);
      };
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
      this.child.send(message);
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null) this.child.disconnect();
    await this.exited;
  }
}

function serveDrives(): void {
  let go: (() => void) | undefined;
  process.on('message', (m: DriveMessage | 'go') => {
    if (m === 'go') {
      go?.();
      return;
    }
    const client = new GraphQLClient(m.url, m.key);
    const warm = m.settle
      ? () =>
          new Promise<void>((resolve) => {
            go = resolve;
            process.send!({ type: 'warmed' } satisfies FromClients);
          })
      : undefined;
    const cpu = process.cpuUsage();
    void drive(m.clients, m.count, m.budgetMs, (i) => client.request(m.queries[i]!), warm).then((timing) => {
      const used = process.cpuUsage(cpu);
      process.send!({ type: 'done', timing: { ...timing, clientCpuMs: (used.user + used.system) / 1000 } } satisfies FromClients);
    });
  });
  // The parent's disconnect (or its exit) ends this process.
  process.on('disconnect', () => process.exit(0));
}

if (process.send && fileURLToPath(import.meta.url) === process.argv[1]) serveDrives();
