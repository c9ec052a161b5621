import type { z } from 'zod';

/** One reason a value was refused: where in the input, and why. */
export interface Issue {
  /** Dotted path into the input, e.g. `scopes_required.2` or `attributes.region`. Empty for the whole value. */
  path: string;
  message: string;
}

export type Validated<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

export function issuesFromZod(error: z.ZodError): Issue[] {
  return error.issues.map((issue) => ({
    path: issue.path.map(String).join('.'),
    message: issue.message,
  }));
}

/** `tool: expected a string` — one line per issue, for logs and error bodies. */
export function formatIssues(issues: readonly Issue[]): string {
  return issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
}
