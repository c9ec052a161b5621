/** Runs the product (`bin/start.ts`) as a child process, as a user or an orchestrator would. */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

const root = new URL('../../', import.meta.url).pathname;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export async function waitFor(url: string, deadlineMs: number, ok: (res: Response, body: string) => boolean = (res) => res.ok): Promise<string> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      const res = await fetch(url);
      const body = await res.text();
      if (ok(res, body)) return body;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not as expected within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface Product {
  child: ChildProcess;
  port: number;
  logs(): string;
  exited: Promise<number | null>;
}

/** Starts the product with `env` on top of ours and waits for /readyz on PORT. */
export async function startProduct(env: Record<string, string>, readyMs = 60_000): Promise<Product> {
  const port = Number(env.PORT ?? (await freePort()));
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/start.ts'], {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: 'info', KAFKA_BROKERS: '', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stdout!.on('data', (chunk) => (logs += chunk));
  child.stderr!.on('data', (chunk) => (logs += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const product = { child, port, logs: () => logs, exited };
  await Promise.race([
    waitFor(`http://127.0.0.1:${port}/readyz`, readyMs),
    exited.then((code) => {
      throw new Error(`the product exited (${code}) before it was ready:\n${logs}`);
    }),
  ]);
  return product;
}

/** Sum of a Prometheus counter from the product's /metrics. */
export async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}
