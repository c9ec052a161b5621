/** Anomaly alerts: the list, one alert with its history and series, and what people do about them. */
import type { ClickHouseClient } from '@clickhouse/client';
import { createGraphQLError } from 'graphql-yoga';
import type { Alert, AlertStatus } from '../../alerts/alert-record.ts';
import type { Subject } from '../../alerts/sentences.ts';
import { ALERT_KINDS, settingsOverride, type AlertKind, type AlertSettings, type SettingsOverride } from '../../alerts/settings.ts';
import type { AlertWebhooks } from '../../alerts/webhook-announcer.ts';
import { tenantOf, type ApiContext } from '../context.ts';
import { money } from '../money.ts';
import { alertHistory, alertSeries, alertSettings, changeAlertStatus, getAlert, listAlerts, setAlertSettings, silenceSubject, type AlertCursor } from '../queries/alerts.ts';
import { badInput, parseFilter, parseTimeRange } from '../queries/params.ts';

export const typeDefs = /* GraphQL */ `
  type Query {
    "Alerts of the key's tenant, newest window first; from/to select alerts whose windows overlap [from, to)."
    alerts(status: AlertStatus, from: String, to: String, kind: AlertKind, agent: String, first: Int = 50, after: String): AlertConnection! @requires(role: VIEWER)
    "One alert, with its history and the series around it; null when the tenant has no such alert."
    alert(id: ID!): Alert @requires(role: VIEWER)
    "The detector's settings for this tenant: defaults with the tenant's changes."
    alertSettings: AlertSettings! @requires(role: VIEWER)
  }

  type Mutation {
    "Marks an open alert as seen (who and when are kept); it still updates, and resolves by itself."
    acknowledgeAlert(id: ID!): Alert! @requires(role: OPERATOR)
    "Resolves an alert now. If the anomaly goes on, the next pass opens a new alert."
    resolveAlert(id: ID!): Alert! @requires(role: OPERATOR)
    "No new alert of this kind for this subject until \`until\`; empty or missing parts of the subject match anything."
    silence(subject: AlertSubjectInput!, kind: AlertKind!, until: String!): Silence! @requires(role: OPERATOR)
    "Changes some settings; the others keep their values."
    setAlertSettings(settings: AlertSettingsInput!): AlertSettings! @requires(role: OPERATOR)
  }

  enum AlertKind { ${ALERT_KINDS.join(' ')} }
  enum AlertStatus { OPEN ACKNOWLEDGED RESOLVED }
  enum AlertSeverity { WARNING CRITICAL }

  type AlertConnection {
    nodes: [Alert!]!
    "Pass as \`after\` for the next page."
    endCursor: String
    hasNextPage: Boolean!
  }

  "What an alert is about; parts that do not apply are null."
  type AlertSubject {
    agent: String
    tool: String
    account: String
    session: String
  }

  input AlertSubjectInput {
    agent: String
    tool: String
    account: String
    session: String
  }

  type Alert {
    id: ID!
    kind: AlertKind!
    severity: AlertSeverity!
    status: AlertStatus!
    subject: AlertSubject!
    "Start of the window it first fired in; end of the latest window it fired in."
    windowStart: String!
    windowEnd: String!
    lastFiredAt: String!
    "In the kind's unit: calls, a share of calls (0-1), milliseconds (p95), or US dollars."
    observed: Float!
    expected: Float!
    expectedLow: Float!
    expectedHigh: Float!
    unit: String!
    "COST_SPIKE and BUDGET_CROSSED (spent and limit): observed and expected as money."
    observedCost: Money
    expectedCost: Money
    "Deviation from the baseline's median in robust standard deviations."
    score: Float!
    "hour-of-week, recent, or none (NEW_TOOL)."
    baseline: String!
    sentence: String!
    acknowledgedBy: String
    acknowledgedAt: String
    resolvedBy: String
    resolvedAt: String
    history: [AlertHistoryEntry!]!
    "Per minute for the alert's subject, two hours before its window to 30 minutes after."
    series: [AlertPoint!]!
  }

  type AlertHistoryEntry {
    at: String!
    "opened, updated, escalated, acknowledged or resolved."
    action: String!
    by: String!
    severity: AlertSeverity!
    observed: Float!
    score: Float!
  }

  type AlertPoint {
    minute: String!
    calls: Int!
    errors: Int!
    denials: Int!
    cost: Money!
    "Null in a minute without allowed calls."
    p95Ms: Float
  }

  type Silence {
    kind: AlertKind!
    subject: AlertSubject!
    until: String!
    createdBy: String!
  }

  type AlertSettings {
    windowMinutes: Int!
    resolveAfterMinutes: Int!
    learningHours: Float!
    "Null: the product's ALERT_WEBHOOK_URL."
    webhookUrl: String
    kinds: [AlertKindSettings!]!
  }

  type AlertKindSettings {
    kind: AlertKind!
    enabled: Boolean!
    "Robust score (deviations from the baseline's median in MAD-based standard deviations) that fires."
    threshold: Float!
    "Least volume per 10 minutes of window before it fires: calls, errors, denials, or US dollars (COST_SPIKE)."
    minVolume: Float!
    "Least ratio of observed to expected (CALL_COLLAPSE: the most)."
    ratio: Float!
    "Spike kinds: also judged on the latest this many minutes against the baseline scaled to them, so a sharp anomaly is seen within a minute or two; 0: not."
    shortWindowMinutes: Int!
    "Least volume in the short window, per 10 minutes like minVolume (scaled to the short window)."
    shortMinVolume: Float!
  }

  input AlertSettingsInput {
    windowMinutes: Int
    resolveAfterMinutes: Int
    learningHours: Float
    "An http(s) URL; an empty string returns to the product's ALERT_WEBHOOK_URL."
    webhookUrl: String
    kinds: [AlertKindSettingsInput!]
  }

  input AlertKindSettingsInput {
    kind: AlertKind!
    enabled: Boolean
    threshold: Float
    minVolume: Float
    ratio: Float
    "CALL_SPIKE, ERROR_SPIKE, DENIAL_SPIKE, LATENCY_REGRESSION and COST_SPIKE only; shorter than windowMinutes; 0 turns it off."
    shortWindowMinutes: Int
    shortMinVolume: Float
  }
`;

const UNITS: Record<AlertKind, string> = {
  CALL_SPIKE: 'calls',
  CALL_COLLAPSE: 'calls',
  ERROR_SPIKE: 'share',
  DENIAL_SPIKE: 'share',
  LATENCY_REGRESSION: 'ms',
  COST_SPIKE: 'usd',
  NEW_TOOL: 'calls',
  CALL_LOOP: 'calls',
  BUDGET_CROSSED: 'usd',
};

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
const isoMs = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const orNull = (s: string) => (s === '' ? null : s);
const usd = (value: number) => money(BigInt(Math.round(value * 1e6)));

function subjectOut(s: Subject) {
  return { agent: orNull(s.agent), tool: orNull(s.tool), account: orNull(s.account), session: orNull(s.session) };
}

function alertOut(clickhouse: ClickHouseClient, a: Alert) {
  return {
    id: a.id,
    kind: a.kind,
    severity: a.severity,
    status: a.status,
    subject: subjectOut(a.subject),
    windowStart: iso(a.windowStart),
    windowEnd: iso(a.windowEnd),
    lastFiredAt: iso(a.lastFiredAt),
    observed: a.observed,
    expected: a.expected,
    expectedLow: a.expectedLow,
    expectedHigh: a.expectedHigh,
    unit: UNITS[a.kind],
    observedCost: UNITS[a.kind] === 'usd' ? usd(a.observed) : null,
    expectedCost: UNITS[a.kind] === 'usd' ? usd(a.expected) : null,
    score: a.score,
    baseline: a.baseline,
    sentence: a.sentence,
    acknowledgedBy: orNull(a.acknowledgedBy),
    acknowledgedAt: isoMs(a.acknowledgedAt),
    resolvedBy: orNull(a.resolvedBy),
    resolvedAt: isoMs(a.resolvedAt),
    history: async () =>
      (await alertHistory(clickhouse, a.tenant, a.id)).map((h) => ({ ...h, at: new Date(h.at).toISOString() })),
    series: async () =>
      (await alertSeries(clickhouse, a.tenant, a)).map((p) => ({ ...p, minute: iso(p.minute), cost: usd(p.costUsd) })),
  };
}

function settingsOut(s: AlertSettings) {
  return { ...s, kinds: ALERT_KINDS.map((kind) => ({ kind, ...s.kinds[kind] })) };
}

function parseId(id: string): string {
  if (!/^[0-9a-f]{32}$/.test(id)) throw badInput(`id must be an alert id (32 hex digits), got ${JSON.stringify(id)}`, 'id');
  return id;
}

function parseCursor(after: string | null | undefined): AlertCursor | undefined {
  if (after == null) return undefined;
  const m = /^(\d{1,10}):([0-9a-f]{32})$/.exec(Buffer.from(after, 'base64url').toString('utf8'));
  if (!m) throw badInput('after must be an endCursor returned by alerts', 'after');
  return { windowStart: Number(m[1]), id: m[2]! };
}

const cursorOf = (a: Alert) => Buffer.from(`${a.windowStart}:${a.id}`).toString('base64url');

function parseFirst(first: number | null | undefined): number {
  const value = first ?? 50;
  if (!Number.isInteger(value) || value < 1 || value > 500) throw badInput(`first must be a whole number from 1 to 500, got ${value}`, 'first');
  return value;
}

const toSeconds = (clickhouseTime: string) => Math.floor(Date.parse(`${clickhouseTime.replace(' ', 'T')}Z`) / 1000);

function notFound(id: string) {
  return createGraphQLError(`No alert ${id} in this tenant.`, { extensions: { code: 'NOT_FOUND' } });
}

function who(ctx: ApiContext): string {
  return ctx.caller?.name ?? 'unknown';
}

interface SettingsInput {
  windowMinutes?: number | null;
  resolveAfterMinutes?: number | null;
  learningHours?: number | null;
  webhookUrl?: string | null;
  kinds?: Array<{
    kind: AlertKind;
    enabled?: boolean | null;
    threshold?: number | null;
    minVolume?: number | null;
    ratio?: number | null;
    shortWindowMinutes?: number | null;
    shortMinVolume?: number | null;
  }> | null;
}

function parseSettings(input: SettingsInput): SettingsOverride {
  const drop = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v != null));
  const candidate = {
    ...drop({ windowMinutes: input.windowMinutes, resolveAfterMinutes: input.resolveAfterMinutes, learningHours: input.learningHours }),
    ...(input.webhookUrl != null && { webhookUrl: input.webhookUrl === '' ? null : input.webhookUrl }),
    ...(input.kinds && { kinds: Object.fromEntries(input.kinds.map(({ kind, ...rest }) => [kind, drop(rest)])) }),
  };
  const parsed = settingsOverride.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const argument = `settings.${issue.path.join('.')}`;
    throw badInput(`${argument}: ${issue.message}`, argument);
  }
  return parsed.data;
}

export function resolvers(clickhouse: ClickHouseClient, { alertWebhooks }: { alertWebhooks?: AlertWebhooks }) {
  /** A person's change, stored, then announced to the tenant's webhook (once kept in the outbox). */
  async function changeStatus(id: string, action: 'acknowledged' | 'resolved', ctx: ApiContext) {
    const tenant = tenantOf(ctx);
    const at = Date.now();
    const by = who(ctx);
    const result = await changeAlertStatus(clickhouse, tenant, parseId(id), action, by, at);
    if (!result) throw notFound(id);
    if (result.changed && alertWebhooks) {
      const { webhookUrl } = await alertSettings(clickhouse, tenant);
      await alertWebhooks.announce({ alert: result.alert, action, at, by }, webhookUrl);
    }
    return alertOut(clickhouse, result.alert);
  }

  return {
    Query: {
      async alerts(
        _: unknown,
        args: { status?: AlertStatus | null; from?: string | null; to?: string | null; kind?: AlertKind | null; agent?: string | null; first?: number | null; after?: string | null },
        ctx: ApiContext,
      ) {
        const tenant = tenantOf(ctx);
        const range = args.from != null || args.to != null ? parseTimeRange(args) : undefined;
        const first = parseFirst(args.first);
        const { alerts, hasNextPage } = await listAlerts(
          clickhouse,
          tenant,
          {
            status: args.status ?? undefined,
            kind: args.kind ?? undefined,
            agent: parseFilter(args.agent, 'agent'),
            from: range && toSeconds(range.from),
            to: range && Math.ceil(Date.parse(`${range.to.replace(' ', 'T')}Z`) / 1000),
          },
          first,
          parseCursor(args.after),
        );
        return { nodes: alerts.map((a) => alertOut(clickhouse, a)), endCursor: alerts.length > 0 ? cursorOf(alerts.at(-1)!) : null, hasNextPage };
      },

      async alert(_: unknown, args: { id: string }, ctx: ApiContext) {
        const alert = await getAlert(clickhouse, tenantOf(ctx), parseId(args.id));
        return alert ? alertOut(clickhouse, alert) : null;
      },

      alertSettings: async (_: unknown, __: unknown, ctx: ApiContext) => settingsOut(await alertSettings(clickhouse, tenantOf(ctx))),
    },

    Mutation: {
      acknowledgeAlert: (_: unknown, args: { id: string }, ctx: ApiContext) => changeStatus(args.id, 'acknowledged', ctx),
      resolveAlert: (_: unknown, args: { id: string }, ctx: ApiContext) => changeStatus(args.id, 'resolved', ctx),

      async silence(_: unknown, args: { subject: Partial<Record<keyof Subject, string | null>>; kind: AlertKind; until: string }, ctx: ApiContext) {
        const tenant = tenantOf(ctx);
        const until = Date.parse(args.until);
        if (!/\d{4}-\d{2}-\d{2}T.*(Z|[+-]\d{2}:\d{2})$/.test(args.until) || Number.isNaN(until)) {
          throw badInput(`until must be an ISO-8601 date-time with a time zone, e.g. 2026-11-24T10:00:00Z, got ${JSON.stringify(args.until)}`, 'until');
        }
        if (until <= Date.now()) throw badInput(`until (${args.until}) must be in the future`, 'until');
        const part = (name: keyof Subject) => parseFilter(args.subject[name], `subject.${name}`) ?? '';
        const subject: Subject = { agent: part('agent'), tool: part('tool'), account: part('account'), session: part('session') };
        const saved = await silenceSubject(clickhouse, tenant, { kind: args.kind, subject, until: Math.floor(until / 1000), createdBy: who(ctx) }, Date.now());
        return { ...saved, subject: subjectOut(saved.subject), until: iso(saved.until) };
      },

      async setAlertSettings(_: unknown, args: { settings: SettingsInput }, ctx: ApiContext) {
        const tenant = tenantOf(ctx);
        return settingsOut(await setAlertSettings(clickhouse, tenant, parseSettings(args.settings), who(ctx), Date.now()));
      },
    },
  };
}
