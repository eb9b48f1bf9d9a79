// Runs the TokenStore contract against the PostgreSQL adapter on a throwaway database.
import pg from 'pg';
import { describe } from 'vitest';
import { createTempDatabase, skipUnless, type TempDatabase } from '../../../test/support/services.js';
import { runTokenStoreContract } from './contract.js';
import { createPostgresTokenStore } from './postgres.js';

const skip = await skipUnless('postgres');

if (skip) {
  describe.skipIf(true)('TokenStore contract: postgres', () => {});
} else {
  const db: TempDatabase = await createTempDatabase();
  const pools: pg.Pool[] = [];
  runTokenStoreContract('postgres', {
    create: async () => {
      const pool = new pg.Pool({ connectionString: db.url, max: 5 });
      // The pool's owner must listen for idle-client errors (pg's rule); the drop at teardown terminates them.
      pool.on('error', () => {});
      pools.push(pool);
      return createPostgresTokenStore(pool);
    },
    cleanup: async () => {
      await Promise.all(pools.splice(0).map((p) => p.end()));
      await db.drop();
    },
  });
}
