/**
 * Sessions calling one tool far more than usual. Sessions are only in the raw audit table, so this
 * reads it for a short time only: the window being judged, then, for the agent × tool pairs that
 * qualify, how many calls of that tool a session of that agent usually makes in a window.
 *
 * A call reported both ways in two batches has two rows under one event_id until ClickHouse merges
 * them (its first report, counted, and the merge of both, not counted: sql/0005), and only the second
 * after. So the calls counted are the distinct event_ids of either kind.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { count, selectRows } from '../api/queries/select-rows.ts';

/** How far back the usual per-session count is taken. */
export const LOOP_BASELINE_HOURS = 6;
/** Most per-session samples read for one agent × tool. */
const SAMPLE_LIMIT = 2000;

export interface SessionBurst {
  agent: string;
  tool: string;
  session: string;
  calls: number;
}

const BURST_SQL = `
SELECT agent, tool, session_id AS session, uniqExact(event_id) AS calls
FROM audit_events_v1
WHERE tenant = {tenant:String}
  AND timestamp >= toDateTime64({from:UInt32}, 9, 'UTC') AND timestamp < toDateTime64({at:UInt32}, 9, 'UTC')
  AND (counted OR report_id != event_id) AND session_id != ''
GROUP BY agent, tool, session
HAVING calls >= {min_calls:UInt32}
ORDER BY calls DESC
LIMIT 1000`;

export async function querySessionBursts(clickhouse: ClickHouseClient, tenant: string, at: number, windowMinutes: number, minCalls: number): Promise<SessionBurst[]> {
  return selectRows(
    clickhouse,
    'alert session bursts',
    BURST_SQL,
    { tenant, at, from: at - windowMinutes * 60, min_calls: Math.max(1, Math.ceil(minCalls)) },
    z.object({ agent: z.string(), tool: z.string(), session: z.string(), calls: count }),
  );
}

const USUAL_SQL = `
SELECT agent, tool, groupArray({limit:UInt32})(calls) AS samples
FROM (
    SELECT agent, tool, session_id, intDiv(toUInt32(toDateTime(timestamp)), {window_s:UInt32}) AS w, uniqExact(event_id) AS calls
    FROM audit_events_v1
    WHERE tenant = {tenant:String}
      AND timestamp >= toDateTime64({from:UInt32}, 9, 'UTC') AND timestamp < toDateTime64({to:UInt32}, 9, 'UTC')
      AND (counted OR report_id != event_id) AND session_id != ''
      AND has(arrayZip({agents:Array(String)}, {tools:Array(String)}), (agent, tool))
    GROUP BY agent, tool, session_id, w
)
GROUP BY agent, tool`;

/** Calls of the tool per session and window, for each pair, before the window being judged. */
export async function queryUsualSessionCounts(
  clickhouse: ClickHouseClient,
  tenant: string,
  at: number,
  windowMinutes: number,
  pairs: Array<[string, string]>,
): Promise<Map<string, number[]>> {
  if (pairs.length === 0) return new Map();
  const rows = await selectRows(
    clickhouse,
    'alert usual session counts',
    USUAL_SQL,
    { tenant, agents: pairs.map((p) => p[0]), tools: pairs.map((p) => p[1]), window_s: windowMinutes * 60, from: at - LOOP_BASELINE_HOURS * 3600, to: at - windowMinutes * 60, limit: SAMPLE_LIMIT },
    z.object({ agent: z.string(), tool: z.string(), samples: z.array(count) }),
  );
  return new Map(rows.map((r) => [`${r.agent}\u0000${r.tool}`, r.samples]));
}
