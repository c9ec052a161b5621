/**
 * Every GraphQL document the dashboard sends (ui/src/lib/api.ts) validated against the API's schema
 * (api/schema.ts): a misspelt or renamed field fails here, not in the browser. Documents listed in
 * PENDING_FIELDS wait for a branch not merged yet; they are reported as skipped with the reason, and a
 * pending document that already validates fails, so the list is emptied when its branch lands.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, validate } from 'graphql';
import { createSchema } from 'graphql-yoga';
import { typeDefs } from '../../api/schema.ts';
import { DOCUMENTS, PENDING_FIELDS, type DocumentName } from '../../ui/src/lib/api.ts';

const schema = createSchema({ typeDefs });

/** Validation errors, and a missing root type (graphql's validate leaves that to execution). */
function problems(name: DocumentName): string[] {
  const document = parse(DOCUMENTS[name]);
  const roots = document.definitions.flatMap((d) => (d.kind === 'OperationDefinition' ? [d.operation] : []));
  const missingRoots = roots.filter((op) => !schema.getRootType(op)).map((op) => `the schema has no ${op} type`);
  return [...missingRoots, ...validate(schema, document).map((e) => e.message)];
}

for (const name of Object.keys(DOCUMENTS) as DocumentName[]) {
  const pending = PENDING_FIELDS[name];
  test(`document ${name} validates against the API schema`, { skip: pending ? `pending: ${pending}` : false }, () => {
    assert.deepEqual(problems(name), []);
  });
  if (pending) {
    test(`pending document ${name} does not validate yet (else remove it from PENDING_FIELDS)`, () => {
      assert.notDeepEqual(problems(name), [], `${name} validates now: remove it from PENDING_FIELDS`);
    });
  }
}

test('each document is named after its key, so the operationName sent matches', () => {
  for (const [name, text] of Object.entries(DOCUMENTS)) {
    const operations = parse(text).definitions.filter((d) => d.kind === 'OperationDefinition');
    assert.equal(operations.length, 1, name);
    assert.equal((operations[0] as { name?: { value: string } }).name?.value, name);
  }
});

test('a misspelt field fails validation (the check can fail)', () => {
  assert.notDeepEqual(validate(schema, parse('query X { me { tenant rolee } }')), []);
});

test('a mutation fails when the schema has no Mutation type, or no such field', () => {
  const document = parse('mutation M { noSuchMutation }');
  assert.ok(!schema.getMutationType() || validate(schema, document).length > 0);
});
