// The one contract suite every RateLimiter implementation must pass (run by memory.test.ts and redis.test.ts).
import { describe, expect, it } from 'vitest';
import type { RateLimitOptions, RateLimiter } from '../rate-limit.js';

/** Hooks of {@link runRateLimiterContract}. */
export type RateLimiterContractHooks = {
  /** A fresh limiter; limiters created within one test must share buckets when `shared` is true. */
  create(options: RateLimitOptions): Promise<RateLimiter> | RateLimiter;
  /** Whether two limiters created in one test share their buckets (Redis: same prefix). */
  shared: boolean;
};

/** Registers the rate limiter contract tests. */
export function runRateLimiterContract(name: string, hooks: RateLimiterContractHooks): void {
  const T0 = 1_700_000_000_000;
  describe(`RateLimiter contract: ${name}`, () => {
    it('grants the burst at once, then asks to wait about 1/rate', async () => {
      const l = await hooks.create({ ratePerSecond: 10, burst: 3 });
      try {
        const got = [await l.take('a', T0), await l.take('a', T0), await l.take('a', T0)];
        expect(got).toEqual([0, 0, 0]);
        const wait = await l.take('a', T0);
        expect(wait).toBeGreaterThanOrEqual(90);
        expect(wait).toBeLessThanOrEqual(100);
      } finally {
        await l.close();
      }
    });

    it('refills at the configured rate, never above the burst', async () => {
      const l = await hooks.create({ ratePerSecond: 10, burst: 2 });
      try {
        await l.take('a', T0);
        await l.take('a', T0);
        expect(await l.take('a', T0 + 50)).toBeGreaterThan(0);
        expect(await l.take('a', T0 + 100)).toBe(0);
        // A long pause refills to the burst only.
        const later = T0 + 60_000;
        expect([await l.take('a', later), await l.take('a', later)]).toEqual([0, 0]);
        expect(await l.take('a', later)).toBeGreaterThan(0);
      } finally {
        await l.close();
      }
    });

    it('keeps one bucket per key', async () => {
      const l = await hooks.create({ ratePerSecond: 1, burst: 1 });
      try {
        expect(await l.take('app1', T0)).toBe(0);
        expect(await l.take('app1', T0)).toBeGreaterThan(0);
        expect(await l.take('app2', T0)).toBe(0);
      } finally {
        await l.close();
      }
    });

    it('never grants more than the burst to concurrent takers', async () => {
      const l = await hooks.create({ ratePerSecond: 1, burst: 10 });
      try {
        const results = await Promise.all(Array.from({ length: 50 }, () => l.take('hot', T0)));
        expect(results.filter((w) => w === 0)).toHaveLength(10);
      } finally {
        await l.close();
      }
    });

    it('sustains the rate over time, not more', async () => {
      const l = await hooks.create({ ratePerSecond: 100, burst: 5 });
      try {
        let granted = 0;
        for (let t = 0; t <= 1000; t += 2) {
          if ((await l.take('s', T0 + t)) === 0) granted++;
        }
        // 5 (burst) + 100 per second over 1 s
        expect(granted).toBeGreaterThanOrEqual(100);
        expect(granted).toBeLessThanOrEqual(106);
      } finally {
        await l.close();
      }
    });

    if (hooks.shared) {
      it('shares one bucket between instances', async () => {
        const a = await hooks.create({ ratePerSecond: 1, burst: 4 });
        const b = await hooks.create({ ratePerSecond: 1, burst: 4 });
        try {
          const got = await Promise.all([
            a.take('k', T0),
            b.take('k', T0),
            a.take('k', T0),
            b.take('k', T0),
            a.take('k', T0),
            b.take('k', T0),
          ]);
          expect(got.filter((w) => w === 0)).toHaveLength(4);
        } finally {
          await a.close();
          await b.close();
        }
      });
    }
  });
}
