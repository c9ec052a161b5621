/**
 * A person's change to an alert (acknowledged or resolved through the API), announced to the same
 * webhook as the detector's opened, escalated and resolved alerts, through the same durable outbox
 * (webhook-outbox.ts): written to disk before the mutation answers, signed, retried until accepted,
 * sent again after a restart. The API gets one as `alertWebhooks` (api/schema.ts).
 */
import type { Logger } from '../core/logger.ts';
import type { Alert } from './alert-record.ts';
import { deliveryOf, type WebhookFormat, type WebhookOutbox } from './webhook-outbox.ts';

export interface PersonChange {
  alert: Alert;
  action: 'acknowledged' | 'resolved';
  /** Epoch milliseconds. */
  at: number;
  /** The API key's name. */
  by: string;
}

export interface AlertWebhooks {
  /**
   * Queues the change's delivery to the tenant's webhook (`tenantUrl`, its alertSettings.webhookUrl)
   * or the product's; resolves once it is kept in the outbox. Nothing is queued when neither is set.
   */
  announce(change: PersonChange, tenantUrl: string | null): Promise<void>;
}

export interface AlertWebhookOptions {
  outbox: WebhookOutbox;
  logger: Logger;
  /** ALERT_WEBHOOK_URL. */
  webhookUrl?: string;
  webhookFormat: WebhookFormat;
}

export function createAlertWebhookAnnouncer({ outbox, logger, webhookUrl, webhookFormat }: AlertWebhookOptions): AlertWebhooks {
  return {
    async announce({ alert, action, at, by }, tenantUrl) {
      const url = tenantUrl ?? webhookUrl;
      if (!url) return;
      await outbox.enqueue([deliveryOf(alert, action, at, url, webhookFormat, by)]);
      // Sent now rather than at the outbox's next poll; a failure stays queued and is retried there.
      outbox.flush().catch((err: unknown) => logger.error({ err }, 'alert webhook outbox failed'));
    },
  };
}
