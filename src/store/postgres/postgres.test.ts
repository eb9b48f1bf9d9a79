// Runs the store contract against PostgreSQL on a throwaway database, plus PG-only checks (concurrent migrate, shared pool).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTempDatabase, skipUnless } from '../../../test/support/services.js';
import type { TempDatabase } from '../../../test/support/services.js';
import { runStoreContract } from '../contract.js';
import { postgresMigrations } from './migrations/index.js';
import { createPostgresStore } from './postgres-store.js';

const skip = await skipUnless('postgres');

describe.skipIf(skip)('postgres store', () => {
  let db: TempDatabase;
  beforeAll(async () => {
    db = await createTempDatabase();
    // Two stores migrating at once: the advisory lock lets exactly one apply the migrations.
    const a = createPostgresStore({ url: db.url, poolSize: 2 });
    const b = createPostgresStore({ url: db.url, poolSize: 2 });
    const applied = await Promise.all([a.migrate(), b.migrate()]);
    await Promise.all([a.close(), b.close()]);
    expect(applied.sort()).toEqual([0, postgresMigrations.length]);
  });
  afterAll(async () => {
    await db?.drop();
  });

  runStoreContract('postgres', {
    create: async () => {
      const store = createPostgresStore({ url: db.url, poolSize: 10 });
      await store.migrate();
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      await c.query(
        `TRUNCATE grants, notification_credits, refusals, campaigns, messages, templates, api_keys, consent_nonces, app_pauses`,
      );
      await c.end();
      return store;
    },
  });

  it('works on a caller-owned pool and leaves it open on close', async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    pool.on('error', () => {}); // the caller owns the pool, so the caller listens for idle-client errors
    const store = createPostgresStore({ pool });
    expect(await store.migrate()).toBe(0);
    await store.grants.recordOneTime({ appId: 'pool', openid: 'o', templateId: 't', scene: 3, now: 1 });
    await store.close();
    const { rows } = await pool.query(`SELECT scene FROM grants WHERE app_id = 'pool'`);
    expect(rows).toEqual([{ scene: 3 }]);
    await pool.end();
  });

  it('reports an unreachable server as STORE_UNAVAILABLE', async () => {
    const store = createPostgresStore({ url: 'postgres://postgres@127.0.0.1:1/nowhere', poolSize: 1 });
    await expect(store.migrate()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await store.close();
  });
});
