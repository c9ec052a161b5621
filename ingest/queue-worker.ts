/**
 * The ingest loop over the in-process queue: take a batch by size and time, run it through the
 * pipeline, repeat. A batch that fails is retried as a whole until it is stored: the queue has no
 * offsets to leave uncommitted, so holding the batch is how nothing accepted gets lost.
 */
import type { Logger } from '../core/logger.ts';
import type { MemoryQueue } from './memory-queue.ts';
import type { IngestMetrics } from './metrics.ts';
import type { Pipeline } from './pipeline.ts';

export interface QueueWorkerDeps {
  queue: MemoryQueue;
  pipeline: Pipeline;
  batch: { maxRows: number; maxWaitMs: number };
  logger: Logger;
  metrics?: IngestMetrics;
}

export interface QueueWorker {
  start(): void;
  /** Closes the queue and resolves when everything in it is stored. */
  drain(): Promise<void>;
}

export function createQueueWorker({ queue, pipeline, batch, logger, metrics }: QueueWorkerDeps): QueueWorker {
  let running: Promise<void> | undefined;

  async function loop(): Promise<void> {
    for (;;) {
      const messages = await queue.take(batch.maxRows, batch.maxWaitMs);
      if (messages.length === 0) return; // closed and drained
      for (;;) {
        try {
          const started = performance.now();
          const outcome = await pipeline.process(messages);
          metrics?.observeBatch(outcome, (performance.now() - started) / 1000);
          logger.debug(outcome, 'batch stored');
          break;
        } catch (error) {
          logger.error({ err: error, messages: messages.length }, 'batch not stored; retrying');
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    }
  }

  return {
    start() {
      running ??= loop();
    },
    async drain() {
      queue.close();
      await running;
    },
  };
}
