/**
 * Billing periods (calendar months, UTC) and the log of their closing and reopening in
 * `closed_periods_v1`. A closed period keeps the snapshot its chargeback is rendered from, with the
 * SHA-256 of that snapshot; the latest row of a period says whether it is closed.
 */
import { createHash } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { formatClickHouse } from '../../model/timestamp.ts';
import type { CostDimension } from './cost-lines.ts';
import { selectRows } from './select-rows.ts';

export interface Period {
  /** `2026-11` */
  label: string;
  fromMs: number;
  toMs: number;
}

export function parsePeriod(text: unknown): Period | undefined {
  const m = typeof text === 'string' ? /^(\d{4})-(\d{2})$/.exec(text) : null;
  if (!m) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]);
  if (month < 1 || month > 12 || year < 1970 || year > 2261) return undefined;
  return { label: text as string, fromMs: Date.UTC(year, month - 1, 1), toMs: Date.UTC(year, month, 1) };
}

export function nextPeriod(period: Period): Period {
  const d = new Date(period.toMs);
  return parsePeriod(`${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`)!;
}

/** Amounts in a snapshot are decimal strings of bigints. */
export interface SnapshotLine {
  key: Partial<Record<CostDimension, string>>;
  calls: string;
  durationNs: string;
  pricedAtto: string;
  reportedAtto: string;
  unpricedCalls: string;
}

export interface SnapshotAdjustment {
  /** The closed period this corrects. */
  adjusts: string;
  /** At the grain that period was closed with. */
  key: Partial<Record<CostDimension, string>>;
  calls: string;
  durationNs: string;
  /** Micro-units, whole cents. */
  priced: string;
  reported: string;
}

export interface Snapshot {
  period: string;
  groupBy: CostDimension[];
  closedAt: string;
  priceBookVersion: string;
  lines: SnapshotLine[];
  adjustments: SnapshotAdjustment[];
}

export interface PeriodState {
  period: string;
  closed: boolean;
  at: string;
  by: string;
  reason: string;
  sha256: string | null;
  groupBy: CostDimension[] | null;
  snapshot: Snapshot | null;
}

const logRow = z.object({
  period: z.string(),
  last_action: z.enum(['close', 'reopen']),
  last_snapshot: z.string(),
  last_sha256: z.string(),
  last_at: z.string(),
  last_by: z.string(),
  last_reason: z.string(),
});

/** The latest state of every period that was ever closed, latest change first. */
export async function listPeriods(clickhouse: ClickHouseClient, tenant: string): Promise<PeriodState[]> {
  const rows = await selectRows(
    clickhouse,
    'closed-periods',
    `SELECT period, argMax(action, at) AS last_action, argMax(snapshot, at) AS last_snapshot, argMax(sha256, at) AS last_sha256,
            toString(max(at)) AS last_at, argMax(by, at) AS last_by, argMax(reason, at) AS last_reason
     FROM closed_periods_v1
     WHERE tenant = {tenant:String}
     GROUP BY period
     ORDER BY last_at DESC, period`,
    { tenant },
    logRow,
  );
  return rows.map((r) => {
    const snapshot = r.last_action === 'close' ? (JSON.parse(r.last_snapshot) as Snapshot) : null;
    return {
      period: r.period,
      closed: r.last_action === 'close',
      at: `${r.last_at.replace(' ', 'T')}Z`,
      by: r.last_by,
      reason: r.last_reason,
      sha256: snapshot ? r.last_sha256 : null,
      groupBy: snapshot?.groupBy ?? null,
      snapshot,
    };
  });
}

export function snapshotText(snapshot: Snapshot): string {
  return JSON.stringify(snapshot);
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export async function appendPeriodLog(
  clickhouse: ClickHouseClient,
  tenant: string,
  row: { period: string; action: 'close' | 'reopen'; snapshot: string; atMs: number; by: string; reason: string },
): Promise<void> {
  await clickhouse.insert({
    table: 'closed_periods_v1',
    format: 'JSONEachRow',
    values: [
      {
        tenant,
        period: row.period,
        action: row.action,
        snapshot: row.snapshot,
        sha256: row.snapshot ? sha256(row.snapshot) : '',
        at: formatClickHouse({ epochMs: row.atMs, subMsNanos: 0 }),
        by: row.by,
        reason: row.reason,
      },
    ],
  });
}
