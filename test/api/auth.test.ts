/**
 * Who may ask, over real listening servers: the API (createApi over the embedded ClickHouse) and the
 * receiver, both given one key store read from a real keys file. Missing, unknown and revoked keys are
 * UNAUTHENTICATED (HTTP 401); a key reads its own tenant only; roles are enforced by @requires; ingest
 * keys send but do not read; without keys only loopback callers are served, as tenant `default`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { GraphQLError } from 'graphql';
import { createSchema, createYoga } from 'graphql-yoga';
import { pino } from 'pino';
import { createApi } from '../../api/app.ts';
import { tenantOf, type ApiContext } from '../../api/context.ts';
import { authenticate, LOCAL_CALLER, useAuth, type KeyStore } from '../../api/plugins/use-auth.ts';
import { useRoles } from '../../api/plugins/use-roles.ts';
import { baseTypeDefs } from '../../api/schema.ts';
import { createReceiver } from '../../collector/receiver.ts';
import { appendKey, createKeyStore, generateKey, keyEntry, openKeyStore, revokeKey, type FileKeyStore } from '../../core/api-keys.ts';
import { openClickHouse, type ClickHouseClient } from '../../core/clickhouse.ts';
import { migrate } from '../../core/migrate.ts';
import type { OutboundMessage } from '../../core/publisher.ts';
import { normalizeAuditRecord, toAuditRow } from '../../model/audit-event.ts';

const dataDir = mkdtempSync(path.join(tmpdir(), 'auth-test-'));
const keysFile = path.join(dataDir, 'keys.yaml');
const silent = pino({ level: 'silent' });

/** One key per tenant and role the tests use, written to the keys file (hashes only). */
const KEY = {
  acmeViewer: generateKey(),
  acmeAdmin: generateKey(),
  acmeIngest: generateKey(),
  globexViewer: generateKey(),
  revoked: generateKey(),
};

// Tenant acme: 3 calls; globex: 2; both a few minutes ago.
const NOW = Date.now();
const FIXTURE = [
  ['acme', 'a-1'],
  ['acme', 'a-2'],
  ['acme', 'a-3'],
  ['globex', 'g-1'],
  ['globex', 'g-2'],
].map(([tenant, traceId], i) => {
  const normalized = normalizeAuditRecord({ tenant, trace_id: traceId, timestamp: new Date(NOW - (i + 1) * 60_000).toISOString(), tool: 'users.Users.Get', allowed: true, duration: 1_000_000 });
  assert.ok(normalized.ok);
  return toAuditRow(normalized.value);
});
const RANGE = { from: new Date(NOW - 3600_000).toISOString(), to: new Date(NOW + 60_000).toISOString() };

let clickhouse: ClickHouseClient;
let keys: FileKeyStore;
const servers: Server[] = [];

async function listen(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handle);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Answer {
  status: number;
  wwwAuthenticate: string | null;
  data?: Record<string, any> | null;
  errors?: Array<{ message: string; extensions?: { code?: string } }>;
}

async function gql(url: string, query: string, key?: string): Promise<Answer> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', ...(key !== undefined && { authorization: `Bearer ${key}` }) },
    body: JSON.stringify({ query }),
  });
  const body = (await response.json()) as Omit<Answer, 'status' | 'wwwAuthenticate'>;
  return { status: response.status, wwwAuthenticate: response.headers.get('www-authenticate'), ...body };
}

const codes = (answer: Answer) => answer.errors?.map((e) => e.extensions?.code);

let api: string;
let apiWithoutKeys: string;

before(async () => {
  appendKey(keysFile, keyEntry({ name: 'acme-viewer', tenant: 'acme', role: 'viewer', secret: KEY.acmeViewer }));
  appendKey(keysFile, keyEntry({ name: 'acme-admin', tenant: 'acme', role: 'admin', secret: KEY.acmeAdmin }));
  appendKey(keysFile, keyEntry({ name: 'acme-gateway', tenant: 'acme', role: 'ingest', secret: KEY.acmeIngest }));
  appendKey(keysFile, keyEntry({ name: 'globex-viewer', tenant: 'globex', role: 'viewer', secret: KEY.globexViewer }));
  appendKey(keysFile, keyEntry({ name: 'soon-revoked', tenant: 'acme', role: 'viewer', secret: KEY.revoked }));
  keys = openKeyStore({ file: keysFile, logger: silent, checkEveryMs: 0 });

  clickhouse = await openClickHouse({ database: 'auth_test', dataDir });
  await migrate(clickhouse, { retentionDays: 30 });
  await clickhouse.insert({ table: 'audit_events_v1', format: 'JSONEachRow', values: FIXTURE });

  api = await listen(createApi({ clickhouse, logger: silent, keys }).handle);
  apiWithoutKeys = await listen(createApi({ clickhouse, logger: silent }).handle);
});

after(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
  await clickhouse?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const ME = '{ me { tenant role name } }';
const auditLogOf = (tenant: string) => `{ auditLog(tenant: "${tenant}", filter: { from: "${RANGE.from}", to: "${RANGE.to}" }) { edges { node { traceId } } } }`;
const traceIds = (log: { edges: Array<{ node: { traceId: string } }> }) => log.edges.map((e) => e.node.traceId).sort();

describe('the API with keys configured', () => {
  test('no key: HTTP 401, UNAUTHENTICATED, WWW-Authenticate: Bearer', async () => {
    const answer = await gql(api, ME);
    assert.equal(answer.status, 401);
    assert.deepEqual(codes(answer), ['UNAUTHENTICATED']);
    assert.equal(answer.wwwAuthenticate, 'Bearer');
    assert.equal(answer.data ?? undefined, undefined);
    assert.match(answer.errors![0]!.message, /Authorization: Bearer/);
  });

  test('an unknown key, or a malformed header: HTTP 401', async () => {
    for (const key of [generateKey(), KEY.acmeViewer.slice(0, -2), '']) {
      const answer = await gql(api, ME, key);
      assert.equal(answer.status, 401, key);
      assert.deepEqual(codes(answer), ['UNAUTHENTICATED']);
    }
  });

  test('me: the tenant, role and name of the key', async () => {
    assert.deepEqual((await gql(api, ME, KEY.acmeViewer)).data, { me: { tenant: 'acme', role: 'VIEWER', name: 'acme-viewer' } });
    assert.deepEqual((await gql(api, ME, KEY.acmeAdmin)).data, { me: { tenant: 'acme', role: 'ADMIN', name: 'acme-admin' } });
    assert.deepEqual((await gql(api, ME, KEY.globexViewer)).data, { me: { tenant: 'globex', role: 'VIEWER', name: 'globex-viewer' } });
  });

  test("a key reads its own tenant's records, and no other's: tenant B with a key of A is FORBIDDEN", async () => {
    const own = await gql(api, auditLogOf('acme'), KEY.acmeViewer);
    assert.equal(own.errors, undefined, JSON.stringify(own.errors));
    assert.deepEqual(traceIds(own.data!.auditLog), ['a-1', 'a-2', 'a-3']);
    const globex = await gql(api, auditLogOf('globex'), KEY.globexViewer);
    assert.deepEqual(traceIds(globex.data!.auditLog), ['g-1', 'g-2']);

    const other = await gql(api, auditLogOf('globex'), KEY.acmeViewer);
    assert.equal(other.status, 403);
    assert.deepEqual(codes(other), ['FORBIDDEN']);
    assert.equal(other.data?.auditLog ?? null, null);
    assert.match(other.errors![0]!.message, /belongs to tenant "acme"; it cannot read tenant "globex"/);
    // An admin key is no more a key of another tenant.
    assert.deepEqual(codes(await gql(api, auditLogOf('globex'), KEY.acmeAdmin)), ['FORBIDDEN']);
  });

  test('an ingest key reads nothing: FORBIDDEN, even for me', async () => {
    for (const query of [ME, auditLogOf('acme')]) {
      const answer = await gql(api, query, KEY.acmeIngest);
      assert.equal(answer.status, 403);
      assert.deepEqual(codes(answer), ['FORBIDDEN']);
      assert.match(answer.errors![0]!.message, /needs a key with role viewer \(or admin\); this key's role is ingest/);
      assert.equal(answer.data ?? undefined, undefined);
    }
  });

  test('a revoked key stops working on the running server', async () => {
    assert.equal((await gql(api, ME, KEY.revoked)).data?.me.name, 'soon-revoked');
    assert.equal(revokeKey(keysFile, 'soon-revoked'), true);
    const answer = await gql(api, ME, KEY.revoked);
    assert.equal(answer.status, 401);
    assert.deepEqual(codes(answer), ['UNAUTHENTICATED']);
    assert.equal((await gql(api, ME, KEY.acmeViewer)).data?.me.name, 'acme-viewer', 'the other keys still work');
  });
});

describe('viewer and admin through @requires', () => {
  // A field only admins may read, beside one for viewers, in a schema of the API's own base.
  let url: string;
  before(async () => {
    const schema = createSchema<ApiContext>({
      typeDefs: [
        baseTypeDefs,
        /* GraphQL */ `
          type Query {
            tenantName(tenant: String): String! @requires(role: VIEWER)
            priceBook: String! @requires(role: ADMIN)
            closePeriod: String! @requires(role: BILLING)
          }`,
      ],
      resolvers: {
        Query: {
          tenantName: (_: unknown, args: { tenant?: string }, ctx: ApiContext) => tenantOf(ctx, args.tenant),
          priceBook: (_: unknown, _args: unknown, ctx: ApiContext) => `price book of ${tenantOf(ctx)}`,
          closePeriod: (_: unknown, _args: unknown, ctx: ApiContext) => `closed for ${tenantOf(ctx)}`,
        },
      },
    });
    const yoga = createYoga({ schema, plugins: [useAuth(keys), useRoles()], maskedErrors: { isDev: false }, logging: false });
    url = await listen((req, res) => void yoga(req, res));
  });

  test('a viewer key reads viewer fields and is FORBIDDEN admin and billing fields; an admin key reads all', async () => {
    assert.deepEqual((await gql(url, '{ tenantName }', KEY.acmeViewer)).data, { tenantName: 'acme' });
    for (const field of ['priceBook', 'closePeriod']) {
      const refused = await gql(url, `{ tenantName ${field} }`, KEY.acmeViewer);
      assert.equal(refused.status, 403);
      assert.deepEqual(codes(refused), ['FORBIDDEN']);
      assert.equal(refused.data ?? undefined, undefined, 'nothing of the operation runs');
    }
    // Through a fragment too.
    assert.deepEqual(codes(await gql(url, '{ ...f } fragment f on Query { priceBook }', KEY.acmeViewer)), ['FORBIDDEN']);

    const admin = await gql(url, '{ tenantName priceBook closePeriod }', KEY.acmeAdmin);
    assert.deepEqual(admin.data, { tenantName: 'acme', priceBook: 'price book of acme', closePeriod: 'closed for acme' });
  });

  test('a tenant argument must name the key\'s tenant', async () => {
    assert.deepEqual((await gql(url, '{ tenantName(tenant: "acme") }', KEY.acmeViewer)).data, { tenantName: 'acme' });
    const answer = await gql(url, '{ tenantName(tenant: "globex") }', KEY.acmeViewer);
    assert.deepEqual(codes(answer), ['FORBIDDEN']);
  });
});

describe('no keys configured', () => {
  test('a loopback caller is tenant default (role admin, name local), with or without a header', async () => {
    assert.deepEqual((await gql(apiWithoutKeys, ME)).data, { me: { tenant: 'default', role: 'ADMIN', name: 'local' } });
    assert.deepEqual((await gql(apiWithoutKeys, ME, 'whatever')).data, { me: { tenant: 'default', role: 'ADMIN', name: 'local' } });
    const acme = await gql(apiWithoutKeys, auditLogOf('acme'));
    assert.deepEqual(codes(acme), ['FORBIDDEN'], 'tenant acme is not the default tenant');
    const empty = createKeyStore([]);
    assert.equal(authenticate(empty, undefined, '127.0.0.1'), LOCAL_CALLER);
  });

  test('a caller from another address is UNAUTHENTICATED (authenticate, unit)', () => {
    for (const store of [undefined, createKeyStore([])] as Array<KeyStore | undefined>) {
      for (const address of ['10.1.2.3', '::ffff:10.1.2.3', '2001:db8::1', undefined]) {
        assert.throws(
          () => authenticate(store, `Bearer ${KEY.acmeViewer}`, address),
          (error: GraphQLError) => error.extensions.code === 'UNAUTHENTICATED' && /loopback callers only/.test(error.message),
          String(address),
        );
      }
    }
    for (const address of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) assert.equal(authenticate(undefined, undefined, address), LOCAL_CALLER);
    // With keys, the address does not matter: the key does.
    assert.deepEqual(authenticate(keys, `Bearer ${KEY.acmeViewer}`, '10.1.2.3'), { tenant: 'acme', role: 'viewer', name: 'acme-viewer' });
  });
});

describe('the receiver, from the same store', () => {
  let url: string;
  const published: Array<{ topic: string; messages: OutboundMessage[] }> = [];
  before(async () => {
    const receiver = createReceiver({
      publisher: { publish: async (topic, messages) => void published.push({ topic, messages }) },
      logger: silent,
      topics: { audit: 'audit', spans: 'spans' },
      keys,
      maxBodyBytes: 1 << 20,
      maxRecords: 100,
    });
    url = await listen(receiver.handle);
  });

  const send = (key: string | undefined, traceId: string) =>
    fetch(`${url}/v1/audit`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key && { authorization: `Bearer ${key}` }) },
      body: JSON.stringify({ trace_id: traceId, timestamp: new Date(NOW).toISOString(), tool: 'users.Users.Get', allowed: true }),
    });

  test("an ingest key sends, to the key's tenant; so does an admin key", async () => {
    const ingest = await send(KEY.acmeIngest, 'r-1');
    assert.equal(ingest.status, 202, await ingest.text());
    const admin = await send(KEY.acmeAdmin, 'r-2');
    assert.equal(admin.status, 202);
    const sent = published.flatMap((p) => p.messages.map((m) => JSON.parse(m.value.toString()) as { tenant: string; trace_id: string }));
    assert.deepEqual(sent.map((e) => [e.tenant, e.trace_id]), [['acme', 'r-1'], ['acme', 'r-2']]);
  });

  test('a viewer key may not send (403); no key or an unknown one is a 401', async () => {
    const before = published.length;
    const viewer = await send(KEY.acmeViewer, 'r-3');
    assert.equal(viewer.status, 403);
    assert.deepEqual(await viewer.json(), {
      error: 'the key "acme-viewer" has role viewer, which may not send; use a key with role ingest (npm run keys -- create --role ingest ...)',
    });
    assert.equal((await send(undefined, 'r-4')).status, 401);
    assert.equal((await send(generateKey(), 'r-5')).status, 401);
    assert.equal(published.length, before, 'nothing published');
  });

  test('INGEST_TOKENS in the store: each token is an ingest key of its tenant, beside the file', async () => {
    const store = openKeyStore({ file: keysFile, ingestTokens: new Map([['legacy-token', 'globex']]), logger: silent });
    const receiver = createReceiver({
      publisher: { publish: async (topic, messages) => void published.push({ topic, messages }) },
      logger: silent,
      topics: { audit: 'audit', spans: 'spans' },
      keys: store,
      maxBodyBytes: 1 << 20,
      maxRecords: 100,
    });
    const legacyUrl = await listen(receiver.handle);
    const response = await fetch(`${legacyUrl}/v1/audit`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer legacy-token' },
      body: JSON.stringify({ trace_id: 'legacy-1', timestamp: new Date(NOW).toISOString(), tool: 'users.Users.Get', allowed: true }),
    });
    assert.equal(response.status, 202);
    const last = JSON.parse(published.at(-1)!.messages[0]!.value.toString()) as { tenant: string };
    assert.equal(last.tenant, 'globex');
    // The same store serves the API: the token reads nothing there.
    const apiUrl = await listen(createApi({ clickhouse, logger: silent, keys: store }).handle);
    assert.deepEqual(codes(await gql(apiUrl, ME, 'legacy-token')), ['FORBIDDEN']);
  });
});
