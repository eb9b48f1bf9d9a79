// SQLite migration 5: one index fewer on the outbox's hottest table.

/**
 * Drops `messages_app (app_id, id)`. Every message is inserted once and changes status three times on its way out
 * (claimed, started, completed); each insert paid for one more B-tree entry. The index only ordered a listing by
 * app, and a service sends for one app: `GET /v1/messages` walks the primary key newest first and filters, which is
 * the same walk. Filtered listings (status, openid, template) never used it beyond that order.
 */
export const migration = {
  id: 5,
  name: 'drop-messages-app',
  sql: `
DROP INDEX IF EXISTS messages_app;
`,
} as const;
