/**
 * The key store: keys are random, the file holds only their SHA-256, a look-up finds exactly the
 * caller of a key, the file is validated with errors naming the entry and field, and the running store
 * follows the file (revoke without restart; an invalid file keeps the last good keys and says why).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import {
  appendKey,
  createKeyStore,
  generateKey,
  hashKey,
  keyEntry,
  KEY_PREFIX,
  KeysFileError,
  openKeyStore,
  parseKeysFile,
  readKeysFile,
  revokeKey,
} from '../../core/api-keys.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'api-keys-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const newFile = () => path.join(dir, `keys-${++files}.yaml`);

test('a key is the prefix and 256 random bits in base64url; the hash is hex SHA-256', () => {
  const keys = Array.from({ length: 50 }, generateKey);
  for (const key of keys) {
    assert.match(key, /^mcpk_[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(key.slice(KEY_PREFIX.length), 'base64url').length, 32);
  }
  assert.equal(new Set(keys).size, 50);
  assert.equal(hashKey('abc'), createHash('sha256').update('abc').digest('hex'));
  assert.equal(hashKey('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('lookup answers the caller of exactly the presented key', () => {
  const secrets = [generateKey(), generateKey(), generateKey()];
  const store = createKeyStore([
    keyEntry({ name: 'grafana', tenant: 'acme', role: 'viewer', secret: secrets[0]! }),
    keyEntry({ name: 'ops', tenant: 'acme', role: 'admin', secret: secrets[1]! }),
    keyEntry({ name: 'gw', tenant: 'globex', role: 'ingest', secret: secrets[2]! }),
  ]);
  assert.equal(store.size, 3);
  assert.deepEqual(store.lookup(secrets[0]!), { tenant: 'acme', role: 'viewer', name: 'grafana' });
  assert.deepEqual(store.lookup(secrets[1]!), { tenant: 'acme', role: 'admin', name: 'ops' });
  assert.deepEqual(store.lookup(secrets[2]!), { tenant: 'globex', role: 'ingest', name: 'gw' });
  assert.equal(store.lookup(secrets[0]!.slice(0, -1)), undefined);
  assert.equal(store.lookup(''), undefined);
  assert.equal(store.lookup(hashKey(secrets[0]!)), undefined, 'the stored hash is not a key');
});

test('the file holds no plain key: appendKey writes name, tenant, role, sha256 and created only', () => {
  const file = newFile();
  const secret = generateKey();
  const entry = keyEntry({ name: 'grafana', tenant: 'acme', role: 'viewer', secret }, new Date('2026-12-04T10:11:12.345Z'));
  appendKey(file, entry);
  const text = readFileSync(file, 'utf8');
  assert.ok(!text.includes(secret), 'the key itself is not in the file');
  assert.ok(!text.includes(secret.slice(KEY_PREFIX.length)));
  assert.equal(
    text,
    `keys:\n  - name: grafana\n    tenant: acme\n    role: viewer\n    sha256: ${createHash('sha256').update(secret).digest('hex')}\n    created: 2026-12-04T10:11:12Z\n`,
  );
  assert.deepEqual(readKeysFile(file), [entry]);
});

test('appendKey keeps comments and other entries; revokeKey removes only the named one', () => {
  const file = newFile();
  const [a, b] = [generateKey(), generateKey()];
  writeFileSync(file, '# production keys\nkeys:\n');
  appendKey(file, keyEntry({ name: 'a', tenant: 'acme', role: 'viewer', secret: a }));
  appendKey(file, keyEntry({ name: 'b', tenant: 'acme', role: 'billing', secret: b }));
  assert.throws(() => appendKey(file, keyEntry({ name: 'a', tenant: 'x', role: 'viewer', secret: generateKey() })), /a key named "a" exists already/);
  assert.match(readFileSync(file, 'utf8'), /^# production keys\n/);
  assert.deepEqual(readKeysFile(file).map((e) => e.name), ['a', 'b']);
  assert.equal(revokeKey(file, 'nobody'), false);
  assert.equal(revokeKey(file, 'a'), true);
  assert.deepEqual(readKeysFile(file).map((e) => e.name), ['b']);
  assert.match(readFileSync(file, 'utf8'), /^# production keys\n/);
});

test('an invalid file is refused with one line per problem, naming the entry and the field', () => {
  const good = keyEntry({ name: 'ok', tenant: 'acme', role: 'viewer', secret: 'k1' });
  const text = [
    'keys:',
    '  - name: ok',
    '    tenant: acme',
    '    role: viewer',
    `    sha256: ${good.sha256}`,
    '    created: 2026-12-04',
    '  - name: grafana',
    '    tenant: "a b"',
    '    role: superuser',
    '    sha256: not-a-hash',
    '    key: mcpk_plain',
    '  - name: ok',
    '    tenant: acme',
    '    role: viewer',
    `    sha256: ${good.sha256}`,
    '    created: yesterday',
  ].join('\n');
  assert.throws(
    () => parseKeysFile(text, 'k.yaml'),
    (error: unknown) => {
      assert.ok(error instanceof KeysFileError);
      assert.deepEqual(error.problems, [
        'keys[1] ("grafana").tenant: must be 1-64 letters, digits, dots, dashes or underscores',
        'keys[1] ("grafana").role: must be one of ingest, viewer, operator, billing, admin',
        'keys[1] ("grafana").sha256: must be 64 lowercase hex digits: the SHA-256 of the key, never the key itself',
        'keys[1] ("grafana").created: is missing',
        'keys[1] ("grafana"): unknown field(s) key; an entry has name, tenant, role, sha256, created (no plain keys)',
        'keys[2] ("ok").created: must be an ISO date such as 2026-12-04 or 2026-12-04T10:00:00Z',
      ]);
      assert.match(error.message, /^Invalid API keys file k\.yaml:\n {2}- keys\[1\]/);
      return true;
    },
  );
  // Duplicates are found among the valid entries.
  const dup = `keys:\n  - {name: ok, tenant: acme, role: viewer, sha256: ${good.sha256}, created: 2026-12-04}\n  - {name: ok, tenant: b, role: admin, sha256: ${good.sha256}, created: 2026-12-04}\n`;
  assert.throws(() => parseKeysFile(dup, 'd.yaml'), (error: unknown) => {
    assert.ok(error instanceof KeysFileError);
    assert.deepEqual(error.problems, ['keys[1] ("ok"): the name is already used by keys[0]', 'keys[1] ("ok"): the same key (sha256) as "ok"']);
    return true;
  });
  assert.throws(() => parseKeysFile('keys: [1', 'y.yaml'), /y\.yaml:\n {2}- not valid YAML/);
  assert.throws(() => parseKeysFile('tokens: []', 'y.yaml'), /unknown top-level field\(s\) tokens/);
  assert.deepEqual(parseKeysFile('', 'empty.yaml'), []);
  assert.deepEqual(parseKeysFile('keys:\n', 'empty.yaml'), []);
});

test('the running store follows the file: a new key works, a revoked key stops, without a restart', () => {
  const file = newFile();
  const [viewer, admin] = [generateKey(), generateKey()];
  appendKey(file, keyEntry({ name: 'grafana', tenant: 'acme', role: 'viewer', secret: viewer }));
  const store = openKeyStore({ file, logger: pino({ level: 'silent' }), checkEveryMs: 0 });
  assert.deepEqual(store.lookup(viewer), { tenant: 'acme', role: 'viewer', name: 'grafana' });
  assert.equal(store.lookup(admin), undefined);

  appendKey(file, keyEntry({ name: 'ops', tenant: 'acme', role: 'admin', secret: admin }));
  assert.equal(store.lookup(admin)?.name, 'ops');
  assert.equal(store.size, 2);

  assert.equal(revokeKey(file, 'grafana'), true);
  assert.equal(store.lookup(viewer), undefined);
  assert.equal(store.lookup(admin)?.name, 'ops');
  assert.equal(store.size, 1);
});

test('between checks the store does not look at the file; refresh() looks at once', () => {
  const file = newFile();
  const [a, b] = [generateKey(), generateKey()];
  appendKey(file, keyEntry({ name: 'a', tenant: 'acme', role: 'viewer', secret: a }));
  const store = openKeyStore({ file, checkEveryMs: 60_000 });
  appendKey(file, keyEntry({ name: 'b', tenant: 'acme', role: 'viewer', secret: b }));
  assert.equal(store.lookup(b), undefined, 'not re-read within the check interval');
  store.refresh();
  assert.equal(store.lookup(b)?.name, 'b');
});

test('a file that turns invalid (or disappears) keeps the last good keys and logs an error', () => {
  const file = newFile();
  const secret = generateKey();
  appendKey(file, keyEntry({ name: 'a', tenant: 'acme', role: 'viewer', secret }));
  const logged: Array<{ level: number; msg: string; file?: string }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line)) });
  const store = openKeyStore({ file, logger, checkEveryMs: 0 });

  writeFileSync(file, 'keys:\n  - name: a\n    role: nonsense\n');
  assert.equal(store.lookup(secret)?.name, 'a');
  assert.equal(store.lookup(secret)?.name, 'a');
  assert.deepEqual(logged.map((l) => [l.level, l.msg, l.file]), [[50, 'API keys file is invalid; keeping the keys last read', file]], 'logged once per change');

  rmSync(file);
  assert.equal(store.lookup(secret)?.name, 'a');
  assert.equal(logged.length, 2);

  appendKey(file, keyEntry({ name: 'b', tenant: 'acme', role: 'viewer', secret: 'other' }));
  assert.equal(store.lookup(secret), undefined, 'a valid file replaces the kept keys');
  assert.equal(store.lookup('other')?.name, 'b');
  assert.equal(logged.at(-1)!.msg, 'API keys file re-read');
});

test('INGEST_TOKENS become ingest keys of their tenants, beside the file and without it', () => {
  const tokens = new Map([
    ['tok-acme', 'acme'],
    ['tok-globex', 'globex'],
  ]);
  const alone = openKeyStore({ ingestTokens: tokens });
  assert.equal(alone.size, 2);
  assert.deepEqual(alone.lookup('tok-globex'), { tenant: 'globex', role: 'ingest', name: 'INGEST_TOKENS#2' });

  const file = newFile();
  const secret = generateKey();
  appendKey(file, keyEntry({ name: 'grafana', tenant: 'acme', role: 'viewer', secret }));
  const both = openKeyStore({ file, ingestTokens: tokens });
  assert.equal(both.size, 3);
  assert.equal(both.lookup(secret)?.role, 'viewer');
  assert.equal(both.lookup('tok-acme')?.role, 'ingest');

  assert.throws(() => openKeyStore({ file, ingestTokens: new Map([[secret, 'acme']]) }), /the same key \(sha256\) as "grafana"/);
  assert.throws(() => openKeyStore({ file: path.join(dir, 'missing.yaml') }), /missing\.yaml:\n {2}- the file does not exist/);
});
