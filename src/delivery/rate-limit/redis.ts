// Redis token-bucket rate limiter: one bucket per key in Redis, updated by a Lua script, shared by every instance.
import type { Redis } from 'ioredis';
import { burstOf, type RateLimitOptions, type RateLimiter } from '../rate-limit.js';

/** Options of {@link createRedisRateLimiter}. */
export type RedisRateLimitOptions = RateLimitOptions & {
  /** Prefix of every key this limiter writes. @default 'wxsub:rate:' */
  prefix?: string;
  /**
   * Whose clock the buckets run on: `'redis'`, the Redis server's (one clock for every instance, so one whose clock
   * runs ahead cannot stall the shared bucket for the others), or `'caller'`, the `now` passed to `take()` (for
   * tests that drive a manual clock).
   * @default 'redis'
   * @example createRedisRateLimiter(redis, { ratePerSecond: 10, time: 'caller' }) // then take('app', clock.now())
   */
  time?: 'redis' | 'caller';
};

// KEYS[1] bucket; ARGV: tokens per ms, burst, now (ms; '' = the server's TIME), ttl (ms). Returns 0 (granted) or ms
// to wait. Time only moves forward per bucket, so a clock that steps back cannot mint extra tokens.
const TAKE = `
local perMs = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
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
 * Creates a rate limiter whose buckets live in Redis, so N service instances share one rate per app. By default the
 * buckets run on the Redis server's clock and the `now` given to `take()` is ignored (see `time`).
 * The Redis client is the caller's: `close()` does not disconnect it.
 * @example const limiter = createRedisRateLimiter(new Redis(url), { ratePerSecond: 500, prefix: 'wxsub:rate:' })
 */
export function createRedisRateLimiter(redis: Redis, options: RedisRateLimitOptions): RateLimiter {
  const perMs = options.ratePerSecond / 1000;
  const burst = burstOf(options);
  const prefix = options.prefix ?? 'wxsub:rate:';
  const callerTime = options.time === 'caller';
  // A full bucket refills in burst/perMs ms; keep the key a little longer than that, then let Redis drop it.
  const ttl = String(Math.ceil(burst / perMs) + 60_000);
  if (typeof (redis as unknown as Partial<WithTake>).wxsubRateTake !== 'function') {
    redis.defineCommand('wxsubRateTake', { numberOfKeys: 1, lua: TAKE });
  }
  const client = redis as unknown as WithTake;
  return {
    async take(key, now) {
      const at = callerTime ? String(now) : '';
      return Number(await client.wxsubRateTake(prefix + key, String(perMs), String(burst), at, ttl));
    },
    close() {
      return Promise.resolve();
    },
  };
}
