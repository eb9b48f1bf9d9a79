// Redis TokenStore (ioredis): tokens as JSON under a key prefix, a SET-PX lease, Lua scripts for compare-and-put, compare-and-invalidate, compare-and-delete and the budget.
import type { Redis } from 'ioredis';
import type { ForceRefreshDecision, NewToken, StoredToken, TokenStore } from '../token-store.js';

/** Options of {@link createRedisTokenStore}. */
export type RedisTokenStoreOptions = {
  /** Prefix of every key this store writes. @default 'wxsub:' */
  prefix?: string;
};

// KEYS[1]=token KEYS[2]=generation counter; ARGV[1]=json without generation, ARGV[2]=ifGeneration ('' = unconditional).
// Returns the stored JSON: the new credential, or the current one when the condition failed.
const PUT = `
if ARGV[2] ~= '' then
  local cur = redis.call('GET', KEYS[1])
  if cur and tonumber(cjson.decode(cur)['generation']) ~= tonumber(ARGV[2]) then return cur end
end
local gen = redis.call('INCR', KEYS[2])
local t = cjson.decode(ARGV[1])
t['generation'] = gen
local s = cjson.encode(t)
redis.call('SET', KEYS[1], s)
return s`;
// KEYS[1]=token; ARGV[1]=value
const INVALIDATE = `
local s = redis.call('GET', KEYS[1])
if not s then return 0 end
local t = cjson.decode(s)
if t['value'] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`;
// KEYS[1]=lease; ARGV[1]=owner ARGV[2]=now ARGV[3]=ttl. Value is "<until>|<owner>"; the logical expiry uses the caller's clock, PX only collects garbage.
const LEASE = `
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 1, true)
  local untilMs = tonumber(string.sub(v, 1, sep - 1))
  local owner = string.sub(v, sep + 1)
  if owner ~= ARGV[1] and untilMs > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], tostring(tonumber(ARGV[2]) + tonumber(ARGV[3])) .. '|' .. ARGV[1], 'PX', ARGV[3])
return 1`;
// KEYS[1]=lease; ARGV[1]=owner
const RELEASE = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local sep = string.find(v, '|', 1, true)
if string.sub(v, sep + 1) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;
// KEYS[1]=budget; ARGV: now, dayKey, dailyLimit, minIntervalMs, dayEndsAt → {ok, usedTodayOrReason, retryAfter}
const RESERVE = `
local now = tonumber(ARGV[1])
local s = redis.call('GET', KEYS[1])
local day, count, lastAt = nil, 0, nil
if s then local t = cjson.decode(s); day = t['day']; count = t['count']; lastAt = t['lastAt'] end
if day ~= ARGV[2] then count = 0 end
if lastAt and now - lastAt < tonumber(ARGV[4]) then return {0, 'too-soon', tonumber(ARGV[4]) - (now - lastAt)} end
if count >= tonumber(ARGV[3]) then return {0, 'daily-limit', math.max(0, tonumber(ARGV[5]) - now)} end
redis.call('SET', KEYS[1], cjson.encode({day = ARGV[2], count = count + 1, lastAt = now}), 'PX', 172800000)
return {1, count + 1, 0}`;

/**
 * Creates a TokenStore over an ioredis client (not closed by `close()`), all keys under `prefix`.
 * @example const store = createRedisTokenStore(new Redis(url), { prefix: 'myapp:wxsub:' });
 */
export function createRedisTokenStore(redis: Redis, options: RedisTokenStoreOptions = {}): TokenStore {
  const prefix = options.prefix ?? 'wxsub:';
  const k = (key: string, part: string) => `${prefix}${key}:${part}`;
  const parse = (s: string | null): StoredToken | undefined => {
    if (s === null) return undefined;
    const t = JSON.parse(s) as {
      value: string;
      expiresAt: number;
      fetchedAt: number;
      generation: number;
      boundGeneration?: number | null;
    };
    return {
      value: t.value,
      expiresAt: t.expiresAt,
      fetchedAt: t.fetchedAt,
      generation: t.generation,
      boundGeneration: t.boundGeneration ?? undefined,
    };
  };
  return {
    async get(key) {
      return parse(await redis.get(k(key, 'token')));
    },
    async tryAcquireLease(key, owner, ttlMs, now) {
      return (
        (await redis.eval(
          LEASE,
          1,
          k(key, 'lease'),
          owner,
          String(now),
          String(Math.max(1, Math.ceil(ttlMs))),
        )) === 1
      );
    },
    async releaseLease(key, owner) {
      await redis.eval(RELEASE, 1, k(key, 'lease'), owner);
    },
    async put(key, token: NewToken, ifGeneration?: number) {
      const body: Record<string, unknown> = {
        value: token.value,
        expiresAt: token.expiresAt,
        fetchedAt: token.fetchedAt,
      };
      if (token.boundGeneration !== undefined) body.boundGeneration = token.boundGeneration;
      const s = (await redis.eval(
        PUT,
        2,
        k(key, 'token'),
        k(key, 'gen'),
        JSON.stringify(body),
        ifGeneration === undefined ? '' : String(ifGeneration),
      )) as string;
      return parse(s) as StoredToken;
    },
    async invalidate(key, value) {
      return (await redis.eval(INVALIDATE, 1, k(key, 'token'), value)) === 1;
    },
    async reserveForceRefresh(key, now, budget): Promise<ForceRefreshDecision> {
      const r = (await redis.eval(
        RESERVE,
        1,
        k(key, 'budget'),
        String(now),
        budget.dayKey,
        String(budget.dailyLimit),
        String(budget.minIntervalMs),
        String(budget.dayEndsAt),
      )) as [number, number | string, number];
      if (r[0] === 1) return { ok: true, usedToday: Number(r[1]) };
      return {
        ok: false,
        reason: r[1] === 'too-soon' ? 'too-soon' : 'daily-limit',
        retryAfterMs: Number(r[2]),
      };
    },
    async close() {},
  };
}
