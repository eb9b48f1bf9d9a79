// In-process token-bucket rate limiter: one bucket per key, for a single service instance.
import { burstOf, type RateLimitOptions, type RateLimiter } from '../rate-limit.js';

/**
 * Creates an in-process token bucket limiter (used when no REDIS_URL is configured).
 * @example const limiter = createMemoryRateLimiter({ ratePerSecond: 500 }); await limiter.take('wxapp', Date.now())
 */
export function createMemoryRateLimiter(options: RateLimitOptions): RateLimiter {
  const perMs = options.ratePerSecond / 1000;
  const burst = burstOf(options);
  const buckets = new Map<string, { tokens: number; ts: number }>();
  return {
    take(key, now) {
      let b = buckets.get(key);
      if (b === undefined) {
        b = { tokens: burst, ts: now };
        buckets.set(key, b);
      }
      if (now > b.ts) {
        b.tokens = Math.min(burst, b.tokens + (now - b.ts) * perMs);
        b.ts = now;
      }
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return Promise.resolve(0);
      }
      return Promise.resolve(Math.max(1, Math.ceil((1 - b.tokens) / perMs)));
    },
    close() {
      buckets.clear();
      return Promise.resolve();
    },
  };
}
