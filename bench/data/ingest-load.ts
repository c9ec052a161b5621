/**
 * The ingest at full speed inside the bench's process, as `npm start` runs it without Kafka: the
 * in-process queue (ingest/memory-queue.ts), the queue worker, the real pipeline and writer (with its
 * insert journal) over the same embedded ClickHouse. A producer keeps the queue above two full batches
 * of distinct audit events (normalized and encoded as the receiver does), so the worker never waits.
 * Its events are the tenant's own; the rows counted are those the pipeline reports stored.
 */
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ClickHouseClient } from '../../core/clickhouse.ts';
import type { Logger } from '../../core/logger.ts';
import { auditMessageKey } from '../../core/publisher.ts';
import { createClickHouseWriter } from '../../ingest/clickhouse-writer.ts';
import { createDeadLetterTable } from '../../ingest/dead-letter-table.ts';
import { createMemoryQueue } from '../../ingest/memory-queue.ts';
import { createPipeline } from '../../ingest/pipeline.ts';
import { createQueueWorker } from '../../ingest/queue-worker.ts';
import { normalizeAuditRecord } from '../../model/audit-event.ts';

/** The moment a batch was stored: when, the process's CPU time so far (s), the audit rows stored so far. */
export interface BatchMark {
  at: number;
  cpuS: number;
  rows: number;
}

export interface IngestLoad {
  /** Audit rows stored so far. */
  stored(): number;
  /** Resolves when the next batch is stored: phases measured between two marks hold whole batches. */
  nextBatch(): Promise<BatchMark>;
  /** Stops producing, lets the worker store what is queued, and resolves when it has. */
  stop(): Promise<void>;
}

export interface IngestLoadOptions {
  tenant: string;
  logger: Logger;
  /** The insert journal's directory (the product keeps it under DATA_DIR). */
  dataDir: string;
  /** BATCH_MAX_ROWS and BATCH_MAX_WAIT_MS as the product's defaults. */
  batch?: { maxRows: number; maxWaitMs: number };
}

const TOPICS = { audit: 'mcp-audit', spans: 'mcp-spans' };
const TOOLS = ['repo.Files.Read', 'search.Search.Query', 'billing.Invoices.List', 'admin.Users.List'];
const CHUNK = 2000;

export function startIngestLoad(clickhouse: ClickHouseClient, { tenant, logger, dataDir, batch = { maxRows: 20_000, maxWaitMs: 1000 } }: IngestLoadOptions): IngestLoad {
  const queue = createMemoryQueue({ maxMessages: batch.maxRows * 4 });
  const pipeline = createPipeline({
    writer: createClickHouseWriter(clickhouse, { journalDir: path.join(dataDir, 'insert-journal') }),
    deadLetters: createDeadLetterTable(clickhouse),
    topics: TOPICS,
    logger,
  });
  let stored = 0;
  let waiting: Array<(mark: BatchMark) => void> = [];
  const counted = {
    ...pipeline,
    process: async (messages: Parameters<typeof pipeline.process>[0]) => {
      const outcome = await pipeline.process(messages);
      stored += outcome.auditRows;
      const { user, system } = process.cpuUsage();
      const mark = { at: performance.now(), cpuS: (user + system) / 1e6, rows: stored };
      const resolve = waiting;
      waiting = [];
      for (const r of resolve) r(mark);
      return outcome;
    },
  };
  const worker = createQueueWorker({ queue, pipeline: counted, batch, logger });
  worker.start();

  let serial = 0;
  let producing = true;
  function chunk() {
    const now = Date.now();
    return Array.from({ length: CHUNK }, () => {
      const n = serial++;
      const r = normalizeAuditRecord({
        tenant,
        trace_id: `load-${n}`,
        timestamp: new Date(now - (n % 1000)).toISOString(),
        tool: TOOLS[n % TOOLS.length]!,
        allowed: n % 50 !== 0,
        ...(n % 50 === 0 ? { denied_reason: 'missing scope' } : { duration: 5_000_000 + (n % 997) * 10_000 }),
        agent: `load-agent-${n % 200}`,
        session_id: `load-session-${n % 5000}`,
        cost_usd: 0.001,
      });
      if (!r.ok) throw new Error(JSON.stringify(r.issues));
      return { key: auditMessageKey(r.value), value: Buffer.from(JSON.stringify(r.value)) };
    });
  }
  const producer = (async () => {
    while (producing) {
      if (queue.size < 2 * batch.maxRows) await queue.publish(TOPICS.audit, chunk());
      else await new Promise((r) => setTimeout(r, 5));
      await nextTurn();
    }
  })();

  return {
    stored: () => stored,
    nextBatch: () => new Promise((resolve) => waiting.push(resolve)),
    async stop() {
      producing = false;
      await producer;
      await worker.drain();
    },
  };
}
