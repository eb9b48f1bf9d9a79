// Picks and builds the service store from one setting: a postgres:// URL or a SQLite file path.
import type { Clock } from '../util/clock.js';
import type { IdGenerator } from './common.js';
import { createPostgresStore } from './postgres/postgres-store.js';
import { createSqliteStore } from './sqlite/sqlite-store.js';
import type { Store } from './store.js';

export { createIdGenerator, type IdGenerator } from './common.js';
export { createPostgresStore, type PostgresStoreOptions } from './postgres/postgres-store.js';
export { createSqliteStore, type SqliteStoreOptions } from './sqlite/sqlite-store.js';
export type * from './store.js';

/** Options of {@link createStore}. */
export type CreateStoreOptions = {
  /** SQLite file used when `url` is not a PostgreSQL URL and is empty. @default './data/wxsub.db' */
  defaultSqlitePath?: string;
  /** PostgreSQL pool size. @default 10 */
  poolSize?: number;
  /** Clock for bookkeeping timestamps. @default systemClock */
  clock?: Clock;
  /** Row id generator. @default createIdGenerator() */
  ids?: IdGenerator;
};

/** True when `url` names a PostgreSQL database. */
export function isPostgresUrl(url: string | undefined): boolean {
  return url !== undefined && /^postgres(ql)?:\/\//i.test(url);
}

/**
 * Builds the store: `postgres://…`/`postgresql://…` → PostgreSQL, anything else → a SQLite file at that path
 * (or `defaultSqlitePath` when empty). Migrations are not applied; call `store.migrate()`.
 * @example const store = createStore(config.databaseUrl ?? config.sqlitePath); await store.migrate();
 */
export function createStore(url: string | undefined, opts: CreateStoreOptions = {}): Store {
  const common = { ...(opts.clock ? { clock: opts.clock } : {}), ...(opts.ids ? { ids: opts.ids } : {}) };
  if (url !== undefined && isPostgresUrl(url))
    return createPostgresStore({ url, poolSize: opts.poolSize ?? 10, ...common });
  const path =
    url === undefined || url.trim() === ''
      ? (opts.defaultSqlitePath ?? './data/wxsub.db')
      : url.replace(/^sqlite:(\/\/)?/i, '');
  return createSqliteStore({ path, ...common });
}
