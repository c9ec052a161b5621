/**
 * What the detector looks for and how loud it must be before anyone hears: one entry per kind, the
 * defaults here, a tenant's overrides stored by `setAlertSettings` (alert_settings_v1) on top.
 */
import { z } from 'zod';

export const ALERT_KINDS = [
  'CALL_SPIKE',
  'CALL_COLLAPSE',
  'ERROR_SPIKE',
  'DENIAL_SPIKE',
  'LATENCY_REGRESSION',
  'COST_SPIKE',
  'NEW_TOOL',
  'CALL_LOOP',
  'BUDGET_CROSSED',
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

export interface KindSettings {
  enabled: boolean;
  /** Robust score (deviation from the median in MAD-based standard deviations) that fires. */
  threshold: number;
  /**
   * Least volume before the kind can fire, per 10 minutes (scaled to the window's length): calls
   * (spike, latency, new tool, loop), the baseline's median calls (collapse), errors or denials
   * (error and denial spikes), USD (cost).
   */
  minVolume: number;
  /** Least ratio of observed to expected (for a collapse: the most, e.g. 0.2 = a fifth of usual). */
  ratio: number;
  /**
   * Spike kinds (SHORT_WINDOW_KINDS) are also judged on the latest `shortWindowMinutes` against the
   * baseline scaled to that length, so a sharp anomaly is seen a minute or two after it starts rather
   * than once it fills most of the long window. 0: the long window only.
   */
  shortWindowMinutes: number;
  /**
   * Least volume in the short window, per 10 minutes like `minVolume` (scaled to the short window's
   * length). Higher than `minVolume`: a few minutes of counts are noisier than ten.
   */
  shortMinVolume: number;
}

export interface AlertSettings {
  /** Length of the window each pass looks at, in minutes. */
  windowMinutes: number;
  /** An open alert resolves itself after this many minutes without firing. */
  resolveAfterMinutes: number;
  /** An agent seen for less than this raises no NEW_TOOL alerts: it is still learning its tools. */
  learningHours: number;
  /** Webhook for this tenant's alerts; null: the product's ALERT_WEBHOOK_URL. */
  webhookUrl: string | null;
  kinds: Record<AlertKind, KindSettings>;
}

/** The kinds a short window applies to: those whose observation grows at once when the anomaly starts. */
export const SHORT_WINDOW_KINDS = ['CALL_SPIKE', 'ERROR_SPIKE', 'DENIAL_SPIKE', 'LATENCY_REGRESSION', 'COST_SPIKE'] as const satisfies readonly AlertKind[];
const hasShortWindow = (kind: AlertKind) => (SHORT_WINDOW_KINDS as readonly AlertKind[]).includes(kind);

const LONG_ONLY = { shortWindowMinutes: 0, shortMinVolume: 0 };

export const DEFAULT_SETTINGS: AlertSettings = {
  windowMinutes: 10,
  resolveAfterMinutes: 15,
  learningHours: 48,
  webhookUrl: null,
  kinds: {
    CALL_SPIKE: { enabled: true, threshold: 8, minVolume: 30, ratio: 2.5, shortWindowMinutes: 2, shortMinVolume: 60 },
    CALL_COLLAPSE: { enabled: true, threshold: 6, minVolume: 40, ratio: 0.2, ...LONG_ONLY },
    ERROR_SPIKE: { enabled: true, threshold: 6, minVolume: 10, ratio: 3, shortWindowMinutes: 2, shortMinVolume: 20 },
    DENIAL_SPIKE: { enabled: true, threshold: 6, minVolume: 10, ratio: 3, shortWindowMinutes: 2, shortMinVolume: 20 },
    LATENCY_REGRESSION: { enabled: true, threshold: 8, minVolume: 30, ratio: 1.8, shortWindowMinutes: 2, shortMinVolume: 60 },
    COST_SPIKE: { enabled: true, threshold: 8, minVolume: 0.5, ratio: 2.5, shortWindowMinutes: 2, shortMinVolume: 1 },
    NEW_TOOL: { enabled: true, threshold: 0, minVolume: 3, ratio: 0, ...LONG_ONLY },
    CALL_LOOP: { enabled: true, threshold: 8, minVolume: 30, ratio: 8, ...LONG_ONLY },
    // Reported by the cost side's budgets (budget-crossings.ts); only `enabled` applies.
    BUDGET_CROSSED: { enabled: true, threshold: 0, minVolume: 0, ratio: 0, ...LONG_ONLY },
  },
};

/** A kind's minimum volume for one window of the settings' length. */
export function minVolumeOf(settings: AlertSettings, kind: AlertKind): number {
  return (settings.kinds[kind].minVolume * settings.windowMinutes) / 10;
}

/** A kind's short window in minutes, when it has one and it is shorter than the long window; else 0. */
export function shortWindowOf(settings: AlertSettings, kind: AlertKind): number {
  const minutes = settings.kinds[kind].shortWindowMinutes;
  return minutes > 0 && minutes < settings.windowMinutes ? minutes : 0;
}

/** A kind's minimum volume for its short window. */
export function shortMinVolumeOf(settings: AlertSettings, kind: AlertKind): number {
  return (settings.kinds[kind].shortMinVolume * shortWindowOf(settings, kind)) / 10;
}

const kindOverride = z
  .object({
    enabled: z.boolean(),
    threshold: z.number().min(0).max(1000),
    minVolume: z.number().min(0).max(1e9),
    ratio: z.number().min(0).max(1000),
    shortWindowMinutes: z.number().int().min(0).max(59),
    shortMinVolume: z.number().min(0).max(1e9),
  })
  .partial()
  .strict();

/** A tenant's stored overrides: any subset of the settings. */
export const settingsOverride = z
  .object({
    windowMinutes: z.number().int().min(1).max(60),
    resolveAfterMinutes: z.number().int().min(1).max(7 * 24 * 60),
    learningHours: z.number().min(0).max(24 * 90),
    webhookUrl: z.url().refine((u) => /^https?:/.test(u), 'must be an http(s) URL').nullable(),
    kinds: z.partialRecord(z.enum(ALERT_KINDS), kindOverride),
  })
  .partial()
  .strict()
  .superRefine((o, ctx) => {
    for (const [kind, k] of Object.entries(o.kinds ?? {}) as Array<[AlertKind, z.infer<typeof kindOverride>]>) {
      if (!hasShortWindow(kind) && k.shortWindowMinutes) {
        ctx.addIssue({ code: 'custom', path: ['kinds', kind, 'shortWindowMinutes'], message: `only ${SHORT_WINDOW_KINDS.join(', ')} have a short window; 0 or omit it` });
      }
    }
  });
export type SettingsOverride = z.infer<typeof settingsOverride>;

/**
 * What is wrong with settings as a whole (a short window not shorter than the long one), with the
 * path of the setting to change; undefined when they are consistent.
 */
export function settingsProblem(settings: AlertSettings): { path: string; message: string } | undefined {
  for (const kind of SHORT_WINDOW_KINDS) {
    const minutes = settings.kinds[kind].shortWindowMinutes;
    if (minutes > 0 && minutes >= settings.windowMinutes) {
      return { path: `kinds.${kind}.shortWindowMinutes`, message: `must be shorter than windowMinutes (${settings.windowMinutes}), or 0 for none; got ${minutes}` };
    }
  }
  return undefined;
}

export function mergeSettings(base: AlertSettings, override: SettingsOverride | undefined): AlertSettings {
  if (!override) return base;
  const kinds = { ...base.kinds };
  for (const kind of ALERT_KINDS) {
    const o = override.kinds?.[kind];
    if (o) kinds[kind] = { ...kinds[kind], ...o };
  }
  return {
    windowMinutes: override.windowMinutes ?? base.windowMinutes,
    resolveAfterMinutes: override.resolveAfterMinutes ?? base.resolveAfterMinutes,
    learningHours: override.learningHours ?? base.learningHours,
    webhookUrl: override.webhookUrl === undefined ? base.webhookUrl : override.webhookUrl,
    kinds,
  };
}

/** Two overrides combined, the second winning field by field. */
export function combineOverrides(a: SettingsOverride, b: SettingsOverride): SettingsOverride {
  const kinds: SettingsOverride['kinds'] = { ...a.kinds };
  for (const [kind, o] of Object.entries(b.kinds ?? {})) kinds[kind as AlertKind] = { ...kinds[kind as AlertKind], ...o };
  return { ...a, ...b, kinds };
}
