/**
 * The moment a page's data is on screen, for the UI bench (bench/ui.bench.ts) and the browser tests.
 * Every query of the page (useQuery, ./query.svelte.ts) counts from the moment it starts loading to its
 * answer. When none is left and the answers are in the DOM (Svelte's tick: any component an answer mounted
 * has started its own queries by then, and they count too), at the next frame the page gets
 * `<html data-shown="data">` (`"error"` when a query failed) and a `data-shown` performance mark, whose
 * startTime is the time since navigation started.
 *
 * A query that loads anew (a new page, range or filter) takes the attribute away until everything has
 * answered again; a refresh of what is shown does not count. The cost to users: a counter, and one
 * attribute and one mark per view. The same count holds refreshes back while the view is loading.
 */
import { tick } from 'svelte';

export const DATA_SHOWN = 'data-shown';

export type Outcome = 'data' | 'error' | 'dropped';

let pending = 0;
let failed = false;
/** Whether a query answered since the count last started from zero (one only dropped shows nothing). */
let answered = false;
/** Bumped whenever the count falls to zero, so only the latest settle marks. */
let generation = 0;

/** A query starts loading; call the returned function once with how it ended (later calls do nothing). */
export function loading(): (outcome: Outcome) => void {
  if (pending === 0) {
    failed = false;
    answered = false;
    delete document.documentElement.dataset.shown;
  }
  pending++;
  let ended = false;
  return (outcome) => {
    if (ended) return;
    ended = true;
    if (outcome === 'error') failed = true;
    if (outcome !== 'dropped') answered = true;
    if (--pending === 0) void settle(++generation);
  };
}

/** Whether some query of the page is still on its first load (then refreshes wait: ./query.svelte.ts). */
export function viewLoading(): boolean {
  return pending > 0;
}

async function settle(at: number): Promise<void> {
  await tick();
  if (pending > 0 || at !== generation || !answered) return;
  requestAnimationFrame(() => {
    if (pending > 0 || at !== generation) return;
    document.documentElement.dataset.shown = failed ? 'error' : 'data';
    performance.mark(DATA_SHOWN, { detail: { path: location.pathname + location.search, failed } });
  });
}
