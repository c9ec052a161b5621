/**
 * The product's topics on a Kafka cluster: created at start when missing (audit, spans, dead letters),
 * then awaited until every partition has a leader. A brand-new broker has none of them, and a consumer
 * that subscribes first fails with UNKNOWN_TOPIC_OR_PARTITION.
 *
 * While the cluster is out of reach or the topics are not there, this waits with jittered backoff and
 * says why (for /readyz); it never gives up on a Kafka error. A retriable one (the broker is down, a
 * leader is being elected) is expected on a first start. A non-retriable one (not authorised to create
 * topics, a replication factor over the number of brokers) needs an operator, who can fix it while
 * this waits: it is logged as an error. Only an error that is not Kafka's (a bug) is thrown.
 */
import { classifyKafkaError, isKafkaError, type Kafka } from './kafka.ts';
import type { Logger } from './logger.ts';
import { sleep } from './sleep.ts';

export interface NewTopicSettings {
  /** Partitions of a topic this creates. */
  partitions: number;
  /** Replicas of each partition; unset: the broker's `default.replication.factor`. */
  replicationFactor?: number;
}

export interface EnsureTopicsOptions extends NewTopicSettings {
  topics: string[];
  logger: Logger;
  /** Aborted: stop waiting (shutdown); resolves false. */
  signal?: AbortSignal;
  /** Each failed attempt, with what is awaited and why (for /readyz). */
  onWaiting?: (reason: string) => void;
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/** Resolves true once every topic exists with a leader for each partition; false if aborted first. */
export async function ensureTopics(kafka: Kafka, options: EnsureTopicsOptions): Promise<boolean> {
  const { topics, logger, signal, initialDelayMs = 250, maxDelayMs = 10_000 } = options;
  // An attempt against a broker that is down takes the client's own retries (~10 s): shutdown does not wait for it.
  const aborted = new Promise<'aborted'>((resolve) => signal?.addEventListener('abort', () => resolve('aborted'), { once: true }));
  for (let attempt = 1; !signal?.aborted; attempt++) {
    const trying = tryOnce(kafka, options, attempt);
    const outcome = await Promise.race([trying, aborted]);
    if (outcome === 'aborted') {
      trying.catch(() => {}); // settles in the background; the process is stopping
      return false;
    }
    if (outcome === 'ready') return true;
    const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt - 1, 16));
    await sleep(Math.round(ceiling / 2 + Math.random() * (ceiling / 2)), signal);
  }
  return false;
}

/** One look (and creation if missing): 'ready', or 'waiting' after telling why. Throws only a non-Kafka error. */
async function tryOnce(kafka: Kafka, options: EnsureTopicsOptions, attempt: number): Promise<'ready' | 'waiting'> {
  const { topics, logger } = options;
  const admin = kafka.admin();
  try {
    await admin.connect();
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((topic) => !existing.has(topic));
    if (missing.length > 0) {
      const created = await admin.createTopics({
        topics: missing.map((topic) => ({ topic, numPartitions: options.partitions, replicationFactor: options.replicationFactor ?? -1 })),
        waitForLeaders: true,
      });
      // false: another process (a second worker, the broker's auto-creation) created them first.
      if (created) logger.info({ topics: missing, partitions: options.partitions, replicationFactor: options.replicationFactor ?? 'broker default' }, 'created Kafka topics');
    }
    const leaderless = leaderlessTopics(await admin.fetchTopicMetadata({ topics }));
    if (leaderless.length === 0) {
      if (attempt > 1) logger.info({ topics, attempts: attempt }, 'Kafka topics ready');
      return 'ready';
    }
    options.onWaiting?.(`waiting for leaders of Kafka topics ${leaderless.join(', ')}`);
  } catch (error) {
    if (!isKafkaError(error)) throw error;
    options.onWaiting?.(`waiting for Kafka topics ${topics.join(', ')}: ${error.name}: ${error.message}`);
    const log = { err: error, topics, attempt };
    if (classifyKafkaError(error) !== 'permanent') logger.warn(log, 'Kafka topics not ready; trying again');
    else logger.error(log, 'Kafka refused to create or describe the topics; create them, or fix the cause, and this goes on');
  } finally {
    await admin.disconnect().catch(() => {});
  }
  return 'waiting';
}

function leaderlessTopics(metadata: { topics: { name: string; partitions: { leader: number }[] }[] }): string[] {
  return metadata.topics.filter((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0)).map((t) => t.name);
}
