/**
 * The in-process stand-in for Kafka when KAFKA_BROKERS is unset: a bounded FIFO that the receiver
 * publishes into and the ingest worker takes batches from. Same messages, same decode, same writer as
 * the Kafka path; what it cannot give is durability across a crash (graceful shutdown drains it).
 */
import { BackpressureError, type OutboundMessage, type Publisher } from '../core/publisher.ts';
import type { InboundMessage } from './messages.ts';

export interface MemoryQueue extends Publisher {
  /** Waits for at least one message, then up to `maxWaitMs` for up to `maxMessages`. Empty once closed and drained. */
  take(maxMessages: number, maxWaitMs: number): Promise<InboundMessage[]>;
  readonly size: number;
  /** No more publishing; `take` returns what is left, then empty batches. */
  close(): void;
}

export function createMemoryQueue(options: { maxMessages: number }): MemoryQueue {
  const items: InboundMessage[] = [];
  let head = 0;
  let nextOffset = 0;
  let closed = false;
  let wake: (() => void) | undefined;

  const size = () => items.length - head;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const waitForMore = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  return {
    get size() {
      return size();
    },

    async publish(topic: string, messages: OutboundMessage[]) {
      if (closed) throw new BackpressureError(5, 'shutting down');
      if (size() + messages.length > options.maxMessages) throw new BackpressureError(1);
      for (const m of messages) {
        items.push({
          topic,
          partition: 0,
          offset: String(nextOffset++),
          key: m.key === null ? null : Buffer.from(m.key),
          value: m.value,
          headers: m.headers ?? {},
        });
      }
      notify();
    },

    async take(maxMessages, maxWaitMs) {
      while (size() === 0 && !closed) await waitForMore(60_000);
      const deadline = Date.now() + maxWaitMs;
      while (size() < maxMessages && !closed && Date.now() < deadline) await waitForMore(deadline - Date.now());
      const batch = items.slice(head, head + maxMessages);
      head += batch.length;
      if (head > 4096 && head * 2 > items.length) {
        items.splice(0, head);
        head = 0;
      }
      return batch;
    },

    close() {
      closed = true;
      notify();
    },
  };
}
