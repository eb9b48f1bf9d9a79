// Tests of the spent-nonce purge: what it deletes (only long-expired links), in batches, on its timer, and past failures.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Store } from '../store/store.js';
import { NONCE_PURGE_GRACE_MS, startNoncePurge, type NoncePurge } from './nonce-purge.js';

const T0 = 1_800_000_000_000;

describe('startNoncePurge', () => {
  let dir: string;
  let store: Store;
  let purge: NoncePurge | undefined;
  let now = T0;
  const clock = { now: () => now };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-purge-'));
    store = createSqliteStore({ path: join(dir, 'wxsub.db') });
    await store.migrate();
    now = T0;
  });
  afterEach(async () => {
    await purge?.stop();
    purge = undefined;
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Whether a link with this nonce and expiry would be refused as replayed (its nonce is still on record). */
  const spent = async (nonce: string, expiresAt: number) =>
    !(await store.nonces.use({ nonce, expiresAt, now }).then((fresh) => fresh));

  it('deletes nonces of links expired over the grace period, in batches, and keeps the rest', async () => {
    for (let k = 0; k < 10; k++) await store.nonces.use({ nonce: `old${k}`, expiresAt: T0 + k, now: T0 });
    await store.nonces.use({ nonce: 'recent', expiresAt: T0 + 600_000, now: T0 });
    await store.nonces.use({ nonce: 'live', expiresAt: T0 + NONCE_PURGE_GRACE_MS * 2, now: T0 });
    now = T0 + 600_000 + NONCE_PURGE_GRACE_MS - 1; // `recent` expired just under one grace period ago: kept
    purge = startNoncePurge({ store, clock, intervalMs: 3_600_000, batchSize: 3 });
    expect(await purge.runOnce()).toBe(10); // four statements of at most 3
    expect(await spent('recent', T0 + 600_000)).toBe(true);
    expect(await spent('live', T0 + NONCE_PURGE_GRACE_MS * 2)).toBe(true);
    expect(await spent('old0', T0)).toBe(false); // gone: the nonce could be written again
    expect(await purge.runOnce()).toBe(1); // old0, just re-spent above, expired long ago
  });

  it('runs on its timer, and a failing purge is logged and retried at the next tick', async () => {
    await store.nonces.use({ nonce: 'old', expiresAt: T0, now: T0 });
    now = T0 + NONCE_PURGE_GRACE_MS + 1;
    let failures = 1;
    const flaky: Store = {
      ...store,
      nonces: {
        ...store.nonces,
        async purgeExpired(cutoff, limit) {
          if (failures-- > 0) throw new Error('database is locked');
          return store.nonces.purgeExpired(cutoff, limit);
        },
      },
    };
    const lines: { msg?: string; level?: number }[] = [];
    const logger = pino(
      { level: 'debug' },
      { write: (line: string) => void lines.push(JSON.parse(line) as { msg?: string }) },
    );
    purge = startNoncePurge({ store: flaky, clock, intervalMs: 20, logger });
    for (let i = 0; i < 100 && !lines.some((l) => l.msg === 'spent consent nonces purged'); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(lines.map((l) => l.msg)).toEqual([
      'could not purge spent consent nonces',
      'spent consent nonces purged',
    ]);
    expect(await spent('old', T0)).toBe(false);
  });
});
