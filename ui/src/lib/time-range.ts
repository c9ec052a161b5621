/** The time ranges the picker offers, and the dashboard's state in the address bar (?range=). */

export const RANGES = [
  { id: '15m', label: 'Last 15 min', ms: 15 * 60_000 },
  { id: '1h', label: 'Last hour', ms: 60 * 60_000 },
  { id: '24h', label: 'Last 24 h', ms: 24 * 60 * 60_000 },
  { id: '7d', label: 'Last 7 days', ms: 7 * 24 * 60 * 60_000 },
] as const;

export type RangeId = (typeof RANGES)[number]['id'];

export const DEFAULT_RANGE: RangeId = '1h';

export function rangeById(id: RangeId) {
  return RANGES.find((r) => r.id === id) ?? RANGES[1];
}

/** [now - range, now) as ISO strings. */
export function resolveRange(id: RangeId, now = Date.now()): { from: string; to: string } {
  return { from: new Date(now - rangeById(id).ms).toISOString(), to: new Date(now).toISOString() };
}

export function readLocation(search = location.search): { range: RangeId } {
  const range = new URLSearchParams(search).get('range');
  return { range: RANGES.some((r) => r.id === range) ? (range as RangeId) : DEFAULT_RANGE };
}

/** The tenant is the API key's, so an old `?tenant=` is dropped from the address. */
export function writeLocation(state: { range: RangeId }): void {
  const params = new URLSearchParams(location.search);
  params.delete('tenant');
  params.set('range', state.range);
  const url = `${location.pathname}?${params}`;
  if (url !== `${location.pathname}${location.search}`) history.replaceState(null, '', url);
}
