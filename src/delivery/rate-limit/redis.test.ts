// Runs the rate limiter contract against the Redis limiter on the real local Redis (throwaway key prefix), plus its server clock.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { REDIS_URL, skipUnless, tempRedisPrefix } from '../../../test/support/services.js';
import { runRateLimiterContract } from './contract.js';
import { createRedisRateLimiter, type RedisRateLimitOptions } from './redis.js';

const skip = await skipUnless('redis');

describe.skipIf(skip)('redis rate limiter', () => {
  const clients: Redis[] = [];
  let prefix = tempRedisPrefix();
  const prefixes = new Set<string>();
  let currentTest = '';
  afterAll(async () => {
    const first = clients[0];
    for (const p of prefixes) {
      const keys = first === undefined ? [] : await first.keys(`${p}*`);
      if (first !== undefined && keys.length > 0) await first.del(...keys);
    }
    for (const c of clients) c.disconnect();
  });
  /** A limiter on its own connection; the limiters one test creates share a new prefix (= the same buckets). */
  function open(options: RedisRateLimitOptions) {
    const name = expect.getState().currentTestName ?? '';
    if (name !== currentTest) {
      currentTest = name;
      prefix = `${tempRedisPrefix()}rate:`;
      prefixes.add(prefix);
    }
    const c = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    clients.push(c);
    return createRedisRateLimiter(c, { ...options, prefix });
  }

  // The contract drives time through `now`, so it runs the buckets on the caller's clock.
  runRateLimiterContract('redis', {
    shared: true,
    create: (options) => open({ ...options, time: 'caller' }),
  });

  describe("on the Redis server's clock (the default)", () => {
    const T0 = 1_767_225_600_000;

    it('grants the burst at once, then asks to wait about 1/rate', async () => {
      const l = open({ ratePerSecond: 10, burst: 3 });
      expect([await l.take('a', 0), await l.take('a', 0), await l.take('a', 0)]).toEqual([0, 0, 0]);
      const wait = await l.take('a', 0);
      expect(wait).toBeGreaterThanOrEqual(50);
      expect(wait).toBeLessThanOrEqual(100);
    });

    it('an instance whose clock runs a minute ahead does not stall the shared bucket for the others', async () => {
      const fast = open({ ratePerSecond: 10, burst: 1 });
      const slow = open({ ratePerSecond: 10, burst: 1 });
      expect(await fast.take('wxapp', T0 + 60_000)).toBe(0); // F sends once, then goes idle or dies
      const wait = await slow.take('wxapp', T0); // the bucket is empty: fine
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(100);
      // One token's worth of time later S (correct clock) is served, not a minute later.
      await new Promise((r) => setTimeout(r, wait + 10));
      expect(await slow.take('wxapp', T0 + wait + 10)).toBe(0);
    });
  });
});
