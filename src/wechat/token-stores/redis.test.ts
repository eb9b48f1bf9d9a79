// Runs the TokenStore contract against the Redis adapter under a throwaway key prefix.
import { Redis } from 'ioredis';
import { describe } from 'vitest';
import { REDIS_URL, skipUnless, tempRedisPrefix } from '../../../test/support/services.js';
import { runTokenStoreContract } from './contract.js';
import { createRedisTokenStore } from './redis.js';

const skip = await skipUnless('redis');

if (skip) {
  describe.skipIf(true)('TokenStore contract: redis', () => {});
} else {
  const prefix = tempRedisPrefix();
  const clients: Redis[] = [];
  runTokenStoreContract('redis', {
    create: async () => {
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      clients.push(redis);
      return createRedisTokenStore(redis, { prefix });
    },
    cleanup: async () => {
      const c = clients[0] ?? new Redis(REDIS_URL);
      const keys = await c.keys(`${prefix}*`);
      if (keys.length > 0) await c.del(...keys);
      await Promise.all(clients.splice(0).map((r) => r.quit()));
      if (!clients.includes(c)) c.disconnect();
    },
  });
}
