/**
 * `npm run keys` as an operator runs it (bin/keys.ts in a child process): create prints the key once and
 * adds only its hash to the file, list shows no hashes, revoke removes the entry, and bad arguments are
 * one line on stderr with exit code 2.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { readKeysFile } from '../../core/api-keys.ts';

const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(path.join(tmpdir(), 'keys-cli-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function keys(args: string[], env: Record<string, string> = {}) {
  const { API_KEYS_FILE: _, ...rest } = process.env;
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'bin/keys.ts', ...args], { cwd: root, env: { ...rest, ...env }, encoding: 'utf8' });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

test('create prints the key once and appends only its hash; list and revoke use the file', () => {
  const file = path.join(dir, 'keys.yaml');
  const created = keys(['create', '--tenant', 'acme', '--role', 'viewer', '--name', 'grafana', '--file', file]);
  assert.equal(created.code, 0, created.stderr);
  const printed = created.stdout.match(/mcpk_[A-Za-z0-9_-]{43}/g);
  assert.equal(printed?.length, 1, 'the key appears exactly once');
  const secret = printed![0];
  const sha256 = createHash('sha256').update(secret).digest('hex');

  const text = readFileSync(file, 'utf8');
  assert.ok(!text.includes(secret));
  const [entry] = readKeysFile(file);
  assert.deepEqual({ ...entry, created: undefined }, { name: 'grafana', tenant: 'acme', role: 'viewer', sha256, created: undefined });
  assert.ok(Math.abs(Date.parse(entry!.created) - Date.now()) < 60_000);
  assert.ok(created.stdout.includes(`sha256: ${sha256}`), 'the YAML entry is printed');

  // API_KEYS_FILE stands in for --file.
  const second = keys(['create', '--tenant', 'globex', '--role', 'ingest', '--name', 'gateway'], { API_KEYS_FILE: file });
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(readKeysFile(file).map((e) => [e.name, e.tenant, e.role]), [['grafana', 'acme', 'viewer'], ['gateway', 'globex', 'ingest']]);

  const list = keys(['list', '--file', file]);
  assert.equal(list.code, 0);
  const lines = list.stdout.trim().split('\n').map((l) => l.split(/\s+/));
  assert.deepEqual(lines.map((l) => l.slice(0, 3)), [['NAME', 'TENANT', 'ROLE'], ['grafana', 'acme', 'viewer'], ['gateway', 'globex', 'ingest']]);
  assert.ok(!list.stdout.includes(sha256), 'list shows no hashes');

  const revoked = keys(['revoke', '--name', 'grafana', '--file', file]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.deepEqual(readKeysFile(file).map((e) => e.name), ['gateway']);
});

test('create without a file prints the key and the entry to add, and writes nothing', () => {
  const run = keys(['create', '--tenant', 'acme', '--role', 'admin', '--name', 'ops']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /Add this entry under `keys:`/);
  assert.match(run.stdout, /- name: ops\n {4}tenant: acme\n {4}role: admin\n {4}sha256: [0-9a-f]{64}\n {4}created: /);
});

test('bad arguments: one line on stderr, exit code 2, the file untouched', () => {
  const file = path.join(dir, 'bad.yaml');
  writeFileSync(file, 'keys: []\n');
  const cases: Array<[string[], RegExp]> = [
    [[], /^keys: no command given/],
    [['rotate'], /^keys: unknown command "rotate"/],
    [['create', '--tenant', 'acme', '--role', 'viewer', '--file', file], /^keys: --name is required/],
    [['create', '--tenant', 'acme', '--role', 'root', '--name', 'x', '--file', file], /^keys: --role "root": must be one of ingest, viewer, operator, billing, admin/],
    [['create', '--tenant', 'a b', '--role', 'viewer', '--name', 'x', '--file', file], /^keys: --tenant "a b": must be 1-64 letters/],
    [['create', '--tenant', 'acme', '--role', 'viewer', '--name', 'x', '--colour', 'red'], /^keys: Unknown option '--colour'/],
    [['list', '--tenant', 'acme', '--file', file], /^keys: --tenant does not apply to list/],
    [['list'], /^keys: list needs the keys file/],
    [['revoke', '--name', 'ghost', '--file', file], /^keys: no key named "ghost"/],
  ];
  for (const [args, message] of cases) {
    const run = keys(args);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message, args.join(' '));
    assert.equal(run.stderr.trimEnd().split('\n').length, 1, `one line for ${args.join(' ')}`);
    assert.equal(run.stdout, '');
  }
  assert.equal(readFileSync(file, 'utf8'), 'keys: []\n');

  const existing = keys(['create', '--tenant', 'acme', '--role', 'viewer', '--name', 'dup', '--file', file]);
  assert.equal(existing.code, 0);
  const again = keys(['create', '--tenant', 'acme', '--role', 'viewer', '--name', 'dup', '--file', file]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /^keys: a key named "dup" exists already/);
});

test('an invalid keys file: exit code 1 with the problems', () => {
  const file = path.join(dir, 'invalid.yaml');
  writeFileSync(file, 'keys:\n  - name: x\n    role: god\n');
  const run = keys(['list', '--file', file]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /Invalid API keys file .*invalid\.yaml:\n {2}- keys\[0\] \("x"\)\.tenant: is missing/);
});
