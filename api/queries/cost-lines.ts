/**
 * Costs from the rollups: each minute's calls and duration sum priced by the rule in force at that
 * minute, in one statement. Whole days and weeks in which the book does not change are read from the
 * daily and weekly cost rollups and priced once per bucket, the rest from the minute rollup
 * (./cost-plan.ts): the same amounts. The price book is small, so it travels as parameters: time is cut
 * into segments at every instant a rule or a cost-centre mapping starts or ends; each rollup row finds
 * its winning rule with bit masks (`ruleMasks`) and its cost centre with one look-up
 * (`costCentreIndex`); rows are summed per output group and rule. Money stays integer: sums and the
 * reported cost (nano-units) come back as integer text and are priced here with bigint (prices in
 * nano-units, amounts in atto-units, 10^-18 USD), exactly; they are rounded only when a line is printed.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { formatClickHouse } from '../../model/timestamp.ts';
import { planCostSources, WEEK_MS, type CostLevel, type CostSpan } from './cost-plan.ts';
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
  /** With `byMinute`: the rollup minute, `YYYY-MM-DD hh:mm:ss` UTC. */
  minute?: string;
}

const ATTO_PER_NANO = 1_000_000_000n;

const lineRow = z.object({
  k_cc: z.coerce.number().int().optional(),
  k_account: z.string().optional(),
  k_agent: z.string().optional(),
  k_service: z.string().optional(),
  k_tool: z.string().optional(),
  k_day: z.string().optional(),
  k_month: z.string().optional(),
  k_minute: z.string().optional(),
  l_calls: z.coerce.bigint(),
  l_duration_ns: z.coerce.bigint(),
  l_reported_nanos: z.coerce.bigint(),
  l_priced_atto: z.coerce.bigint(),
  l_unpriced_calls: z.coerce.bigint(),
  /** Indexes (1-based, precedence order) of the rules that priced some of the line's calls. */
  l_rules: z.array(z.coerce.number().int().positive()),
  /** 0 when some row's tool was not among the known tools (globs matched once per known tool). */
  l_known: z.coerce.number().int().optional(),
});

/** The segment boundaries (epoch ms, ascending, starting at 0) where some rule or mapping starts or ends. */
function segmentPoints(book: PriceBook): number[] {
  const points = new Set<number>([0]);
  for (const v of [...book.prices, ...book.costCentres]) {
    points.add(v.from);
    if (Number.isFinite(v.until)) points.add(v.until);
  }
  return [...points].sort((a, b) => a - b);
}

const dt = (ms: number) => formatClickHouse({ epochMs: ms, subMsNanos: 0 }).slice(0, 23);
const WORD = 64;
/**
 * A row's account as an index (1-based) into the accounts the book names, 0 for any other: the one
 * string look-up per row that the rule masks and the cost-centre map share.
 */
const ACCOUNT_INDEX = 'ACCOUNT_INDEX';
/**
 * The tools of the tenant's weekly rows in the weeks of the spans read, as a query for a scalar subquery
 * (computed once per statement): every tool of those spans but one inserted since.
 */
const KNOWN_TOOLS = `SELECT DISTINCT toString(tool) AS tool FROM cost_calls_agentless_1w_v1
  WHERE tenant = {tenant:String} AND arrayExists((f, t) -> bucket >= f AND bucket < t, {tools_from:Array(DateTime('UTC'))}, {tools_to:Array(DateTime('UTC'))})`;

/**
 * Rules as bit masks, 64 rules a word, bit i of word w = rule 64w + i in precedence order. A rollup row's
 * matching rules are the AND of its segment's mask and one mask per dimension (looked up with transform();
 * on LowCardinality columns ClickHouse computes it once per distinct value); the winner is the lowest set
 * bit. A row costs a few lookups and bit operations however many rules there are. With
 * `globs.knownTools`, tool globs are matched once per tool of the range's weeks; `globs.known` is then
 * set to an expression that is 0 for a row whose tool is not among them (priced wrongly: see
 * computeCostLines).
 */
function ruleMasks(
  rules: PriceVersion[],
  points: number[],
  accountKeys: string[],
  params: Record<string, unknown>,
  bindings: string[],
  globs: { knownTools: boolean; known?: string },
): string {
  if (rules.length === 0) return 'toUInt32(0)';
  const words = Math.ceil(rules.length / WORD);
  const bit = (i: number, w: number) => (Math.floor(i / WORD) === w ? 1n << BigInt(i % WORD) : 0n);
  const maskOf = (w: number, keep: (r: PriceVersion) => boolean) => rules.reduce((m, r, i) => (keep(r) ? m | bit(i, w) : m), 0n);
  const terms: string[][] = [];
  for (let w = 0; w < words; w++) {
    const parts: string[] = [];
    params[`seg_mask_${w}`] = points.map((start) => maskOf(w, (r) => r.from <= start && start < r.until));
    parts.push(`arrayElement({seg_mask_${w}:Array(UInt64)}, seg)`);
    if (rules.some((r) => r.account !== '')) {
      params[`account_masks_${w}`] = ['', ...accountKeys].map((k) => maskOf(w, (r) => r.account === '' || r.account === k));
      parts.push(`arrayElement({account_masks_${w}:Array(UInt64)}, ${ACCOUNT_INDEX} + 1)`);
    }
    for (const [dim, column] of [['service', 'service'], ['agent', 'agent']] as const) {
      const keys = [...new Set(rules.map((r) => r[dim]).filter((v) => v !== ''))];
      if (keys.length === 0) continue;
      params[`${dim}_keys_${w}`] = keys;
      params[`${dim}_masks_${w}`] = keys.map((k) => maskOf(w, (r) => r[dim] === '' || r[dim] === k));
      params[`${dim}_default_${w}`] = maskOf(w, (r) => r[dim] === '');
      parts.push(`transform(${column}, {${dim}_keys_${w}:Array(String)}, {${dim}_masks_${w}:Array(UInt64)}, {${dim}_default_${w}:UInt64})`);
    }
    const exactTools = [...new Set(rules.map((r) => r.tool).filter((t) => t !== '' && !isGlob(t)))];
    const wordGlobs = rules.map((r, i) => [r, i] as const).filter(([r, i]) => isGlob(r.tool) && Math.floor(i / WORD) === w);
    if (exactTools.length > 0 || rules.some((r) => isGlob(r.tool))) {
      params[`tool_default_${w}`] = maskOf(w, (r) => r.tool === '');
      let toolMask = `{tool_default_${w}:UInt64}`;
      if (exactTools.length > 0) {
        params[`tool_keys_${w}`] = exactTools;
        params[`tool_masks_${w}`] = exactTools.map((k) => maskOf(w, (r) => r.tool === '' || r.tool === k));
        toolMask = `transform(tool, {tool_keys_${w}:Array(String)}, {tool_masks_${w}:Array(UInt64)}, ${toolMask})`;
      }
      const globTerms = wordGlobs.map(([r, i]) => {
        params[`glob_${i}`] = globToLike(r.tool);
        return `if(tool LIKE {glob_${i}:String}, toUInt64(${bit(i, w)}), toUInt64(0))`;
      });
      const matched = globTerms.length ? `bitOr(${toolMask}, ${globTerms.join(' + ')})` : toolMask;
      if (globTerms.length === 0 || !globs.knownTools) parts.push(matched);
      else {
        // Matching globs row by row costs more than the rest of the selection together: the mask of each
        // tool the range's weeks hold is computed once (KNOWN_TOOLS) and looked up per distinct value.
        bindings.push(`(SELECT (groupArray(tool), groupArray(${matched}), groupArray(toUInt8(1))) FROM (SELECT '' AS tool UNION DISTINCT ${KNOWN_TOOLS})) AS tool_globs_${w}`);
        parts.push(`transform(tool, tool_globs_${w}.1, tool_globs_${w}.2, toUInt64(0))`);
        globs.known ??= `transform(tool, tool_globs_${w}.1, tool_globs_${w}.3, toUInt8(0))`;
      }
    }
    terms.push(parts);
  }
  const pick = terms.map((parts, w) => `(${parts.reduce((a, b) => `bitAnd(${a}, ${b})`)} AS m${w}) != 0, ${w * WORD} + bitCount(bitXor(m${w}, m${w} - 1))`);
  return `multiIf(${pick.join(', ')}, 0)`;
}

/**
 * The cost centre of a row as an index into `names` (0 = unallocated): its account's mapping in its
 * segment (`account`, absent when the book maps no account), else its agent's (`whole`; `agentMapped`:
 * whether the book maps any agent). Per segment, the key is looked up once (transform) and the segment
 * picks the mapping.
 */
function costCentreIndex(book: PriceBook, points: number[], accountKeys: string[], params: Record<string, unknown>, names: string[]): { account?: string; whole: string; agentMapped: boolean } {
  const index = (name: string) => {
    const i = names.indexOf(name);
    return i >= 0 ? i : names.push(name) - 1;
  };
  const lookups: Partial<Record<'account' | 'agent', string>> = {};
  for (const dimension of ['account', 'agent'] as const) {
    const mappings = book.costCentres.filter((c) => c.dimension === dimension);
    if (mappings.length === 0) continue;
    // Key 0 is "not mapped"; the accounts share the index the rule masks use.
    const keys = dimension === 'account' ? ['', ...accountKeys] : ['', ...new Set(mappings.map((c) => c.key))];
    // table[(key index) * segments + segment] (1-based) = cost-centre index in that segment (0 = none).
    const table: number[] = new Array(keys.length * points.length).fill(0);
    for (const c of mappings) {
      const k = keys.indexOf(c.key);
      points.forEach((start, s) => {
        if (c.from <= start && start < c.until) table[k * points.length + s] = index(c.costCentre);
      });
    }
    params[`cc_${dimension}_table`] = table;
    let key = ACCOUNT_INDEX;
    if (dimension === 'agent') {
      params.cc_agent_keys = keys.slice(1);
      params.cc_agent_ids = keys.slice(1).map((_, i) => i + 1);
      key = 'transform(agent, {cc_agent_keys:Array(String)}, {cc_agent_ids:Array(UInt32)}, toUInt32(0))';
    }
    lookups[dimension] = `arrayElement({cc_${dimension}_table:Array(UInt32)}, ${key} * ${points.length} + seg)`;
  }
  const { account, agent } = lookups;
  const whole = agent === undefined ? (account ?? 'toUInt32(0)') : account === undefined ? agent : `if((${account} AS cc_first) != 0, cc_first, ${agent})`;
  return { ...(account !== undefined && { account }), whole, agentMapped: agent !== undefined };
}

/**
 * The statement with each array parameter bound once, in a WITH clause, and referred to by name: each
 * place a parameter is written is substituted and analysed on its own, and the look-up tables of a
 * large book (an entry per account and segment) written a dozen times cost more to analyse than the
 * rows cost to price.
 */
function hoistArrayParameters(sql: string, params: Record<string, unknown>, bindings: string[] = []): string {
  const hoisted = new Map<string, string>();
  const body = sql.replace(/\{(\w+):(Array\([^{}]*\))\}/g, (_, name: string, type: string) => {
    if (!Array.isArray(params[name])) return `{${name}:${type}}`;
    hoisted.set(name, type);
    return `a_${name}`;
  });
  const all = [...[...hoisted].map(([name, type]) => `{${name}:${type}} AS a_${name}`), ...bindings];
  return all.length === 0 ? sql : `WITH ${all.join(', ')}${body}`;
}

export interface CostLineOptions {
  /** One line per group and minute (`CostLine.minute`): every minute is read from the minute rollup. */
  byMinute?: boolean;
  /**
   * `planned` (the default): whole days and weeks without a change of the book from the coarse rollups,
   * the rest by minute (./cost-plan.ts). `minutes`: every minute from the minute rollup; the same
   * amounts, slower.
   */
  sources?: 'planned' | 'minutes';
  /** Read these spans of the range only (a part of planFor's plan; ./cost-line-cache.ts). */
  spans?: CostSpan[];
}

/** The coarse rollups (sql/0019, sql/0020): the dimensions pricing needs, per bucket. */
export const COARSE_TABLES: Record<Exclude<CostLevel, 'minute'>, string> = { week: 'cost_calls_1w_v1', day: 'cost_calls_1d_v1' };
/** The same without the agent (sql/0021), for questions and books in which the agent can matter only through an unmapped account. */
export const AGENTLESS_TABLES: Record<Exclude<CostLevel, 'minute'>, string> = { week: 'cost_calls_agentless_1w_v1', day: 'cost_calls_agentless_1d_v1' };

/** The plan for a question: weeks only when no grouping needs a finer time, none for minute lines. */
export function planFor(book: PriceBook, range: MsRange, groupBy: readonly CostDimension[], options: CostLineOptions): CostSpan[] {
  const levels = new Set<Exclude<CostLevel, 'minute'>>();
  if (!options.byMinute && options.sources !== 'minutes') {
    levels.add('day');
    if (!groupBy.includes('day')) levels.add('week');
  }
  return planCostSources(book, range, { levels, byMonth: groupBy.includes('month') });
}

/** Uncached; exported for tests that compare the plan's answer with the minute rollup's. */
export async function computeCostLines(
  clickhouse: ClickHouseClient,
  tenant: string,
  range: MsRange,
  groupBy: readonly CostDimension[],
  filter: CostFilter,
  book: PriceBook,
  options: CostLineOptions = {},
  matchGlobsOnce = true,
): Promise<CostLine[]> {
  const rules = [...book.prices].sort(comparePrecedence);
  const points = segmentPoints(book);
  const needsCostCentre = groupBy.includes('costCentre') || filter.costCentre !== undefined;
  const params: Record<string, unknown> = { tenant };
  // A minute (or a bucket: no segment starts inside one the plan reads whole) is in a segment from the
  // first whole second at or after the segment's start: compared as integers, with no conversion of
  // each row's time to DateTime64.
  points.forEach((p, i) => (params[`p${i}`] = Math.ceil(p / 1000)));
  const segment = (time: string) => (points.length === 1 ? 'toUInt32(1)' : points.map((_, i) => `(toUInt32(${time}) >= {p${i}:UInt32})`).join(' + '));
  const names = [UNALLOCATED];
  const accountKeys = [...new Set([...rules.map((r) => r.account), ...book.costCentres.filter((c) => c.dimension === 'account').map((c) => c.key)].filter((a) => a !== ''))];
  params.account_keys = accountKeys;
  params.account_ids = accountKeys.map((_, i) => i + 1);
  const centre = needsCostCentre ? costCentreIndex(book, points, accountKeys, params, names) : undefined;
  const bindings: string[] = [];
  const globs: { knownTools: boolean; known?: string } = { knownTools: matchGlobsOnce };
  const rule = ruleMasks(rules, points, accountKeys, params, bindings, globs);

  const filters: string[] = [];
  for (const [name, column] of [['agent', 'agent'], ['account', 'account_id'], ['service', 'service'], ['tool', 'tool']] as const) {
    if (filter[name] !== undefined) {
      filters.push(`${column} = {f_${name}:String}`);
      params[`f_${name}`] = filter[name];
    }
  }

  // Without a rule on an agent, a grouping or a filter by agent, a coarse bucket's calls need their agent
  // only for the cost centre of an account the book does not map in that segment: the others are read
  // from the rollups without the agent (sql/0021), several times fewer rows.
  const agentless = !groupBy.includes('agent') && filter.agent === undefined && rules.every((r) => r.agent === '');
  const spans = options.spans ?? planFor(book, range, groupBy, options);
  if (spans.length === 0) return [];
  const accountCentre = centre?.agentMapped ? centre.account : undefined;
  // The rows each level reads, in one shape: the calls of rollup rows without the agent have agent ''
  // (no rule and no mapping names it). Those rows are read only for accounts mapped in their segment.
  const sources = (['minute', 'day', 'week'] as const).flatMap((level): Array<{ level: CostLevel; table: string; where?: string }> => {
    if (!spans.some((s) => s.level === level)) return [];
    if (level === 'minute') return [{ level, table: 'tool_calls_1m_v1' }];
    if (!agentless || (centre?.agentMapped && accountCentre === undefined)) return [{ level, table: COARSE_TABLES[level] }];
    if (accountCentre === undefined) return [{ level, table: AGENTLESS_TABLES[level] }];
    return [
      { level, table: AGENTLESS_TABLES[level], where: `${accountCentre} != 0` },
      { level, table: COARSE_TABLES[level], where: `${accountCentre} = 0` },
    ];
  });
  const reads = sources.map(({ level, table, where }) => {
    const mine = spans.filter((s) => s.level === level);
    const time = level === 'minute' ? 'minute' : 'bucket';
    const times = mine.map((s, i) => {
      params[`${level}${i}_from`] = dt(s.fromMs);
      params[`${level}${i}_to`] = dt(s.toMs);
      return `(${time} >= {${level}${i}_from:DateTime64(3, 'UTC')} AND ${time} < {${level}${i}_to:DateTime64(3, 'UTC')})`;
    });
    // Account as LowCardinality everywhere (the minute rollup keeps a String), so each look-up on it runs
    // once per distinct value; the reported cost as integer nano-units (the minute rollup keeps Decimal(38, 9)).
    const columns = level === 'minute'
      ? 'toLowCardinality(account_id) AS account_id, agent, service, tool, minute AS t, calls, duration_sum_ns, toInt128(cost_usd_sum * 1000000000) AS reported_nanos'
      : `account_id, ${table === AGENTLESS_TABLES[level] ? "toLowCardinality('') AS agent" : 'agent'}, service, tool, bucket AS t, calls, duration_sum_ns, toInt128(reported_nanos) AS reported_nanos`;
    return `
          SELECT ${columns}
          FROM ${table}
          WHERE ${['tenant = {tenant:String}', `(${times.join(' OR ')})`, ...filters, ...(where ? [where.replace(/\bseg\b/g, `(${segment(time)})`)] : [])].join(' AND ')}`;
  });
  const columns: Array<[CostDimension | 'minute', string]> = [
    ['costCentre', `${centre?.whole ?? '0'} AS k_cc`],
    ['account', 'toString(account_id) AS k_account'],
    ['agent', 'toString(agent) AS k_agent'],
    ['service', 'toString(service) AS k_service'],
    ['tool', 'toString(tool) AS k_tool'],
    ['day', 'toString(toDate(t)) AS k_day'],
    ['month', 'toString(toStartOfMonth(t)) AS k_month'],
    ['minute', 'toString(t) AS k_minute'],
  ];
  const grouped = columns.filter(([d]) => (d === 'minute' ? options.byMinute === true : groupBy.includes(d) || (d === 'costCentre' && needsCostCentre)));
  const keys = grouped.map(([, c]) => c.slice(c.lastIndexOf(' AS ') + 4));
  // The rows are grouped by output group and rule (tens of thousands for a month by account); priced
  // here, exactly (prices in nano-units, Int256: no price the book accepts can overflow), and summed per
  // output group, so only the lines travel back.
  params.tools_from = spans.map((s) => Math.floor(s.fromMs / WEEK_MS) * (WEEK_MS / 1000));
  params.tools_to = spans.map((s) => Math.ceil(s.toMs / 1000));
  params.rule_call_nanos = rules.map((r) => r.perCallNanos);
  params.rule_second_nanos = rules.map((r) => r.perSecondNanos);
  const query = hoistArrayParameters(
    `
    SELECT ${[...keys,
      'toString(sum(g_calls)) AS l_calls',
      'toString(sum(g_duration_ns)) AS l_duration_ns',
      'toString(sum(g_reported_nanos)) AS l_reported_nanos',
      `toString(sum(toInt256(g_calls) * arrayElement({rule_call_nanos:Array(Int256)}, ri) * ${ATTO_PER_NANO} + toInt256(g_duration_ns) * arrayElement({rule_second_nanos:Array(Int256)}, ri))) AS l_priced_atto`,
      'toString(sumIf(g_calls, ri = 0)) AS l_unpriced_calls',
      'arraySort(groupUniqArrayIf(ri, ri > 0)) AS l_rules',
      ...(globs.known ? ['min(g_known) AS l_known'] : [])].join(',\n           ')}
    FROM (
        SELECT ${[...grouped.map(([, c]) => c), `${rule} AS ri`].join(', ')},
               sum(calls) AS g_calls, sum(duration_sum_ns) AS g_duration_ns, sum(reported_nanos) AS g_reported_nanos${globs.known ? `, min(${globs.known}) AS g_known` : ''}
        FROM (${reads.join('\n          UNION ALL')}
        )
        GROUP BY ${[...keys, 'ri'].join(', ')}
    )${keys.length ? `\n    GROUP BY ${keys.join(', ')}` : ''}`
      .replace(/\bseg\b/g, `(${segment('t')})`)
      .replaceAll(ACCOUNT_INDEX, 'transform(account_id, {account_keys:Array(String)}, {account_ids:Array(UInt32)}, toUInt32(0))'),
    params,
    bindings,
  );
  const rows = await selectRows(clickhouse, 'cost-lines', query, params, lineRow);
  // A tool the weeks did not hold when the statement began (inserted since, or its week's rows already
  // expired): its globs were not matched; asked again, matching them row by row.
  if (rows.some((r) => r.l_known === 0)) return computeCostLines(clickhouse, tenant, range, groupBy, filter, book, options, false);
  const lines: CostLine[] = [];
  for (const r of rows) {
    const costCentreName = r.k_cc === undefined ? undefined : names[r.k_cc]!;
    if (filter.costCentre !== undefined && costCentreName !== filter.costCentre) continue;
    const key: Partial<Record<CostDimension, string>> = {};
    for (const d of COST_DIMENSIONS) {
      if (!groupBy.includes(d)) continue;
      key[d] = d === 'costCentre' ? costCentreName! : r[`k_${d}` as 'k_account']!;
    }
    const line: CostLine = {
      key,
      calls: r.l_calls,
      durationNs: r.l_duration_ns,
      pricedAtto: r.l_priced_atto,
      reportedAtto: r.l_reported_nanos * ATTO_PER_NANO,
      unpricedCalls: r.l_unpriced_calls,
      rules: r.l_rules.map((i) => rules[i - 1]!),
      ...(r.k_minute !== undefined && { minute: r.k_minute }),
    };
    lines.push(line);
  }
  return sortLines(lines);
}

/** A line's identity: its key and minute. */
export function lineId(line: CostLine): string {
  return JSON.stringify([...COST_DIMENSIONS.map((d) => line.key[d] ?? null), line.minute ?? null]);
}

/** Lines in the order of their identity, without those of no call and no reported cost. */
export function sortLines(lines: CostLine[]): CostLine[] {
  return lines
    .map((line) => ({ id: lineId(line), line }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map(({ line }) => line)
    .filter((l) => l.calls > 0n || l.reportedAtto !== 0n);
}
