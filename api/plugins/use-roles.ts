/**
 * Enforces the schema's `@requires(role: …)` directives before execution: every field an operation
 * selects (through fragments too) is checked against the caller's role, and one field the role may not
 * read refuses the whole operation with FORBIDDEN (HTTP 403), naming the field and the role it needs.
 */
import { TypeInfo, visit, visitWithTypeInfo, type GraphQLField, type GraphQLSchema } from 'graphql';
import { createGraphQLError, type Plugin } from 'graphql-yoga';
import type { ApiContext, Role } from '../context.ts';

/** Which roles satisfy a requirement: `admin` everything; `billing` and `operator` each add to `viewer`. */
const SATISFIES: Record<Role, ReadonlySet<Role>> = {
  ingest: new Set(['ingest']),
  viewer: new Set(['viewer']),
  operator: new Set(['viewer', 'operator']),
  billing: new Set(['viewer', 'billing']),
  admin: new Set(['viewer', 'operator', 'billing', 'admin']),
};

export function roleAllows(role: Role, required: Role): boolean {
  return SATISFIES[role].has(required);
}

function requiredRole(field: GraphQLField<unknown, unknown>): Role | undefined {
  const directive = field.astNode?.directives?.find((d) => d.name.value === 'requires');
  const arg = directive?.arguments?.find((a) => a.name.value === 'role');
  return arg && arg.value.kind === 'EnumValue' ? (arg.value.value.toLowerCase() as Role) : undefined;
}

export function useRoles(): Plugin<ApiContext> {
  return {
    onExecute({ args }) {
      const caller = args.contextValue.caller;
      if (!caller) return; // use-auth refused the request already
      const schema: GraphQLSchema = args.schema;
      const typeInfo = new TypeInfo(schema);
      let refused: { field: string; role: Role } | undefined;
      visit(
        args.document,
        visitWithTypeInfo(typeInfo, {
          Field() {
            const field = typeInfo.getFieldDef();
            const parent = typeInfo.getParentType();
            if (!field || !parent || refused) return;
            const role = requiredRole(field);
            if (role && !roleAllows(caller.role, role)) refused = { field: `${parent.name}.${field.name}`, role };
          },
        }),
      );
      if (refused) {
        throw createGraphQLError(`${refused.field} needs a key with role ${refused.role} (or admin); this key's role is ${caller.role}.`, {
          extensions: { code: 'FORBIDDEN', http: { status: 403 } },
        });
      }
    },
  };
}

