/**
 * Per-statement timings for the API bench (BENCH_STATEMENTS=1): a ClickHouseClient that times every
 * query and command it passes to the engine, labelled by what the statement is (a closed-bucket fill's
 * steps, an answer over a cache entry or over the rollups, with or without raw rows at the edges), so a
 * slow p99 can be traced to the statements behind it.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { performance } from 'node:perf_hooks';
import { withStatements } from '../core/clickhouse.ts';

export interface StatementTimings {
  client: ClickHouseClient;
  /** Times recorded since the last take(), by label; clears them. */
  take(): Map<string, number[]>;
}

/** What a statement is, from its text. */
export function statementLabel(sql: string): string {
  const text = sql.trimStart();
  if (text.startsWith('INSERT INTO closed_buckets_v1')) {
    const from = text.includes('FROM closed_buckets_v1') ? 'hour entry' : 'rollups';
    return `fill insert (${text.includes('SELECT DISTINCT') ? 'keys' : 'metrics'}, from ${from}${text.includes('audit_events_v1\n') || text.includes('FROM audit_events_v1') ? ' + raw' : ''})`;
  }
  if (text.startsWith('SELECT toString(now64(6))')) return 'fill state';
  if (text.startsWith('SELECT count() AS n FROM closed_buckets_v1')) return 'fill count';
  const head = /^SELECT\s+([\s\S]*?)\bFROM\b/.exec(text)?.[1] ?? text;
  const shape = head.replace(/\s+/g, ' ').slice(0, 40);
  const cached = text.includes('FROM closed_buckets_v1');
  const raw = /FROM audit_(events|timeline)_v1\s+WHERE tenant/.test(text) || text.includes('calls_by_account_v1');
  const rollups = /FROM calls_1[hdw]_v1|FROM calls_6h_v1/.test(text);
  const source = [cached && 'entry', rollups && 'rollups', raw && 'raw'].filter(Boolean).join('+') || 'other';
  return `${source}: ${shape}`;
}

export function timeStatements(clickhouse: ClickHouseClient): StatementTimings {
  let times = new Map<string, number[]>();
  const timed =
    <P extends { query: string }, R>(call: (params: P) => Promise<R>) =>
    async (params: P): Promise<R> => {
      const started = performance.now();
      try {
        return await call(params);
      } finally {
        const label = statementLabel(params.query);
        const list = times.get(label) ?? [];
        list.push(performance.now() - started);
        times.set(label, list);
      }
    };
  const query = timed((p: Parameters<ClickHouseClient['query']>[0]) => clickhouse.query(p) as Promise<unknown>);
  const command = timed((p: Parameters<ClickHouseClient['command']>[0]) => clickhouse.command(p));
  const client = withStatements(clickhouse, { query: query as ClickHouseClient['query'], command });
  return {
    client,
    take() {
      const taken = times;
      times = new Map();
      return taken;
    },
  };
}
