// Runs the store contract against PostgreSQL on a throwaway database, plus PG-only checks (concurrent migrate, shared pool).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTempDatabase, skipUnless } from '../../../test/support/services.js';
import type { TempDatabase } from '../../../test/support/services.js';
import { runStoreContract } from '../contract.js';
import { postgresMigrations } from './migrations/index.js';
import type { AttemptOutcome } from '../store.js';
import { createPostgresStore } from './postgres-store.js';

/**
 * Runs `fn` on a throwaway database as an older release left it (every migration before `id` applied), with a
 * client connected to it; drops it afterwards.
 */
async function withDatabaseBefore(
  id: number,
  fn: (c: pg.Client, url: string) => Promise<void>,
): Promise<void> {
  const old = await createTempDatabase();
  const c = new pg.Client({ connectionString: old.url });
  await c.connect();
  try {
    await c.query(
      'CREATE TABLE schema_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
    );
    for (const m of postgresMigrations.filter((x) => x.id < id)) {
      await c.query(m.sql);
      await c.query('INSERT INTO schema_migrations (id, name, applied_at) VALUES ($1, $2, 0)', [
        m.id,
        m.name,
      ]);
    }
    await fn(c, old.url);
  } finally {
    await c.end();
    await old.drop();
  }
}

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

  it('counts messages written before migration 5, then keeps counting', async () => {
    await withDatabaseBefore(5, async (c, url) => {
      await c.query(
        `INSERT INTO campaigns (id, app_id, name, kind, template_id, payload, status, created_at, updated_at)
         VALUES ('c1', 'a', 'n', 'one-time', 't', '{}', 'running', 0, 0)`,
      );
      for (const [id, status, campaign] of [
        ['m0', 'sent', 'c1'],
        ['m1', 'sent', 'c1'],
        ['m2', 'failed', 'c1'],
        ['m3', 'queued', 'c1'],
        ['m9', 'unknown', null],
      ])
        await c.query(
          `INSERT INTO messages (id, app_id, kind, openid, template_id, scene, payload, status, next_attempt_at, campaign_id, created_at, updated_at)
           VALUES ($1, 'a', 'one-time', $1, 't', 1, '{"title":"t","content":"c"}', $2, 0, $3, 0, 0)`,
          [id, status, campaign],
        );
      const store = createPostgresStore({ url, poolSize: 2 });
      expect(await store.migrate()).toBe(postgresMigrations.length - 4);
      const none = { sending: 0, cancelled: 0 };
      expect(await store.outbox.countMessages({ appId: 'a' })).toEqual({
        ...none,
        total: 5,
        queued: 1,
        sent: 2,
        failed: 1,
        unknown: 1,
      });
      expect(await store.outbox.claim({ owner: 'w', limit: 10, leaseMs: 1000, now: 1 })).toHaveLength(1);
      expect((await store.outbox.getCampaign('c1'))?.stats).toEqual({
        ...none,
        total: 4,
        queued: 0,
        sending: 1,
        sent: 2,
        failed: 1,
        unknown: 0,
      });
      await store.close();
    });
  });

  it('keeps nonces spent before migration 6 spent, keyed by expiry', async () => {
    await withDatabaseBefore(6, async (c, url) => {
      await c.query(
        `INSERT INTO consent_nonces (nonce, expires_at, used_at) VALUES ('spent', 9000000000000, 1), ('old', 5, 1)`,
      );
      const store = createPostgresStore({ url, poolSize: 2 });
      expect(await store.migrate()).toBe(postgresMigrations.length - 5);
      expect(await store.nonces.use({ nonce: 'spent', expiresAt: 9e12, now: 2 })).toBe(false);
      expect(await store.nonces.purgeExpired(10, 100)).toBe(1);
      expect(await store.nonces.use({ nonce: 'fresh', expiresAt: 9e12, now: 2 })).toBe(true);
      await store.close();
      const { rows } = await c.query<{ def: string }>(
        `SELECT pg_get_indexdef(indexrelid) AS def FROM pg_index WHERE indrelid = 'consent_nonces'::regclass`,
      );
      expect(rows.map((r) => r.def)).toEqual([expect.stringMatching(/UNIQUE INDEX .*\(expires_at, nonce\)/)]);
    });
  });

  it('keeps counts exact while three stores claim and complete at once and fold meanwhile', async () => {
    const APP = 'wxcounts';
    const TPL = 'tpl';
    const stores = [0, 1, 2].map(() => createPostgresStore({ url: db.url, poolSize: 3 }));
    const [first] = stores as [ReturnType<typeof createPostgresStore>];
    try {
      for (let i = 0; i < 300; i++)
        await first.grants.recordOneTime({ appId: APP, openid: `o${i}`, templateId: TPL, scene: 1, now: 1 });
      const campaign = await first.outbox.createCampaign({
        appId: APP,
        name: 'counts',
        kind: 'one-time',
        templateId: TPL,
        sceneFilter: null,
        payload: { title: 't', content: 'c' },
        now: 1,
      });
      while (
        (await first.outbox.enqueueCampaignBatch({ campaignId: campaign.id, batchSize: 100, now: 2 })) > 0
      );
      let folding = true;
      const folder = (async () => {
        let folded = 0;
        while (folding) folded += (await first.outbox.foldMessageCounts?.()) ?? 0;
        return folded;
      })();
      // Each store claims small batches and records a mix: sent, failed for good, and retries that go back to queued.
      let k = 0;
      await Promise.all(
        stores.map(async (store, s) => {
          for (;;) {
            const batch = await store.outbox.claim({ owner: `w${s}`, limit: 7, leaseMs: 60_000, now: 3 });
            if (batch.length === 0) return;
            await store.outbox.completeMany?.({
              owner: `w${s}`,
              now: 3,
              items: batch.map((m) => {
                const r = k++ % 5;
                const outcome: AttemptOutcome =
                  r === 0 && m.attempts < 2
                    ? { status: 'retry', nextAttemptAt: 3, errorCode: 'X', errorMessage: 'x' }
                    : r === 1
                      ? { status: 'failed', grant: 'keep', errorCode: 'Y', errorMessage: 'y' }
                      : { status: 'sent' };
                return { id: m.id, outcome };
              }),
            });
          }
        }),
      );
      folding = false;
      expect(await folder).toBeGreaterThan(0);
      const check = new pg.Client({ connectionString: db.url });
      await check.connect();
      const { rows } = await check
        .query<{ status: string; n: number }>(
          `SELECT status, count(*)::int AS n FROM messages WHERE campaign_id = $1 GROUP BY status`,
          [campaign.id],
        )
        .finally(() => check.end());
      const recount = Object.fromEntries(rows.map((r) => [r.status, r.n]));
      expect(recount.sent).toBeGreaterThan(0);
      expect(recount.failed).toBeGreaterThan(0);
      const stats = (await first.outbox.getCampaign(campaign.id))?.stats;
      expect(stats).toEqual({
        total: 300,
        queued: 0,
        sending: 0,
        sent: recount.sent,
        failed: recount.failed,
        unknown: 0,
        cancelled: 0,
      });
      await first.outbox.foldMessageCounts?.();
      expect((await first.outbox.getCampaign(campaign.id))?.stats).toEqual(stats);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('a send waits for a grant another transaction merely holds locked, for one scene or any', async () => {
    const store = createPostgresStore({ url: db.url, poolSize: 2 });
    const lock = new pg.Client({ connectionString: db.url });
    await lock.connect();
    try {
      for (const scene of [7, 'any'] as const) {
        const openid = `oLock-${scene}`;
        await store.grants.recordOneTime({ appId: 'lock', openid, templateId: 't', scene: 7, now: 1 });
        // What a consent callback re-confirming that grant does: it keeps the grant available but locks its row.
        await lock.query('BEGIN');
        await lock.query(
          `UPDATE grants SET confirmed_at = 2, updated_at = 2 WHERE app_id = 'lock' AND openid = $1 AND state = 'available'`,
          [openid],
        );
        let settled = false;
        const sent = store.outbox
          .enqueueMessage({
            appId: 'lock',
            kind: 'one-time',
            openid,
            templateId: 't',
            scene,
            payload: { title: 't', content: 'c' },
            now: 3,
          })
          .finally(() => (settled = true));
        await new Promise((r) => setTimeout(r, 200));
        expect(settled, `scene ${scene}: answered while the row was locked`).toBe(false);
        await lock.query('COMMIT');
        const r = await sent;
        expect(r.ok ? r.message.scene : r, `scene ${scene}`).toBe(7);
      }
    } finally {
      await lock.query('ROLLBACK').catch(() => {});
      await lock.end();
      await store.close();
    }
  });

  it('never claims a retry recorded while its campaign was being cancelled: the claim ends it cancelled, grant back', async () => {
    const store = createPostgresStore({ url: db.url, poolSize: 4 });
    const lock = new pg.Client({ connectionString: db.url });
    await lock.connect();
    const at = { appId: 'race', openid: 'u', templateId: 't', scene: 1 };
    try {
      await store.grants.recordOneTime({ ...at, now: 1 });
      const c = await store.outbox.createCampaign({
        appId: 'race',
        name: 'c',
        kind: 'one-time',
        templateId: 't',
        sceneFilter: null,
        payload: { title: 't', content: 'c' },
        now: 1,
      });
      await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 10, now: 1 });
      const [m] = await store.outbox.claim({ owner: 'w', limit: 10, leaseMs: 30_000, now: 2 });
      const id = m?.id ?? '';
      await store.outbox.markAttemptStarted({ ids: [id], owner: 'w', now: 2 });
      // Another transaction holds the row a moment, so the completion's statement starts (campaign still running)
      // and waits while a cancel passes the started row by and commits: the interleaving several instances produce.
      await lock.query('BEGIN');
      await lock.query('SELECT 1 FROM messages WHERE id = $1 FOR UPDATE', [id]);
      const completing = store.outbox.complete({
        id,
        owner: 'w',
        outcome: {
          status: 'retry',
          nextAttemptAt: 10,
          lastErrcode: -1,
          errorCode: 'DELIVERY_WECHAT_BUSY',
          errorMessage: 'busy',
        },
        now: 3,
      });
      await new Promise((r) => setTimeout(r, 200));
      await store.outbox.cancelCampaign({ id: c.id, now: 4 });
      await lock.query('COMMIT');
      expect(await completing).toBe(true);

      // Earlier tests of this file leave messages of other apps behind: look for this one only.
      const claimed = await store.outbox.claim({ owner: 'w2', limit: 1000, leaseMs: 30_000, now: 100 });
      expect(claimed.map((x) => x.id)).not.toContain(id);
      expect(await store.outbox.getMessage(id)).toMatchObject({ status: 'cancelled', leaseOwner: null });
      expect((await store.grants.get(at))?.state).toBe('available');
      expect(await store.outbox.getCampaign(c.id)).toMatchObject({
        status: 'cancelled',
        stats: { total: 1, cancelled: 1, queued: 0 },
      });
    } finally {
      await lock.query('ROLLBACK').catch(() => {});
      await lock.end();
      await store.close();
    }
  });

  it('completes and marks in-flight messages by id even when statistics say none are in flight', async () => {
    // Statistics taken on an empty outbox, then 3,000 messages in flight: what a big campaign looks like to the
    // planner until (auto)analyze catches up. Each statement that names its messages must still look those few
    // up by primary key, not read every in-flight message per call (its cost grew with the campaign).
    const own = await createTempDatabase();
    const pool = new pg.Pool({ connectionString: own.url, max: 2 });
    pool.on('error', () => {});
    const seen: { text: string; values: unknown[] }[] = [];
    const query = pool.query.bind(pool) as (...a: unknown[]) => unknown;
    pool.query = ((cfg: unknown, ...rest: unknown[]) => {
      const c = cfg as { text?: string; values?: unknown[] };
      if (typeof c?.text === 'string') seen.push({ text: c.text, values: c.values ?? [] });
      return query(cfg, ...rest);
    }) as typeof pool.query;
    const store = createPostgresStore({ pool });
    try {
      await store.migrate();
      await pool.query('ANALYZE');
      await pool.query(
        `INSERT INTO messages (id, app_id, kind, openid, template_id, payload, status, next_attempt_at, lease_owner,
           lease_until, created_at, updated_at)
         SELECT 'm' || i, 'a', 'notification', 'o' || i, 't', '{"data":{}}', 'sending', 0, 'w', 9e12, 0, 0
         FROM generate_series(1, 3000) i`,
      );
      const plans: { op: string; plan: string }[] = [];
      const planOf = async (op: string, run: () => Promise<unknown>) => {
        seen.length = 0;
        await run();
        const stmt = seen.find((s) => /UPDATE messages/.test(s.text));
        if (!stmt) throw new Error(`${op}: no UPDATE messages statement seen`);
        const { rows } = await pool.query({
          text: `EXPLAIN (FORMAT JSON) ${stmt.text}`,
          values: stmt.values,
        });
        plans.push({ op, plan: JSON.stringify(rows[0]) });
      };
      await planOf('markAttemptStarted', () =>
        store.outbox.markAttemptStarted({ ids: ['m1', 'm2'], owner: 'w', now: 1 }),
      );
      await planOf('extendLease', () =>
        store.outbox.extendLease({ ids: ['m1', 'm2'], owner: 'w', leaseUntil: 9e12 }),
      );
      const completeMany = store.outbox.completeMany?.bind(store.outbox);
      if (!completeMany) throw new Error('the PostgreSQL store completes in groups');
      await planOf('completeMany', () =>
        completeMany({
          owner: 'w',
          items: ['m1', 'm2'].map((id) => ({ id, outcome: { status: 'sent' } as AttemptOutcome })),
          now: 2,
        }),
      );
      for (const p of plans) {
        expect({ op: p.op, byId: p.plan.includes('"messages_pkey"') }).toEqual({ op: p.op, byId: true });
        expect({ op: p.op, scansInFlight: p.plan.includes('"messages_sending"') }).toEqual({
          op: p.op,
          scansInFlight: false,
        });
      }
      expect(await store.outbox.getMessage('m1')).toMatchObject({ status: 'sent' });
    } finally {
      await store.close();
      await pool.end();
      await own.drop();
    }
  });

  it('refreshes the outbox statistics as soon as a big campaign starts enqueuing, not only at its end', async () => {
    const own = await createTempDatabase();
    const store = createPostgresStore({ url: own.url, poolSize: 2 });
    const c = new pg.Client({ connectionString: own.url });
    await c.connect();
    try {
      await store.migrate();
      await c.query(
        `INSERT INTO grants (id, app_id, openid, template_id, scene, state, created_at, updated_at, confirmed_at)
         SELECT 'g' || i, 'a', 'o' || lpad(i::text, 5, '0'), 't', 1, 'available', 0, 0, 0 FROM generate_series(1, 1500) i`,
      );
      const analyzed = async () =>
        (
          await c.query<{ n: string }>(
            `SELECT analyze_count AS n FROM pg_stat_user_tables WHERE relname = 'messages'`,
          )
        ).rows[0]?.n;
      const camp = await store.outbox.createCampaign({
        appId: 'a',
        name: 'big',
        kind: 'one-time',
        templateId: 't',
        sceneFilter: null,
        payload: { title: 't', content: 'c' },
        now: 1,
      });
      expect(await store.outbox.enqueueCampaignBatch({ campaignId: camp.id, batchSize: 500, now: 1 })).toBe(
        500,
      );
      expect(await analyzed()).toBe('0'); // 500 queued: not big yet
      expect(await store.outbox.enqueueCampaignBatch({ campaignId: camp.id, batchSize: 500, now: 1 })).toBe(
        500,
      );
      expect(await analyzed()).toBe('1'); // crossed 1,000 with 500 still to enqueue
      expect(await store.outbox.enqueueCampaignBatch({ campaignId: camp.id, batchSize: 500, now: 1 })).toBe(
        500,
      );
      expect(await analyzed()).toBe('1');
      expect(await store.outbox.enqueueCampaignBatch({ campaignId: camp.id, batchSize: 500, now: 1 })).toBe(
        0,
      );
      expect(await analyzed()).toBe('2'); // and all tables once the enqueue is done
    } finally {
      await c.end();
      await store.close();
      await own.drop();
    }
  });

  it('reports an unreachable server as STORE_UNAVAILABLE', async () => {
    const store = createPostgresStore({ url: 'postgres://postgres@127.0.0.1:1/nowhere', poolSize: 1 });
    await expect(store.migrate()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await store.close();
  });
});
