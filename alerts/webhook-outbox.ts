/**
 * Webhook delivery that survives a restart: each delivery is first written as a file under the
 * outbox directory (DATA_DIR/alert-outbox), then POSTed until the receiver answers 2xx, and only then
 * removed. A failed attempt waits a jittered, doubling delay. At least once: a receiver can see a
 * delivery twice (after a crash between its 2xx and the file's removal) and dedupes on `deliveryId`.
 * The body is signed: `X-Signature-256: sha256=<hex HMAC-SHA256 of the body with ALERT_WEBHOOK_SECRET>`.
 */
import { createHash, createHmac } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../core/logger.ts';
import type { Alert, AlertAction } from './alert-record.ts';
import { DETECTOR } from './lifecycle.ts';

export type WebhookFormat = 'json' | 'slack';

export interface Delivery {
  id: string;
  url: string;
  body: string;
}

export interface WebhookOutboxOptions {
  dir: string;
  secret?: string;
  logger: Logger;
  /** First retry delay; it doubles up to maxDelayMs, each drawn between half and all of it. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** How long one POST may take. */
  timeoutMs?: number;
  /** How often the outbox is looked at for due deliveries. */
  pollMs?: number;
}

export interface WebhookOutbox {
  /** Keeps the deliveries on disk (synced) before returning. */
  enqueue(deliveries: Delivery[]): Promise<void>;
  /** Sends every delivery that is due now; resolves with how many are still waiting. */
  flush(): Promise<number>;
  start(): void;
  stop(): Promise<void>;
}

/** What is announced: the detector's opened, escalated and resolved; a person's acknowledged and resolved. */
export type AnnouncedAction = Extract<AlertAction, 'opened' | 'escalated' | 'acknowledged' | 'resolved'>;

/**
 * One webhook delivery of an alert's change. `at` is when it happened (epoch ms) and `by` who did it:
 * `detector`, or the API key's name for a person's acknowledgement or resolution.
 */
export function deliveryOf(alert: Alert, action: AnnouncedAction, at: number, url: string, format: WebhookFormat, by = DETECTOR): Delivery {
  const id = createHash('sha256').update(JSON.stringify([alert.tenant, alert.id, action, at])).digest('hex').slice(0, 32);
  const kind = alert.kind.toLowerCase().replace(/_/g, ' ');
  const payload =
    format === 'slack'
      ? { text: `[${alert.severity}] ${kind} ${action}${by === DETECTOR ? '' : ` by ${by}`}: ${alert.sentence}`, deliveryId: id, alertId: alert.id }
      : {
          deliveryId: id,
          event: action,
          at: new Date(at).toISOString(),
          by,
          alert: {
            id: alert.id,
            tenant: alert.tenant,
            kind: alert.kind,
            severity: alert.severity,
            status: alert.status,
            subject: alert.subject,
            windowStart: new Date(alert.windowStart * 1000).toISOString(),
            windowEnd: new Date(alert.windowEnd * 1000).toISOString(),
            observed: alert.observed,
            expected: alert.expected,
            expectedLow: alert.expectedLow,
            expectedHigh: alert.expectedHigh,
            score: alert.score,
            sentence: alert.sentence,
            acknowledgedBy: alert.acknowledgedBy || null,
            acknowledgedAt: alert.acknowledgedAt === null ? null : new Date(alert.acknowledgedAt).toISOString(),
            resolvedBy: alert.resolvedBy || null,
            resolvedAt: alert.resolvedAt === null ? null : new Date(alert.resolvedAt).toISOString(),
          },
        };
  return { id, url, body: JSON.stringify(payload) };
}

export function signatureOf(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export function createWebhookOutbox(options: WebhookOutboxOptions): WebhookOutbox {
  const { dir, secret, logger } = options;
  const initialDelayMs = options.initialDelayMs ?? 1000;
  const maxDelayMs = options.maxDelayMs ?? 5 * 60_000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const pollMs = options.pollMs ?? 1000;
  /** Retry state of deliveries that failed in this process; a restart tries each once more at once. */
  const retries = new Map<string, { attempts: number; dueAt: number }>();
  let timer: NodeJS.Timeout | undefined;
  let sending: Promise<number> | undefined;
  let ready: Promise<unknown> | undefined;
  const ensureDir = () => (ready ??= mkdir(dir, { recursive: true }));

  async function enqueue(deliveries: Delivery[]) {
    if (deliveries.length === 0) return;
    await ensureDir();
    for (const d of deliveries) {
      const file = path.join(dir, `${d.id}.json`);
      const tmp = `${file}.tmp`;
      const handle = await open(tmp, 'w');
      try {
        await handle.writeFile(JSON.stringify(d));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, file);
    }
  }

  async function post(d: Delivery): Promise<boolean> {
    try {
      const res = await fetch(d.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-alert-delivery': d.id,
          ...(secret && { 'x-signature-256': signatureOf(d.body, secret) }),
        },
        body: d.body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return true;
      logger.warn({ delivery: d.id, status: res.status }, 'alert webhook refused; will retry');
    } catch (err) {
      logger.warn({ delivery: d.id, err: (err as Error).message }, 'alert webhook failed; will retry');
    }
    return false;
  }

  async function sendDue(): Promise<number> {
    await ensureDir();
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
    let waiting = 0;
    for (const file of files) {
      const id = file.slice(0, -'.json'.length);
      const retry = retries.get(id);
      if (retry && retry.dueAt > Date.now()) {
        waiting++;
        continue;
      }
      let delivery: Delivery;
      try {
        delivery = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as Delivery;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // sent by a concurrent flush
        throw err;
      }
      if (await post(delivery)) {
        retries.delete(id);
        await unlink(path.join(dir, file)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
      } else {
        const attempts = (retry?.attempts ?? 0) + 1;
        const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempts - 1));
        retries.set(id, { attempts, dueAt: Date.now() + ceiling * (0.5 + Math.random() / 2) });
        waiting++;
      }
    }
    return waiting;
  }

  function flush(): Promise<number> {
    sending ??= sendDue().finally(() => (sending = undefined));
    return sending;
  }

  return {
    enqueue,
    flush,
    start() {
      if (timer) return;
      timer = setInterval(() => {
        flush().catch((err: unknown) => logger.error({ err }, 'alert webhook outbox failed'));
      }, pollMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await sending?.catch(() => undefined);
    },
  };
}
