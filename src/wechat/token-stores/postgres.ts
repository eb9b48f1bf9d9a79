// PostgreSQL TokenStore (pg): one row per key; leases and budgets are decided under the row lock so many instances agree.
import type pg from 'pg';
import {
  decideForceRefresh,
  type ForceRefreshDecision,
  type NewToken,
  type StoredToken,
  type TokenStore,
  tokenFromRow,
} from '../token-store.js';

/** Options of {@link createPostgresTokenStore}. */
export type PostgresTokenStoreOptions = {
  /** Table name. @default 'wxsub_tokens' */
  table?: string;
};

type Row = {
  value: string | null;
  expires_at: string | null;
  fetched_at: string | null;
  generation: number;
  bound_generation: number | null;
  fr_day: string | null;
  fr_count: number;
  fr_last_at: string | null;
};

/**
 * Creates a TokenStore over a `pg.Pool` (not closed by `close()`). Creates its table if missing,
 * serialised by an advisory lock so several instances can start at once.
 * @example const store = createPostgresTokenStore(new pg.Pool({ connectionString }));
 */
export function createPostgresTokenStore(pool: pg.Pool, options: PostgresTokenStoreOptions = {}): TokenStore {
  const table = options.table ?? 'wxsub_tokens';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) throw new TypeError('table must be a plain SQL identifier');
  const cols = 'value, expires_at, fetched_at, generation, bound_generation, fr_day, fr_count, fr_last_at';
  let ready: Promise<void> | undefined;
  const init = () =>
    (ready ??= (async () => {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`wxsub:${table}`]);
        await c.query(`CREATE TABLE IF NOT EXISTS ${table} (
          key TEXT PRIMARY KEY,
          value TEXT,
          expires_at BIGINT,
          fetched_at BIGINT,
          generation INTEGER NOT NULL DEFAULT 0,
          bound_generation INTEGER,
          lease_owner TEXT,
          lease_until BIGINT NOT NULL DEFAULT 0,
          fr_day TEXT,
          fr_count INTEGER NOT NULL DEFAULT 0,
          fr_last_at BIGINT
        )`);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        ready = undefined;
        throw err;
      } finally {
        c.release();
      }
    })());
  return {
    async get(key) {
      await init();
      const res = await pool.query<Row>(`SELECT ${cols} FROM ${table} WHERE key = $1`, [key]);
      return tokenFromRow(res.rows[0]);
    },
    async tryAcquireLease(key, owner, ttlMs, now) {
      await init();
      const res = await pool.query(
        `INSERT INTO ${table} AS t (key, lease_owner, lease_until) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET lease_owner = $2, lease_until = $3
         WHERE t.lease_owner IS NULL OR t.lease_owner = $2 OR t.lease_until <= $4
         RETURNING key`,
        [key, owner, now + ttlMs, now],
      );
      return res.rowCount === 1;
    },
    async releaseLease(key, owner) {
      await init();
      await pool.query(
        `UPDATE ${table} SET lease_owner = NULL, lease_until = 0 WHERE key = $1 AND lease_owner = $2`,
        [key, owner],
      );
    },
    async put(key, token: NewToken, ifGeneration?: number) {
      await init();
      for (;;) {
        // The conflict branch re-checks its WHERE on the locked, latest row version, so the compare is atomic.
        const res = await pool.query<Row>(
          `INSERT INTO ${table} AS t (key, value, expires_at, fetched_at, generation, bound_generation) VALUES ($1, $2, $3, $4, 1, $5)
           ON CONFLICT (key) DO UPDATE SET value = $2, expires_at = $3, fetched_at = $4, generation = t.generation + 1, bound_generation = $5
           WHERE $6::integer IS NULL OR t.value IS NULL OR t.generation = $6::integer
           RETURNING ${cols}`,
          [
            key,
            token.value,
            token.expiresAt,
            token.fetchedAt,
            token.boundGeneration ?? null,
            ifGeneration ?? null,
          ],
        );
        if (res.rows[0]) return tokenFromRow(res.rows[0]) as StoredToken;
        const current = tokenFromRow(
          (await pool.query<Row>(`SELECT ${cols} FROM ${table} WHERE key = $1`, [key])).rows[0],
        );
        // Invalidated between the two statements: nothing is current any more, so the write may go ahead now.
        if (current) return current;
      }
    },
    async invalidate(key, value) {
      await init();
      const res = await pool.query(
        `UPDATE ${table} SET value = NULL, expires_at = NULL, fetched_at = NULL WHERE key = $1 AND value = $2`,
        [key, value],
      );
      return res.rowCount === 1;
    },
    async reserveForceRefresh(key, now, budget): Promise<ForceRefreshDecision> {
      await init();
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        await c.query(`INSERT INTO ${table} (key) VALUES ($1) ON CONFLICT (key) DO NOTHING`, [key]);
        const res = await c.query<Row>(`SELECT ${cols} FROM ${table} WHERE key = $1 FOR UPDATE`, [key]);
        const r = res.rows[0] as Row;
        const { decision, next } = decideForceRefresh(
          { day: r.fr_day, count: r.fr_count, lastAt: r.fr_last_at === null ? null : Number(r.fr_last_at) },
          now,
          budget,
        );
        if (next)
          await c.query(`UPDATE ${table} SET fr_day = $2, fr_count = $3, fr_last_at = $4 WHERE key = $1`, [
            key,
            next.day,
            next.count,
            next.lastAt,
          ]);
        await c.query('COMMIT');
        return decision;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        c.release();
      }
    },
    async close() {},
  };
}
