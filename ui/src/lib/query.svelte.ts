/**
 * A page's data: `load` runs again whenever the reactive state it reads changes (route, range, filters,
 * key) and on each refresh tick. A newer run aborts an older one. An error replaces the data (nothing stale
 * is shown under it) and clears on the next answer. A refresh never empties what is shown while it loads.
 */
import { KeyRequiredError } from './api.ts';
import { session } from './session.svelte.ts';

export interface Query<T> {
  readonly data: T | null;
  readonly error: string | null;
  readonly loading: boolean;
}

export function useQuery<T>(load: (apiKey: string | null, signal: AbortSignal) => Promise<T>, options: { live?: boolean } = {}): Query<T> {
  const state = $state({ data: null as T | null, error: null as string | null, loading: true });
  $effect(() => {
    const apiKey = session.apiKey;
    if (session.keyProblem) return;
    if (options.live !== false) void session.tick;
    const controller = new AbortController();
    const promise = load(apiKey, controller.signal);
    state.loading = true;
    promise.then(
      (data) => {
        if (controller.signal.aborted) return;
        state.data = data;
        state.error = null;
        state.loading = false;
        session.updatedAt = new Date();
      },
      (error: unknown) => {
        if (controller.signal.aborted) return;
        state.loading = false;
        if (error instanceof KeyRequiredError) {
          session.refuse(error, apiKey);
          return;
        }
        state.data = null;
        state.error = error instanceof Error ? error.message : String(error);
      },
    );
    return () => controller.abort();
  });

  return state;
}
