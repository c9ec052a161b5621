/**
 * A page's data: `load` runs again whenever the reactive state it reads changes (route, range, filters,
 * key), aborting the older request, and on each refresh tick unless a request is still running (so a query
 * slower than the refresh period still finishes) or a query of the page is still on its first load (the
 * engine runs reads one at a time: a refresh of what is shown would delay what is not shown yet). An error
 * replaces the data (nothing stale is shown under it) and clears with the next answer. A refresh never
 * empties what is shown while it loads.
 * Each load that is not a refresh counts towards the page's data-shown mark (./data-shown.ts).
 */
import { untrack } from 'svelte';
import { KeyRequiredError } from './api.ts';
import { loading, viewLoading } from './data-shown.ts';
import { session } from './session.svelte.ts';

export interface Query<T> {
  readonly data: T | null;
  readonly error: string | null;
  readonly loading: boolean;
}

export function useQuery<T>(load: (apiKey: string | null, signal: AbortSignal) => Promise<T>, options: { live?: boolean } = {}): Query<T> {
  const state = $state({ data: null as T | null, error: null as string | null, loading: true });
  /** Runs the current load again, when none is running; null while waiting for a key. */
  let refresh: (() => void) | null = null;

  $effect(() => {
    const apiKey = session.apiKey;
    if (session.keyProblem) return;
    let controller: AbortController | undefined;
    let busy = false;
    /** Ends the first load's count towards data-shown; a no-op for refreshes. */
    let shown: ReturnType<typeof loading> = () => {};
    const run = () => {
      const current = new AbortController();
      controller = current;
      busy = true;
      state.loading = true;
      load(apiKey, current.signal).then(
        (data) => {
          if (current.signal.aborted) return;
          state.data = data;
          state.error = null;
          session.updatedAt = new Date();
          shown('data');
        },
        (error: unknown) => {
          if (current.signal.aborted) return;
          shown('error');
          if (error instanceof KeyRequiredError) return session.refuse(error, apiKey);
          state.data = null;
          state.error = error instanceof Error ? error.message : String(error);
        },
      ).finally(() => {
        if (current.signal.aborted) return;
        busy = false;
        state.loading = false;
      });
    };
    shown = loading();
    run(); // reads the inputs: this effect runs again when one changes
    refresh = () => {
      if (!busy && !viewLoading()) untrack(run);
    };
    return () => {
      controller?.abort();
      shown('dropped');
      refresh = null;
    };
  });

  if (options.live !== false) {
    $effect(() => {
      void session.tick;
      untrack(() => refresh?.());
    });
  }

  return state;
}
