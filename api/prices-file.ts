/**
 * `PRICES_FILE`: the price book and cost-centre map as YAML, loaded at start. Each entry is appended
 * only when it changes the book (./queries/price-book.ts `appendEntries`), so loading the same file
 * twice changes nothing. The format is in the README ("Costs and chargeback").
 */
import { readFile } from 'node:fs/promises';
import type { ClickHouseClient } from '@clickhouse/client';
import { parse } from 'yaml';
import { z } from 'zod';
import { parseTenant } from './queries/params.ts';
import { appendEntries, parseInstantMs, parseMatch, parsePriceNanos, PriceBookInputError, type NewEntry } from './queries/price-book.ts';

const text = z.string();
const amount = z.union([z.string(), z.number()]);
const instant = z.union([z.string(), z.date()]);

const priceEntry = z.strictObject({
  service: text.optional(),
  tool: text.optional(),
  account: text.optional(),
  agent: text.optional(),
  per_call: amount.optional(),
  per_second: amount.optional(),
  effective_from: instant,
  retired: z.boolean().optional(),
  note: text.optional(),
});

const costCentreEntry = z.strictObject({
  account: text.optional(),
  agent: text.optional(),
  cost_centre: text.optional(),
  effective_from: instant,
  retired: z.boolean().optional(),
});

const book = z.strictObject({
  prices: z.array(priceEntry).default([]),
  cost_centres: z.array(costCentreEntry).default([]),
});

const file = z.strictObject({
  tenant: text.optional(),
  prices: z.array(priceEntry).optional(),
  cost_centres: z.array(costCentreEntry).optional(),
  tenants: z.record(z.string(), book).optional(),
});

export class PricesFileError extends Error {}

/** The entries of a prices file per tenant; throws PricesFileError naming the entry and the problem. */
export function parsePricesFile(source: string): Map<string, NewEntry[]> {
  let raw: unknown;
  try {
    raw = parse(source);
  } catch (error) {
    throw new PricesFileError(`not YAML: ${(error as Error).message}`);
  }
  const parsed = file.safeParse(raw ?? {});
  if (!parsed.success) throw new PricesFileError(z.prettifyError(parsed.error));
  const books = new Map<string, z.output<typeof book>>();
  if (parsed.data.prices || parsed.data.cost_centres) {
    books.set(parsed.data.tenant ?? 'default', { prices: parsed.data.prices ?? [], cost_centres: parsed.data.cost_centres ?? [] });
  }
  for (const [tenant, b] of Object.entries(parsed.data.tenants ?? {})) {
    if (books.has(tenant)) throw new PricesFileError(`tenant ${tenant} is given twice`);
    books.set(tenant, b);
  }

  const result = new Map<string, NewEntry[]>();
  for (const [tenantName, b] of books) {
    let tenant: string;
    try {
      tenant = parseTenant(tenantName);
    } catch {
      throw new PricesFileError(`tenants.${tenantName}: not a tenant name`);
    }
    const entries: NewEntry[] = [];
    const at = (where: string, run: () => NewEntry) => {
      try {
        entries.push(run());
      } catch (error) {
        if (error instanceof PriceBookInputError) throw new PricesFileError(`${where}.${error.argument}: ${error.message}`);
        throw error;
      }
    };
    b.prices.forEach((p, i) =>
      at(`tenants.${tenant}.prices[${i}]`, () => {
        const retired = p.retired ?? false;
        if (!retired && (p.per_call === undefined || p.per_second === undefined)) throw new PriceBookInputError('a price needs per_call and per_second (or retired: true)', 'per_call');
        return {
          kind: 'price',
          ...parseMatch(p),
          effectiveFrom: parseInstantMs(p.effective_from, 'effective_from'),
          perCallNanos: retired ? 0n : parsePriceNanos(p.per_call, 'per_call'),
          perSecondNanos: retired ? 0n : parsePriceNanos(p.per_second, 'per_second'),
          costCentre: '',
          retired,
          note: p.note ?? '',
        };
      }),
    );
    b.cost_centres.forEach((c, i) =>
      at(`tenants.${tenant}.cost_centres[${i}]`, () => {
        const match = parseMatch({ account: c.account, agent: c.agent });
        if ((match.account === '') === (match.agent === '')) throw new PriceBookInputError('give exactly one of account and agent', 'account');
        const retired = c.retired ?? false;
        if (!retired && !c.cost_centre) throw new PriceBookInputError('a mapping needs cost_centre (or retired: true)', 'cost_centre');
        return { kind: 'cost_centre', ...match, effectiveFrom: parseInstantMs(c.effective_from, 'effective_from'), perCallNanos: 0n, perSecondNanos: 0n, costCentre: retired ? '' : c.cost_centre!, retired };
      }),
    );
    result.set(tenant, entries);
  }
  return result;
}

/** Loads the file into the book; returns the number of entries stored per tenant (0 when nothing changed). */
export async function loadPricesFile(clickhouse: ClickHouseClient, filePath: string): Promise<Record<string, number>> {
  const entries = parsePricesFile(await readFile(filePath, 'utf8'));
  const stored: Record<string, number> = {};
  for (const [tenant, list] of entries) {
    stored[tenant] = await appendEntries(clickhouse, tenant, list, { changedBy: 'prices-file', source: `file:${filePath}` });
  }
  return stored;
}
