/**
 * The price book and the cost-centre map of a tenant: an append-only log in `price_book_v1`, resolved
 * here into effective-dated rules. A rule matches any of service, tool (exact, or a glob with `*` and
 * `?`), account and agent; it holds from its `effective_from` until the next entry for the same match.
 * Which rule wins when several match is `comparePrecedence` (stated in the README, pinned by a test).
 */
import { createHash } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { formatClickHouse, parseRfc3339 } from '../../model/timestamp.ts';
import { selectRows } from './select-rows.ts';

export const UNALLOCATED = 'unallocated';
const NANOS_PER_UNIT = 1_000_000_000n;

export interface Match {
  service: string;
  tool: string;
  account: string;
  agent: string;
}

/** One row of the log, as stored. Prices in nano-units (10^-9 USD). Times are epoch milliseconds. */
export interface BookEntry extends Match {
  kind: 'price' | 'cost_centre';
  effectiveFrom: number;
  perCallNanos: bigint;
  perSecondNanos: bigint;
  costCentre: string;
  retired: boolean;
  changedAt: string;
  changedBy: string;
  source: string;
  note: string;
}

/** A resolved version of a rule: in force over [from, until). `until` is Infinity for the latest. */
export interface PriceVersion extends Match {
  id: string;
  from: number;
  until: number;
  perCallNanos: bigint;
  perSecondNanos: bigint;
  changedAt: string;
  changedBy: string;
}

export interface CostCentreVersion {
  /** `account` or `agent`. */
  dimension: 'account' | 'agent';
  key: string;
  costCentre: string;
  from: number;
  until: number;
  changedAt: string;
  changedBy: string;
}

export interface PriceBook {
  entries: BookEntry[];
  prices: PriceVersion[];
  costCentres: CostCentreVersion[];
  /** `<number of entries>-<first 12 hex of the SHA-256 of their content>`: changes with any change. */
  version: string;
}

// ---- parsing what callers and the prices file send ----------------------------------------------------

export class PriceBookInputError extends Error {
  constructor(
    message: string,
    readonly argument: string,
  ) {
    super(message);
  }
}

/** `"0.000125"` → 125000n nano-units. Non-negative, at most 9 decimals, given as text (or an exact number). */
export function parsePriceNanos(value: unknown, argument: string): bigint {
  const text = typeof value === 'number' && Number.isFinite(value) ? String(value) : value;
  const m = typeof text === 'string' ? /^(\d{1,12})(?:\.(\d{1,9}))?$/.exec(text.trim()) : null;
  if (!m) throw new PriceBookInputError(`${argument} must be a non-negative decimal amount in USD with at most 9 decimals (e.g. "0.0001"), got ${JSON.stringify(value)}`, argument);
  return BigInt(m[1]!) * NANOS_PER_UNIT + BigInt((m[2] ?? '').padEnd(9, '0'));
}

export function formatNanos(nanos: bigint): string {
  const whole = nanos / NANOS_PER_UNIT;
  const fraction = (nanos % NANOS_PER_UNIT).toString().padStart(9, '0').replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}` : String(whole);
}

export function parseInstantMs(value: unknown, argument: string): number {
  const instant = typeof value === 'string' ? parseRfc3339(value) : value instanceof Date ? { epochMs: value.getTime(), subMsNanos: 0 } : undefined;
  if (!instant || instant.subMsNanos !== 0 || instant.epochMs < 0 || instant.epochMs >= Date.UTC(2262, 0, 1)) {
    throw new PriceBookInputError(`${argument} must be an ISO-8601 date-time with a time zone and at most millisecond precision, e.g. 2026-11-01T00:00:00Z, got ${JSON.stringify(value)}`, argument);
  }
  return instant.epochMs;
}

const matchText = z.string().max(256).regex(/^[^\u0000-\u001f]*$/);

/** The match of a rule; every field optional ('' or absent = any). Tool globs use `*` and `?`. */
export function parseMatch(input: { service?: unknown; tool?: unknown; account?: unknown; agent?: unknown }): Match {
  const match = { service: '', tool: '', account: '', agent: '' };
  for (const key of ['service', 'tool', 'account', 'agent'] as const) {
    const value = input[key] ?? '';
    if (!matchText.safeParse(value).success) throw new PriceBookInputError(`${key} must be text of at most 256 characters without control characters`, key);
    match[key] = value as string;
  }
  return match;
}

export function isGlob(tool: string): boolean {
  return /[*?]/.test(tool);
}

/** A tool glob as a ClickHouse LIKE pattern: `*` → `%`, `?` → `_`, LIKE's own wildcards escaped. */
export function globToLike(glob: string): string {
  return glob.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%').replace(/\?/g, '_');
}

export function globMatches(glob: string, value: string): boolean {
  const source = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, 's').test(value);
}

/** A readable, stable identity of a rule's match, e.g. `tool=payments.*,account=acct-1`; `*` for the catch-all. */
export function ruleId(match: Match): string {
  const parts = (['service', 'tool', 'account', 'agent'] as const).filter((k) => match[k] !== '').map((k) => `${k}=${match[k]}`);
  return parts.length ? parts.join(',') : '*';
}

// ---- precedence -------------------------------------------------------------------------------------

/**
 * Negative when `a` wins over `b` (both in force and matching). In order: more matched dimensions;
 * then an exact tool over a tool glob over no tool; then the glob with more literal characters; then by
 * dimension, account over agent over tool over service; then the later effective_from; then the rule id.
 */
export function comparePrecedence(a: PriceVersion, b: PriceVersion): number {
  const dims = (m: Match) => [m.service, m.tool, m.account, m.agent].filter((v) => v !== '').length;
  const toolRank = (m: Match) => (m.tool === '' ? 0 : isGlob(m.tool) ? 1 : 2);
  const literal = (m: Match) => m.tool.replace(/[*?]/g, '').length;
  const mask = (m: Match) => (m.account ? 8 : 0) + (m.agent ? 4 : 0) + (m.tool ? 2 : 0) + (m.service ? 1 : 0);
  return dims(b) - dims(a) || toolRank(b) - toolRank(a) || literal(b) - literal(a) || mask(b) - mask(a) || b.from - a.from || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function ruleMatches(rule: Match, call: Match): boolean {
  return (
    (rule.service === '' || rule.service === call.service) &&
    (rule.tool === '' || (isGlob(rule.tool) ? globMatches(rule.tool, call.tool) : rule.tool === call.tool)) &&
    (rule.account === '' || rule.account === call.account) &&
    (rule.agent === '' || rule.agent === call.agent)
  );
}

/** The rule that prices a call at an instant: the first in precedence among those in force that match. */
export function priceFor(book: PriceBook, call: Match, atMs: number): PriceVersion | undefined {
  return book.prices.filter((p) => p.from <= atMs && atMs < p.until && ruleMatches(p, call)).sort(comparePrecedence)[0];
}

/** The cost centre of a call at an instant: the account's mapping, else the agent's, else `unallocated`. */
export function costCentreFor(book: PriceBook, call: { account: string; agent: string }, atMs: number): string {
  const find = (dimension: 'account' | 'agent', key: string) => book.costCentres.find((c) => c.dimension === dimension && c.key === key && c.from <= atMs && atMs < c.until);
  return find('account', call.account)?.costCentre ?? find('agent', call.agent)?.costCentre ?? UNALLOCATED;
}

// ---- resolving the log --------------------------------------------------------------------------------

function matchKey(e: Pick<BookEntry, 'kind' | 'service' | 'tool' | 'account' | 'agent'>): string {
  return JSON.stringify([e.kind, e.service, e.tool, e.account, e.agent]);
}

function contentOf(e: BookEntry): string {
  return JSON.stringify([e.perCallNanos.toString(), e.perSecondNanos.toString(), e.costCentre, e.retired]);
}

export function resolveBook(entries: BookEntry[]): PriceBook {
  // The last change for each (match, effective_from) is that version; entries come in changed_at order.
  const versions = new Map<string, Map<number, BookEntry>>();
  for (const e of entries) {
    const key = matchKey(e);
    if (!versions.has(key)) versions.set(key, new Map());
    versions.get(key)!.set(e.effectiveFrom, e);
  }
  const prices: PriceVersion[] = [];
  const costCentres: CostCentreVersion[] = [];
  for (const byFrom of versions.values()) {
    const sorted = [...byFrom.values()].sort((a, b) => a.effectiveFrom - b.effectiveFrom);
    sorted.forEach((e, i) => {
      if (e.retired) return;
      const until = sorted[i + 1]?.effectiveFrom ?? Infinity;
      if (e.kind === 'price') {
        prices.push({ id: ruleId(e), service: e.service, tool: e.tool, account: e.account, agent: e.agent, from: e.effectiveFrom, until, perCallNanos: e.perCallNanos, perSecondNanos: e.perSecondNanos, changedAt: e.changedAt, changedBy: e.changedBy });
      } else {
        const dimension = e.account !== '' ? 'account' : 'agent';
        costCentres.push({ dimension, key: dimension === 'account' ? e.account : e.agent, costCentre: e.costCentre, from: e.effectiveFrom, until, changedAt: e.changedAt, changedBy: e.changedBy });
      }
    });
  }
  const hash = createHash('sha256');
  for (const e of entries) hash.update(`${matchKey(e)}|${e.effectiveFrom}|${contentOf(e)}|${e.changedAt}\n`);
  return { entries, prices, costCentres, version: `${entries.length}-${hash.digest('hex').slice(0, 12)}` };
}

// ---- storage ------------------------------------------------------------------------------------------

const entryRow = z.object({
  kind: z.enum(['price', 'cost_centre']),
  service: z.string(),
  tool: z.string(),
  account: z.string(),
  agent: z.string(),
  effective_from_ms: z.coerce.number().int(),
  per_call_nanos: z.coerce.bigint(),
  per_second_nanos: z.coerce.bigint(),
  cost_centre: z.string(),
  retired: z.coerce.boolean(),
  changed_at: z.string(),
  changed_by: z.string(),
  source: z.string(),
  note: z.string(),
});

export async function loadPriceBook(clickhouse: ClickHouseClient, tenant: string): Promise<PriceBook> {
  const rows = await selectRows(
    clickhouse,
    'price-book',
    `SELECT kind, service, tool, account, agent, toString(toUnixTimestamp64Milli(effective_from)) AS effective_from_ms,
            toString(per_call_nanos) AS per_call_nanos, toString(per_second_nanos) AS per_second_nanos,
            cost_centre, retired, toString(changed_at) AS changed_at, changed_by, source, note
     FROM price_book_v1
     WHERE tenant = {tenant:String}
     ORDER BY changed_at, kind, service, tool, account, agent, effective_from`,
    { tenant },
    entryRow,
  );
  return resolveBook(
    rows.map((r) => ({
      kind: r.kind,
      service: r.service,
      tool: r.tool,
      account: r.account,
      agent: r.agent,
      effectiveFrom: r.effective_from_ms,
      perCallNanos: r.per_call_nanos,
      perSecondNanos: r.per_second_nanos,
      costCentre: r.cost_centre,
      retired: r.retired,
      changedAt: `${r.changed_at.replace(' ', 'T')}Z`,
      changedBy: r.changed_by,
      source: r.source,
      note: r.note,
    })),
  );
}

export type NewEntry = Omit<BookEntry, 'changedAt' | 'changedBy' | 'source' | 'note'> & { note?: string };

/**
 * Appends the entries that change something: an entry equal to the version already stored for its match
 * and effective_from is skipped, so loading the same file (or repeating a mutation) twice changes
 * nothing; so is a file's entry that the same file loaded before (an admin's later change stands).
 * Returns how many were stored.
 */
export async function appendEntries(clickhouse: ClickHouseClient, tenant: string, entries: NewEntry[], who: { changedBy: string; source: string }): Promise<number> {
  const current = new Map<string, string>();
  const fromSameSource = new Set<string>();
  for (const e of (await loadPriceBook(clickhouse, tenant)).entries) {
    current.set(`${matchKey(e)}|${e.effectiveFrom}`, contentOf(e));
    fromSameSource.add(`${matchKey(e)}|${e.effectiveFrom}|${contentOf(e)}|${e.source}`);
  }
  const now = Date.now();
  const fresh: NewEntry[] = [];
  for (const e of entries) {
    const key = `${matchKey(e)}|${e.effectiveFrom}`;
    const content = contentOf({ ...e, changedAt: '', changedBy: '', source: '', note: '' });
    if (current.get(key) === content) continue;
    // A file's entry already loaded once is not loaded again over a later change made through the API.
    if (who.source.startsWith('file:') && fromSameSource.has(`${key}|${content}|${who.source}`)) continue;
    current.set(key, content);
    fresh.push(e);
  }
  if (fresh.length === 0) return 0;
  await clickhouse.insert({
    table: 'price_book_v1',
    format: 'JSONEachRow',
    values: fresh.map((e, i) => ({
      tenant,
      kind: e.kind,
      service: e.service,
      tool: e.tool,
      account: e.account,
      agent: e.agent,
      effective_from: formatClickHouse({ epochMs: e.effectiveFrom, subMsNanos: 0 }),
      per_call_nanos: e.perCallNanos.toString(),
      per_second_nanos: e.perSecondNanos.toString(),
      cost_centre: e.costCentre,
      retired: e.retired,
      // One microsecond apart, so the log keeps the order in which one call made its changes.
      changed_at: formatClickHouse({ epochMs: now + Math.floor(i / 1000), subMsNanos: (i % 1000) * 1000 }),
      changed_by: who.changedBy,
      source: who.source,
      note: e.note ?? '',
    })),
  });
  return fresh.length;
}

/** `2026-11-01T00:00:00.000Z`; null for the open end of a rule. */
export function isoMs(ms: number): string | null {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}
