/** One sentence per alert, for a person: what was seen, in what time, and what is usual. */
import type { AlertKind } from './settings.ts';

export interface Subject {
  agent: string;
  tool: string;
  account: string;
  session: string;
}

export type BaselineKind = 'hour-of-week' | 'recent' | 'none';

export interface SentenceFacts {
  kind: AlertKind;
  subject: Subject;
  windowMinutes: number;
  observed: number;
  expectedLow: number;
  expectedHigh: number;
  baseline: BaselineKind;
  /** ERROR_SPIKE / DENIAL_SPIKE: the window's calls, of which `observed` is the share. */
  calls?: number;
}

const name = (agent: string) => (agent === '' ? 'an unnamed agent' : agent);
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const range = (low: number, high: number, unit: (n: number) => string) => {
  const a = unit(low);
  const b = unit(high);
  return a === b ? a : `${a}–${b}`;
};
const pct = (n: number) => `${Math.round(n * 100)}%`;
const usd = (n: number) => `$${n.toFixed(2)}`;
const ms = (n: number) => `${int(n)} ms`;

function usual(facts: SentenceFacts, unit: (n: number) => string): string {
  const where = facts.baseline === 'hour-of-week' ? 'for this hour of the week' : 'over the last hours';
  return `its usual ${where} is ${range(facts.expectedLow, facts.expectedHigh, unit)}`;
}

export function sentenceOf(f: SentenceFacts): string {
  const { agent, tool, account, session } = f.subject;
  const within = `in ${f.windowMinutes} min`;
  switch (f.kind) {
    case 'CALL_SPIKE':
      return tool
        ? `${name(agent)} called ${tool} ${int(f.observed)} times ${within}; ${usual(f, int)}`
        : `${name(agent)} made ${int(f.observed)} calls ${within}; ${usual(f, int)}`;
    case 'CALL_COLLAPSE':
      return `${name(agent)} made ${int(f.observed)} calls ${within}; ${usual(f, int)}`;
    case 'ERROR_SPIKE':
      return `${pct(f.observed)} of ${name(agent)}'s ${int(f.calls ?? 0)} calls failed ${within}; ${usual(f, pct)}`;
    case 'DENIAL_SPIKE':
      return `${pct(f.observed)} of ${name(agent)}'s ${int(f.calls ?? 0)} calls were denied ${within}; ${usual(f, pct)}`;
    case 'LATENCY_REGRESSION':
      return `${tool} took ${ms(f.observed)} at p95 for ${name(agent)} ${within}; ${usual(f, ms)}`;
    case 'COST_SPIKE':
      return account
        ? `account ${account} cost ${usd(f.observed)} ${within}; ${usual(f, usd)}`
        : `${name(agent)} cost ${usd(f.observed)} ${within}; ${usual(f, usd)}`;
    case 'NEW_TOOL':
      return `${name(agent)} called ${tool} for the first time (${int(f.observed)} calls ${within})`;
    case 'BUDGET_CROSSED':
      throw new Error('a budget crossing is worded by budget-crossings.ts, from the budget');
    case 'CALL_LOOP':
      return `${name(agent)} called ${tool} ${int(f.observed)} times ${within} in session ${session}; its usual per session is ${range(f.expectedLow, f.expectedHigh, int)}`;
  }
}
