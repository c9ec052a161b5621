/**
 * The filter every aggregate takes (`AggregateFilter` in the schema): exact matches on the call's agent,
 * service, tool and account, and its outcome. Checked once at the GraphQL border; the values reach SQL
 * only as bound parameters (`{f_agent:String}`, ...), never in the statement's text.
 */
import { badInput, parseFilter } from './params.ts';

export const OUTCOMES = ['OK', 'ERROR', 'DENIED'] as const;
/** A denied call is DENIED whatever its error; an allowed call with an error is ERROR; the rest OK. */
export type Outcome = (typeof OUTCOMES)[number];

/** The dimensions a question can group or filter by (the outcome is in every rollup's key). */
export const DIMENSIONS = ['agent', 'service', 'tool', 'account'] as const;
export type Dimension = (typeof DIMENSIONS)[number];

export interface AggregateFilter {
  agent?: string;
  service?: string;
  tool?: string;
  account?: string;
  outcome?: Outcome;
}

export interface AggregateFilterInput {
  agent?: string | null;
  service?: string | null;
  tool?: string | null;
  account?: string | null;
  outcome?: string | null;
}

export function parseAggregateFilter(input: AggregateFilterInput | null | undefined): AggregateFilter {
  const filter: AggregateFilter = {};
  if (!input) return filter;
  for (const dimension of DIMENSIONS) {
    const value = parseFilter(input[dimension], `filter.${dimension}`);
    if (value !== undefined) filter[dimension] = value;
  }
  if (input.outcome != null) {
    if (!(OUTCOMES as readonly string[]).includes(input.outcome)) {
      throw badInput(`filter.outcome must be one of ${OUTCOMES.join(', ')}, got ${JSON.stringify(input.outcome)}`, 'filter.outcome');
    }
    filter.outcome = input.outcome as Outcome;
  }
  return filter;
}

/** The dimensions a filter narrows: a rollup must key them to answer it. */
export function filterDimensions(filter: AggregateFilter): Dimension[] {
  return DIMENSIONS.filter((d) => filter[d] !== undefined);
}

/** The ClickHouse column of each dimension, and of the outcome, in the rollups and denied_calls_v1. */
export const COLUMN: Record<Dimension | 'outcome', string> = {
  agent: 'agent',
  service: 'service',
  tool: 'tool',
  account: 'account_id',
  outcome: 'outcome',
};

/** The outcome of a raw audit_events_v1 row, as the rollups key it (sql/0008). */
export const RAW_OUTCOME = "multiIf(NOT allowed, 'DENIED', is_error, 'ERROR', 'OK')";

/**
 * The filter as conditions on columns and their bound parameters. `outcome` names the outcome's
 * expression (a column in the rollups, RAW_OUTCOME on the raw table); without it the outcome is not filtered.
 */
export function filterSql(filter: AggregateFilter, outcome?: string): { conditions: string[]; params: Record<string, string> } {
  const conditions: string[] = [];
  const params: Record<string, string> = {};
  for (const dimension of DIMENSIONS) {
    const value = filter[dimension];
    if (value === undefined) continue;
    conditions.push(`${COLUMN[dimension]} = {f_${dimension}:String}`);
    params[`f_${dimension}`] = value;
  }
  if (filter.outcome !== undefined && outcome !== undefined) {
    conditions.push(`${outcome} = {f_outcome:String}`);
    params.f_outcome = filter.outcome;
  }
  return { conditions, params };
}
