/**
 * A fair queue in front of ClickHouse reads. Each caller (API key) has its own queue; a free slot goes
 * to the waiting caller with the fewest reads running, and among those to the one served longest ago.
 * So one caller's 500 queued reads delay another caller's read by at most the reads already running,
 * instead of all 500 (the embedded engine runs parameterised queries one at a time per process, so
 * without this a heavy caller stalls every dashboard). A caller's queue is capped: beyond it, reads are
 * refused with TOO_MANY_REQUESTS (HTTP 429) instead of piling up.
 */
import { createGraphQLError } from 'graphql-yoga';

export interface ReadSchedulerOptions {
  /** Reads sent to ClickHouse at once, all callers together. */
  concurrency: number;
  /** Reads one caller may have waiting (not yet sent) before more are refused. */
  maxQueuedPerCaller: number;
}

export interface ReadScheduler {
  /**
   * Runs `read` when the caller's turn comes; throws TOO_MANY_REQUESTS when the caller's queue is full.
   * A read whose `signal` aborts while it waits (its request went away) leaves the queue unrun.
   */
  run<T>(caller: string, read: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Reads running now. */
  readonly running: number;
  /** Reads waiting, all callers together, or one caller's. */
  queued(caller?: string): number;
  /** Reads dropped unrun since the start because their request went away while they waited. */
  readonly cancelled: number;
}

interface Waiting {
  start(): void;
}

function aborted(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The read was cancelled', 'AbortError');
}

interface CallerQueue {
  waiting: Waiting[];
  running: number;
  /** When this caller last got a slot (a sequence number, not a time). */
  lastServed: number;
}

export function tooManyRequests(limit: number) {
  return createGraphQLError(`Too many reads waiting for this API key (${limit}); retry when earlier requests have answered.`, {
    extensions: { code: 'TOO_MANY_REQUESTS', limit, http: { status: 429, spec: false, headers: { 'Retry-After': '1' } } },
  });
}

export function createReadScheduler({ concurrency, maxQueuedPerCaller }: ReadSchedulerOptions): ReadScheduler {
  if (!(concurrency >= 1) || !(maxQueuedPerCaller >= 1)) throw new RangeError('concurrency and maxQueuedPerCaller must be at least 1');
  const callers = new Map<string, CallerQueue>();
  let running = 0;
  let served = 0;
  let cancelled = 0;

  function next(): [string, CallerQueue] | undefined {
    let best: [string, CallerQueue] | undefined;
    for (const entry of callers) {
      const q = entry[1];
      if (q.waiting.length === 0) continue;
      if (!best || q.running < best[1].running || (q.running === best[1].running && q.lastServed < best[1].lastServed)) best = entry;
    }
    return best;
  }

  function dispatch(): void {
    while (running < concurrency) {
      const picked = next();
      if (!picked) return;
      const q = picked[1];
      q.lastServed = ++served;
      q.waiting.shift()!.start();
    }
  }

  return {
    run<T>(caller: string, read: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      if (signal?.aborted) return Promise.reject(aborted(signal));
      let q = callers.get(caller);
      if (!q) callers.set(caller, (q = { waiting: [], running: 0, lastServed: 0 }));
      if (q.waiting.length >= maxQueuedPerCaller) return Promise.reject(tooManyRequests(maxQueuedPerCaller));
      const queue = q;
      return new Promise<T>((resolve, reject) => {
        const onAbort = () => {
          const at = queue.waiting.indexOf(waiting);
          if (at < 0) return; // started already: the read itself sees the signal
          queue.waiting.splice(at, 1);
          if (queue.running === 0 && queue.waiting.length === 0) callers.delete(caller);
          cancelled++;
          reject(aborted(signal!));
        };
        const waiting: Waiting = {
          start() {
            signal?.removeEventListener('abort', onAbort);
            running++;
            queue.running++;
            Promise.resolve()
              .then(read)
              .then(resolve, reject)
              .finally(() => {
                running--;
                queue.running--;
                if (queue.running === 0 && queue.waiting.length === 0) callers.delete(caller);
                dispatch();
              });
          },
        };
        queue.waiting.push(waiting);
        signal?.addEventListener('abort', onAbort, { once: true });
        dispatch();
      });
    },
    get running() {
      return running;
    },
    get cancelled() {
      return cancelled;
    },
    queued(caller?: string) {
      if (caller !== undefined) return callers.get(caller)?.waiting.length ?? 0;
      let n = 0;
      for (const q of callers.values()) n += q.waiting.length;
      return n;
    },
  };
}
