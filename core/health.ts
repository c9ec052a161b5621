/**
 * `/healthz`: the process is alive. `/readyz`: it can do its job now (every check passes and it is
 * not shutting down); a load balancer stops sending traffic when it is not.
 */
import type http from 'node:http';
import { sendJson } from './http-server.ts';

export type Check = () => Promise<void>;

export interface Health {
  addCheck(name: string, check: Check): void;
  setShuttingDown(): void;
  /** Answers `/healthz` and `/readyz`; returns false for any other path. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): boolean;
}

export function createHealth(): Health {
  const checks = new Map<string, Check>();
  let shuttingDown = false;

  async function readiness(): Promise<{ ready: boolean; checks: Record<string, string> }> {
    const results: Record<string, string> = {};
    await Promise.all(
      [...checks].map(async ([name, check]) => {
        try {
          await withTimeout(check(), 2000);
          results[name] = 'ok';
        } catch (error) {
          results[name] = (error as Error).message || 'failed';
        }
      }),
    );
    if (shuttingDown) results.shutdown = 'shutting down';
    return { ready: Object.values(results).every((r) => r === 'ok'), checks: results };
  }

  return {
    addCheck: (name, check) => void checks.set(name, check),
    setShuttingDown: () => void (shuttingDown = true),
    handle(req, res) {
      const path = req.url?.split('?')[0];
      if (path === '/healthz') {
        sendJson(res, 200, { status: 'ok' });
        return true;
      }
      if (path === '/readyz') {
        readiness().then(
          (r) => sendJson(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', checks: r.checks }),
          () => sendJson(res, 503, { status: 'not ready' }),
        );
        return true;
      }
      return false;
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer));
}
