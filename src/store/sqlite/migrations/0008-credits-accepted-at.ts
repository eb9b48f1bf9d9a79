// SQLite migration 8: when a user last accepted notification credits.

/**
 * `notification_credits.accepted_at`: the time of the last accept (credits added, or long-term switched on). A
 * 43101 answer to an attempt that started before that accept is about the user's consent as it was before it, so it
 * no longer wipes what the user has just given (see completeRows in sqlite-store.ts). Existing rows have no accept
 * time and keep the old behaviour: a 43101 wipes them.
 */
export const migration = {
  id: 8,
  name: 'credits-accepted-at',
  sql: `ALTER TABLE notification_credits ADD COLUMN accepted_at INTEGER;`,
} as const;
