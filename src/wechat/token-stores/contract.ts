// The one contract suite every TokenStore adapter must pass (memory, SQLite, PostgreSQL, Redis).
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { wechatDay, type ForceRefreshBudget, type TokenStore } from '../token-store.js';

/** How the contract suite gets stores of one adapter. */
export type TokenStoreContractOptions = {
  /** Returns a new store instance; all instances from one suite share the same backing data (unless `sharesAcrossInstances` is false). */
  create: () => Promise<TokenStore>;
  /** Runs once after the suite (drop the temp database, delete the temp prefix…). */
  cleanup?: () => Promise<void>;
  /** Whether two instances from `create` see each other's writes. @default true */
  sharesAcrossInstances?: boolean;
};

const T0 = Date.UTC(2026, 0, 1, 12);

function budget(now: number, over: Partial<ForceRefreshBudget> = {}): ForceRefreshBudget {
  return { dailyLimit: 20, minIntervalMs: 30_000, ...wechatDay(now), ...over };
}

/**
 * Registers the TokenStore contract tests for one adapter.
 * @example runTokenStoreContract('sqlite', { create: async () => createSqliteTokenStore(file) })
 */
export function runTokenStoreContract(name: string, options: TokenStoreContractOptions): void {
  describe(`TokenStore contract: ${name}`, () => {
    const opened: TokenStore[] = [];
    const open = async () => {
      const s = await options.create();
      opened.push(s);
      return s;
    };
    const key = () => `token:wx${randomBytes(6).toString('hex')}:stable`;
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });
    afterAll(async () => {
      await options.cleanup?.();
    });

    it('returns nothing for an unknown key', async () => {
      const s = await open();
      expect(await s.get(key())).toBeUndefined();
    });

    it('stores tokens with a generation that goes up by one per put', async () => {
      const s = await open();
      const k = key();
      const a = await s.put(k, { value: 'A', expiresAt: T0 + 7_200_000, fetchedAt: T0 });
      expect(a).toMatchObject({ value: 'A', expiresAt: T0 + 7_200_000, fetchedAt: T0, generation: 1 });
      const b = await s.put(k, { value: 'B', expiresAt: T0 + 9_000_000, fetchedAt: T0 + 1 });
      expect(b.generation).toBe(2);
      expect(await s.get(k)).toMatchObject({
        value: 'B',
        expiresAt: T0 + 9_000_000,
        fetchedAt: T0 + 1,
        generation: 2,
      });
    });

    it('keeps boundGeneration (jsapi tickets)', async () => {
      const s = await open();
      const k = key();
      await s.put(k, { value: 'T', expiresAt: T0 + 1000, fetchedAt: T0, boundGeneration: 7 });
      expect((await s.get(k))?.boundGeneration).toBe(7);
    });

    it('keeps keys apart', async () => {
      const s = await open();
      const k1 = key();
      const k2 = key();
      await s.put(k1, { value: 'one', expiresAt: T0 + 1000, fetchedAt: T0 });
      expect(await s.get(k2)).toBeUndefined();
      expect(await s.invalidate(k2, 'one')).toBe(false);
      expect((await s.get(k1))?.value).toBe('one');
    });

    it('invalidates only when the value is still the one that failed', async () => {
      const s = await open();
      const k = key();
      await s.put(k, { value: 'old', expiresAt: T0 + 1000, fetchedAt: T0 });
      await s.put(k, { value: 'new', expiresAt: T0 + 2000, fetchedAt: T0 });
      expect(await s.invalidate(k, 'old')).toBe(false);
      expect((await s.get(k))?.value).toBe('new');
      expect(await s.invalidate(k, 'new')).toBe(true);
      expect(await s.get(k)).toBeUndefined();
      expect(await s.invalidate(k, 'new')).toBe(false);
      const c = await s.put(k, { value: 'next', expiresAt: T0 + 3000, fetchedAt: T0 });
      expect(c.generation).toBe(3);
    });

    it('puts conditionally: only over the generation read, or when no credential is current', async () => {
      const s = await open();
      const k = key();
      await s.tryAcquireLease(k, 'a', 10_000, T0); // a lease alone makes no credential
      const a = await s.put(k, { value: 'A', expiresAt: T0 + 1000, fetchedAt: T0 }, 0);
      expect(a).toMatchObject({ value: 'A', generation: 1 });
      // Read nothing, but another process stored A meanwhile: A stays and is returned.
      expect(await s.put(k, { value: 'LATE', expiresAt: T0 + 900, fetchedAt: T0 - 1 }, 0)).toMatchObject({
        value: 'A',
        expiresAt: T0 + 1000,
        fetchedAt: T0,
        generation: 1,
      });
      expect(await s.put(k, { value: 'B', expiresAt: T0 + 2000, fetchedAt: T0 + 1 }, 1)).toMatchObject({
        value: 'B',
        generation: 2,
      });
      expect(await s.put(k, { value: 'OLD', expiresAt: T0 + 1500, fetchedAt: T0 }, 1)).toMatchObject({
        value: 'B',
        generation: 2,
      });
      expect(await s.get(k)).toMatchObject({
        value: 'B',
        expiresAt: T0 + 2000,
        fetchedAt: T0 + 1,
        generation: 2,
      });
      // Once the current credential is invalidated nothing is current, so the write goes ahead.
      expect(await s.invalidate(k, 'B')).toBe(true);
      expect(await s.put(k, { value: 'C', expiresAt: T0 + 3000, fetchedAt: T0 + 2 }, 2)).toMatchObject({
        value: 'C',
        generation: 3,
      });
      // Without a condition the write always happens.
      expect(await s.put(k, { value: 'D', expiresAt: T0 + 4000, fetchedAt: T0 + 3 })).toMatchObject({
        value: 'D',
        generation: 4,
      });
    });

    it('lets exactly one of many concurrent conditional puts through', async () => {
      const s = await open();
      const k = key();
      await s.put(k, { value: 'seed', expiresAt: T0 + 1000, fetchedAt: T0 });
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          s.put(k, { value: `v${i}`, expiresAt: T0 + 2000, fetchedAt: T0 }, 1),
        ),
      );
      const winner = await s.get(k);
      expect(winner).toMatchObject({ generation: 2 });
      expect(results.map((r) => [r.value, r.generation])).toEqual(results.map(() => [winner?.value, 2]));
    });

    it('grants the refresh lease to one owner until it expires or is released', async () => {
      const s = await open();
      const k = key();
      expect(await s.tryAcquireLease(k, 'a', 10_000, T0)).toBe(true);
      expect(await s.tryAcquireLease(k, 'b', 10_000, T0 + 1)).toBe(false);
      expect(await s.tryAcquireLease(k, 'a', 10_000, T0 + 2)).toBe(true);
      await s.releaseLease(k, 'b');
      expect(await s.tryAcquireLease(k, 'b', 10_000, T0 + 3)).toBe(false);
      expect(await s.tryAcquireLease(k, 'b', 10_000, T0 + 10_003)).toBe(true);
      await s.releaseLease(k, 'b');
      expect(await s.tryAcquireLease(k, 'c', 10_000, T0 + 10_004)).toBe(true);
    });

    it('gives the lease to exactly one of many concurrent callers', async () => {
      const s = await open();
      const k = key();
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => s.tryAcquireLease(k, `o${i}`, 10_000, T0)),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
    });

    it('guards the force-refresh budget: 30 s apart, N a day, reset on a new day', async () => {
      const s = await open();
      const k = key();
      expect(await s.reserveForceRefresh(k, T0, budget(T0, { dailyLimit: 3 }))).toEqual({
        ok: true,
        usedToday: 1,
      });
      expect(await s.reserveForceRefresh(k, T0 + 10_000, budget(T0 + 10_000, { dailyLimit: 3 }))).toEqual({
        ok: false,
        reason: 'too-soon',
        retryAfterMs: 20_000,
      });
      expect(await s.reserveForceRefresh(k, T0 + 30_000, budget(T0 + 30_000, { dailyLimit: 3 }))).toEqual({
        ok: true,
        usedToday: 2,
      });
      expect(await s.reserveForceRefresh(k, T0 + 60_000, budget(T0 + 60_000, { dailyLimit: 3 }))).toEqual({
        ok: true,
        usedToday: 3,
      });
      const refused = await s.reserveForceRefresh(k, T0 + 90_000, budget(T0 + 90_000, { dailyLimit: 3 }));
      expect(refused).toMatchObject({ ok: false, reason: 'daily-limit' });
      const tomorrow = T0 + 86_400_000;
      expect(await s.reserveForceRefresh(k, tomorrow, budget(tomorrow, { dailyLimit: 3 }))).toEqual({
        ok: true,
        usedToday: 1,
      });
    });

    it('lets only one of many concurrent force refreshes through', async () => {
      const s = await open();
      const k = key();
      const results = await Promise.all(
        Array.from({ length: 10 }, () => s.reserveForceRefresh(k, T0, budget(T0))),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(1);
    });

    if (options.sharesAcrossInstances !== false) {
      it('shares tokens, invalidations, leases and budgets between instances', async () => {
        const s1 = await open();
        const s2 = await open();
        const k = key();
        await s1.put(k, { value: 'shared', expiresAt: T0 + 1000, fetchedAt: T0 });
        expect((await s2.get(k))?.value).toBe('shared');
        expect((await s2.put(k, { value: 'stale', expiresAt: T0 + 1000, fetchedAt: T0 }, 0)).value).toBe(
          'shared',
        );
        expect(await s2.tryAcquireLease(k, 'x', 10_000, T0)).toBe(true);
        expect(await s1.tryAcquireLease(k, 'y', 10_000, T0)).toBe(false);
        expect(await s2.invalidate(k, 'shared')).toBe(true);
        expect(await s1.get(k)).toBeUndefined();
        expect((await s1.reserveForceRefresh(k, T0, budget(T0))).ok).toBe(true);
        expect((await s2.reserveForceRefresh(k, T0 + 1, budget(T0 + 1))).ok).toBe(false);
      });
    }
  });
}
