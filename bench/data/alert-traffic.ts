/**
 * A month of per-minute tool-call rollups for the alerts bench: agents with daily and weekly
 * seasonality, Poisson-like noise and 10% growth over the month, and anomalies of every kind injected
 * at known times. Generated inside ClickHouse from a seed (hash-based noise: the same seed gives the
 * same rows), straight into tool_calls_1m_v1; call loops as raw audit events (sessions live there).
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { AlertKind } from '../../alerts/settings.ts';

export const SEED = 20261204;

/** Tools per agent, and one more slot for the tool a NEW_TOOL injection starts calling. */
const TOOLS = ['repo.Files.Read', 'search.Search.Query'];
const NEW_TOOL = 'admin.Users.Delete';
const SLOTS = TOOLS.length + 1;

export interface TrafficPlan {
  tenant: string;
  /** Epoch seconds of the first minute (a day boundary). */
  start: number;
  days: number;
  agents: AgentProfile[];
  injections: Injection[];
}

export interface AgentProfile {
  name: string;
  account: string;
  /** Calls per minute of each tool at the daily peak, before growth. */
  rates: number[];
  latencyMs: number[];
  priceUsd: number;
}

export interface Injection {
  kind: AlertKind;
  agent: number;
  /** Minute index from the plan's start; lasts `minutes`. */
  from: number;
  minutes: number;
  magnitude: number;
}

/** Small seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function agentProfiles(count: number, seed = SEED, prefix = 'agent'): AgentProfile[] {
  const rand = prng(seed);
  return Array.from({ length: count }, (_, i) => ({
    name: `${prefix}-${String(i).padStart(4, '0')}`,
    account: `acct-${String(i).padStart(4, '0')}`,
    rates: TOOLS.map(() => 1.5 + rand() * 6.5),
    latencyMs: TOOLS.map(() => 20 + rand() * 180),
    priceUsd: 0.001 + rand() * 0.004,
  }));
}

/** Magnitudes at which the bench states its targets. */
export const MAGNITUDES: Partial<Record<AlertKind, number>> = {
  CALL_SPIKE: 8, // × calls of one tool
  CALL_COLLAPSE: 0, // × calls of every tool
  ERROR_SPIKE: 0.4, // share of calls failing
  DENIAL_SPIKE: 0.5, // share of calls denied
  LATENCY_REGRESSION: 4, // × latency of one tool
  COST_SPIKE: 8, // × price of every call
  NEW_TOOL: 3, // calls a minute of a tool never called before
  CALL_LOOP: 80, // calls of one tool in one session within 10 minutes
};

/**
 * `perKind` injections of each kind in the last week, each on its own agent, on weekday daytime
 * minutes (where every kind has the volume to be seen), 20 minutes long.
 */
export function injectionsFor(agents: AgentProfile[], days: number, perKind: number, seed = SEED): Injection[] {
  const rand = prng(seed ^ 0x5eed);
  const kinds = Object.keys(MAGNITUDES) as AlertKind[];
  const order = agents.map((_, i) => i).sort((a, b) => agents[b]!.rates.reduce((x, y) => x + y) - agents[a]!.rates.reduce((x, y) => x + y));
  const injections: Injection[] = [];
  let next = 0;
  for (const kind of kinds) {
    for (let k = 0; k < perKind; k++) {
      // Busiest agents first: a collapse needs a usual volume to collapse from.
      const agent = order[next++ % order.length]!;
      let day: number;
      do day = days - 7 + Math.floor(rand() * 7);
      while ([5, 6].includes(dayOfWeek(day)));
      const minute = day * 1440 + (10 + Math.floor(rand() * 6)) * 60 + Math.floor(rand() * 60);
      injections.push({ kind, agent, from: minute, minutes: 20, magnitude: MAGNITUDES[kind]! });
    }
  }
  return injections;
}

/** 0 = Monday. Day 0 of every plan is a Monday (planStart). */
function dayOfWeek(day: number): number {
  return day % 7;
}

/** A Monday 00:00 UTC at least `days` + 1 days before now, so the whole month is within retention. */
export function planStart(days: number, now = Date.now()): number {
  const today = Math.floor(now / 86_400_000) * 86_400;
  let start = today - (days + 1) * 86_400;
  while (new Date(start * 1000).getUTCDay() !== 1) start -= 86_400;
  return start;
}

const GENERATE_SQL = `
INSERT INTO tool_calls_1m_v1 (tenant, minute, agent, account_id, service, tool, calls, errors, denials, duration_sum_ns,
    duration_max_ns, duration_digest, request_bytes_sum, response_bytes_sum, cost_usd_sum, priced_calls)
SELECT tenant, minute, agent, account_id, splitByChar('.', tool)[1], tool, calls, errors, denials, calls * lat_ns, lat_ns,
    initializeAggregation('quantileTDigestState', lat_ns), 0, 0, toDecimal128(calls * price, 9), calls
FROM (
    SELECT
        {tenant:String} AS tenant,
        number AS i,
        toDateTime({start:UInt32} + i * 60) AS minute,
        arrayJoin(range({slots:UInt32})) AS slot,
        {slot_agent:Array(UInt32)}[slot + 1] AS a,
        {agent_names:Array(String)}[a + 1] AS agent,
        {agent_accounts:Array(String)}[a + 1] AS account_id,
        {slot_tool:Array(String)}[slot + 1] AS tool,
        (i % 1440) / 60.0 AS hour,
        0.55 - 0.45 * cos(2 * pi() * (hour - 3) / 24) AS daily,
        if(toDayOfWeek(minute) >= 6, 0.4, 1.0) AS weekly,
        1 + 0.1 * i / {minutes:UInt32} AS growth,
        -- Injections touching this row: their kinds and magnitudes.
        arrayFilter(j -> {inj_agent:Array(UInt32)}[j] = a AND i >= {inj_from:Array(UInt32)}[j] AND i < {inj_to:Array(UInt32)}[j]
            AND ({inj_slot:Array(Int32)}[j] < 0 OR {inj_slot:Array(Int32)}[j] = slot), arrayEnumerate({inj_agent:Array(UInt32)})) AS hits,
        arrayMap(j -> {inj_kind:Array(String)}[j], hits) AS kinds,
        arrayMap(j -> {inj_mag:Array(Float64)}[j], hits) AS mags,
        if(has(kinds, 'NEW_TOOL'), mags[indexOf(kinds, 'NEW_TOOL')], {slot_rate:Array(Float64)}[slot + 1]) AS base_rate,
        base_rate * if(has(kinds, 'NEW_TOOL'), 1, daily * weekly * growth)
            * if(has(kinds, 'CALL_SPIKE'), mags[indexOf(kinds, 'CALL_SPIKE')], 1)
            * if(has(kinds, 'CALL_COLLAPSE'), 0, 1) AS lambda,
        (cityHash64({seed:UInt64}, slot, i, 1) % 1000000) / 1e6 AS u1,
        (cityHash64({seed:UInt64}, slot, i, 2) % 1000000) / 1e6 AS u2,
        (cityHash64({seed:UInt64}, slot, i, 3) % 1000000) / 1e6 AS u3,
        (cityHash64({seed:UInt64}, slot, i, 4) % 1000000) / 1e6 AS u4,
        (cityHash64({seed:UInt64}, slot, i, 5) % 1000000) / 1e6 AS u5,
        (cityHash64({seed:UInt64}, slot, i, 6) % 1000000) / 1e6 AS u6,
        (u1 + u2 + u3 + u4 - 2) * sqrt(3) AS z,
        toUInt64(greatest(0, round(lambda + sqrt(lambda) * z))) AS calls,
        if(has(kinds, 'ERROR_SPIKE'), mags[indexOf(kinds, 'ERROR_SPIKE')], 0.02) AS error_share,
        if(has(kinds, 'DENIAL_SPIKE'), mags[indexOf(kinds, 'DENIAL_SPIKE')], 0.01) AS denial_share,
        toUInt64(least(toFloat64(calls), greatest(0., round(calls * error_share + sqrt(calls * error_share) * (u5 - 0.5) * 3.46)))) AS errors,
        toUInt64(least(toFloat64(calls - errors), greatest(0., round(calls * denial_share + sqrt(calls * denial_share) * (u6 - 0.5) * 3.46)))) AS denials,
        toUInt64({slot_latency:Array(Float64)}[slot + 1] * if(has(kinds, 'LATENCY_REGRESSION'), mags[indexOf(kinds, 'LATENCY_REGRESSION')], 1)
            * (1 + 0.1 * (u2 - 0.5)) * 1e6) AS lat_ns,
        {agent_prices:Array(Float64)}[a + 1] * if(has(kinds, 'COST_SPIKE'), mags[indexOf(kinds, 'COST_SPIKE')], 1) AS price
    FROM numbers({minutes:UInt32})
)
WHERE calls > 0`;

/** Writes the plan's rollups (and the call loops' raw events). */
export async function generateTraffic(clickhouse: ClickHouseClient, plan: TrafficPlan, seed = SEED): Promise<void> {
  const { agents, injections } = plan;
  const slots = agents.length * SLOTS;
  const slotAgent = Array.from({ length: slots }, (_, s) => Math.floor(s / SLOTS));
  const slotTool = Array.from({ length: slots }, (_, s) => [...TOOLS, NEW_TOOL][s % SLOTS]!);
  const slotRate = Array.from({ length: slots }, (_, s) => (s % SLOTS < TOOLS.length ? agents[Math.floor(s / SLOTS)]!.rates[s % SLOTS]! : 0));
  const slotLatency = Array.from({ length: slots }, (_, s) => (s % SLOTS < TOOLS.length ? agents[Math.floor(s / SLOTS)]!.latencyMs[s % SLOTS]! : 50));
  const rollupInjections = injections.filter((j) => j.kind !== 'CALL_LOOP');
  // Which slot an injection touches: one tool for a spike or a latency regression, the new tool's
  // slot for NEW_TOOL, every slot of the agent otherwise (-1).
  const slotOf = (j: Injection) =>
    j.kind === 'CALL_SPIKE' || j.kind === 'LATENCY_REGRESSION' ? j.agent * SLOTS : j.kind === 'NEW_TOOL' ? j.agent * SLOTS + TOOLS.length : -1;
  const minutes = plan.days * 1440;
  // In day-long pieces: one statement over the whole month holds too much in memory at once.
  for (let day = 0; day < plan.days; day++) {
    await clickhouse.command({
      query: GENERATE_SQL.replace('FROM numbers({minutes:UInt32})', 'FROM numbers({first:UInt32}, 1440)'),
      query_params: {
        tenant: plan.tenant,
        start: plan.start,
        first: day * 1440,
        minutes,
        slots,
        seed,
        slot_agent: slotAgent,
        slot_tool: slotTool,
        slot_rate: slotRate,
        slot_latency: slotLatency,
        agent_names: agents.map((a) => a.name),
        agent_accounts: agents.map((a) => a.account),
        agent_prices: agents.map((a) => a.priceUsd),
        inj_agent: rollupInjections.map((j) => j.agent),
        inj_slot: rollupInjections.map(slotOf),
        inj_from: rollupInjections.map((j) => j.from),
        inj_to: rollupInjections.map((j) => j.from + j.minutes),
        inj_kind: rollupInjections.map((j) => j.kind),
        inj_mag: rollupInjections.map((j) => j.magnitude),
      },
    });
  }

  // Call loops: the looping session's calls, and the agent's ordinary sessions of the six hours
  // before (three calls of the tool per session per 10 minutes), as raw audit events.
  const rand = prng(seed ^ 0x100b);
  const rows: Record<string, unknown>[] = [];
  const event = (j: Injection, atS: number, session: string) => {
    const agent = agents[j.agent]!;
    rows.push({
      event_id: crypto.randomUUID(),
      tenant: plan.tenant,
      timestamp: new Date(atS * 1000).toISOString().replace('T', ' ').replace('Z', ''),
      trace_id: `loop-${rows.length}`,
      tool: TOOLS[0],
      service: TOOLS[0]!.split('.')[0],
      account_id: agent.account,
      allowed: true,
      duration_ns: Math.round(agent.latencyMs[0]! * 1e6),
      agent: agent.name,
      session_id: session,
      source: 'audit',
    });
  };
  for (const j of injections.filter((x) => x.kind === 'CALL_LOOP')) {
    const startS = plan.start + j.from * 60;
    for (let n = 0; n < j.magnitude; n++) event(j, startS + (n * 600) / j.magnitude, `loop-${j.agent}-${j.from}`);
    for (let w = 1; w <= 36; w++) {
      for (let s = 0; s < 5; s++) for (let c = 0; c < 3; c++) event(j, startS - w * 600 + rand() * 600, `ordinary-${j.agent}-${w}-${s}`);
    }
  }
  if (rows.length > 0) await clickhouse.insert({ table: 'audit_events_v1', values: rows, format: 'JSONEachRow' });
}
