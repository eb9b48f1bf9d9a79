// The access-token broker: stable_token (or classic /cgi-bin/token), refresh ahead of expiry, one refresh at a time per process, a refresh lease across processes, compare-and-put, compare-and-invalidate, and the force-refresh budget.
import { AppError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { WeChatApiError, WeChatBadResponseError } from './errors.js';
import type { Http } from './http.js';
import type { Logger } from './redact.js';
import { wechatDay, type StoredToken, type TokenStore } from './token-store.js';

/**
 * How access tokens are fetched: `stable` = POST /cgi-bin/stable_token (default), `classic` = GET /cgi-bin/token.
 * @see https://developers.weixin.qq.com/doc/service/api/base/api_getstableaccesstoken
 * @see https://developers.weixin.qq.com/doc/service/en/Basic_Information/Get_access_token.html
 */
export type TokenMode = 'stable' | 'classic';

/** Options of {@link createTokenBroker}. */
export type TokenBrokerOptions = {
  appId: string;
  secret: string;
  /** @default 'stable' */
  mode?: TokenMode | undefined;
  /**
   * Refresh this long before expiry (capped at half the token's lifetime). Keep it under 5 min in stable mode:
   * WeChat only issues the next stable token in the last 5 minutes. @default 180000
   */
  refreshAheadMs?: number | undefined;
  /**
   * Lifetime of the cross-process refresh lease in ms. It must outlive the token fetch, or a second process
   * refreshes too (a conditional store write then keeps the newer token, but WeChat has issued two).
   * @default the HTTP layer's total budget (`totalTimeoutMs`, 30000) + 15000, e.g. 45000
   */
  leaseTtlMs?: number | undefined;
  /** How long to wait for another process's refresh before failing with WX_TOKEN_LEASE_TIMEOUT, in ms. @default 20000 */
  leaseWaitMs?: number | undefined;
  /** Poll interval while another process holds the lease, in ms. @default 50 */
  pollIntervalMs?: number | undefined;
  /** Force-refresh budget. @default { dailyLimit: 20, minIntervalMs: 30000 } */
  forceRefresh?: { dailyLimit?: number; minIntervalMs?: number } | undefined;
};

/** Dependencies of {@link createTokenBroker}. */
export type TokenBrokerDeps = {
  http: Http;
  clock: Clock;
  store: TokenStore;
  logger: Logger;
  /** Unique id of this broker instance (lease owner). */
  ownerId: string;
  sleep?: (ms: number) => Promise<void>;
};

/** An access token with its store generation. */
export type AccessToken = { value: string; generation: number; expiresAt: number };

/** The token broker of one app. */
export type TokenBroker = {
  /** The store key used for this app's token. */
  readonly key: string;
  /** A valid token (from the local copy when fresh, else the store, else WeChat). */
  getToken(): Promise<AccessToken>;
  /** The local copy when it is fresh (no I/O, no promise): the send hot path. */
  peek(): AccessToken | undefined;
  /**
   * Drops `failedToken` locally and in the store, but only if it is still the current one. From the call on, this
   * broker never hands `failedToken` out again, even if a store read races with the store's invalidation.
   */
  invalidateToken(failedToken: string): Promise<void>;
  /**
   * Forces a new token (stable_token force_refresh); guarded by the shared budget. Takes the refresh lease like a
   * normal refresh, so it waits for one in flight instead of being overwritten by it.
   */
  forceRefreshToken(): Promise<AccessToken>;
};

/** Parses a token endpoint reply. */
function readToken(
  reply: Record<string, unknown>,
  path: string,
  now: number,
): { value: string; expiresAt: number; fetchedAt: number } {
  const value = reply.access_token;
  const expiresIn = typeof reply.expires_in === 'string' ? Number(reply.expires_in) : reply.expires_in;
  if (
    typeof value !== 'string' ||
    value === '' ||
    typeof expiresIn !== 'number' ||
    !Number.isFinite(expiresIn) ||
    expiresIn <= 0
  ) {
    throw new WeChatBadResponseError({
      site: { method: 'POST', path },
      reason: 'access_token or expires_in missing',
    });
  }
  return { value, expiresAt: now + expiresIn * 1000, fetchedAt: now };
}

/** Added to the HTTP budget for the lease: store round trips around the fetch and clock skew between instances. */
const LEASE_MARGIN_MS = 15_000;

/** Creates the token broker of one app. */
export function createTokenBroker(deps: TokenBrokerDeps, options: TokenBrokerOptions): TokenBroker {
  const mode = options.mode ?? 'stable';
  const key = `token:${options.appId}:${mode}`;
  const refreshAheadMs = options.refreshAheadMs ?? 180_000;
  const leaseTtlMs = options.leaseTtlMs ?? deps.http.totalTimeoutMs + LEASE_MARGIN_MS;
  const leaseWaitMs = options.leaseWaitMs ?? 20_000;
  const pollIntervalMs = options.pollIntervalMs ?? 50;
  const dailyLimit = options.forceRefresh?.dailyLimit ?? 20;
  const minIntervalMs = options.forceRefresh?.minIntervalMs ?? 30_000;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const { clock, store, http, logger } = deps;

  let local: AccessToken | undefined;
  let inflight: Promise<AccessToken> | undefined;
  let forcing: Promise<AccessToken> | undefined;
  // Refreshes of this process, normal or forced, run one after the other: the lease belongs to the process (a second
  // refresh of the same owner would share it, and the first to finish would release it under the other).
  let tail: Promise<unknown> = Promise.resolve();
  // The last token WeChat rejected: treated as absent wherever it is read, since a networked store may still
  // return it while (or even after) our compare-and-invalidate is on its way. Cleared once another one is adopted.
  let rejected: string | undefined;
  const usable = (t: StoredToken | undefined): t is StoredToken => t !== undefined && t.value !== rejected;

  const refreshAt = (t: { expiresAt: number; fetchedAt?: number }) =>
    t.expiresAt -
    Math.min(
      refreshAheadMs,
      Math.max(0, (t.expiresAt - (t.fetchedAt ?? t.expiresAt - 2 * refreshAheadMs)) / 2),
    );
  /** `fetched`: `t` is what WeChat just gave us, so it is good even if it equals a token rejected earlier. */
  const adopt = (t: StoredToken, fetched = false): AccessToken => {
    if (fetched || t.value !== rejected) rejected = undefined;
    local = { value: t.value, generation: t.generation, expiresAt: t.expiresAt };
    localRefreshAt = refreshAt(t);
    return local;
  };
  let localRefreshAt = 0;

  async function fetchFromWeChat(
    force: boolean,
  ): Promise<{ value: string; expiresAt: number; fetchedAt: number }> {
    const path = mode === 'stable' ? '/cgi-bin/stable_token' : '/cgi-bin/token';
    try {
      const reply =
        mode === 'stable'
          ? await http.call({
              method: 'POST',
              path,
              body: {
                grant_type: 'client_credential',
                appid: options.appId,
                secret: options.secret,
                force_refresh: force,
              },
              idempotent: !force,
            })
          : await http.call({
              method: 'GET',
              path,
              query: { grant_type: 'client_credential', appid: options.appId, secret: options.secret },
              idempotent: true,
            });
      const t = readToken(reply, path, clock.now());
      logger.info(
        { appId: options.appId, mode, force, expiresInS: Math.round((t.expiresAt - t.fetchedAt) / 1000) },
        'fetched access token',
      );
      return t;
    } catch (err) {
      // On the token endpoint a "token invalid" code means the AppSecret is wrong: refreshing cannot help.
      if (err instanceof WeChatApiError && err.action === 'refresh-token-and-retry') {
        throw new WeChatApiError({
          errcode: err.errcode,
          errmsg: err.errmsg,
          raw: err.raw,
          site: { method: mode === 'stable' ? 'POST' : 'GET', path },
          action: 'fail',
        });
      }
      throw err;
    }
  }

  async function reserveForceRefresh(): Promise<void> {
    const now = clock.now();
    const decision = await store.reserveForceRefresh(key, now, {
      dailyLimit,
      minIntervalMs,
      ...wechatDay(now),
    });
    if (!decision.ok) {
      throw new AppError('WX_FORCE_REFRESH_BUDGET', {
        details: { reason: decision.reason, retryAfterMs: decision.retryAfterMs },
      });
    }
  }

  /** Gets a new token under the cross-process lease (or adopts the one another process stores meanwhile). */
  async function refresh(force: boolean): Promise<AccessToken> {
    const giveUpAt = performance.now() + leaseWaitMs;
    let reserved = false;
    for (;;) {
      const now = clock.now();
      const stored = await store.get(key);
      if (!force && usable(stored) && now < refreshAt(stored)) return adopt(stored);
      if (await store.tryAcquireLease(key, deps.ownerId, leaseTtlMs, now)) {
        try {
          const again = await store.get(key);
          if (!force && usable(again) && clock.now() < refreshAt(again)) return adopt(again);
          if (force && !reserved) {
            await reserveForceRefresh();
            reserved = true;
          }
          const fresh = await fetchFromWeChat(force);
          // Compare-and-put against what we read under the lease: if another process refreshed meanwhile (our lease
          // ran out), its token is at least as new as ours, so keep it. A forced stable token is the exception: it
          // revokes every token issued before it, and any issued after it is the same token.
          const saved = await store.put(
            key,
            fresh,
            force && mode === 'stable' ? undefined : (again?.generation ?? 0),
          );
          if (saved.value === fresh.value) return adopt(saved, true);
          logger.info(
            { appId: options.appId, mode },
            'another process stored a newer access token; adopting it',
          );
          if (usable(saved) && clock.now() < saved.expiresAt) return adopt(saved);
          // What it stored is unusable too (rejected meanwhile): go round again, within the wait budget.
        } finally {
          await store
            .releaseLease(key, deps.ownerId)
            .catch((err: unknown) => logger.warn({ err: String(err) }, 'could not release token lease'));
        }
      }
      // Another process is refreshing. A token that still works is good enough meanwhile (not for a forced refresh).
      if (!force && usable(stored) && now < stored.expiresAt) return adopt(stored);
      if (performance.now() >= giveUpAt) {
        throw new AppError('WX_TOKEN_LEASE_TIMEOUT', {
          details: { appId: options.appId, waitedMs: leaseWaitMs },
        });
      }
      await sleep(pollIntervalMs);
    }
  }

  function serially(run: () => Promise<AccessToken>): Promise<AccessToken> {
    const p = tail.then(run);
    tail = p.catch(() => undefined);
    return p;
  }

  /** Joins the normal refresh of this process, or starts one after any forced refresh under way. */
  function singleFlight(): Promise<AccessToken> {
    inflight ??= serially(() => refresh(false)).finally(() => {
      inflight = undefined;
    });
    return inflight;
  }

  /** Joins the forced refresh of this process, or starts one after any refresh under way. */
  function forceFlight(): Promise<AccessToken> {
    forcing ??= serially(() => refresh(true)).finally(() => {
      forcing = undefined;
    });
    return forcing;
  }

  return {
    key,
    peek() {
      return local !== undefined && clock.now() < localRefreshAt ? local : undefined;
    },
    getToken() {
      const now = clock.now();
      const l = local;
      if (l !== undefined && now < localRefreshAt) return Promise.resolve(l);
      if (l !== undefined && now < l.expiresAt - 5_000) {
        // In the refresh-ahead window: serve the current token and refresh in the background.
        singleFlight().catch((err: unknown) =>
          logger.warn(
            { err: err instanceof Error ? err.message : String(err) },
            'background token refresh failed',
          ),
        );
        return Promise.resolve(l);
      }
      return singleFlight();
    },
    async invalidateToken(failedToken) {
      rejected = failedToken;
      if (local?.value === failedToken) {
        local = undefined;
        localRefreshAt = 0;
      }
      const dropped = await store.invalidate(key, failedToken);
      logger.info({ appId: options.appId, droppedFromStore: dropped }, 'access token rejected by WeChat');
    },
    forceRefreshToken() {
      return forceFlight();
    },
  };
}
