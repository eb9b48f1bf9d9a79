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
});
