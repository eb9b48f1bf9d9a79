// SQLite migration 4: spent consent nonces in one B-tree instead of three.

/**
 * `consent_nonces` becomes a WITHOUT ROWID table keyed by the nonce, without the expiry index. Spending a nonce is
 * on every consent callback's write; before, that insert touched the table, the nonce's unique index and the
 * expiry index (three B-trees, three dirty pages per commit), now one. The expiry index served only
 * `purgeExpired`, an occasional sweep over a table that holds one link lifetime of nonces: it scans instead.
 */
export const migration = {
  id: 4,
  name: 'nonces-without-rowid',
  sql: `
CREATE TABLE consent_nonces_new (
  nonce TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL,
  used_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO consent_nonces_new (nonce, expires_at, used_at) SELECT nonce, expires_at, used_at FROM consent_nonces;
DROP TABLE consent_nonces;
ALTER TABLE consent_nonces_new RENAME TO consent_nonces;
`,
} as const;
