/**
 * The ingest worker over Kafka: a consumer-group member that gathers messages from every partition it
 * owns into one batch (by size and time), runs the batch through the pipeline, and only then commits
 * the batch's offsets. A batch that is not stored is never committed: after a crash, a rebalance or a
 * failed flush the same messages come again, and the writer's event_id checks make that harmless.
 *
 * - Transient ClickHouse errors are retried inside the pipeline; meanwhile consumption is paused
 *   (the consumer keeps its group membership) and resumed once the batch is stored.
 * - On a rebalance, messages fetched but not yet flushed are dropped: Kafka hands them out again from
 *   the committed offsets, to whichever member now owns the partition.
 * - `stop()` stops fetching, stores and commits what it holds, and leaves the group.
 */
import type { Consumer, EachBatchPayload, Kafka } from '../core/kafka.ts';
import type { Logger } from '../core/logger.ts';
import type { IngestMetrics } from './metrics.ts';
import { textHeaders, type InboundMessage } from './messages.ts';
import type { Pipeline } from './pipeline.ts';

export interface KafkaWorkerDeps {
  kafka: Kafka;
  pipeline: Pipeline;
  groupId: string;
  topics: string[];
  batch: { maxRows: number; maxWaitMs: number };
  logger: Logger;
  metrics?: IngestMetrics;
}

export interface KafkaWorker {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Resolves when nothing is held unflushed (tests and shutdown). */
  idle(): Promise<void>;
}

interface Held {
  messages: InboundMessage[];
  /** When the oldest held message arrived. */
  since: number;
}

/** topic → partition → next offset to commit. */
type Offsets = Map<string, Map<number, string>>;

/** Messages held while a batch is stored, at most, in batches: enough to keep ClickHouse busy. */
const HELD_BATCHES = 3;

export function createKafkaWorker(deps: KafkaWorkerDeps): KafkaWorker {
  const { kafka, pipeline, logger, batch, metrics } = deps;
  const consumer: Consumer = kafka.consumer({
    groupId: deps.groupId,
    sessionTimeout: 30_000,
    heartbeatInterval: 3_000,
    rebalanceTimeout: 60_000,
    maxBytesPerPartition: 2 * 1024 * 1024,
    maxBytes: 16 * 1024 * 1024,
    maxWaitTimeInMs: Math.min(batch.maxWaitMs, 500),
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000 },
  });

  let held: Held = empty();
  let flushing: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let paused = false;
  let stopping = false;
  /** Bumped on every rebalance: a flush started before one must not commit after it. */
  let generation = 0;

  function empty(): Held {
    return { messages: [], since: 0 };
  }

  function pauseAll(): void {
    if (paused) return;
    paused = true;
    consumer.pause(deps.topics.map((topic) => ({ topic })));
  }

  function resumeAll(): void {
    if (!paused || stopping) return;
    paused = false;
    consumer.resume(deps.topics.map((topic) => ({ topic })));
  }

  /** Stores what is held and commits its offsets. One flush at a time, in order. */
  function flush(): Promise<void> {
    if (flushing) return flushing;
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (held.messages.length === 0) return Promise.resolve();
    const taking = held.messages.length <= batch.maxRows ? held.messages : held.messages.slice(0, batch.maxRows);
    const offsets = nextOffsets(taking);
    held = { messages: held.messages.slice(taking.length), since: Date.now() };
    const startedIn = generation;
    flushing = (async () => {
      const started = performance.now();
      const outcome = await pipeline.process(taking);
      metrics?.observeBatch(outcome, (performance.now() - started) / 1000);
      if (startedIn === generation) await commit(offsets);
      else logger.info({ messages: taking.length }, 'stored a batch fetched before a rebalance; its new owner commits it');
    })()
      .catch((error) => {
        // Not stored: never committed. The messages come again from the committed offsets.
        logger.error({ err: error, messages: taking.length }, 'batch not stored; it will be consumed again');
        if (!stopping) seekBack(offsets);
      })
      .finally(() => {
        flushing = undefined;
        resumeAll();
        if (held.messages.length >= batch.maxRows) void flush();
        else if (held.messages.length > 0) schedule();
      });
    return flushing;
  }

  async function commit(offsets: Offsets): Promise<void> {
    const list = [...offsets].flatMap(([topic, partitions]) =>
      [...partitions].map(([partition, offset]) => ({ topic, partition, offset })),
    );
    try {
      await consumer.commitOffsets(list);
    } catch (error) {
      // The group moved on (a rebalance): the partitions' new owners consume from the last commit, and
      // the rows already stored are recognised there and not stored twice.
      logger.warn({ err: error }, 'offsets not committed; the messages will be consumed again and deduplicated');
    }
  }

  /** After a failed flush: forget what is held and fetch again from the committed offsets. */
  function seekBack(offsets: Offsets): void {
    generation++;
    held = empty();
    void rewindToCommitted([...offsets.keys()]);
  }

  async function rewindToCommitted(topics: string[]): Promise<void> {
    const admin = kafka.admin();
    try {
      await admin.connect();
      for (const topic of topics) {
        const [committed] = await admin.fetchOffsets({ groupId: deps.groupId, topics: [topic] });
        for (const p of committed?.partitions ?? []) {
          const offset = p.offset === '-1' ? '0' : p.offset;
          try {
            consumer.seek({ topic, partition: p.partition, offset });
          } catch (error) {
            logger.debug({ err: error, topic, partition: p.partition }, 'seek skipped');
          }
        }
      }
    } catch (error) {
      logger.error({ err: error }, 'could not rewind to the committed offsets');
    } finally {
      await admin.disconnect();
    }
  }

  function schedule(): void {
    if (timer || stopping) return;
    const wait = Math.max(0, held.since + batch.maxWaitMs - Date.now());
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, wait);
  }

  async function eachBatch({ batch: fetched, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (!isRunning() || isStale() || stopping || fetched.messages.length === 0) return;
    const { topic, partition } = fetched;
    // A bounded number of messages is held while a batch is stored. What does not fit is not resolved:
    // kafkajs fetches it again once consumption resumes, so memory stays bounded.
    const room = batch.maxRows * HELD_BATCHES - held.messages.length;
    if (room <= 0) {
      pauseAll();
      return;
    }
    const taken = fetched.messages.length > room ? fetched.messages.slice(0, room) : fetched.messages;
    if (held.messages.length === 0) held.since = Date.now();
    for (const m of taken) {
      held.messages.push({
        topic,
        partition,
        offset: m.offset,
        key: m.key,
        value: m.value ?? Buffer.alloc(0),
        headers: textHeaders(m.headers),
      });
    }
    // Fetching moves on; committing waits for the flush.
    resolveOffset(taken[taken.length - 1]!.offset);
    metrics?.observeLag(topic, partition, fetched.offsetLag());
    await heartbeat();

    if (taken.length < fetched.messages.length) pauseAll(); // resumed when the batch being stored is done
    if (held.messages.length >= batch.maxRows) void flush();
    else schedule();
  }

  return {
    async start() {
      consumer.on(consumer.events.GROUP_JOIN, (event) => {
        generation++;
        if (held.messages.length > 0) {
          logger.info({ dropped: held.messages.length }, 'rebalanced: unflushed messages will be consumed again from the committed offsets');
        }
        held = empty();
        if (timer) clearTimeout(timer);
        timer = undefined;
        logger.info({ assignment: event.payload.memberAssignment }, 'joined the consumer group');
      });
      consumer.on(consumer.events.CRASH, (event) => logger.error({ err: event.payload.error, restart: event.payload.restart }, 'consumer crashed'));
      await consumer.connect();
      await consumer.subscribe({ topics: deps.topics, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 1,
        eachBatch,
      });
    },

    async idle() {
      while (flushing || held.messages.length > 0) await (flushing ?? flush());
    },

    async stop() {
      stopping = true;
      pauseAll();
      if (timer) clearTimeout(timer);
      timer = undefined;
      // Store and commit what is held; anything fetched after this is abandoned, uncommitted.
      while (flushing || held.messages.length > 0) await (flushing ?? flush());
      await consumer.disconnect();
    },
  };
}

/** The offsets to commit once `messages` are stored: one past the last of each partition. */
function nextOffsets(messages: readonly InboundMessage[]): Offsets {
  const offsets: Offsets = new Map();
  for (const m of messages) {
    const partitions = offsets.get(m.topic) ?? new Map<number, string>();
    offsets.set(m.topic, partitions);
    partitions.set(m.partition, (BigInt(m.offset) + 1n).toString()); // offsets ascend within a partition
  }
  return offsets;
}
