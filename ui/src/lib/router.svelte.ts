/**
 * The dashboard's client-side router: the page and its ids are the path, the range and filters the query
 * string, so every view is a link. The API answers every other path with index.html (api/app.ts).
 */

export type Route =
  | { page: 'overview' }
  | { page: 'agent'; agent: string }
  | { page: 'tool'; tool: string }
  | { page: 'audit' }
  | { page: 'trace'; id: string }
  | { page: 'denials' }
  | { page: 'costs' }
  | { page: 'alerts' }
  | { page: 'not-found'; path: string };

export function matchRoute(pathname: string): Route {
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const [first, second] = parts;
  if (parts.length === 0) return { page: 'overview' };
  if (first === 'agents' && parts.length === 2) return { page: 'agent', agent: second! };
  if (first === 'tools' && parts.length === 2) return { page: 'tool', tool: second! };
  if (first === 'audit' && parts.length === 1) return { page: 'audit' };
  if (first === 'traces' && parts.length === 2) return { page: 'trace', id: second! };
  if (first === 'denials' && parts.length === 1) return { page: 'denials' };
  if (first === 'costs' && parts.length === 1) return { page: 'costs' };
  if (first === 'alerts' && parts.length === 1) return { page: 'alerts' };
  return { page: 'not-found', path: pathname };
}

/** Paths of the pages, each id encoded. */
export const paths = {
  overview: () => '/',
  agent: (agent: string) => `/agents/${encodeURIComponent(agent)}`,
  tool: (tool: string) => `/tools/${encodeURIComponent(tool)}`,
  audit: () => '/audit',
  trace: (id: string) => `/traces/${encodeURIComponent(id)}`,
  denials: () => '/denials',
  costs: () => '/costs',
  alerts: () => '/alerts',
};

/** Query parameters that travel from page to page: the time range. */
const SHARED = ['range', 'from', 'to'];

class Location {
  pathname = $state(location.pathname);
  search = $state(location.search);
  readonly params = $derived(new URLSearchParams(this.search));
  readonly route = $derived(matchRoute(this.pathname));

  sync() {
    this.pathname = location.pathname;
    this.search = location.search;
  }
}

export const here = new Location();

addEventListener('popstate', () => here.sync());

/** Goes to a path, keeping the time range unless `query` names it. */
export function navigate(path: string, query: Record<string, string | null | undefined> = {}) {
  const next = new URLSearchParams();
  for (const key of SHARED) {
    const value = here.params.get(key);
    if (value !== null) next.set(key, value);
  }
  for (const [key, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === '') next.delete(key);
    else next.set(key, value);
  }
  const search = next.size ? `?${next}` : '';
  history.pushState(null, '', `${path}${search}`);
  here.sync();
  scrollTo(0, 0);
}

/** A link to a page that keeps the time range (for `href`, so a new tab opens the same view). */
export function href(path: string, query: Record<string, string | null | undefined> = {}): string {
  const next = new URLSearchParams();
  for (const key of SHARED) {
    const value = here.params.get(key);
    if (value !== null) next.set(key, value);
  }
  for (const [key, value] of Object.entries(query)) if (value) next.set(key, value);
  return next.size ? `${path}?${next}` : path;
}

/** Changes query parameters of this page (null removes one); `push` makes it a step of the history. */
export function setParams(patch: Record<string, string | null | undefined>, push = false) {
  const next = new URLSearchParams(here.search);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null || value === undefined || value === '') next.delete(key);
    else next.set(key, value);
  }
  const search = next.size ? `?${next}` : '';
  if (search === here.search) return;
  if (push) history.pushState(null, '', `${here.pathname}${search}`);
  else history.replaceState(null, '', `${here.pathname}${search}`);
  here.sync();
}

/** Follows same-origin `<a href>` clicks inside the app without a page load. */
export function interceptLinks(event: MouseEvent) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = (event.target as Element | null)?.closest?.('a');
  if (!anchor || anchor.target || anchor.hasAttribute('download') || anchor.origin !== location.origin) return;
  if (anchor.pathname.startsWith('/graphql') || anchor.pathname.startsWith('/export/')) return;
  event.preventDefault();
  history.pushState(null, '', anchor.pathname + anchor.search);
  here.sync();
  scrollTo(0, 0);
}
