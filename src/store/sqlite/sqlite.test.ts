// Runs the store contract against SQLite on a throwaway file, plus SQLite-only checks (file layout, pragmas).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { runStoreContract } from '../contract.js';
import { sqliteMigrations } from './migrations/index.js';
import { createSqliteStore } from './sqlite-store.js';

const dir = mkdtempSync(join(tmpdir(), 'wxsub-sqlite-'));
let n = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

runStoreContract('sqlite', {
  create: async () => {
    const store = createSqliteStore({ path: join(dir, `contract-${n++}.db`) });
    await store.migrate();
    return store;
  },
});

/** A database file as an older release left it: every migration below `id` applied, by hand (open handle returned). */
function migratedBefore(path: string, id: number): Database.Database {
  const raw = new Database(path);
  raw.pragma('journal_mode = WAL');
  raw.exec(
    'CREATE TABLE schema_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
  );
  for (const m of sqliteMigrations.filter((x) => x.id < id)) {
    raw.exec(m.sql);
    raw.prepare('INSERT INTO schema_migrations (id, name, applied_at) VALUES (?, ?, 0)').run(m.id, m.name);
  }
  return raw;
}

describe('sqlite store', () => {
  it('creates the folder, uses WAL, and records applied migrations once across handles', async () => {
    const path = join(dir, 'nested', 'deeper', 'wxsub.db');
    const a = createSqliteStore({ path });
    const b = createSqliteStore({ path });
    expect(await a.migrate()).toBe(sqliteMigrations.length);
    expect(await b.migrate()).toBe(0);
    await a.close();
    await b.close();
    await a.close();
    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.prepare('SELECT id, name FROM schema_migrations').all()).toEqual([
      { id: 1, name: 'init' },
      { id: 2, name: 'attempt-started' },
      { id: 3, name: 'claim-indexes' },
      { id: 4, name: 'nonces-without-rowid' },
      { id: 5, name: 'drop-messages-app' },
      { id: 6, name: 'message-counts' },
      { id: 7, name: 'nonces-by-expiry' },
      { id: 8, name: 'credits-accepted-at' },
    ]);
    raw.close();
  });

  it('keeps data across reopening the file', async () => {
    const path = join(dir, 'reopen.db');
    const a = createSqliteStore({ path });
    await a.migrate();
    await a.grants.recordOneTime({ appId: 'a', openid: 'o', templateId: 't', scene: 1, now: 1 });
    await a.close();
    const b = createSqliteStore({ path });
    await b.migrate();
    expect(await b.grants.availableScenes({ appId: 'a', openid: 'o', templateId: 't' })).toEqual([1]);
    await b.close();
  });

  it('keeps nonces spent before migration 4 spent (the nonce table is rebuilt without rowid)', async () => {
    const path = join(dir, 'upgrade-4.db');
    const raw = migratedBefore(path, 4);
    raw
      .prepare('INSERT INTO consent_nonces (nonce, expires_at, used_at) VALUES (?, ?, ?)')
      .run('spent', 9e12, 1);
    raw.close();

    const store = createSqliteStore({ path });
    expect(await store.migrate()).toBe(sqliteMigrations.length - 3);
    expect(await store.nonces.use({ nonce: 'spent', expiresAt: 9e12, now: 2 })).toBe(false);
    const replay = await store.nonces.redeemOneTime({
      nonce: 'spent',
      expiresAt: 9e12,
      appId: 'a',
      templateId: 't',
      scene: 1,
      now: 2,
      action: 'confirm',
      openid: 'o',
    });
    expect(replay).toEqual({ fresh: false });
    expect(await store.grants.availableScenes({ appId: 'a', openid: 'o', templateId: 't' })).toEqual([]);
    expect(await store.nonces.use({ nonce: 'fresh', expiresAt: 9e12, now: 2 })).toBe(true);
    await store.close();
    const check = new Database(path, { readonly: true });
    const ddl = check.prepare(`SELECT sql FROM sqlite_master WHERE name = 'consent_nonces'`).get() as {
      sql: string;
    };
    expect(ddl.sql).toMatch(/WITHOUT ROWID/);
    check.close();
  });

  it('keeps nonces spent before migration 7 spent, keyed by expiry', async () => {
    const path = join(dir, 'upgrade-7.db');
    const raw = migratedBefore(path, 7);
    const spend = raw.prepare('INSERT INTO consent_nonces (nonce, expires_at, used_at) VALUES (?, ?, ?)');
    spend.run('spent', 9e12, 1);
    spend.run('old', 5, 1);
    raw.close();

    const store = createSqliteStore({ path });
    expect(await store.migrate()).toBe(sqliteMigrations.length - 6);
    expect(await store.nonces.use({ nonce: 'spent', expiresAt: 9e12, now: 2 })).toBe(false);
    expect(await store.nonces.purgeExpired(10, 100)).toBe(1);
    expect(await store.nonces.use({ nonce: 'fresh', expiresAt: 9e12, now: 2 })).toBe(true);
    await store.close();
    const check = new Database(path, { readonly: true });
    const ddl = check.prepare(`SELECT sql FROM sqlite_master WHERE name = 'consent_nonces'`).get() as {
      sql: string;
    };
    expect(ddl.sql).toMatch(/PRIMARY KEY \(expires_at, nonce\)\s*\) WITHOUT ROWID/);
    check.close();
  });

  it('counts messages written before migration 6, then keeps counting', async () => {
    const path = join(dir, 'upgrade-6.db');
    const raw = migratedBefore(path, 6);
    raw
      .prepare(
        `INSERT INTO campaigns (id, app_id, name, kind, template_id, payload, status, created_at, updated_at)
         VALUES ('c1', 'a', 'n', 'one-time', 't', '{}', 'running', 0, 0)`,
      )
      .run();
    const insert = raw.prepare(
      `INSERT INTO messages (id, app_id, kind, openid, template_id, scene, payload, status, next_attempt_at, campaign_id, created_at, updated_at)
       VALUES (?, 'a', 'one-time', ?, 't', 1, '{"title":"t","content":"c"}', ?, 0, ?, 0, 0)`,
    );
    ['sent', 'sent', 'failed', 'queued'].forEach((status, i) => insert.run(`m${i}`, `o${i}`, status, 'c1'));
    insert.run('m9', 'o9', 'unknown', null);
    raw.close();

    const store = createSqliteStore({ path });
    expect(await store.migrate()).toBe(sqliteMigrations.length - 5);
    const counts = { sending: 0, cancelled: 0 };
    expect(await store.outbox.countMessages({ appId: 'a' })).toEqual({
      ...counts,
      total: 5,
      queued: 1,
      sent: 2,
      failed: 1,
      unknown: 1,
    });
    expect((await store.outbox.getCampaign('c1'))?.stats).toEqual({
      ...counts,
      total: 4,
      queued: 1,
      sent: 2,
      failed: 1,
      unknown: 0,
    });
    // The claim moves the queued one on; the counts follow without a recount.
    expect(await store.outbox.claim({ owner: 'w', limit: 10, leaseMs: 1000, now: 1 })).toHaveLength(1);
    expect((await store.outbox.getCampaign('c1'))?.stats).toMatchObject({ queued: 0, sending: 1, total: 4 });
    await store.close();
  });
});
