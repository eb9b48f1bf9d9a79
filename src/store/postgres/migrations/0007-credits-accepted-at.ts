// PostgreSQL migration 7: when a user last accepted notification credits.

/**
 * `notification_credits.accepted_at`: the time of the last accept (credits added, or long-term switched on). A
 * 43101 answer to an attempt that started before that accept is about the user's consent as it was before it, so it
 * no longer wipes what the user has just given (see completeSql in postgres-store.ts). Existing rows have no accept
 * time and keep the old behaviour: a 43101 wipes them. Adding a nullable column rewrites nothing.
 */
export const migration = {
  id: 7,
  name: 'credits-accepted-at',
  sql: `ALTER TABLE notification_credits ADD COLUMN accepted_at BIGINT;`,
} as const;
