// The TokenStore port: where access tokens (and jsapi tickets) live, shared by every process of one app, plus the refresh lease and the force-refresh budget.

/** A cached credential (access token or jsapi ticket) as the store returns it. Times are ms since the epoch. */
export type StoredToken = {
  /** The secret itself. */
  value: string;
  /** When WeChat stops accepting it. */
  expiresAt: number;
  /** When it was fetched. */
  fetchedAt: number;
  /** Bumped by every {@link TokenStore.put} under this key; never reused, also across invalidations. */
  generation: number;
  /** For a jsapi ticket: the access-token generation it was fetched with. */
  boundGeneration?: number | undefined;
};

/** The token columns of a SQL token-store row (numbers may arrive as strings, as pg returns BIGINT). */
export type TokenRow = {
  value: string | null;
  expires_at: number | string | null;
  fetched_at: number | string | null;
  generation: number;
  bound_generation: number | null;
};

/** Maps a SQL row to a {@link StoredToken}; `undefined` when there is no row or its token was invalidated. */
export function tokenFromRow(r: TokenRow | undefined): StoredToken | undefined {
  return r && r.value !== null
    ? {
        value: r.value,
        expiresAt: Number(r.expires_at),
        fetchedAt: Number(r.fetched_at),
        generation: r.generation,
        boundGeneration: r.bound_generation ?? undefined,
      }
    : undefined;
}

/** What {@link TokenStore.put} stores. */
export type NewToken = {
  value: string;
  expiresAt: number;
  fetchedAt: number;
  boundGeneration?: number | undefined;
};

/** Limits of the force-refresh budget (stable_token `force_refresh=true`: 20 a day, ≥30 s apart). */
export type ForceRefreshBudget = {
  /** Max forced refreshes per WeChat day. @default 20 */
  dailyLimit: number;
  /** Minimum time between two forced refreshes in ms. @default 30000 */
  minIntervalMs: number;
  /** The current WeChat day (China time), e.g. `2026-01-01`; a new key resets the count. */
  dayKey: string;
  /** When the current day ends (ms since the epoch), to compute `retryAfterMs`. */
  dayEndsAt: number;
};

/** Result of {@link TokenStore.reserveForceRefresh}. */
export type ForceRefreshDecision =
  { ok: true; usedToday: number } | { ok: false; reason: 'daily-limit' | 'too-soon'; retryAfterMs: number };

/**
 * Shared storage for the token broker. Every method is atomic across all processes that share the store.
 * Implementations: memory, SQLite, PostgreSQL, Redis (`./token-stores/*`); all pass `runTokenStoreContract`.
 * `key` is chosen by the broker, e.g. `token:<appid>:stable` or `jsapi:<appid>`.
 */
export interface TokenStore {
  /** The current credential under `key`, or undefined when there is none or it was invalidated. */
  get(key: string): Promise<StoredToken | undefined>;
  /**
   * Tries to take the refresh lease of `key` for `ttlMs` from `now`. Succeeds when nobody holds it, it has
   * expired, or `owner` already holds it (then it is extended). Only the holder should fetch a new credential.
   */
  tryAcquireLease(key: string, owner: string, ttlMs: number, now: number): Promise<boolean>;
  /** Releases the lease if `owner` still holds it. */
  releaseLease(key: string, owner: string): Promise<void>;
  /**
   * Stores a new credential; its generation is the previous one + 1 (1 for the first).
   * With `ifGeneration` the write is conditional (compare-and-put): it only happens when the current credential
   * still has that generation, or when there is none (never stored, or invalidated). Otherwise the store is left
   * alone and the current credential is returned instead, so a refresh that lost a race never puts an older token
   * over a newer one. Pass the generation read before fetching, or 0 when nothing was read (generations start at 1).
   * @example const saved = await store.put(key, fresh, read?.generation ?? 0); // adopt `saved` either way
   */
  put(key: string, token: NewToken, ifGeneration?: number): Promise<StoredToken>;
  /**
   * Invalidates the credential only if its value is still `value` (compare-and-invalidate).
   * @returns true when it was invalidated; false when another value is current (someone already refreshed).
   */
  invalidate(key: string, value: string): Promise<boolean>;
  /** Atomically checks the force-refresh budget of `key` and, when allowed, records one use at `now`. */
  reserveForceRefresh(key: string, now: number, budget: ForceRefreshBudget): Promise<ForceRefreshDecision>;
  /** Releases resources the store itself opened (not ones passed in). */
  close(): Promise<void>;
}

/** Shared budget rule so every adapter decides the same way. */
export function decideForceRefresh(
  state: { day: string | null; count: number; lastAt: number | null },
  now: number,
  budget: ForceRefreshBudget,
): { decision: ForceRefreshDecision; next?: { day: string; count: number; lastAt: number } } {
  const count = state.day === budget.dayKey ? state.count : 0;
  if (state.lastAt !== null && now - state.lastAt < budget.minIntervalMs) {
    return {
      decision: { ok: false, reason: 'too-soon', retryAfterMs: budget.minIntervalMs - (now - state.lastAt) },
    };
  }
  if (count >= budget.dailyLimit) {
    return {
      decision: { ok: false, reason: 'daily-limit', retryAfterMs: Math.max(0, budget.dayEndsAt - now) },
    };
  }
  return {
    decision: { ok: true, usedToday: count + 1 },
    next: { day: budget.dayKey, count: count + 1, lastAt: now },
  };
}

const CHINA_OFFSET_MS = 8 * 3_600_000;

/** The WeChat day (China time, UTC+8) of `now` and when it ends. */
export function wechatDay(now: number): { dayKey: string; dayEndsAt: number } {
  const shifted = now + CHINA_OFFSET_MS;
  const dayStart = shifted - (((shifted % 86_400_000) + 86_400_000) % 86_400_000);
  return {
    dayKey: new Date(dayStart).toISOString().slice(0, 10),
    dayEndsAt: dayStart + 86_400_000 - CHINA_OFFSET_MS,
  };
}
