// Tests of the background WAL checkpointer: pages reach the database file without the writer checkpointing.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBackgroundCheckpoint } from './background-checkpoint.js';
import { createSqliteStore } from './sqlite-store.js';

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('background checkpoint', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-ckpt-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('copies committed pages into the database file while the writer never checkpoints', async () => {
    const path = join(dir, 'a.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0'); // the writer itself never checkpoints
    db.exec('CREATE TABLE t (x BLOB)');
    db.pragma('wal_checkpoint(TRUNCATE)');
    const before = statSync(path).size;
    const cp = startBackgroundCheckpoint(path, { intervalMs: 5 });
    const ins = db.prepare('INSERT INTO t VALUES (?)');
    const batch = db.transaction(() => {
      for (let i = 0; i < 500; i++) ins.run(Buffer.alloc(2000, i % 256));
    });
    try {
      batch();
      await until(() => statSync(path).size > before + 900_000);
      const wal = `${path}-wal`;
      const walAfterFirst = statSync(wal).size;
      // Once the worker has caught up, a write starts the WAL over at its beginning instead of appending.
      await until(() => {
        const size = statSync(wal).size;
        ins.run(Buffer.alloc(10));
        return statSync(wal).size === size;
      });
      batch();
      expect(statSync(wal).size).toBeLessThan(walAfterFirst * 1.5);
    } finally {
      await cp.stop();
      db.close();
    }
    const check = new Database(path, { readonly: true });
    expect(check.prepare('SELECT COUNT(*) AS n FROM t WHERE length(x) = 2000').get()).toEqual({ n: 1000 });
    check.close();
  });

  it('reports a database it cannot open and still stops cleanly', async () => {
    let failed: Error | undefined;
    const cp = startBackgroundCheckpoint(join(dir, 'missing', 'x.db'), {
      onError: (e) => {
        failed = e;
      },
    });
    await until(() => failed !== undefined);
    expect(failed?.message).toMatch(/open/i);
    await cp.stop();
    await cp.stop();
  });

  it('runs under the SQLite store by default and stops with close()', async () => {
    const path = join(dir, 'store.db');
    const store = createSqliteStore({ path, checkpointIntervalMs: 5 });
    await store.migrate();
    const before = statSync(path).size;
    for (let i = 0; i < 300; i++) {
      await store.grants.recordOneTime({ appId: 'a', openid: `o${i}`, templateId: 't', scene: i, now: 1 });
    }
    await until(() => statSync(path).size > before);
    await store.close();
    expect(statSync(path).size).toBeGreaterThan(before);
  });
});
