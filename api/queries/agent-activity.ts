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
import { NO_CACHE, type ClosedBuckets, type KeySets } from './closed-buckets.ts';
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
    async ([metrics, ...keys]) => {
      // A distinct count's source held whole in a closed-bucket entry is counted from the entry's key
      // sets once they are held (keysOf): on an open range, its statement otherwise grouped the entry's
      // rows (~35,000 agent × account pairs on the 10M-event set) on every request. Any other source is
      // grouped in the statement.
      const held = new Map(
        counts.flatMap((d, i) => {
          const sets = keys[i]!.entry && buckets.keysOf(clickhouse, keys[i]!.entry, 'agent', d.column);
          return sets ? [[d.name, sets] as const] : [];
        }),
      );
      // A metrics row with a tool or account other than '' is a shared edge (or a rollup row that keeps
      // the key); either way a true key of its agent in the range, so counting it with the keys' is exact.
      const edgeKeys = counts.map((d) => `,\n        groupUniqArrayIf(${d.column}, ${d.column} != '') AS edge_${d.name}`);
      const joins = counts.flatMap((d, i) =>
        held.has(d.name)
          ? []
          : [
              `
LEFT JOIN (
    SELECT agent, groupUniqArrayIf(${d.column}, ${d.column} != '') AS entry_${d.name}
    FROM ${keys[i]!.sql}
    GROUP BY agent
) AS ${d.name}_per_agent USING agent`,
            ],
      );
      // Held: the edges' keys, which the caller adds to the entry's; else the count of both.
      const distinct = DISTINCT.map((d) => {
        if (!counts.includes(d)) return `toUInt64(0) AS ${d.name}, [] AS ${d.name}_edge`;
        if (held.has(d.name)) return `toUInt64(0) AS ${d.name}, edge_${d.name} AS ${d.name}_edge`;
        return `length(arrayDistinct(arrayConcat(edge_${d.name}, entry_${d.name}))) AS ${d.name}, [] AS ${d.name}_edge`;
      });
      const sql = `
SELECT agent, calls, errors, denials, duration_sum_ns, duration_max_ns, quantiles_ns, cost_usd, first_seen, last_seen,
    ${distinct.join(',\n    ')}
FROM (
    SELECT agent, ${MERGED_METRICS}${edgeKeys.join('')}
    FROM ${metrics!.sql}
    GROUP BY agent
) AS metrics${joins.join('')}
ORDER BY calls DESC, agent ASC`;
      const params = Object.assign({}, metrics!.params, ...keys.filter((_, i) => !held.has(counts[i]!.name)).map((k) => k.params));
      const found = await selectRows(clickhouse, 'agentActivity', sql, params, activityRow);
      return found.map((r) => ({
        ...r,
        tools: r.tools + heldCount(held.get('tools'), r.agent, r.tools_edge),
        accounts: r.accounts + heldCount(held.get('accounts'), r.agent, r.accounts_edge),
      }));
    },
    { shareEdges: true },
  );
  const total = rows.reduce((n, r) => n + r.calls, 0);
  return rows.map((r) => {
    const { maxMs: _, ...merged } = toMerged(r);
    return { agent: r.agent, ...merged, share: ratio(r.calls, total), tools: r.tools, accounts: r.accounts };
  });
}

const activityRow = z.object({ agent: z.string(), tools: count, accounts: count, tools_edge: z.array(z.string()), accounts_edge: z.array(z.string()), ...mergedRow });

/** With an entry's key sets: the agent's keys there, and those of `edge` (distinct) not among them; else 0. */
function heldCount(sets: KeySets | undefined, agent: string, edge: readonly string[]): number {
  if (!sets) return 0;
  const entry = sets.get(agent);
  return (entry?.size ?? 0) + edge.filter((key) => !entry?.has(key)).length;
}

/** What the deprecated `agents` query answers: a subset of AgentActivity. */
export type AgentStats = Pick<AgentActivity, 'agent' | 'calls' | 'errors' | 'denials' | 'p50Ms' | 'p99Ms' | 'costUsd'>;
