/**
 * Per-agent activity of one tenant over a range (busiest agent first): calls and their share, errors,
 * denials, latency, distinct tools and accounts, reported cost, first and last call. One statement over
 * three sources (sql/0008): the metrics from the agent set, distinct tools from the agent × tool set,
 * distinct accounts from the agent × account set; each a count of key values, so exact.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { mergedRow, MERGED_METRICS, ratio, toMerged, type Merged } from './aggregate-rows.ts';
import type { AggregateFilter } from './filter.ts';
import type { TimeRange } from './params.ts';
import type { SourceOptions } from './rollup-plan.ts';
import { NO_CACHE, type ClosedBuckets } from './closed-buckets.ts';
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
  // One statement: the metrics from the agent set, joined by agent to each distinct count from the set
  // of its own dimension (three statements cost the engine's fixed cost per statement three times, and
  // three turns in the read queue). The raw calls at the range's edges are read once, in the metrics'
  // source with every key (shareEdges); each distinct count is that of its source's keys and the
  // edges' together.
  const counts = DISTINCT.filter((d) => options[d.name]);
  const reads: SourceOptions[] = [{ range, filter, need: ['agent'] }, ...counts.map((d) => ({ range, filter, need: ['agent', d.dimension] as const, keysOnly: true }))];
  const rows = await buckets.readAll(
    clickhouse,
    tenant,
    reads,
    ([metrics, ...keys]) => {
      // A metrics row with a tool or account other than '' is a shared edge (or a rollup row that keeps
      // the key); either way a true key of its agent in the range, so counting it with the keys' is exact.
      const edgeKeys = counts.map((d) => `,\n        groupUniqArrayIf(${d.column}, ${d.column} != '') AS edge_${d.name}`);
      const joins = counts.map(
        (d, i) => `
LEFT JOIN (
    SELECT agent, groupUniqArrayIf(${d.column}, ${d.column} != '') AS entry_${d.name}
    FROM ${keys[i]!.sql}
    GROUP BY agent
) AS ${d.name}_per_agent USING agent`,
      );
      const distinct = DISTINCT.map((d) => (options[d.name] ? `length(arrayDistinct(arrayConcat(edge_${d.name}, entry_${d.name})))` : 'toUInt64(0)'));
      const sql = `
SELECT agent, calls, errors, denials, duration_sum_ns, duration_max_ns, quantiles_ns, cost_usd, first_seen, last_seen,
    ${distinct[0]} AS tools, ${distinct[1]} AS accounts
FROM (
    SELECT agent, ${MERGED_METRICS}${edgeKeys.join('')}
    FROM ${metrics!.sql}
    GROUP BY agent
) AS metrics${joins.join('')}
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
