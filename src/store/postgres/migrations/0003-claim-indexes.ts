// PostgreSQL migration 3: partial indexes for the claim path, so each state change touches fewer index entries.

/**
 * Replaces the status-prefixed due/lease indexes with partial ones: `queued` rows by (next_attempt_at, id) — the
 * claim's exact order, no sort — and `sending` rows by lease_until. A final row (sent/failed/unknown) is in neither.
 * Campaign messages carry no idempotency key, so the key's unique index leaves them out.
 */
export const migration = {
  id: 3,
  name: 'claim-indexes',
  sql: `
DROP INDEX messages_due;
DROP INDEX messages_lease;
CREATE INDEX messages_queued ON messages (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX messages_sending ON messages (lease_until) WHERE status = 'sending';
DROP INDEX messages_idempotency;
CREATE UNIQUE INDEX messages_idempotency ON messages (app_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
`,
} as const;
