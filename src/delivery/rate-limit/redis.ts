// Redis token-bucket rate limiter: one bucket per key in Redis, updated by a Lua script, shared by every instance.
import type { Redis } from 'ioredis';
import { burstOf, type RateLimitOptions, type RateLimiter } from '../rate-limit.js';

/** Options of {@link createRedisRateLimiter}. */
export type RedisRateLimitOptions = RateLimitOptions & {
  /** Prefix of every key this limiter writes. @default 'wxsub:rate:' */
  prefix?: string;
};

// KEYS[1] bucket; ARGV: tokens per ms, burst, now (ms), ttl (ms). Returns 0 (granted) or ms to wait.
// Time only moves forward per bucket, so instances with slightly skewed clocks cannot mint extra tokens.
const TAKE = `
local perMs = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * perMs)
  ts = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.max(1, math.ceil((1 - tokens) / perMs))
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return wait
`;

type WithTake = Redis & {
  wxsubRateTake(key: string, perMs: string, burst: string, now: string, ttl: string): Promise<number>;
};

/**
 * Creates a rate limiter whose buckets live in Redis, so N service instances share one rate per app.
 * The Redis client is the caller's: `close()` does not disconnect it.
 * @example const limiter = createRedisRateLimiter(new Redis(url), { ratePerSecond: 500, prefix: 'wxsub:rate:' })
 */
export function createRedisRateLimiter(redis: Redis, options: RedisRateLimitOptions): RateLimiter {
  const perMs = options.ratePerSecond / 1000;
  const burst = burstOf(options);
  const prefix = options.prefix ?? 'wxsub:rate:';
  // A full bucket refills in burst/perMs ms; keep the key a little longer than that, then let Redis drop it.
  const ttl = String(Math.ceil(burst / perMs) + 60_000);
  if (typeof (redis as unknown as Partial<WithTake>).wxsubRateTake !== 'function') {
    redis.defineCommand('wxsubRateTake', { numberOfKeys: 1, lua: TAKE });
  }
  const client = redis as unknown as WithTake;
  return {
    async take(key, now) {
      return Number(await client.wxsubRateTake(prefix + key, String(perMs), String(burst), String(now), ttl));
    },
    close() {
      return Promise.resolve();
    },
  };
}
