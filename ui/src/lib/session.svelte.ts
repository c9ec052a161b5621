/**
 * What every page shares: the API key (session storage only), the caller it names (`me`), the key form's
 * reason when the API wants a key, and the refresh clock (a tick every REFRESH_MS while the tab is visible).
 */
import { readApiKey, saveApiKey } from './api-key.ts';
import { KeyRequiredError, request, type Me } from './api.ts';

export const REFRESH_MS = 5000;

class Session {
  apiKey = $state<string | null>(readApiKey());
  me = $state<Me | null>(null);
  keyProblem = $state<{ message: string; keySent: boolean } | null>(null);
  /** Bumped by the refresh timer; queries that read it run again. */
  tick = $state(0);
  updatedAt = $state<Date | null>(null);

  /** The API refused the key (or wants one): a refused key is forgotten, nothing of its tenant stays. */
  refuse(error: KeyRequiredError, keySent: string | null) {
    if (keySent !== this.apiKey) return; // an answer to a key already replaced
    if (keySent) saveApiKey(null);
    this.apiKey = null;
    this.me = null;
    this.keyProblem = { message: error.message, keySent: keySent !== null };
  }

  async useKey(key: string | null) {
    saveApiKey(key);
    this.apiKey = key;
    this.me = null;
    try {
      const answer = await request('Me', {}, { apiKey: key });
      if (this.apiKey !== key) return;
      this.me = answer.me;
      this.keyProblem = null;
    } catch (error) {
      if (error instanceof KeyRequiredError) this.refuse(error, key);
      else this.keyProblem = null; // the pages show the error
    }
  }

  forgetKey() {
    saveApiKey(null);
    this.apiKey = null;
    this.me = null;
    this.keyProblem = { message: 'The key was forgotten in this tab.', keySent: false };
    void this.useKey(null);
  }
}

export const session = new Session();

/** Starts the refresh clock; it stops while the tab is hidden and ticks at once when it shows again. */
export function startRefresh(): () => void {
  const timer = setInterval(() => {
    if (!document.hidden) session.tick++;
  }, REFRESH_MS);
  const onVisible = () => {
    if (!document.hidden) session.tick++;
  };
  document.addEventListener('visibilitychange', onVisible);
  return () => {
    clearInterval(timer);
    document.removeEventListener('visibilitychange', onVisible);
  };
}
