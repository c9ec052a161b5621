/**
 * Per-agent activity of one tenant over a range (busiest agent first): calls and their share, errors,
 * denials, latency, distinct tools and accounts, reported cost, first and last call. One statement over
 * three sources (sql/0008): the metrics from the agent set, distinct tools from the agent × tool set,
 * distinct accounts from the agent × account set; each a count of key values, so exact.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { mergedMetrics, mergedRow, ratio, toMerged, type Merged } from './aggregate-rows.ts';
import type { AggregateFilter } from './filter.ts';
import type { TimeRange } from './params.ts';
import type { SourceOptions } from './rollup-plan.ts';
import { METRIC_COLUMNS, NO_CACHE, PLACEHOLDER_METRICS, type ClosedBuckets } from './closed-buckets.ts';
import { count, selectRows } from './select-rows.ts';

export interface AgentActivity extends Omit<Merged, 'maxMs'> {
  /** "" when the gateway did not report an agent name. */
  agent: string;
  /** calls / all calls in the filtered range. */
  share: number;
  /** Distinct tools called. */
  tools: number;
  /** Distinct accounts (anonymous calls are no account). */
  accounts: number;
}

export interface AgentActivityOptions {
  /** Skip the distinct counts (their sources) when the caller does not ask for them. */
  tools?: boolean;
  accounts?: boolean;
}

/** The distinct counts, each from the dimension set of the agent and its dimension. */
const DISTINCT = [
  { name: 'tools', dimension: 'tool', column: 'tool' },
  { name: 'accounts', dimension: 'account', column: 'account_id' },
] as const;

export async function queryAgentActivity(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  filter: AggregateFilter,
  options: AgentActivityOptions = { tools: true, accounts: true },
  buckets: ClosedBuckets = NO_CACHE,
): Promise<AgentActivity[]> {
  // One statement and one GROUP BY over the union of the sources, each row tagged with its source: the
  // metrics are merged from the first source's rows, each distinct count from every row that has its
  // key. So the raw calls at the range's edges can be read once, with every key (shareEdges), and no
  // join is needed. (Three statements would cost the engine's fixed cost per statement three times,
  // and three turns in the read queue.)
  const counts = DISTINCT.filter((d) => options[d.name]);
  const reads: SourceOptions[] = [{ range, filter, need: ['agent'] }, ...counts.map((d) => ({ range, filter, need: ['agent', d.dimension] as const, keysOnly: true }))];
  const rows = await buckets.readAll(
    clickhouse,
    tenant,
    reads,
    ([metrics, ...keys]) => {
      const keyColumns = (own?: string) => DISTINCT.map((d) => (d.column === own || own === undefined ? d.column : `'' AS ${d.column}`)).join(', ');
      const sources = [
        `SELECT 0 AS source, agent, ${keyColumns()}, ${METRIC_COLUMNS}
    FROM ${metrics!.sql}`,
        ...counts.map(
          (d, i) => `SELECT ${i + 1} AS source, agent, ${keyColumns(d.column)}, ${PLACEHOLDER_METRICS}
    FROM ${keys[i]!.sql}`,
        ),
      ];
      const distinct = DISTINCT.map((d) => (options[d.name] ? `uniqExactIf(${d.column}, ${d.column} != '') AS ${d.name}` : `toUInt64(0) AS ${d.name}`));
      const sql = `
SELECT agent, ${mergedMetrics(counts.length > 0 ? 'source = 0' : undefined)},
    ${distinct.join(',\n    ')}
FROM (
    ${sources.join('\n    UNION ALL\n    ')}
)
GROUP BY agent
ORDER BY calls DESC, agent ASC`;
      const params = Object.assign({}, metrics!.params, ...keys.map((k) => k.params));
      return selectRows(clickhouse, 'agentActivity', sql, params, z.object({ agent: z.string(), tools: count, accounts: count, ...mergedRow }));
    },
    { shareEdges: true },
  );
  const total = rows.reduce((n, r) => n + r.calls, 0);
  return rows.map((r) => {
    const { maxMs: _, ...merged } = toMerged(r);
    return { agent: r.agent, ...merged, share: ratio(r.calls, total), tools: r.tools, accounts: r.accounts };
  });
}

/** What the deprecated `agents` query answers: a subset of AgentActivity. */
export type AgentStats = Pick<AgentActivity, 'agent' | 'calls' | 'errors' | 'denials' | 'p50Ms' | 'p99Ms' | 'costUsd'>;
