/**
 * A chargeback statement written as a file finance can load: CSV (RFC 4180, CRLF, csv-stringify), JSON,
 * or FinOps FOCUS 1.2 columns as CSV. Written as it is produced, to any writable stream (an HTTP
 * response, stdout). Text cells a spreadsheet would run as a formula (starting with = + - @, tab or CR)
 * get a leading apostrophe; amounts are never touched (a negative adjustment stays a number).
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { stringify } from 'csv-stringify';
import { CURRENCY, formatMicros } from './money.ts';
import { COST_DIMENSIONS, type CostDimension } from './queries/cost-lines.ts';
import type { Statement, StatementLine } from './queries/chargeback.ts';
import { formatNanos } from './queries/price-book.ts';

export const FORMATS = ['csv', 'json', 'focus'] as const;
export type ExportFormat = (typeof FORMATS)[number];
export const FOCUS_VERSION = '1.2';

const COLUMN: Record<CostDimension, string> = { costCentre: 'cost_centre', account: 'account', agent: 'agent', service: 'service', tool: 'tool', day: 'day', month: 'month' };

/** `costCentre,account` or `cost-centre,account` → ['costCentre', 'account']; undefined when a name is unknown or repeated. */
export function parseGroupByList(text: string): CostDimension[] | undefined {
  const names = text.split(',').map((s) => s.trim()).filter(Boolean);
  const dims: CostDimension[] = [];
  for (const name of names) {
    const d = COST_DIMENSIONS.find((c) => c.toLowerCase() === name.replace(/[-_]/g, '').toLowerCase());
    if (!d || dims.includes(d)) return undefined;
    dims.push(d);
  }
  return COST_DIMENSIONS.filter((d) => dims.includes(d));
}

export function neutralise(cell: string): string {
  return /^[=+\-@\t\r]/.test(cell) ? `'${cell}` : cell;
}

const usd = (micros: bigint) => formatMicros(micros, 2);

function dimValue(line: StatementLine, d: CostDimension): string {
  const v = line.key[d];
  if (v === undefined) return '';
  return neutralise(d === 'month' ? v.slice(0, 7) : v);
}

async function pipeRecords(out: Writable, columns: string[], records: Iterable<string[]>): Promise<void> {
  const csv = stringify({ header: true, columns, record_delimiter: 'windows', quoted_string: false });
  csv.pipe(out, { end: false });
  const done = once(csv, 'end');
  for (const record of records) {
    if (!csv.write(record)) await once(csv, 'drain');
  }
  csv.end();
  await done;
}

function* csvRecords(s: Statement): Iterable<string[]> {
  const meta = [CURRENCY, s.generatedAt, s.priceBookVersion];
  for (const l of s.lines) {
    yield [s.period.label, l.kind, l.adjusts ?? '', ...s.groupBy.map((d) => dimValue(l, d)), String(l.calls), String(l.unpricedCalls), formatNanos(l.durationNs), usd(l.priced), usd(l.reported), usd(l.total), ...meta];
  }
  const t = s.total;
  yield [s.period.label, 'total', '', ...s.groupBy.map(() => ''), String(t.calls), String(t.unpricedCalls), formatNanos(t.durationNs), usd(t.priced), usd(t.reported), usd(t.total), ...meta];
}

export const CSV_COLUMNS = (groupBy: CostDimension[]) => [
  'period',
  'line_type',
  'adjusts_period',
  ...groupBy.map((d) => COLUMN[d]),
  'calls',
  'unpriced_calls',
  'compute_seconds',
  'priced_cost',
  'reported_cost',
  'total_cost',
  'currency',
  'generated_at',
  'price_book_version',
];

/** FOCUS 1.2: every Mandatory column, the Conditional ones that apply here, and x_ extensions. */
export const FOCUS_COLUMNS = [
  'BilledCost',
  'BillingAccountId',
  'BillingAccountName',
  'BillingCurrency',
  'BillingPeriodEnd',
  'BillingPeriodStart',
  'ChargeCategory',
  'ChargeClass',
  'ChargeDescription',
  'ChargeFrequency',
  'ChargePeriodEnd',
  'ChargePeriodStart',
  'ConsumedQuantity',
  'ConsumedUnit',
  'ContractedCost',
  'EffectiveCost',
  'InvoiceIssuerName',
  'ListCost',
  'PricingQuantity',
  'PricingUnit',
  'ProviderName',
  'PublisherName',
  'ResourceId',
  'ResourceName',
  'ServiceCategory',
  'ServiceName',
  'SubAccountId',
  'SubAccountName',
  'Tags',
  'x_PricedCost',
  'x_ReportedCost',
  'x_GeneratedAt',
  'x_PriceBookVersion',
];

const isoSeconds = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');

function chargePeriod(s: Statement, l: StatementLine): [number, number] {
  if (l.kind === 'adjustment') {
    const [y, m] = l.adjusts!.split('-').map(Number) as [number, number];
    return [Date.UTC(y, m - 1, 1), Date.UTC(y, m, 1)];
  }
  if (l.key.day) {
    const start = Date.parse(`${l.key.day}T00:00:00Z`);
    return [start, start + 86_400_000];
  }
  if (l.key.month) {
    const [y, m] = l.key.month.split('-').map(Number) as [number, number];
    return [Date.UTC(y, m - 1, 1), Date.UTC(y, m, 1)];
  }
  return [s.period.fromMs, s.period.toMs];
}

function* focusRecords(s: Statement): Iterable<string[]> {
  for (const l of s.lines) {
    const [start, end] = chargePeriod(s, l);
    const cost = usd(l.total);
    const costCentre = l.key.costCentre;
    const tags: Record<string, string> = {};
    if (l.key.agent !== undefined) tags.agent = l.key.agent;
    if (costCentre !== undefined) tags.cost_centre = costCentre;
    const correction = l.kind === 'adjustment';
    const what = `${l.calls} MCP tool calls, ${formatNanos(l.durationNs)} s`;
    const record: Record<string, string> = {
      BilledCost: cost,
      BillingAccountId: neutralise(costCentre ?? s.tenant),
      BillingAccountName: neutralise(costCentre ?? s.tenant),
      BillingCurrency: CURRENCY,
      BillingPeriodEnd: isoSeconds(s.period.toMs),
      BillingPeriodStart: isoSeconds(s.period.fromMs),
      ChargeCategory: 'Usage',
      ChargeClass: correction ? 'Correction' : '',
      ChargeDescription: neutralise(correction ? `Correction to ${l.adjusts}: ${what}` : what),
      ChargeFrequency: 'Usage-Based',
      ChargePeriodEnd: isoSeconds(end),
      ChargePeriodStart: isoSeconds(start),
      ConsumedQuantity: formatNanos(l.durationNs),
      ConsumedUnit: 'Seconds',
      ContractedCost: cost,
      EffectiveCost: cost,
      InvoiceIssuerName: neutralise(s.tenant),
      ListCost: cost,
      PricingQuantity: String(l.calls),
      PricingUnit: 'Requests',
      ProviderName: 'MCP Gateway',
      PublisherName: 'MCP Gateway',
      ResourceId: l.key.tool !== undefined ? neutralise(l.key.tool) : '',
      ResourceName: l.key.tool !== undefined ? neutralise(l.key.tool) : '',
      ServiceCategory: 'AI and Machine Learning',
      ServiceName: neutralise(l.key.service ?? 'MCP tool calls'),
      SubAccountId: l.key.account !== undefined ? neutralise(l.key.account) : '',
      SubAccountName: l.key.account !== undefined ? neutralise(l.key.account) : '',
      Tags: Object.keys(tags).length ? neutralise(JSON.stringify(tags)) : '',
      x_PricedCost: usd(l.priced),
      x_ReportedCost: usd(l.reported),
      x_GeneratedAt: s.generatedAt,
      x_PriceBookVersion: s.priceBookVersion,
    };
    yield FOCUS_COLUMNS.map((c) => record[c]!);
  }
}

function lineJson(l: StatementLine | (Statement['total'] & { kind: 'total' }), groupBy: CostDimension[]) {
  return {
    type: l.kind,
    ...('adjusts' in l && l.adjusts ? { adjustsPeriod: l.adjusts } : {}),
    ...('key' in l ? Object.fromEntries(groupBy.map((d) => [d, l.key[d] === undefined ? null : d === 'month' ? l.key[d]!.slice(0, 7) : l.key[d]])) : {}),
    calls: String(l.calls),
    unpricedCalls: String(l.unpricedCalls),
    computeSeconds: formatNanos(l.durationNs),
    pricedCost: usd(l.priced),
    reportedCost: usd(l.reported),
    totalCost: usd(l.total),
  };
}

async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

export async function writeStatement(s: Statement, format: ExportFormat, out: Writable): Promise<void> {
  if (format === 'csv') return pipeRecords(out, CSV_COLUMNS(s.groupBy), csvRecords(s));
  if (format === 'focus') return pipeRecords(out, FOCUS_COLUMNS, focusRecords(s));
  const head = { period: s.period.label, generatedAt: s.generatedAt, priceBookVersion: s.priceBookVersion, closed: s.closed, currency: CURRENCY, groupBy: s.groupBy };
  await write(out, `${JSON.stringify(head).slice(0, -1)},"lines":[`);
  for (const [i, l] of s.lines.entries()) await write(out, `${i ? ',' : ''}\n${JSON.stringify(lineJson(l, s.groupBy))}`);
  await write(out, `\n],"total":${JSON.stringify(lineJson({ ...s.total, kind: 'total' }, s.groupBy))}}\n`);
}

export const CONTENT_TYPE: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8; header=present',
  focus: 'text/csv; charset=utf-8; header=present',
  json: 'application/json; charset=utf-8',
};
