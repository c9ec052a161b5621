/**
 * Costs from the per-minute rollups: each minute's calls and duration sum priced by the rule in force at
 * that minute, in one statement. The price book is small, so it travels as array parameters: time is cut
 * into segments at every instant a rule or a cost-centre mapping starts or ends, the rollup rows are
 * summed per segment and per the dimensions that matter, and each such sum is matched against the rules
 * in precedence order (`arrayFirstIndex` over the rules sorted by `comparePrecedence`). Money stays
 * integer: prices in nano-units, priced amounts in atto-units (10^-18 USD, Int128), reported costs as
 * the rollup's Decimal(38, 9), all summed exactly and rounded only when a line is printed.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { formatClickHouse } from '../../model/timestamp.ts';
import { comparePrecedence, globToLike, isGlob, UNALLOCATED, type PriceBook, type PriceVersion } from './price-book.ts';
import { selectRows } from './select-rows.ts';

export const COST_DIMENSIONS = ['costCentre', 'account', 'agent', 'service', 'tool', 'day', 'month'] as const;
export type CostDimension = (typeof COST_DIMENSIONS)[number];

export interface CostFilter {
  costCentre?: string;
  agent?: string;
  account?: string;
  service?: string;
  tool?: string;
}

/** A range of whole minutes, [fromMs, toMs). */
export interface MsRange {
  fromMs: number;
  toMs: number;
}

export interface CostLine {
  /** The value of each grouped dimension (days and months as `YYYY-MM-DD`). */
  key: Partial<Record<CostDimension, string>>;
  calls: bigint;
  durationNs: bigint;
  /** Priced cost in 10^-18 USD, exact. */
  pricedAtto: bigint;
  /** The records' own cost_usd, in 10^-18 USD, exact. */
  reportedAtto: bigint;
  /** Calls no rule priced. */
  unpricedCalls: bigint;
  rules: PriceVersion[];
}

const ATTO_PER_NANO = 1_000_000_000n;

const lineRow = z.object({
  cost_centre: z.string().optional(),
  account: z.string().optional(),
  agent: z.string().optional(),
  service: z.string().optional(),
  tool: z.string().optional(),
  day: z.string().optional(),
  month: z.string().optional(),
  line_calls: z.coerce.bigint(),
  line_duration_ns: z.coerce.bigint(),
  line_priced_atto: z.coerce.bigint(),
  line_reported: z.string(),
  line_unpriced_calls: z.coerce.bigint(),
  line_rules: z.array(z.coerce.number().int()),
});

/** `"0.063000000"` (Decimal(38, 9) as text) → 63_000_000_000_000_000n atto-units. */
export function attoFromDecimal9(text: string): bigint {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (!m) throw new Error(`ClickHouse returned an unexpected decimal: ${JSON.stringify(text)}`);
  const nanos = BigInt(m[2]!) * ATTO_PER_NANO + BigInt((m[3] ?? '').padEnd(9, '0'));
  return (m[1] ? -nanos : nanos) * ATTO_PER_NANO;
}

/** The segment boundaries (epoch ms, ascending, starting at 0) where some rule or mapping starts or ends. */
function segmentPoints(book: PriceBook): number[] {
  const points = new Set<number>([0]);
  for (const v of [...book.prices, ...book.costCentres]) {
    points.add(v.from);
    if (Number.isFinite(v.until)) points.add(v.until);
  }
  return [...points].sort((a, b) => a - b);
}

/** 1-based index of the segment that starts at `ms` (a point), or points.length + 1 for Infinity. */
function segmentOf(points: number[], ms: number): number {
  return Number.isFinite(ms) ? points.indexOf(ms) + 1 : points.length + 1;
}

const dt = (ms: number) => formatClickHouse({ epochMs: ms, subMsNanos: 0 }).slice(0, 23);

export async function queryCostLines(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: MsRange,
  groupBy: readonly CostDimension[],
  filter: CostFilter,
  book: PriceBook,
): Promise<CostLine[]> {
  const rules = [...book.prices].sort(comparePrecedence);
  const points = segmentPoints(book);
  const needsCostCentre = groupBy.includes('costCentre') || filter.costCentre !== undefined;
  const mapped = (d: 'account' | 'agent') => needsCostCentre && book.costCentres.some((c) => c.dimension === d);
  const used = (d: 'service' | 'tool' | 'account' | 'agent') => rules.some((r) => r[d] !== '');
  const inner = {
    account: groupBy.includes('account') || used('account') || mapped('account'),
    agent: groupBy.includes('agent') || used('agent') || mapped('agent'),
    service: groupBy.includes('service') || used('service'),
    tool: groupBy.includes('tool') || used('tool'),
  };

  const params: Record<string, unknown> = {
    tenant,
    from: dt(range.fromMs),
    to: dt(range.toMs),
    points: points.map(dt),
    r_from: rules.map((r) => segmentOf(points, r.from)),
    r_until: rules.map((r) => segmentOf(points, r.until)),
    r_service: rules.map((r) => r.service),
    r_tool_kind: rules.map((r) => (r.tool === '' ? 0 : isGlob(r.tool) ? 2 : 1)),
    r_tool: rules.map((r) => (isGlob(r.tool) ? globToLike(r.tool) : r.tool)),
    r_account: rules.map((r) => r.account),
    r_agent: rules.map((r) => r.agent),
    r_call: rules.map((r) => r.perCallNanos.toString()),
    r_second: rules.map((r) => r.perSecondNanos.toString()),
  };

  // Cost-centre mappings per segment as `segment|key` → cost centre, looked up with transform().
  for (const dimension of ['account', 'agent'] as const) {
    const keys: string[] = [];
    const values: string[] = [];
    for (const c of book.costCentres.filter((m) => m.dimension === dimension)) {
      for (let s = segmentOf(points, c.from); s < segmentOf(points, c.until) && s <= points.length; s++) {
        keys.push(`${s}|${c.key}`);
        values.push(c.costCentre);
      }
    }
    params[`cc_${dimension}_keys`] = keys;
    params[`cc_${dimension}_values`] = values;
  }

  const where = ['tenant = {tenant:String}', "minute >= {from:DateTime64(3, 'UTC')}", "minute < {to:DateTime64(3, 'UTC')}"];
  for (const [name, column] of [['agent', 'agent'], ['account', 'account_id'], ['service', 'service'], ['tool', 'tool']] as const) {
    if (filter[name] !== undefined) {
      where.push(`${column} = {f_${name}:String}`);
      params[`f_${name}`] = filter[name];
    }
  }

  const segment = points.length === 1 ? '1' : "arrayCount(p -> p <= minute, {points:Array(DateTime64(3, 'UTC'))})";
  const innerColumns = [
    `${segment} AS seg`,
    inner.account ? 'account_id AS account' : "'' AS account",
    inner.agent ? 'agent' : "'' AS agent",
    inner.service ? 'service' : "'' AS service",
    inner.tool ? 'tool' : "'' AS tool",
    groupBy.includes('day') ? 'toDate(minute) AS day' : "toDate(0) AS day",
    groupBy.includes('month') ? 'toStartOfMonth(minute) AS month' : "toDate(0) AS month",
  ];
  const ruleIndex =
    rules.length === 0
      ? '0'
      : `arrayFirstIndex((fs, us, s, tk, tp, a, g) -> fs <= seg AND seg < us
           AND (s = '' OR s = service)
           AND (tk = 0 OR (tk = 1 AND tp = tool) OR (tk = 2 AND tool LIKE tp))
           AND (a = '' OR a = account) AND (g = '' OR g = agent),
         {r_from:Array(UInt32)}, {r_until:Array(UInt32)}, {r_service:Array(String)}, {r_tool_kind:Array(UInt8)},
         {r_tool:Array(String)}, {r_account:Array(String)}, {r_agent:Array(String)})`;
  const costCentre = `multiIf(
      (transform(concat(toString(seg), '|', account), {cc_account_keys:Array(String)}, {cc_account_values:Array(String)}, '') AS cca) != '', cca,
      (transform(concat(toString(seg), '|', agent), {cc_agent_keys:Array(String)}, {cc_agent_values:Array(String)}, '') AS ccg) != '', ccg,
      '${UNALLOCATED}')`;
  const priced =
    rules.length === 0
      ? 'toInt128(0)'
      : `if(ri = 0, toInt128(0), toInt128(calls) * toInt128(toInt64({r_call:Array(String)}[ri])) * 1000000000 + toInt128(dur) * toInt128(toInt64({r_second:Array(String)}[ri])))`;

  const outer: Array<[CostDimension, string]> = [
    ['costCentre', 'cost_centre'],
    ['account', 'account'],
    ['agent', 'agent'],
    ['service', 'service'],
    ['tool', 'tool'],
    ['day', 'toString(day) AS day'],
    ['month', 'toString(month) AS month'],
  ];
  const outerColumns = outer.filter(([d]) => groupBy.includes(d)).map(([, c]) => c);
  const groupNames = outer.filter(([d]) => groupBy.includes(d)).map(([d]) => (d === 'costCentre' ? 'cost_centre' : d));
  if (filter.costCentre !== undefined) params.f_cost_centre = filter.costCentre;

  const query = `
    SELECT ${[...outerColumns, ''].join(', ')}
           sum(calls) AS line_calls, toString(sum(dur)) AS line_duration_ns, toString(sum(priced)) AS line_priced_atto,
           toString(sum(reported)) AS line_reported, sumIf(calls, ri = 0) AS line_unpriced_calls, groupUniqArray(ri) AS line_rules
    FROM (
      SELECT seg, account, agent, service, tool, day, month, calls, dur, reported,
             ${ruleIndex} AS ri,
             ${needsCostCentre ? costCentre : `'${UNALLOCATED}'`} AS cost_centre,
             ${priced} AS priced
      FROM (
        SELECT ${innerColumns.join(', ')},
               sum(calls) AS calls, sum(duration_sum_ns) AS dur, sum(cost_usd_sum) AS reported
        FROM tool_calls_1m_v1
        WHERE ${where.join(' AND ')}
        GROUP BY seg, account, agent, service, tool, day, month
      )
    )
    ${filter.costCentre !== undefined ? 'WHERE cost_centre = {f_cost_centre:String}' : ''}
    ${groupNames.length ? `GROUP BY ${groupNames.join(', ')} ORDER BY ${groupNames.join(', ')}` : ''}`;

  const rows = await selectRows(clickhouse, 'cost-lines', query, params, lineRow);
  return rows
    .filter((r) => r.line_calls > 0n || attoFromDecimal9(r.line_reported) !== 0n)
    .map((r) => ({
      key: Object.fromEntries(
        outer
          .filter(([d]) => groupBy.includes(d))
          .map(([d]) => [d, (d === 'costCentre' ? r.cost_centre : r[d as Exclude<CostDimension, 'costCentre'>]) ?? '']),
      ),
      calls: r.line_calls,
      durationNs: r.line_duration_ns,
      pricedAtto: r.line_priced_atto,
      reportedAtto: attoFromDecimal9(r.line_reported),
      unpricedCalls: r.line_unpriced_calls,
      rules: r.line_rules.filter((i) => i > 0).sort((a, b) => a - b).map((i) => rules[i - 1]!),
    }));
}
