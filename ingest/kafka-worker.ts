/**
 * The ingest worker over Kafka: a consumer-group member that gathers messages from every partition it
 * owns into one batch (by size and time), runs the batch through the pipeline, and only then commits
 * the batch's offsets. A batch that is not stored is never committed: after a crash, a rebalance or a
 * failed flush the same messages come again, and the writer's event_id checks make that harmless.
 *
 * - Backpressure: at most HELD_BATCHES batches are held besides the one being stored. A fetch that
 *   does not fit waits inside `eachBatch` (heartbeating, so the consumer keeps its group membership)
 *   until storing makes room, and kafkajs fetches nothing more meanwhile. So while ClickHouse fails and
 *   the pipeline retries, consumption stops once the worker is full, and goes on when the batch is
 *   stored. (Pausing partitions instead cost up to the fetch wait after every resume: kafkajs sleeps
 *   that long when it finds every partition paused.)
 * - On a rebalance, messages fetched but not yet flushed are dropped: Kafka hands them out again from
 *   the committed offsets, to whichever member now owns the partition.
 * - `stop()` stops fetching, stores and commits what it holds, and leaves the group.
 * - While a batch is being stored (on ClickHouse's threads), the next full batch is taken and decoded
 *   (on this one), so the two overlap. It is stored, and committed, only after the one before it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, EachBatchPayload, Kafka } from '../core/kafka.ts';
import type { Logger } from '../core/logger.ts';
import type { IngestMetrics } from './metrics.ts';
import { textHeaders, type InboundMessage } from './messages.ts';
import type { DecodedMessages, Pipeline } from './pipeline.ts';

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

/** A batch taken from what is held: being decoded, with the offsets to commit once it is stored. */
interface Taken {
  messages: InboundMessage[];
  decoding: Promise<DecodedMessages>;
  offsets: Offsets;
}

/** Messages held while batches are stored, at most, in batches: enough to keep ClickHouse busy. */
const HELD_BATCHES = 3;
/**
 * Batches stored at once. With two, the next batch's look-ups are queued while this one inserts, so
 * ClickHouse is not left idle while this process finishes one batch and starts the next.
 */
const STORES_IN_FLIGHT = 2;
/**
 * Bytes per fetch (compressed, as stored). kafkajs decompresses and parses a whole fetch before the
 * first `eachBatch`: with 2 MiB per partition, a backlog of well-compressed audit records (~40 bytes
 * each) came as one 300,000-message fetch that took 1.7 s before anything could be stored. A record
 * batch larger than the limit still comes whole.
 */
export const FETCH_LIMITS = { maxBytesPerPartition: 256 * 1024, maxBytes: 4 * 1024 * 1024 } as const;
/** While a fetch waits for room, the consumer heartbeats this often (below its heartbeat interval). */
const BACKPRESSURE_HEARTBEAT_MS = 1_000;

export function createKafkaWorker(deps: KafkaWorkerDeps): KafkaWorker {
  const { kafka, pipeline, logger, batch, metrics } = deps;
  const consumer: Consumer = kafka.consumer({
    groupId: deps.groupId,
    sessionTimeout: 30_000,
    heartbeatInterval: 3_000,
    rebalanceTimeout: 60_000,
    ...FETCH_LIMITS,
    maxWaitTimeInMs: Math.min(batch.maxWaitMs, 500),
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000 },
  });

  let held: Held = empty();
  /** The next batch, taken and decoded while the one before it is stored. */
  let ahead: Taken | undefined;
  let lookingAhead: NodeJS.Immediate | undefined;
  /** The latest flush (it settles after the ones before it), and how many batches are being stored. */
  let flushing: Promise<void> | undefined;
  let storing = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopping = false;
  /** Bumped on every rebalance: a flush started before one must not commit after it. */
  let generation = 0;

  function empty(): Held {
    return { messages: [], since: 0 };
  }

  /** Messages fetched and not being stored yet: held, or decoded ahead. */
  function unflushed(): number {
    return held.messages.length + (ahead?.messages.length ?? 0);
  }

  /** Messages that may still be held, besides the batch being stored. */
  function room(): number {
    return batch.maxRows * HELD_BATCHES - unflushed();
  }

  /** Takes up to a batch off what is held, and starts decoding it. */
  function take(): Taken {
    const taking = held.messages.length <= batch.maxRows ? held.messages : held.messages.slice(0, batch.maxRows);
    held = { messages: held.messages.slice(taking.length), since: Date.now() };
    return { messages: taking, decoding: pipeline.decode(taking), offsets: nextOffsets(taking) };
  }

  /** Forgets what is not being stored (a rebalance, a failed flush): those messages come again. */
  function forgetUnflushed(): void {
    held = empty();
    ahead = undefined;
    if (lookingAhead) clearImmediate(lookingAhead);
    lookingAhead = undefined;
    if (timer) clearTimeout(timer);
    timer = undefined;
  }

  /** Stores and commits everything fetched so far. */
  async function drain(): Promise<void> {
    while (flushing || unflushed() > 0) await (flushing ?? flush());
  }

  /**
   * Stores what is held and commits its offsets. Up to STORES_IN_FLIGHT batches are stored at once
   * (the writer orders their inserts); they are committed in the order they were taken. Returns the
   * latest flush, which settles after every flush before it.
   */
  function flush(): Promise<void> {
    if (storing >= STORES_IN_FLIGHT || unflushed() === 0) {
      if (flushing) lookAheadSoon();
      return flushing ?? Promise.resolve();
    }
    if (timer) clearTimeout(timer);
    timer = undefined;
    const { messages: taking, decoding, offsets } = ahead ?? take();
    ahead = undefined;
    const startedIn = generation;
    const previous = flushing;
    storing++;
    const done: Promise<void> = (async () => {
      const started = performance.now();
      const outcome = await pipeline.store(await decoding);
      metrics?.observeBatch(outcome, (performance.now() - started) / 1000);
      await previous; // settles, never rejects
      if (startedIn === generation) await commit(offsets);
      else logger.info({ messages: taking.length }, 'stored a batch fetched before a rebalance or a failed batch; it is consumed again and deduplicated');
    })()
      .catch((error) => {
        // Not stored: never committed. The messages come again from the committed offsets.
        logger.error({ err: error, messages: taking.length }, 'batch not stored; it will be consumed again');
        if (!stopping && startedIn === generation) seekBack(offsets);
      })
      .finally(() => {
        storing--;
        if (flushing === done) flushing = undefined;
        if (ahead || held.messages.length >= batch.maxRows) void flush();
        else if (held.messages.length > 0 && !flushing) schedule();
      });
    flushing = done;
    if (held.messages.length >= batch.maxRows) void flush();
    else lookAheadSoon();
    return done;
  }

  /** On the next turn (the store has started), decodes the next full batch while this one is stored. */
  function lookAheadSoon(): void {
    lookingAhead ??= setImmediate(() => {
      lookingAhead = undefined;
      if (flushing && !ahead && held.messages.length >= batch.maxRows) ahead = take();
    });
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
    forgetUnflushed();
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
    const { topic, partition } = fetched;
    let next = 0;
    while (next < fetched.messages.length) {
      // Unresolved messages are fetched again from the last resolved offset (after a rebalance, from
      // the committed one), so returning early loses nothing.
      if (!isRunning() || isStale() || stopping) return;
      const free = room();
      if (free <= 0) {
        await Promise.race([flushing ?? flush(), sleep(BACKPRESSURE_HEARTBEAT_MS)]);
        await heartbeat();
        continue;
      }
      const taken = fetched.messages.slice(next, next + free);
      next += taken.length;
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
      if (held.messages.length >= batch.maxRows) void flush();
      else schedule();
    }
    if (fetched.messages.length > 0) metrics?.observeLag(topic, partition, fetched.offsetLag());
    await heartbeat();
  }

  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    generation++;
    if (unflushed() > 0) {
      logger.info({ dropped: unflushed() }, 'rebalanced: unflushed messages will be consumed again from the committed offsets');
    }
    forgetUnflushed();
    logger.info({ assignment: event.payload.memberAssignment }, 'joined the consumer group');
  });
  consumer.on(consumer.events.CRASH, (event) => logger.error({ err: event.payload.error, restart: event.payload.restart }, 'consumer crashed'));
  let running = false;

  return {
    /** Joins the group and consumes. If it throws, the consumer is disconnected and `start` may be called again. */
    async start() {
      try {
        await consumer.connect();
        await consumer.subscribe({ topics: deps.topics, fromBeginning: true });
        await consumer.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          partitionsConsumedConcurrently: 1,
          eachBatch,
        });
        running = true;
      } catch (error) {
        await consumer.disconnect().catch(() => {});
        throw error;
      }
    },

    idle: drain,

    async stop() {
      stopping = true;
      if (!running) {
        await consumer.disconnect(); // never consumed: nothing held, nothing to commit
        return;
      }
      consumer.pause(deps.topics.map((topic) => ({ topic })));
      if (timer) clearTimeout(timer);
      timer = undefined;
      // Store and commit what is held; anything fetched after this is abandoned, uncommitted.
      await drain();
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
    partitions.set(m.partition, m.offset); // offsets ascend within a partition: the last one stays
  }
  for (const partitions of offsets.values()) {
    for (const [partition, last] of partitions) partitions.set(partition, (BigInt(last) + 1n).toString());
  }
  return offsets;
}
