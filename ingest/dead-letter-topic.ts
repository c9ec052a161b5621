import type { Publisher } from '../core/publisher.ts';
import type { DeadLetterSink } from './pipeline.ts';

/** Header names a dead letter carries besides the original message's own headers. */
export const DEAD_LETTER_HEADERS = {
  topic: 'dlq.topic',
  partition: 'dlq.partition',
  offset: 'dlq.offset',
  reason: 'dlq.reason',
  at: 'dlq.at',
} as const;

/** Dead letters on a Kafka topic: the original key and bytes, with where they came from and why. */
export function createDeadLetterTopic(publisher: Publisher, topic: string): DeadLetterSink {
  return {
    async send(letters) {
      const at = new Date().toISOString();
      await publisher.publish(
        topic,
        letters.map(({ message, reason }) => ({
          key: message.key?.toString('utf8') ?? null,
          value: message.value,
          headers: {
            ...message.headers,
            [DEAD_LETTER_HEADERS.topic]: message.topic,
            [DEAD_LETTER_HEADERS.partition]: String(message.partition),
            [DEAD_LETTER_HEADERS.offset]: message.offset,
            [DEAD_LETTER_HEADERS.reason]: reason.slice(0, 4096),
            [DEAD_LETTER_HEADERS.at]: at,
          },
        })),
      );
    },
  };
}
