/** Number, duration, money and time formatting for the tables and tiles (en-US, tabular). */

const integer = new Intl.NumberFormat('en-US');

export function formatCount(n: number): string {
  return integer.format(n);
}

/** 0.42 ms, 12.3 ms, 123 ms, 1.23 s, 2 min 5 s; "–" when there is no value. */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '–';
  if (ms === 0) return '0 ms';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1).replace(/\.0$/, '')} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** $0.00, $0.063, $0.0001, $12.50, $1,234.00: small amounts keep up to four decimals. Money is the API's exact type. */
export function formatUsd(value: number | { amount: string } | null | undefined): string {
  if (value === null || value === undefined) return '–';
  const usd = typeof value === 'number' ? value : Number(value.amount);
  return new Intl.NumberFormat('en-US', {
    style: 'currency',
    currency: 'USD',
    minimumFractionDigits: 2,
    maximumFractionDigits: usd !== 0 && Math.abs(usd) < 1 ? 4 : 2,
  }).format(usd);
}

/** Share of a total, e.g. "12.5%"; empty when the total is 0. */
export function formatShare(part: number, total: number): string {
  if (total === 0) return '';
  const pct = (part / total) * 100;
  return `${pct < 10 && pct !== 0 ? pct.toFixed(1) : Math.round(pct)}%`;
}

/** Local wall-clock time with milliseconds; the date too when it is not today. */
export function formatTime(iso: string, now = new Date()): string {
  const t = new Date(iso);
  const time = t.toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(t.getMilliseconds()).padStart(3, '0');
  if (t.toDateString() === now.toDateString()) return time;
  return `${t.toLocaleDateString('en-CA')} ${time}`;
}

/** A Money amount (decimal string) in dollars for people: $12.34, $0.0021. */
export function formatMoney(money: { amount: string } | null | undefined): string {
  if (!money) return '–';
  return formatUsd(Number(money.amount));
}

/** 0.125 → "12.5%", 0.5 → "50%". */
export function formatPercent(ratio: number): string {
  const pct = ratio * 100;
  return `${pct < 10 && pct !== 0 ? pct.toFixed(1) : Math.round(pct)}%`;
}

/** 1234 calls, 1 call. */
export function formatCalls(n: number): string {
  return `${formatCount(n)} ${n === 1 ? 'call' : 'calls'}`;
}

/** A day and minute in local time, e.g. "2026-12-05 07:25": when a period was closed, a threshold crossed. */
export function formatDateTime(iso: string): string {
  const t = new Date(iso);
  return `${t.toLocaleDateString('en-CA')} ${t.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', hour12: false })}`;
}
