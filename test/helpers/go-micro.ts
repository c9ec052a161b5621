/** Exactly what go-micro v6 `gateway/mcp` marshals for an allowed call: omitempty fields absent, duration in ns. */
export const goMicroAllowed = {
  trace_id: '6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b',
  timestamp: '2026-11-24T10:00:00.123456789Z',
  tool: 'users.Users.Get',
  account_id: 'acct-42',
  scopes_required: ['users:read'],
  allowed: true,
  duration: 1523000,
};
