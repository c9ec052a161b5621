/** Costs: the price book and cost centres (read by viewers, changed by admins), cost reports, closed periods. */
import type { ClickHouseClient } from '@clickhouse/client';
import { tenantOf, type ApiContext } from '../context.ts';
import { money } from '../money.ts';
import { checkBudgets, SCOPES, setBudget, type BudgetStatus } from '../queries/budgets.ts';
import { closePeriod, reopenPeriod } from '../queries/chargeback.ts';
import { listPeriods, parsePeriod } from '../queries/closed-periods.ts';
import { COST_DIMENSIONS, type CostDimension, type CostFilter } from '../queries/cost-lines.ts';
import { queryCostReport, type ReportLine, type ReportTotal } from '../queries/cost-report.ts';
import { badInput, parseFilter } from '../queries/params.ts';
import {
  appendEntries,
  comparePrecedence,
  formatNanos,
  isoMs,
  loadPriceBook,
  parseInstantMs,
  parseMatch,
  parsePriceNanos,
  PriceBookInputError,
  ruleId,
  type NewEntry,
  type PriceBook,
  type PriceVersion,
} from '../queries/price-book.ts';

export const typeDefs = /* GraphQL */ `
  type Query {
    "The price book and cost-centre map in force at \`at\` (default now), with its version."
    prices(at: String): PriceBook! @requires(role: VIEWER)
    "Every change to the price book and cost-centre map, newest first: who changed what and when."
    priceBookChanges(limit: Int = 100): [PriceBookChange!]! @requires(role: VIEWER)
    """
    Costs over [from, to) (whole minutes), one row per group of \`groupBy\` (none: one row), and their total.
    Each row's amounts are rounded half-even to the cent; the total is the sum of the rows.
    """
    costReport(from: String!, to: String!, groupBy: [CostGroup!] = [], filter: CostFilter): CostReport! @requires(role: VIEWER)
    "Closed billing periods (and reopened ones), latest change first."
    billingPeriods: [BillingPeriod!]! @requires(role: VIEWER)
    "Budgets of a period (YYYY-MM, default the current month): spend so far, forecast to the period's end, thresholds crossed."
    budgets(period: String): [Budget!]! @requires(role: VIEWER)
  }

  type Mutation {
    "Sets the price of a match from effectiveFrom on (until the match's next price). Prices are decimal USD strings."
    setPrice(input: PriceInput!): PriceBook! @requires(role: ADMIN)
    "Ends a match's price at effectiveFrom: from then on the next most specific rule applies."
    retirePrice(input: RetireInput!): PriceBook! @requires(role: ADMIN)
    "Maps an account or an agent (exactly one) to a cost centre from effectiveFrom on."
    setCostCentre(input: CostCentreInput!): PriceBook! @requires(role: ADMIN)
    "Ends an account's or agent's mapping at effectiveFrom (its calls are then unallocated, or the agent's)."
    retireCostCentre(input: RetireCostCentreInput!): PriceBook! @requires(role: ADMIN)
    "Closes a billing period (YYYY-MM): its chargeback is stored with its SHA-256 and never changes after."
    closePeriod(period: String!, groupBy: [CostGroup!] = [COST_CENTRE, ACCOUNT]): BillingPeriod! @requires(role: BILLING)
    "Reopens a closed period; the reason is kept in the log."
    reopenPeriod(period: String!, reason: String!): BillingPeriod! @requires(role: ADMIN)
    "Sets the budget (an amount of 0 removes it) of a cost centre, account or agent (exactly one) for a period."
    setBudget(input: BudgetInput!): [Budget!]! @requires(role: BILLING)
  }

  input BudgetInput {
    costCentre: String
    account: String
    agent: String
    "YYYY-MM"
    period: String!
    "USD, a decimal string with at most 2 decimals."
    amount: String!
    "Percentages of the amount, each 1-1000."
    thresholds: [Int!] = [80, 100]
  }

  type Budget {
    "COST_CENTRE, ACCOUNT or AGENT."
    scope: CostGroup!
    key: String!
    period: String!
    amount: Money!
    "Priced plus reported cost so far, rounded half-even to the cent."
    spend: Money!
    "The spend extended linearly to the period's end."
    forecast: Money!
    thresholds: [Int!]!
    crossed: [BudgetEvent!]!
    changedAt: String!
    changedBy: String!
  }

  "A threshold crossing, recorded once."
  type BudgetEvent {
    threshold: Int!
    "The rollup minute whose calls reached the threshold."
    crossedAt: String!
    spendAtCrossing: Money!
    recordedAt: String!
  }

  enum CostGroup {
    COST_CENTRE
    ACCOUNT
    AGENT
    SERVICE
    TOOL
    DAY
    MONTH
  }

  "Exact-match filters; all given must hold."
  input CostFilter {
    costCentre: String
    agent: String
    account: String
    service: String
    tool: String
  }

  input PriceInput {
    service: String
    "A tool name, or a glob with * and ? (e.g. payments.*)."
    tool: String
    account: String
    agent: String
    "USD per call, a decimal string with at most 9 decimals, e.g. \\"0.0001\\"."
    perCall: String!
    "USD per second of call duration, a decimal string with at most 9 decimals."
    perSecond: String!
    effectiveFrom: String!
    note: String
  }

  input RetireInput {
    service: String
    tool: String
    account: String
    agent: String
    effectiveFrom: String!
    note: String
  }

  input CostCentreInput {
    account: String
    agent: String
    costCentre: String!
    effectiveFrom: String!
  }

  input RetireCostCentreInput {
    account: String
    agent: String
    effectiveFrom: String!
  }

  type PriceBook {
    at: String!
    "Changes with every change to the book: printed in every export."
    version: String!
    "The rules in force at \`at\`, the one that wins first."
    prices: [PriceRule!]!
    costCentres: [CostCentreMapping!]!
  }

  type PriceRule {
    "The rule's match as text, e.g. tool=payments.*,account=acct-1 (* for the catch-all)."
    id: String!
    service: String
    tool: String
    account: String
    agent: String
    perCall: String!
    perSecond: String!
    effectiveFrom: String!
    "Null while no later version is set."
    until: String
    changedAt: String!
    changedBy: String!
  }

  type CostCentreMapping {
    account: String
    agent: String
    costCentre: String!
    effectiveFrom: String!
    until: String
    changedAt: String!
    changedBy: String!
  }

  type PriceBookChange {
    kind: String!
    rule: String!
    effectiveFrom: String!
    perCall: String
    perSecond: String
    costCentre: String
    retired: Boolean!
    changedAt: String!
    changedBy: String!
    source: String!
    note: String!
  }

  type CostReport {
    from: String!
    to: String!
    groupBy: [CostGroup!]!
    priceBookVersion: String!
    rows: [CostRow!]!
    total: CostTotal!
  }

  type CostRow {
    costCentre: String
    account: String
    agent: String
    service: String
    tool: String
    "YYYY-MM-DD (UTC)."
    day: String
    "YYYY-MM (UTC)."
    month: String
    "A whole number (exact up to 2^53)."
    calls: Float!
    "Calls that no price rule matched (priced at 0)."
    unpricedCalls: Float!
    "Sum of call durations, decimal seconds."
    computeSeconds: String!
    "Calls and durations × the price in force at each minute."
    pricedCost: Money!
    "The records' own cost_usd."
    reportedCost: Money!
    total: Money!
    rulesApplied: [AppliedRule!]!
  }

  type AppliedRule {
    rule: String!
    effectiveFrom: String!
    perCall: String!
    perSecond: String!
  }

  type CostTotal {
    calls: Float!
    unpricedCalls: Float!
    computeSeconds: String!
    pricedCost: Money!
    reportedCost: Money!
    total: Money!
  }

  type BillingPeriod {
    period: String!
    closed: Boolean!
    "When it was last closed or reopened, and by which key."
    at: String!
    by: String!
    reason: String!
    "SHA-256 of the stored chargeback (closed periods)."
    sha256: String
    groupBy: [CostGroup!]
  }
`;

const GROUPS: Record<string, CostDimension> = {
  COST_CENTRE: 'costCentre',
  ACCOUNT: 'account',
  AGENT: 'agent',
  SERVICE: 'service',
  TOOL: 'tool',
  DAY: 'day',
  MONTH: 'month',
};
export const GROUP_ENUM = Object.fromEntries(Object.entries(GROUPS).map(([k, v]) => [v, k])) as Record<CostDimension, string>;

function dimensions(groupBy: readonly string[] | null | undefined): CostDimension[] {
  const dims = (groupBy ?? []).map((g) => GROUPS[g]!);
  return COST_DIMENSIONS.filter((d) => dims.includes(d));
}

/** Runs a price-book change, turning its input errors into BAD_USER_INPUT naming the argument. */
async function guarded<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof PriceBookInputError) throw badInput(error.message, error.argument);
    throw error;
  }
}

function instantArg(value: string | null | undefined, argument: string): number {
  try {
    return parseInstantMs(value, argument);
  } catch (error) {
    if (error instanceof PriceBookInputError) throw badInput(error.message, argument);
    throw error;
  }
}

function wholeMinutes(fromMs: number, toMs: number) {
  const floor = (ms: number) => Math.floor(ms / 60_000) * 60_000;
  const ceil = (ms: number) => Math.ceil(ms / 60_000) * 60_000;
  return { fromMs: floor(fromMs), toMs: ceil(toMs) };
}

export function bookAt(book: PriceBook, atMs: number) {
  const inForce = (v: { from: number; until: number }) => v.from <= atMs && atMs < v.until;
  return {
    at: isoMs(atMs),
    version: book.version,
    prices: book.prices.filter(inForce).sort(comparePrecedence).map(priceRule),
    costCentres: book.costCentres.filter(inForce).map((c) => ({
      account: c.dimension === 'account' ? c.key : null,
      agent: c.dimension === 'agent' ? c.key : null,
      costCentre: c.costCentre,
      effectiveFrom: isoMs(c.from),
      until: isoMs(c.until),
      changedAt: c.changedAt,
      changedBy: c.changedBy,
    })),
  };
}

function priceRule(p: PriceVersion) {
  return {
    id: p.id,
    service: p.service || null,
    tool: p.tool || null,
    account: p.account || null,
    agent: p.agent || null,
    perCall: formatNanos(p.perCallNanos),
    perSecond: formatNanos(p.perSecondNanos),
    effectiveFrom: isoMs(p.from),
    until: isoMs(p.until),
    changedAt: p.changedAt,
    changedBy: p.changedBy,
  };
}

function amounts(l: ReportLine | ReportTotal) {
  return {
    calls: Number(l.calls),
    unpricedCalls: Number(l.unpricedCalls),
    computeSeconds: formatNanos(l.durationNs),
    pricedCost: money(l.priced),
    reportedCost: money(l.reported),
    total: money(l.total),
  };
}

function costCentreMatch(input: { account?: string | null; agent?: string | null }) {
  const match = parseMatch({ account: input.account ?? '', agent: input.agent ?? '' });
  if ((match.account === '') === (match.agent === '')) throw new PriceBookInputError('give exactly one of account and agent', 'account');
  return match;
}

export function resolvers(clickhouse: ClickHouseClient) {
  async function change(ctx: ApiContext, entry: NewEntry) {
    const tenant = tenantOf(ctx);
    await appendEntries(clickhouse, tenant, [entry], { changedBy: ctx.caller!.name, source: 'api' });
    return bookAt(await loadPriceBook(clickhouse, tenant), Date.now());
  }

  return {
    Query: {
      prices: async (_: unknown, args: { at?: string | null }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        const at = args.at == null ? Date.now() : instantArg(args.at, 'at');
        return bookAt(await loadPriceBook(clickhouse, tenant), at);
      },

      priceBookChanges: async (_: unknown, args: { limit?: number | null }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        const limit = args.limit ?? 100;
        if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw badInput(`limit must be a whole number from 1 to 10000, got ${limit}`, 'limit');
        const { entries } = await loadPriceBook(clickhouse, tenant);
        return entries
          .slice(-limit)
          .reverse()
          .map((e) => ({
            kind: e.kind,
            rule: ruleId(e),
            effectiveFrom: isoMs(e.effectiveFrom),
            perCall: e.kind === 'price' && !e.retired ? formatNanos(e.perCallNanos) : null,
            perSecond: e.kind === 'price' && !e.retired ? formatNanos(e.perSecondNanos) : null,
            costCentre: e.kind === 'cost_centre' && !e.retired ? e.costCentre : null,
            retired: e.retired,
            changedAt: e.changedAt,
            changedBy: e.changedBy,
            source: e.source,
            note: e.note,
          }));
      },

      costReport: async (_: unknown, args: { from: string; to: string; groupBy?: string[] | null; filter?: Record<string, string | null> | null }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        const fromMs = instantArg(args.from, 'from');
        const toMs = instantArg(args.to, 'to');
        if (fromMs >= toMs) throw badInput(`from (${args.from}) must be before to (${args.to})`, 'from');
        const groupBy = dimensions(args.groupBy);
        const filter: CostFilter = {};
        for (const key of ['costCentre', 'agent', 'account', 'service', 'tool'] as const) {
          const value = parseFilter(args.filter?.[key], `filter.${key}`);
          if (value !== undefined) filter[key] = value;
        }
        const range = wholeMinutes(fromMs, toMs);
        const report = await queryCostReport(clickhouse, tenant, range, groupBy, filter);
        return {
          from: isoMs(range.fromMs),
          to: isoMs(range.toMs),
          groupBy: groupBy.map((d) => GROUP_ENUM[d]),
          priceBookVersion: report.priceBookVersion,
          rows: report.lines.map((l) => ({
            ...Object.fromEntries(COST_DIMENSIONS.map((d) => [d, l.key[d] === undefined ? null : d === 'month' ? l.key[d]!.slice(0, 7) : l.key[d]])),
            ...amounts(l),
            rulesApplied: l.rules.map((r) => ({ rule: r.id, effectiveFrom: isoMs(r.from), perCall: formatNanos(r.perCallNanos), perSecond: formatNanos(r.perSecondNanos) })),
          })),
          total: amounts(report.total),
        };
      },

      billingPeriods: async (_: unknown, __: unknown, ctx: ApiContext) => (await listPeriods(clickhouse, tenantOf(ctx))).map(periodView),

      budgets: async (_: unknown, args: { period?: string | null }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        const period = args.period == null ? parsePeriod(new Date().toISOString().slice(0, 7))! : parsePeriodArg(args.period);
        return (await checkBudgets(clickhouse, tenant, period)).map(budgetView);
      },
    },

    Mutation: {
      setPrice: (_: unknown, { input }: { input: Record<string, string | null | undefined> }, ctx: ApiContext) =>
        guarded(() =>
          change(ctx, {
            kind: 'price',
            ...parseMatch({ service: input.service ?? '', tool: input.tool ?? '', account: input.account ?? '', agent: input.agent ?? '' }),
            effectiveFrom: parseInstantMs(input.effectiveFrom, 'input.effectiveFrom'),
            perCallNanos: parsePriceNanos(input.perCall, 'input.perCall'),
            perSecondNanos: parsePriceNanos(input.perSecond, 'input.perSecond'),
            costCentre: '',
            retired: false,
            note: input.note ?? '',
          }),
        ),

      retirePrice: (_: unknown, { input }: { input: Record<string, string | null | undefined> }, ctx: ApiContext) =>
        guarded(() =>
          change(ctx, {
            kind: 'price',
            ...parseMatch({ service: input.service ?? '', tool: input.tool ?? '', account: input.account ?? '', agent: input.agent ?? '' }),
            effectiveFrom: parseInstantMs(input.effectiveFrom, 'input.effectiveFrom'),
            perCallNanos: 0n,
            perSecondNanos: 0n,
            costCentre: '',
            retired: true,
            note: input.note ?? '',
          }),
        ),

      setCostCentre: (_: unknown, { input }: { input: Record<string, string | null | undefined> }, ctx: ApiContext) =>
        guarded(() => {
          const costCentre = input.costCentre ?? '';
          if (!/^[^\u0000-\u001f]{1,128}$/.test(costCentre)) throw new PriceBookInputError('costCentre must be 1-128 characters without control characters', 'input.costCentre');
          return change(ctx, {
            kind: 'cost_centre',
            ...costCentreMatch(input),
            effectiveFrom: parseInstantMs(input.effectiveFrom, 'input.effectiveFrom'),
            perCallNanos: 0n,
            perSecondNanos: 0n,
            costCentre,
            retired: false,
          });
        }),

      retireCostCentre: (_: unknown, { input }: { input: Record<string, string | null | undefined> }, ctx: ApiContext) =>
        guarded(() =>
          change(ctx, {
            kind: 'cost_centre',
            ...costCentreMatch(input),
            effectiveFrom: parseInstantMs(input.effectiveFrom, 'input.effectiveFrom'),
            perCallNanos: 0n,
            perSecondNanos: 0n,
            costCentre: '',
            retired: true,
          }),
        ),

      closePeriod: async (_: unknown, args: { period: string; groupBy?: string[] | null }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        const period = parsePeriodArg(args.period);
        const groupBy = dimensions(args.groupBy);
        return periodView(await closePeriod(clickhouse, tenant, period, groupBy, ctx.caller!.name));
      },

      setBudget: async (_: unknown, { input }: { input: { costCentre?: string | null; account?: string | null; agent?: string | null; period: string; amount: string; thresholds?: number[] | null } }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        const given = (['costCentre', 'account', 'agent'] as const).filter((k) => input[k] != null && input[k] !== '');
        if (given.length !== 1) throw badInput('give exactly one of costCentre, account and agent', 'input.costCentre');
        const key = input[given[0]!]!;
        if (key.length > 256) throw badInput(`input.${given[0]} must be at most 256 characters`, `input.${given[0]}`);
        const period = parsePeriodArg(input.period);
        const m = /^(\d{1,12})(?:\.(\d{1,2}))?$/.exec(input.amount);
        if (!m) throw badInput(`amount must be a decimal USD amount with at most 2 decimals, got ${JSON.stringify(input.amount)}`, 'input.amount');
        const amountMicros = BigInt(m[1]!) * 1_000_000n + BigInt((m[2] ?? '').padEnd(2, '0')) * 10_000n;
        const thresholds = [...new Set(input.thresholds ?? [80, 100])].sort((a, b) => a - b);
        if (thresholds.length === 0 || thresholds.some((t) => !Number.isInteger(t) || t < 1 || t > 1000)) throw badInput('thresholds must be 1-1000 percent', 'input.thresholds');
        const scope = ({ costCentre: 'cost_centre', account: 'account', agent: 'agent' } as const)[given[0]!];
        await setBudget(clickhouse, tenant, { scope, key, period: period.label, amountMicros, thresholds, retired: amountMicros === 0n }, ctx.caller!.name);
        return (await checkBudgets(clickhouse, tenant, period)).map(budgetView);
      },

      reopenPeriod: async (_: unknown, args: { period: string; reason: string }, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        const period = parsePeriodArg(args.period);
        const reason = args.reason.trim();
        if (reason.length < 3 || reason.length > 1000) throw badInput('reason must say why, in 3 to 1000 characters', 'reason');
        return periodView(await reopenPeriod(clickhouse, tenant, period, reason, ctx.caller!.name));
      },
    },
  };
}

function budgetView(b: BudgetStatus) {
  return {
    scope: GROUP_ENUM[SCOPES[b.scope]],
    key: b.key,
    period: b.period,
    amount: money(b.amountMicros),
    spend: money(b.spend),
    forecast: money(b.forecast),
    thresholds: b.thresholds,
    crossed: b.events.map((e) => ({ threshold: e.threshold, crossedAt: e.crossedMinute, spendAtCrossing: money(e.spendMicros), recordedAt: e.recordedAt })),
    changedAt: b.changedAt,
    changedBy: b.changedBy,
  };
}

function parsePeriodArg(text: string) {
  const period = parsePeriod(text);
  if (!period) throw badInput(`period must be a month as YYYY-MM (1970-01 to 2261-12), got ${JSON.stringify(text)}`, 'period');
  return period;
}

function periodView(p: { period: string; closed: boolean; at: string; by: string; reason: string; sha256: string | null; groupBy: CostDimension[] | null }) {
  return { ...p, groupBy: p.groupBy?.map((d) => GROUP_ENUM[d]) ?? null };
}
