import type { ClickHouseClient } from '@clickhouse/client';
import type { DeadLetterSink } from './pipeline.ts';

/** Dead letters kept in ClickHouse (`dead_letters_v1`): the sink when there is no Kafka. */
export function createDeadLetterTable(clickhouse: ClickHouseClient): DeadLetterSink {
  return {
    async send(letters) {
      await clickhouse.insert({
        table: 'dead_letters_v1',
        values: letters.map(({ message, reason }) => ({
          topic: message.topic,
          partition: message.partition,
          offset: message.offset,
          key: message.key?.toString('utf8') ?? '',
          value: message.value.toString('utf8'),
          headers: message.headers,
          reason,
        })),
        format: 'JSONEachRow',
      });
    },
  };
}
