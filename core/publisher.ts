/**
 * Where accepted records go next: Kafka in production, the in-process queue on the embedded default.
 * The receiver and the collector publish through this and nothing else.
 */

export interface OutboundMessage {
  key: string | null;
  value: Buffer;
  headers?: Record<string, string>;
}

export interface Publisher {
  /** Resolves once the messages are durably accepted (Kafka acknowledged, or the queue holds them). */
  publish(topic: string, messages: OutboundMessage[]): Promise<void>;
}

/** The next stage is full: the caller should retry later (HTTP 503 with Retry-After). */
export class BackpressureError extends Error {
  constructor(readonly retryAfterSeconds: number, message = 'the pipeline is full; retry later') {
    super(message);
    this.name = 'BackpressureError';
  }
}

/** Header naming the tenant of an `otlp_spans` message (the audit payload carries its own). */
export const TENANT_HEADER = 'tenant';

/** Partition key of an audit record: its tenant and agent, so each agent's calls stay in order. */
export function auditMessageKey(event: { tenant: string; agent: string }): string {
  return `${event.tenant}/${event.agent}`;
}
