/**
 * The per-minute rollups of one tenant, summed into windows of the detector's length, counted back
 * from the pass's time: window 0 is the one being judged, 1…recentWindows the recent baseline, and
 * around each of the past weeks' same time the hour-of-week baseline. One statement per question,
 * the tenant first and every value bound.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { count, selectRows } from '../api/queries/select-rows.ts';

export const WEEK_MINUTES = 7 * 24 * 60;
/** Hour-of-week baseline: this many past weeks, each contributing 2·SEASONAL_SPREAD + 1 windows. */
export const SEASONAL_WEEKS = 4;
export const SEASONAL_SPREAD = 2;
/** Recent baseline: the windows of the last two hours at the default 10-minute window. */
export const RECENT_WINDOWS = 12;

export interface WindowPlan {
  /** End of window 0, epoch seconds (a whole minute). */
  at: number;
  windowMinutes: number;
  /** Window index of each past week's same time of week. */
  weekWindows: number[];
}

export function planWindows(atSeconds: number, windowMinutes: number): WindowPlan {
  const at = Math.floor(atSeconds / 60) * 60;
  const weekWindows = Array.from({ length: SEASONAL_WEEKS }, (_, i) => Math.round(((i + 1) * WEEK_MINUTES) / windowMinutes));
  return { at, windowMinutes, weekWindows };
}

/** Window indices of the hour-of-week baseline. */
export function seasonalWindows(plan: WindowPlan): number[] {
  return plan.weekWindows.flatMap((w) => Array.from({ length: 2 * SEASONAL_SPREAD + 1 }, (_, i) => w - SEASONAL_SPREAD + i));
}

function rangeParams(plan: WindowPlan, seasonal: boolean) {
  const w = plan.windowMinutes * 60;
  const params: Record<string, number> = { at: plan.at, window_s: w, recent_from: plan.at - (RECENT_WINDOWS + 1) * w };
  plan.weekWindows.forEach((idx, i) => {
    // An empty range when the tenant has no four weeks of history: nothing read there.
    params[`w${i}_from`] = seasonal ? plan.at - (idx + SEASONAL_SPREAD + 1) * w : plan.at;
    params[`w${i}_to`] = seasonal ? plan.at - (idx - SEASONAL_SPREAD) * w : plan.at;
  });
  return params;
}

const RANGES = `(
       (minute >= toDateTime({recent_from:UInt32}) AND minute < toDateTime({at:UInt32}))
    OR (minute >= toDateTime({w0_from:UInt32}) AND minute < toDateTime({w0_to:UInt32}))
    OR (minute >= toDateTime({w1_from:UInt32}) AND minute < toDateTime({w1_to:UInt32}))
    OR (minute >= toDateTime({w2_from:UInt32}) AND minute < toDateTime({w2_to:UInt32}))
    OR (minute >= toDateTime({w3_from:UInt32}) AND minute < toDateTime({w3_to:UInt32})))`;
/**
 * What the kinds judge, over a group of tool_calls_1m_v1 rows: calls, errors, denials, cost, and the p95
 * of the allowed calls' durations in ms (NaN or NULL when there were none).
 */
export const WINDOW_METRICS = `sum(calls)                                        AS calls,
    sum(errors)                                       AS errors,
    sum(denials)                                      AS denials,
    toFloat64(sum(cost_usd_sum))                      AS cost_usd,
    quantileTDigestMerge(0.95)(duration_digest) / 1e6 AS p95_ms`;

const WINDOW = `intDiv({at:UInt32} - toUInt32(minute) - 1, {window_s:UInt32})`;

export interface ToolWindow {
  window: number;
  agent: string;
  tool: string;
  calls: number;
  errors: number;
  denials: number;
  costUsd: number;
  /** p95 of allowed calls' durations in ms; null when there were none. */
  p95Ms: number | null;
}

const TOOL_SQL = `
SELECT
    ${WINDOW}                                         AS window,
    agent,
    tool,
    ${WINDOW_METRICS}
FROM tool_calls_1m_v1
WHERE tenant = {tenant:String} AND ${RANGES}
GROUP BY window, agent, tool`;

const toolRow = z.tuple([count, z.string(), z.string(), count, count, count, z.number(), z.number().nullable()]);

export async function queryToolWindows(clickhouse: ClickHouseClient, tenant: string, plan: WindowPlan, seasonal: boolean): Promise<ToolWindow[]> {
  const result = await clickhouse.query({ query: TOOL_SQL, query_params: { tenant, ...rangeParams(plan, seasonal) }, format: 'JSONCompactEachRow' });
  const rows = z.array(toolRow).parse(await result.json());
  return rows.map(([window, agent, tool, calls, errors, denials, costUsd, p95]) => ({
    window,
    agent,
    tool,
    calls,
    errors,
    denials,
    costUsd,
    p95Ms: p95 === null || !Number.isFinite(p95) ? null : p95,
  }));
}

export interface AccountWindow {
  window: number;
  account: string;
  costUsd: number;
}

const ACCOUNT_SQL = `
SELECT ${WINDOW} AS window, account_id AS account, toFloat64(sum(cost_usd_sum)) AS cost_usd
FROM tool_calls_1m_v1
WHERE tenant = {tenant:String} AND ${RANGES} AND account_id != ''
GROUP BY window, account
HAVING cost_usd > 0`;

export async function queryAccountWindows(clickhouse: ClickHouseClient, tenant: string, plan: WindowPlan, seasonal: boolean): Promise<AccountWindow[]> {
  const rows = await selectRows(
    clickhouse,
    'alert account windows',
    ACCOUNT_SQL,
    { tenant, ...rangeParams(plan, seasonal) },
    z.object({ window: count, account: z.string(), cost_usd: z.number() }),
  );
  return rows.map((r) => ({ window: r.window, account: r.account, costUsd: r.cost_usd }));
}

/**
 * The latest few minutes before the pass's time, for the kinds also judged on a short window
 * (settings.ts, shortWindowMinutes): per agent × tool, and per account for costs, one row per
 * short-window length asked for. Reads only those minutes.
 */
export interface ShortWindow {
  minutes: number;
  agent: string;
  tool: string;
  /** Set on the account rows only (agent and tool empty there); empty on the agent × tool rows. */
  account: string;
  calls: number;
  errors: number;
  denials: number;
  costUsd: number;
  p95Ms: number | null;
}

const SHORT_SQL = `
SELECT
    m                                                 AS minutes,
    agent,
    tool,
    -- 1 on the agent × tool rows, 0 on the account rows (standard GROUPING: 1 when not grouped by it).
    if(grouping(account_id) = 1, '', account_id)      AS account,
    ${WINDOW_METRICS}
FROM tool_calls_1m_v1
ARRAY JOIN {lengths:Array(UInt32)} AS m
WHERE tenant = {tenant:String}
  AND minute >= toDateTime({from:UInt32}) AND minute < toDateTime({at:UInt32})
  AND toUInt32(minute) >= {at:UInt32} - m * 60
GROUP BY GROUPING SETS ((m, agent, tool), (m, account_id))
HAVING grouping(account_id) = 1 OR account_id != ''`;

const shortRow = z.tuple([count, z.string(), z.string(), z.string(), count, count, count, z.number(), z.number().nullable()]);

export async function queryShortWindows(clickhouse: ClickHouseClient, tenant: string, at: number, lengths: number[]): Promise<ShortWindow[]> {
  if (lengths.length === 0) return [];
  const result = await clickhouse.query({
    query: SHORT_SQL,
    query_params: { tenant, at, from: at - Math.max(...lengths) * 60, lengths },
    format: 'JSONCompactEachRow',
  });
  const rows = z.array(shortRow).parse(await result.json());
  return rows.map(([minutes, agent, tool, account, calls, errors, denials, costUsd, p95]) => ({
    minutes,
    agent,
    tool,
    account,
    calls,
    errors,
    denials,
    costUsd,
    p95Ms: p95 === null || !Number.isFinite(p95) ? null : p95,
  }));
}

/** When the tenant's history starts (epoch seconds); undefined when it has none. Reads one granule. */
const TENANT_SINCE_SQL = `
SELECT toUInt32(minute) AS first FROM tool_calls_1m_v1 WHERE tenant = {tenant:String} ORDER BY minute LIMIT 1`;

export async function queryTenantSince(clickhouse: ClickHouseClient, tenant: string): Promise<number | undefined> {
  const rows = await selectRows(clickhouse, 'alert tenant since', TENANT_SINCE_SQL, { tenant }, z.object({ first: count }));
  return rows[0]?.first;
}

/**
 * For the agents given, when each first called anything and each given tool, within
 * FIRST_SEEN_LOOKBACK_DAYS before `before`. Asked only for the rare pairs that look new, since it
 * reads that whole span of the tenant's rollups.
 */
export interface FirstSeen {
  pairs: Map<string, number>;
  agents: Map<string, number>;
}

const FIRST_SEEN_SQL = `
SELECT agent, tool, toUInt32(min(minute)) AS first
FROM tool_calls_1m_v1
WHERE tenant = {tenant:String} AND minute >= toDateTime({since:UInt32}) AND minute < toDateTime({before:UInt32})
  AND has({agents:Array(String)}, agent)
GROUP BY agent, tool`;

export const FIRST_SEEN_LOOKBACK_DAYS = 35;

export async function queryFirstSeen(clickhouse: ClickHouseClient, tenant: string, before: number, agents: string[]): Promise<FirstSeen> {
  const pairs = new Map<string, number>();
  const firsts = new Map<string, number>();
  if (agents.length === 0) return { pairs, agents: firsts };
  const rows = await selectRows(
    clickhouse,
    'alert first seen',
    FIRST_SEEN_SQL,
    { tenant, before, since: before - FIRST_SEEN_LOOKBACK_DAYS * 86_400, agents },
    z.object({ agent: z.string(), tool: z.string(), first: count }),
  );
  for (const r of rows) {
    pairs.set(pairKey(r.agent, r.tool), r.first);
    firsts.set(r.agent, Math.min(firsts.get(r.agent) ?? Infinity, r.first));
  }
  return { pairs, agents: firsts };
}

export function pairKey(agent: string, tool: string): string {
  return `${agent}\u0000${tool}`;
}

const TENANTS_SQL = `
SELECT DISTINCT tenant FROM tool_calls_1m_v1
WHERE minute >= toDateTime({from:UInt32}) AND minute < toDateTime({at:UInt32})`;

/** Tenants with traffic in the last `hours` (a collapse is still seen for that long after the last call). */
export async function queryActiveTenants(clickhouse: ClickHouseClient, at: number, hours: number): Promise<string[]> {
  const rows = await selectRows(clickhouse, 'alert tenants', TENANTS_SQL, { at, from: at - hours * 3600 }, z.object({ tenant: z.string() }));
  return rows.map((r) => r.tenant).sort();
}
