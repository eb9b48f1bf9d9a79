// Runs the TokenStore contract against the SQLite adapter on a real file in a temp dir.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { runTokenStoreContract } from './contract.js';
import { createSqliteTokenStore } from './sqlite.js';

const dir = mkdtempSync(join(tmpdir(), 'wxsub-tokens-'));
const file = join(dir, 'tokens.db');

runTokenStoreContract('sqlite', {
  create: async () => createSqliteTokenStore(file),
  cleanup: async () => rmSync(dir, { recursive: true, force: true }),
});

it('accepts an open Database, uses WAL and leaves the connection open on close', async () => {
  const own = mkdtempSync(join(tmpdir(), 'wxsub-tokens-'));
  const db = new Database(join(own, 'given.db'));
  const store = createSqliteTokenStore(db, { table: 'my_tokens' });
  await store.put('k', { value: 'v', expiresAt: 2, fetchedAt: 1 });
  expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
  await store.close();
  expect(db.prepare('SELECT value FROM my_tokens WHERE key = ?').get('k')).toEqual({ value: 'v' });
  db.close();
  rmSync(own, { recursive: true, force: true });
});
