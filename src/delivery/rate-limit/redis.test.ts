// Runs the rate limiter contract against the Redis limiter on the real local Redis (throwaway key prefix).
import { Redis } from 'ioredis';
import { afterAll, describe, expect } from 'vitest';
import { REDIS_URL, skipUnless, tempRedisPrefix } from '../../../test/support/services.js';
import { runRateLimiterContract } from './contract.js';
import { createRedisRateLimiter } from './redis.js';

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
  runRateLimiterContract('redis', {
    shared: true,
    create(options) {
      // A new prefix per test, shared by the limiters one test creates.
      const name = expect.getState().currentTestName ?? '';
      if (name !== currentTest) {
        currentTest = name;
        prefix = `${tempRedisPrefix()}rate:`;
        prefixes.add(prefix);
      }
      const c = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      clients.push(c);
      return createRedisRateLimiter(c, { ...options, prefix });
    },
  });
});
