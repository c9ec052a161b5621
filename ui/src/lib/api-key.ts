/**
 * The dashboard's API key: kept in this tab's session storage only (gone when the tab closes), never in
 * the address bar, and sent as `Authorization: Bearer <key>`.
 */

const STORAGE_KEY = 'mcp-analytics.api-key';

export function readApiKey(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || null;
  } catch {
    return null; // storage disabled: the key lives only as long as the page
  }
}

export function saveApiKey(key: string | null): void {
  try {
    if (key) sessionStorage.setItem(STORAGE_KEY, key);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage disabled: nothing kept
  }
}
