// PostgreSQL migration 6: spent consent nonces ordered by when they expire.

/**
 * `consent_nonces` gets the primary key `(expires_at, nonce)` in place of `nonce`, and loses its expiry index: one
 * B-tree instead of two per spent nonce. A token binds its nonce and its expiry under one signature, so a replay
 * still meets the same key. Links are spent roughly in the order they were issued, so new entries land at the
 * right edge of the index (the same few pages, instead of a random leaf each, and so fewer full-page images in
 * the WAL after a checkpoint), and expired nonces, which the service now purges on a timer, are a prefix of it.
 */
export const migration = {
  id: 6,
  name: 'nonces-by-expiry',
  sql: `
ALTER TABLE consent_nonces DROP CONSTRAINT consent_nonces_pkey;
ALTER TABLE consent_nonces ADD PRIMARY KEY (expires_at, nonce);
DROP INDEX IF EXISTS consent_nonces_expiry;
`,
} as const;
