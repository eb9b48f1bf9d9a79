// SQLite TokenStore (better-sqlite3): one row per key shared by every process that opens the same file.
import Database from 'better-sqlite3';
import {
  decideForceRefresh,
  type ForceRefreshBudget,
  type ForceRefreshDecision,
  type NewToken,
  type StoredToken,
  type TokenStore,
  tokenFromRow,
} from '../token-store.js';

/** Options of {@link createSqliteTokenStore}. */
export type SqliteTokenStoreOptions = {
  /** Table name. @default 'wxsub_tokens' */
  table?: string;
  /** How long a writer waits for another process's lock, in ms. @default 5000 */
  busyTimeoutMs?: number;
};

type Row = {
  value: string | null;
  expires_at: number | null;
  fetched_at: number | null;
  generation: number;
  bound_generation: number | null;
  fr_day: string | null;
  fr_count: number;
  fr_last_at: number | null;
};

/**
 * Creates a TokenStore over a better-sqlite3 `Database` or a file path (opened here, closed by `close()`).
 * Creates its table if missing, turns on WAL and a busy timeout.
 * @example const store = createSqliteTokenStore('./data/tokens.db');
 */
export function createSqliteTokenStore(
  db: Database.Database | string,
  options: SqliteTokenStoreOptions = {},
): TokenStore {
  const owned = typeof db === 'string';
  const conn = typeof db === 'string' ? new Database(db) : db;
  const table = options.table ?? 'wxsub_tokens';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) throw new TypeError('table must be a plain SQL identifier');
  conn.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
  conn.pragma('journal_mode = WAL');
  conn.exec(`CREATE TABLE IF NOT EXISTS ${table} (
    key TEXT PRIMARY KEY,
    value TEXT,
    expires_at INTEGER,
    fetched_at INTEGER,
    generation INTEGER NOT NULL DEFAULT 0,
    bound_generation INTEGER,
    lease_owner TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0,
    fr_day TEXT,
    fr_count INTEGER NOT NULL DEFAULT 0,
    fr_last_at INTEGER
  )`);
  const selectRow = conn.prepare<[string], Row>(
    `SELECT value, expires_at, fetched_at, generation, bound_generation, fr_day, fr_count, fr_last_at FROM ${table} WHERE key = ?`,
  );
  const ensureRow = conn.prepare(`INSERT INTO ${table} (key) VALUES (?) ON CONFLICT(key) DO NOTHING`);
  const lease = conn.prepare(
    `INSERT INTO ${table} (key, lease_owner, lease_until) VALUES (@key, @owner, @until)
     ON CONFLICT(key) DO UPDATE SET lease_owner = @owner, lease_until = @until
     WHERE ${table}.lease_owner IS NULL OR ${table}.lease_owner = @owner OR ${table}.lease_until <= @now`,
  );
  const release = conn.prepare(
    `UPDATE ${table} SET lease_owner = NULL, lease_until = 0 WHERE key = ? AND lease_owner = ?`,
  );
  // No row is returned when `ifGeneration` is set and another credential is current (see TokenStore.put).
  const putStmt = conn.prepare<
    {
      key: string;
      value: string;
      expiresAt: number;
      fetchedAt: number;
      bound: number | null;
      ifGeneration: number | null;
    },
    Row
  >(
    `INSERT INTO ${table} (key, value, expires_at, fetched_at, generation, bound_generation) VALUES (@key, @value, @expiresAt, @fetchedAt, 1, @bound)
     ON CONFLICT(key) DO UPDATE SET value = @value, expires_at = @expiresAt, fetched_at = @fetchedAt, generation = ${table}.generation + 1, bound_generation = @bound
     WHERE @ifGeneration IS NULL OR ${table}.value IS NULL OR ${table}.generation = @ifGeneration
     RETURNING value, expires_at, fetched_at, generation, bound_generation, fr_day, fr_count, fr_last_at`,
  );
  const put = conn.transaction((key: string, token: NewToken, ifGeneration: number | null): StoredToken => {
    const written = putStmt.get({
      key,
      value: token.value,
      expiresAt: token.expiresAt,
      fetchedAt: token.fetchedAt,
      bound: token.boundGeneration ?? null,
      ifGeneration,
    });
    return tokenFromRow(written ?? selectRow.get(key)) as StoredToken;
  });
  const invalidateStmt = conn.prepare(
    `UPDATE ${table} SET value = NULL, expires_at = NULL, fetched_at = NULL WHERE key = ? AND value = ?`,
  );
  const setBudget = conn.prepare(
    `UPDATE ${table} SET fr_day = ?, fr_count = ?, fr_last_at = ? WHERE key = ?`,
  );
  const reserve = conn.transaction(
    (key: string, now: number, budget: ForceRefreshBudget): ForceRefreshDecision => {
      ensureRow.run(key);
      const r = selectRow.get(key) as Row;
      const { decision, next } = decideForceRefresh(
        { day: r.fr_day, count: r.fr_count, lastAt: r.fr_last_at },
        now,
        budget,
      );
      if (next) setBudget.run(next.day, next.count, next.lastAt, key);
      return decision;
    },
  );

  return {
    async get(key) {
      return tokenFromRow(selectRow.get(key));
    },
    async tryAcquireLease(key, owner, ttlMs, now) {
      return lease.run({ key, owner, until: now + ttlMs, now }).changes === 1;
    },
    async releaseLease(key, owner) {
      release.run(key, owner);
    },
    async put(key, token: NewToken, ifGeneration?: number) {
      return put.immediate(key, token, ifGeneration ?? null);
    },
    async invalidate(key, value) {
      return invalidateStmt.run(key, value).changes === 1;
    },
    async reserveForceRefresh(key, now, budget) {
      return reserve.immediate(key, now, budget);
    },
    async close() {
      if (owned && conn.open) conn.close();
    },
  };
}
