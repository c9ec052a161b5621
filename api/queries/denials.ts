/**
 * Denied calls of one tenant over a range — who is probing what they may not call: counts by reason,
 * agent, tool (with its service) and required scope (a call requiring two scopes counts under each),
 * and over time. Read from denied_calls_v1 (sql/0009), one row per denied call, so exact for any range
 * and filter. The breakdowns keep the `limit` largest each; `total` counts every denial.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { formatRfc3339 } from '../../model/timestamp.ts';
import { z } from 'zod';
import { filterSql, type AggregateFilter } from './filter.ts';
import type { TimeRange } from './params.ts';
import { count, selectRows } from './select-rows.ts';
import type { Buckets } from './step.ts';

export interface DenialCount {
  key: string;
  count: number;
}

export interface ToolDenials {
  service: string;
  tool: string;
  count: number;
}

export interface Denials {
  total: number;
  byReason: DenialCount[];
  byAgent: DenialCount[];
  byTool: ToolDenials[];
  byScope: DenialCount[];
  stepSeconds: number;
  /** RFC 3339 start of each bucket, and the denials in it (0 when none). */
  buckets: string[];
  overTime: number[];
}

const row = z.object({ part: z.string(), key: z.string(), key_service: z.string(), n: count });

export async function queryDenials(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: TimeRange,
  filter: AggregateFilter,
  buckets: Buckets,
  limit: number,
): Promise<Denials> {
  const empty = new Array<number>(buckets.count).fill(0);
  const result: Denials = {
    total: 0,
    byReason: [],
    byAgent: [],
    byTool: [],
    byScope: [],
    stepSeconds: buckets.stepSeconds,
    buckets: empty.map((_, i) => formatRfc3339({ epochMs: (buckets.first + i * buckets.stepSeconds) * 1000, subMsNanos: 0 })),
    overTime: empty,
  };
  // Every row here is a denial: an OK or ERROR outcome filter leaves nothing.
  if (filter.outcome !== undefined && filter.outcome !== 'DENIED') return result;

  const { conditions, params } = filterSql(filter);
  const where = `tenant = {tenant:String}
          AND timestamp >= {from:DateTime64(9, 'UTC')} AND timestamp < {to:DateTime64(9, 'UTC')}${conditions.map((c) => `\n          AND ${c}`).join('')}`;
  const part = (name: string, key: string, service = "''") => `
    SELECT * FROM (
        SELECT '${name}' AS part, ${key} AS key, ${service} AS key_service, count() AS n
        FROM denied_calls_v1
        WHERE ${where}
        GROUP BY key, key_service
        ORDER BY n DESC, key ASC, key_service ASC
        LIMIT {limit:UInt32}
    )`;
  const sql = [
    part('reason', 'denied_reason'),
    part('agent', 'agent'),
    part('tool', 'tool', 'service'),
    part('scope', 'arrayJoin(scopes_required)'),
    `
    SELECT 'time' AS part, toString(intDiv(toUnixTimestamp(timestamp), {step:UInt32}) * {step:UInt32}) AS key, '' AS key_service, count() AS n
    FROM denied_calls_v1
    WHERE ${where}
    GROUP BY key`,
  ].join('\n    UNION ALL');
  const rows = await selectRows(clickhouse, 'denials', sql, { tenant, ...range, ...params, limit, step: buckets.stepSeconds }, row);

  const overTime = [...empty];
  for (const r of rows) {
    if (r.part === 'time') {
      const i = (Number(r.key) - buckets.first) / buckets.stepSeconds;
      overTime[i] = r.n;
      result.total += r.n;
    } else if (r.part === 'tool') {
      result.byTool.push({ service: r.key_service, tool: r.key, count: r.n });
    } else {
      const list = r.part === 'reason' ? result.byReason : r.part === 'agent' ? result.byAgent : result.byScope;
      list.push({ key: r.key, count: r.n });
    }
  }
  const byCount = <T extends { count: number }>(a: T, b: T) => b.count - a.count;
  for (const list of [result.byReason, result.byAgent, result.byScope]) list.sort((a, b) => byCount(a, b) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  result.byTool.sort((a, b) => byCount(a, b) || (a.tool < b.tool ? -1 : a.tool > b.tool ? 1 : 0) || (a.service < b.service ? -1 : 1));
  return { ...result, overTime };
}
