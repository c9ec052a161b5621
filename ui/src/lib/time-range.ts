/**
 * The time range every page reads: a preset relative to now (`?range=1h`) or a fixed custom range
 * (`?from=…&to=…`, ISO instants). Presets resolve again on each refresh, so "last hour" follows the clock.
 */

export const RANGES = [
  { id: '15m', label: 'Last 15 min', ms: 15 * 60_000 },
  { id: '1h', label: 'Last hour', ms: 60 * 60_000 },
  { id: '24h', label: 'Last 24 h', ms: 24 * 60 * 60_000 },
  { id: '7d', label: 'Last 7 days', ms: 7 * 24 * 60 * 60_000 },
  { id: '30d', label: 'Last 30 days', ms: 30 * 24 * 60 * 60_000 },
] as const;

export type RangeId = (typeof RANGES)[number]['id'];

export const DEFAULT_RANGE: RangeId = '1h';

/** A preset, or a custom range with both ends fixed. */
export type RangeChoice = { preset: RangeId } | { from: string; to: string };

export function rangeById(id: RangeId) {
  return RANGES.find((r) => r.id === id) ?? RANGES[1];
}

/** The choice in a query string: a valid custom range wins over a preset; anything else is the default. */
export function readRange(params: URLSearchParams): RangeChoice {
  const from = params.get('from');
  const to = params.get('to');
  if (from && to && validInstant(from) && validInstant(to) && Date.parse(from) < Date.parse(to)) return { from, to };
  const preset = params.get('range');
  return { preset: RANGES.some((r) => r.id === preset) ? (preset as RangeId) : DEFAULT_RANGE };
}

/** The query parameters of a choice (the others removed). */
export function rangeParams(choice: RangeChoice): Record<string, string | null> {
  if ('preset' in choice) return { range: choice.preset, from: null, to: null };
  return { range: null, from: choice.from, to: choice.to };
}

/** [from, to) as ISO strings. */
export function resolveRange(choice: RangeChoice, now = Date.now()): { from: string; to: string } {
  if ('from' in choice) return { from: new Date(choice.from).toISOString(), to: new Date(choice.to).toISOString() };
  return { from: new Date(now - rangeById(choice.preset).ms).toISOString(), to: new Date(now).toISOString() };
}

export function describeRange(choice: RangeChoice): string {
  if ('preset' in choice) return rangeById(choice.preset).label.toLowerCase();
  return `${new Date(choice.from).toLocaleString('en-GB')} – ${new Date(choice.to).toLocaleString('en-GB')}`;
}

function validInstant(text: string): boolean {
  return !Number.isNaN(Date.parse(text));
}

/** `2026-11-24T10:00` (a datetime-local input's value, local time) of an ISO instant. */
export function toLocalInput(iso: string): string {
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
