/** A ClickHouse client that keeps the SQL of each query it sends: how a test counts a read's statements. */
import { withStatements, type ClickHouseClient } from '../../core/clickhouse.ts';

export function recordingClient(clickhouse: ClickHouseClient): { client: ClickHouseClient; sent: string[]; last: () => string } {
  const sent: string[] = [];
  const client = withStatements(clickhouse, {
    query: (params) => {
      sent.push(params.query);
      return clickhouse.query(params);
    },
    command: (params) => clickhouse.command(params),
  });
  // The SQL of the latest query sent ('' before the first).
  return { client, sent, last: () => sent.at(-1) ?? '' };
}
