/**
 * Per-agent activity of one tenant over a range (busiest agent first): calls and their share, errors,
 * denials, latency, distinct tools and accounts, reported cost, first and last call. Three statements
 * over the rollups (sql/0008): the metrics from the agent set, distinct tools from the agent × tool set,
 * distinct accounts from the agent × account set; each a count of key values, so exact.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { mergedRow, MERGED_METRICS, ratio, toMerged, type Merged } from './aggregate-rows.ts';
import type { AggregateFilter } from './filter.ts';
import type { TimeRange } from './params.ts';
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
  /** Skip the distinct counts (their statements) when the caller does not ask for them. */
  tools?: boolean;
  accounts?: boolean;
}

const distinctRow = z.object({ agent: z.string(), n: count });

export async function queryAgentActivity(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  filter: AggregateFilter,
  options: AgentActivityOptions = { tools: true, accounts: true },
  buckets: ClosedBuckets = NO_CACHE,
): Promise<AgentActivity[]> {
  const rowsP = buckets.read(clickhouse, tenant, { range, filter, need: ['agent'] }, (metrics) =>
    selectRows(
      clickhouse,
      'agentActivity',
      `SELECT agent, ${MERGED_METRICS}\nFROM ${metrics.sql}\nGROUP BY agent\nORDER BY calls DESC, agent ASC`,
      metrics.params,
      z.object({ agent: z.string(), ...mergedRow }),
    ),
  );
  const distinct = async (need: 'tool' | 'account', column: string, name: string) => {
    const rows = await buckets.read(clickhouse, tenant, { range, filter, need: ['agent', need], keysOnly: true }, (source) =>
      selectRows(clickhouse, name, `SELECT agent, uniqExactIf(${column}, ${column} != '') AS n\nFROM ${source.sql}\nGROUP BY agent`, source.params, distinctRow),
    );
    return new Map(rows.map((r) => [r.agent, r.n]));
  };
  const [rows, tools, accounts] = await Promise.all([
    rowsP,
    options.tools ? distinct('tool', 'tool', 'agentActivity.tools') : undefined,
    options.accounts ? distinct('account', 'account_id', 'agentActivity.accounts') : undefined,
  ]);
  const total = rows.reduce((n, r) => n + r.calls, 0);
  return rows.map((r) => {
    const { maxMs: _, ...merged } = toMerged(r);
    return { agent: r.agent, ...merged, share: ratio(r.calls, total), tools: tools?.get(r.agent) ?? 0, accounts: accounts?.get(r.agent) ?? 0 };
  });
}

/** What the deprecated `agents` query answers: a subset of AgentActivity. */
export type AgentStats = Pick<AgentActivity, 'agent' | 'calls' | 'errors' | 'denials' | 'p50Ms' | 'p99Ms' | 'costUsd'>;
