/**
 * `npm run demo`: live traffic for the product. Five simulated agents call an instrumented MCP gateway
 * over Streamable HTTP; its collector sends audit records and spans to a receiver over HTTP — by
 * default `npm start` on this machine. Runs until Ctrl-C (or DEMO_DURATION_MS), then shuts the collector
 * down. Start and stop it, or the receiver, at any time: what the receiver cannot take waits in the
 * collector's disk spool and is sent when it is back.
 *
 *   RECEIVER_URL      where to send (default http://127.0.0.1:4318)
 *   INGEST_TOKEN      an ingest key (npm run keys) or INGEST_TOKENS token, when the receiver has keys
 *   DEMO_TENANT       tenant of the records: the key's tenant (default `default`)
 *   DEMO_DURATION_MS  stop by itself after this long (default: run until stopped)
 *   DEMO_SEED         what the agents choose to do, repeatably (default: a new seed each run)
 *   DEMO_SPOOL_DIR    the collector's spool (default .cache/demo-spool)
 */
import { fileURLToPath } from 'node:url';
import { createCollector, type CollectorStats } from '../collector/index.ts';
import { createHttpPublisher } from '../collector/http-publisher.ts';
import { AGENTS, startAgents } from './agents.ts';
import { startGateway } from './gateway.ts';
import { createRandom } from './random.ts';
import { setUpTracing } from './tracing.ts';

interface DemoConfig {
  receiverUrl: string;
  token: string | undefined;
  tenant: string;
  durationMs: number | undefined;
  seed: number;
  spoolDir: string;
}

const STATS_EVERY_MS = 10_000;

function loadConfig(env: NodeJS.ProcessEnv): DemoConfig {
  const problems: string[] = [];
  const integer = (name: string): number | undefined => {
    const text = env[name];
    if (text === undefined || text === '') return undefined;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 0) problems.push(`${name}: must be a non-negative integer, got "${text}"`);
    return value;
  };
  const receiverUrl = env['RECEIVER_URL'] || 'http://127.0.0.1:4318';
  if (!URL.canParse(receiverUrl)) problems.push(`RECEIVER_URL: must be a URL such as http://127.0.0.1:4318, got "${receiverUrl}"`);
  const durationMs = integer('DEMO_DURATION_MS');
  const seed = integer('DEMO_SEED') ?? Math.floor(Math.random() * 1e6);
  if (problems.length > 0) {
    console.error(problems.join('\n'));
    process.exit(2);
  }
  return {
    receiverUrl,
    token: env['INGEST_TOKEN'] || undefined,
    tenant: env['DEMO_TENANT'] || 'default',
    durationMs: durationMs || undefined,
    seed,
    spoolDir: env['DEMO_SPOOL_DIR'] || fileURLToPath(new URL('../.cache/demo-spool/', import.meta.url)),
  };
}

const config = loadConfig(process.env);
const startedAt = Date.now();

const collector = createCollector({
  publisher: createHttpPublisher({ url: config.receiverUrl, token: config.token }),
  tenant: config.tenant,
  gateway: 'demo-gateway',
  spoolDir: config.spoolDir,
});
setUpTracing(collector.spanProcessor, 'demo-gateway');

const gateway = await startGateway({
  collector,
  accounts: new Map(AGENTS.map((agent) => [agent.token, agent.account])),
  random: createRandom(config.seed + 1),
});
const reported = new Set<string>();
const agents = await startAgents({
  url: gateway.url,
  seed: config.seed,
  onFailure(agent, error) {
    // Once per agent: a gateway going away fails every call after it.
    if (reported.has(agent)) return;
    reported.add(agent);
    console.error(`demo: ${agent}: a call got no answer: ${(error as Error).message ?? error}`);
  },
});

console.log(
  `demo: ${AGENTS.map((a) => a.name).join(', ')} → gateway ${gateway.url} → ${config.receiverUrl} ` +
    `(tenant ${config.tenant}, seed ${config.seed}${config.durationMs ? `, for ${config.durationMs} ms` : ''}); Ctrl-C stops`,
);

function statsLine(label: string): string {
  const seconds = Math.round((Date.now() - startedAt) / 1000);
  const { errors, denied } = gateway.stats();
  const { calls, failed } = agents.stats();
  return `demo ${label} +${seconds}s: calls ${calls} (errors ${errors}, denied ${denied}, unanswered ${failed}) | collector ${formatStats(collector.stats())}`;
}

function formatStats(stats: CollectorStats): string {
  return Object.entries(stats)
    .map(([key, value]) => `${key} ${value}`)
    .join(', ');
}

const ticker = setInterval(() => console.log(statsLine('running')), STATS_EVERY_MS);
ticker.unref();

let stopping: Promise<void> | undefined;
function stop(reason: string): Promise<void> {
  stopping ??= (async () => {
    clearInterval(ticker);
    console.log(`demo: stopping (${reason})`);
    await agents.stop();
    await gateway.close();
    await collector.shutdown(); // sends what is queued, or leaves it in the spool for next time
    console.log(statsLine('stopped'));
  })();
  return stopping;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) {
      console.error('demo: stopping already; exiting now');
      process.exit(130);
    }
    void stop(signal);
  });
}
if (config.durationMs !== undefined) setTimeout(() => void stop(`${config.durationMs} ms elapsed`), config.durationMs);
