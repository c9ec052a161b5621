/**
 * API keys: one credential model for the API and the receiver. A key is a random 256-bit secret
 * (`mcpk_` + base64url); the keys file (`API_KEYS_FILE`, YAML) holds only its SHA-256, with the tenant,
 * role, name and creation time it stands for:
 *
 *   keys:
 *     - name: grafana
 *       tenant: acme
 *       role: viewer
 *       sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 *       created: 2026-12-04T10:00:00Z
 *
 * A presented secret is hashed and compared with every stored hash in constant time. The running store
 * re-reads the file when it changes (a stat at most every few seconds), so a revoked key stops working
 * without a restart; a file that turns invalid keeps the last good keys and logs why. `INGEST_TOKENS`,
 * the receiver's short form, adds one `ingest` key per token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { Document, isMap, isSeq, parseDocument } from 'yaml';
import { z } from 'zod';
import { ROLES, type Caller, type Role } from '../api/context.ts';
import type { KeyStore } from '../api/plugins/use-auth.ts';
import { PATTERNS } from '../model/audit-event.ts';
import type { Logger } from './logger.ts';

export const KEY_PREFIX = 'mcpk_';
/** How often, at most, the running store looks at the file's modification time. */
export const CHECK_EVERY_MS = 2000;

export const keyEntrySchema = z.strictObject({
  name: z.string('must be a string').regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits, dots, dashes or underscores'),
  tenant: z.string('must be a string').regex(PATTERNS.tenant, 'must be 1-64 letters, digits, dots, dashes or underscores'),
  role: z.enum(ROLES, `must be one of ${ROLES.join(', ')}`),
  sha256: z.string('must be a string').regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits: the SHA-256 of the key, never the key itself'),
  created: z.union([z.iso.date(), z.iso.datetime({ offset: true })], 'must be an ISO date such as 2026-12-04 or 2026-12-04T10:00:00Z'),
});

export type KeyEntry = z.output<typeof keyEntrySchema>;

export class KeysFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`Invalid API keys file ${file}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'KeysFileError';
  }
}

/** A new secret: 256 random bits, base64url, with a prefix that makes a leaked key easy to recognise. */
export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function hashKey(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** The file entry for a new key; `created` is the current time to the second, UTC. */
export function keyEntry(fields: { name: string; tenant: string; role: Role; secret: string }, now = new Date()): KeyEntry {
  const created = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return keyEntrySchema.parse({ name: fields.name, tenant: fields.tenant, role: fields.role, sha256: hashKey(fields.secret), created });
}

/** Each INGEST_TOKENS pair as an `ingest` key of its tenant (named after its place in the variable). */
export function ingestKeysFromTokens(tokens: ReadonlyMap<string, string>): KeyEntry[] {
  return [...tokens].map(([token, tenant], i) => ({ name: `INGEST_TOKENS#${i + 1}`, tenant, role: 'ingest', sha256: hashKey(token), created: '1970-01-01' }));
}

/** The entries of a keys file's text; throws KeysFileError naming each bad entry and field. */
export function parseKeysFile(text: string, file: string): KeyEntry[] {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) throw new KeysFileError(file, doc.errors.map((e) => `not valid YAML: ${e.message.split('\n', 1)[0]}`));
  const data: unknown = doc.toJS() ?? {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new KeysFileError(file, ['must be a mapping with a `keys:` list']);
  const parsed = z.strictObject({ keys: z.array(z.unknown(), '`keys` must be a list').nullish() }).safeParse(data);
  if (!parsed.success) throw new KeysFileError(file, parsed.error.issues.map((i) => (i.code === 'unrecognized_keys' ? `unknown top-level field(s) ${i.keys.join(', ')}: the file holds only \`keys:\`` : i.message)));
  const raw = parsed.data.keys ?? [];

  const problems: string[] = [];
  const entries: KeyEntry[] = [];
  raw.forEach((item, index) => {
    const label = `keys[${index}]${item && typeof item === 'object' && 'name' in item ? ` (${JSON.stringify((item as { name: unknown }).name)})` : ''}`;
    const result = keyEntrySchema.safeParse(item);
    if (!result.success) {
      for (const issue of result.error.issues) {
        if (issue.code === 'unrecognized_keys') problems.push(`${label}: unknown field(s) ${issue.keys.join(', ')}; an entry has name, tenant, role, sha256, created (no plain keys)`);
        else problems.push(`${label}${issue.path.length ? `.${issue.path.join('.')}` : ''}: ${issue.path.length === 1 && (item as Record<PropertyKey, unknown>)[issue.path[0]!] === undefined ? 'is missing' : issue.message}`);
      }
      return;
    }
    entries.push(result.data);
  });
  problems.push(...duplicates(entries));
  if (problems.length > 0) throw new KeysFileError(file, problems);
  return entries;
}

/** Two entries with one name, or one hash (the same key twice), are refused. */
function duplicates(entries: readonly KeyEntry[], what = 'keys'): string[] {
  const problems: string[] = [];
  const names = new Map<string, number>();
  const hashes = new Map<string, number>();
  entries.forEach((entry, i) => {
    const sameName = names.get(entry.name);
    if (sameName !== undefined) problems.push(`${what}[${i}] (${JSON.stringify(entry.name)}): the name is already used by ${what}[${sameName}]`);
    else names.set(entry.name, i);
    const sameHash = hashes.get(entry.sha256);
    if (sameHash !== undefined) problems.push(`${what}[${i}] (${JSON.stringify(entry.name)}): the same key (sha256) as ${JSON.stringify(entries[sameHash]!.name)}`);
    else hashes.set(entry.sha256, i);
  });
  return problems;
}

/** The YAML of one entry, as a list item ready to go under `keys:`. */
export function formatEntry(entry: KeyEntry): string {
  return new Document([entry]).toString().replace(/^/gm, '  ').trimEnd() + '\n';
}

// ---- editing the file (the `keys` command) --------------------------------------------------------------

/** Reads the file for an edit; a missing file is an empty one. Validates what is there first. */
function readForEdit(file: string): Document {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Document({ keys: [] });
    throw error;
  }
  parseKeysFile(text, file);
  const doc = parseDocument(text);
  if (!isMap(doc.contents)) return new Document({ keys: [] });
  if (!isSeq(doc.get('keys'))) doc.set('keys', doc.createNode([]));
  return doc;
}

/** Adds an entry (its name and key must be new), rewriting the file atomically. Returns all entries. */
export function appendKey(file: string, entry: KeyEntry): KeyEntry[] {
  const doc = readForEdit(file);
  const existing = parseKeysFile(doc.toString(), file);
  if (existing.some((e) => e.name === entry.name)) throw new KeysFileError(file, [`a key named ${JSON.stringify(entry.name)} exists already; revoke it first or pick another name`]);
  (doc.get('keys') as { add(v: unknown): void }).add(doc.createNode(entry));
  return writeKeysFile(file, doc);
}

/** Removes the entry named `name`; false when there is none. Rewrites the file atomically. */
export function revokeKey(file: string, name: string): boolean {
  const doc = readForEdit(file);
  const entries = parseKeysFile(doc.toString(), file);
  const index = entries.findIndex((e) => e.name === name);
  if (index < 0) return false;
  (doc.get('keys') as { delete(i: number): boolean }).delete(index);
  writeKeysFile(file, doc);
  return true;
}

export function readKeysFile(file: string): KeyEntry[] {
  return parseKeysFile(readFileSync(file, 'utf8'), file);
}

/** Write to a temporary file beside it, flush, rename over: a reader sees the old file or the new one. */
function writeKeysFile(file: string, doc: Document): KeyEntry[] {
  const text = doc.toString();
  const entries = parseKeysFile(text, file);
  const mode = statSync(file, { throwIfNoEntry: false })?.mode ?? 0o600;
  mkdirSync(path.dirname(file), { recursive: true });
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(temp, 'wx', mode & 0o777);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temp);
    throw error;
  }
  closeSync(fd);
  renameSync(temp, file);
  return entries;
}

// ---- the store -----------------------------------------------------------------------------------------

interface Compiled {
  callers: Caller[];
  hashes: Buffer[];
}

function compile(entries: readonly KeyEntry[]): Compiled {
  return {
    callers: entries.map((e) => Object.freeze({ tenant: e.tenant, role: e.role, name: e.name })),
    hashes: entries.map((e) => Buffer.from(e.sha256, 'hex')),
  };
}

/** Compares the secret's hash with every stored hash, without stopping at a match. */
function find(compiled: Compiled, secret: string): Caller | undefined {
  const presented = createHash('sha256').update(secret, 'utf8').digest();
  let found = -1;
  for (let i = 0; i < compiled.hashes.length; i++) {
    const equal = timingSafeEqual(compiled.hashes[i]!, presented);
    found = equal ? i : found;
  }
  return found < 0 ? undefined : compiled.callers[found];
}

/** A fixed set of keys (tests, and the receiver given INGEST_TOKENS directly). */
export function createKeyStore(entries: readonly KeyEntry[]): KeyStore {
  const problems = duplicates(entries);
  if (problems.length > 0) throw new KeysFileError('(in memory)', problems);
  const compiled = compile(entries);
  return { size: compiled.hashes.length, lookup: (secret) => find(compiled, secret) };
}

export interface KeyStoreOptions {
  /** API_KEYS_FILE; unset: only the ingest tokens. */
  file?: string;
  /** INGEST_TOKENS: token → tenant, each an `ingest` key. */
  ingestTokens?: ReadonlyMap<string, string>;
  logger?: Logger;
  checkEveryMs?: number;
}

export interface FileKeyStore extends KeyStore {
  /** Looks at the file now (instead of waiting for the next check), re-reading it when it changed. */
  refresh(): void;
}

/** Reads the keys file (throws KeysFileError when it is missing or invalid) and follows its changes. */
export function openKeyStore({ file, ingestTokens, logger, checkEveryMs = CHECK_EVERY_MS }: KeyStoreOptions): FileKeyStore {
  const fixed = ingestTokens ? ingestKeysFromTokens(ingestTokens) : [];
  const build = (fromFile: KeyEntry[]): Compiled => {
    const all = [...fromFile, ...fixed];
    const problems = duplicates(all);
    if (problems.length > 0) throw new KeysFileError(file ?? 'INGEST_TOKENS', problems.map((p) => `${p} (counting INGEST_TOKENS after the file's entries)`));
    return compile(all);
  };
  if (!file) {
    const compiled = build([]);
    return { size: compiled.hashes.length, lookup: (secret) => find(compiled, secret), refresh() {} };
  }

  const signature = (): string => {
    const info = statSync(file, { throwIfNoEntry: false });
    return info ? `${info.ino}:${info.size}:${info.mtimeMs}` : 'missing';
  };
  let seen = signature();
  if (seen === 'missing') throw new KeysFileError(file, ['the file does not exist; create a key with `npm run keys -- create --file ...`, or unset API_KEYS_FILE']);
  let current = build(readKeysFile(file));
  let checkedAt = Date.now();

  const refresh = (): void => {
    checkedAt = Date.now();
    const now = signature();
    if (now === seen) return;
    seen = now;
    try {
      if (now === 'missing') throw new KeysFileError(file, ['the file was removed']);
      current = build(readKeysFile(file));
      logger?.info({ file, keys: current.hashes.length }, 'API keys file re-read');
    } catch (error) {
      logger?.error({ file, err: error, keptKeys: current.hashes.length }, 'API keys file is invalid; keeping the keys last read');
    }
  };
  const maybeRefresh = (): void => {
    if (Date.now() - checkedAt >= checkEveryMs) refresh();
  };

  return {
    get size() {
      maybeRefresh();
      return current.hashes.length;
    },
    lookup(secret) {
      maybeRefresh();
      return find(current, secret);
    },
    refresh,
  };
}
