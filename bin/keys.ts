/**
 * `npm run keys -- <command>`: API keys in the keys file (API_KEYS_FILE, or --file).
 *
 *   create --tenant T --role R --name N   prints a new key once, and its entry; adds it to the file
 *   list                                  name, tenant, role and creation time of each key
 *   revoke --name N                       removes the key (a running server stops accepting it)
 *
 * Bad arguments: one line on stderr and exit code 2. A keys file that cannot be read or is invalid: 1.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ROLES, type Role } from '../api/context.ts';
import { appendKey, formatEntry, generateKey, keyEntry, keyEntrySchema, KeysFileError, readKeysFile, revokeKey } from '../core/api-keys.ts';

const USAGE = 'usage: npm run keys -- create --tenant T --role ROLE --name N [--file PATH] | list [--file PATH] | revoke --name N [--file PATH]';

class UsageError extends Error {}

function main(argv: string[], env: NodeJS.ProcessEnv): void {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { tenant: { type: 'string' }, role: { type: 'string' }, name: { type: 'string' }, file: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n', 1)[0]!);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const [command, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  const file = values.file || env.API_KEYS_FILE || undefined;
  const allowed: Record<string, string[]> = { create: ['tenant', 'role', 'name', 'file'], list: ['file'], revoke: ['name', 'file'] };
  if (command === undefined || !(command in allowed)) throw new UsageError(command === undefined ? 'no command given' : `unknown command ${JSON.stringify(command)}`);
  const stray = Object.keys(values).find((k) => !allowed[command]!.includes(k));
  if (stray) throw new UsageError(`--${stray} does not apply to ${command}`);

  if (command === 'create') {
    const name = required(values.name, 'name');
    const tenant = required(values.tenant, 'tenant');
    const role = required(values.role, 'role');
    check('name', name);
    check('tenant', tenant);
    if (!(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role ${JSON.stringify(role)}: must be one of ${ROLES.join(', ')}`);
    if (file && existsSync(file) && readKeysFile(file).some((e) => e.name === name)) {
      throw new UsageError(`a key named ${JSON.stringify(name)} exists already in ${file}; revoke it first or pick another name`);
    }
    const secret = generateKey();
    const entry = keyEntry({ name, tenant, role: role as Role, secret });
    if (file) appendKey(file, entry);
    console.log(`New API key ${JSON.stringify(name)} for tenant ${tenant}, role ${role}. It is shown only this once; store it now:\n`);
    console.log(`  ${secret}\n`);
    console.log(file ? `Added to ${file}:\n` : 'Add this entry under `keys:` in the keys file (API_KEYS_FILE):\n');
    process.stdout.write(formatEntry(entry));
    console.log('\nSend it as `Authorization: Bearer <key>`.');
    return;
  }

  if (!file) throw new UsageError(`${command} needs the keys file: --file PATH or API_KEYS_FILE`);
  if (command === 'list') {
    const entries = readKeysFile(file);
    if (entries.length === 0) {
      console.log(`No keys in ${file}.`);
      return;
    }
    const rows = [['NAME', 'TENANT', 'ROLE', 'CREATED'], ...entries.map((e) => [e.name, e.tenant, e.role, e.created])];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const row of rows) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
    return;
  }

  const name = required(values.name, 'name');
  if (!revokeKey(file, name)) throw new UsageError(`no key named ${JSON.stringify(name)} in ${file}`);
  console.log(`Revoked ${JSON.stringify(name)}: removed from ${file}. Running servers stop accepting it within a few seconds.`);
}

function required(value: string | undefined, option: string): string {
  if (value === undefined || value.trim() === '') throw new UsageError(`--${option} is required`);
  return value.trim();
}

function check(field: 'name' | 'tenant', value: string): void {
  const result = keyEntrySchema.shape[field].safeParse(value);
  if (!result.success) throw new UsageError(`--${field} ${JSON.stringify(value)}: ${result.error.issues[0]!.message}`);
}

try {
  main(process.argv.slice(2), process.env);
} catch (error) {
  if (error instanceof UsageError) {
    console.error(`keys: ${error.message} (npm run keys -- --help)`);
    process.exit(2);
  }
  if (error instanceof KeysFileError) {
    console.error(error.message);
    process.exit(1);
  }
  console.error(`keys: ${(error as Error).message}`);
  process.exit(1);
}
