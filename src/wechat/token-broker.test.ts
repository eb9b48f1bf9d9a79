// Token broker edge cases with a fake HTTP layer: waiting on another process's lease, lease timeout, refresh-ahead cap, budget and store sharing.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../errors.js';
import { ManualClock } from '../util/clock.js';
import type { CallSpec, Http } from './http.js';
import { silentLogger } from './redact.js';
import { createTokenBroker, type TokenBrokerOptions } from './token-broker.js';
import { createMemoryTokenStore } from './token-stores/memory.js';
import type { TokenStore } from './token-store.js';

function fakeHttp(expiresIn = 7200) {
  const calls: CallSpec[] = [];
  const http: Http = {
    hosts: { api: 'http://x', mp: 'http://x', open: 'http://x' },
    async call(spec) {
      calls.push(spec);
      return { access_token: `T${calls.length}`, expires_in: expiresIn };
    },
    async close() {},
  };
  return { http, calls };
}

const tick = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function broker(
  store: TokenStore,
  clock: ManualClock,
  http: Http,
  over: Partial<TokenBrokerOptions> = {},
  owner = 'me',
) {
  return createTokenBroker(
    { http, clock, store, logger: silentLogger, ownerId: owner, sleep: tick },
    { appId: 'wx1', secret: 's', leaseWaitMs: 2_000, pollIntervalMs: 1, ...over },
  );
}

describe('token broker', () => {
  it('waits for another process holding the lease and adopts the token it stores', async () => {
    const clock = new ManualClock();
    const store = createMemoryTokenStore();
    const { http, calls } = fakeHttp();
    const b = broker(store, clock, http);
    await store.tryAcquireLease(b.key, 'other-process', 10_000, clock.now());
    const pending = b.getToken();
    await new Promise((r) => setTimeout(r, 5));
    await store.put(b.key, {
      value: 'FROM_OTHER',
      expiresAt: clock.now() + 7_200_000,
      fetchedAt: clock.now(),
    });
    expect((await pending).value).toBe('FROM_OTHER');
    expect(calls).toHaveLength(0);
  });

  it('fails with WX_TOKEN_LEASE_TIMEOUT when the holder never delivers', async () => {
    const clock = new ManualClock();
    const store = createMemoryTokenStore();
    const { http, calls } = fakeHttp();
    const b = broker(store, clock, http, { leaseWaitMs: 30 });
    await store.tryAcquireLease(b.key, 'stuck', 60_000, clock.now());
    const err = await b.getToken().catch((e: unknown) => e);
    expect(isAppError(err, 'WX_TOKEN_LEASE_TIMEOUT')).toBe(true);
    expect(calls).toHaveLength(0);
  });

  it('takes over an expired lease of a crashed process', async () => {
    const clock = new ManualClock();
    const store = createMemoryTokenStore();
    const { http, calls } = fakeHttp();
    const b = broker(store, clock, http);
    await store.tryAcquireLease(b.key, 'crashed', 1_000, clock.now());
    clock.advance(1_001);
    expect((await b.getToken()).value).toBe('T1');
    expect(calls).toHaveLength(1);
  });

  it('does not loop on short-lived tokens (refresh-ahead capped at half the lifetime)', async () => {
    const clock = new ManualClock();
    const { http, calls } = fakeHttp(300);
    const b = broker(createMemoryTokenStore(), clock, http, { refreshAheadMs: 600_000 });
    await b.getToken();
    await b.getToken();
    expect(calls).toHaveLength(1);
    clock.advance(151_000);
    await b.getToken();
    await new Promise((r) => setTimeout(r, 5));
    expect(calls).toHaveLength(2);
  });

  it('invalidates only the token that failed, and enforces the daily force budget', async () => {
    const clock = new ManualClock();
    const store = createMemoryTokenStore();
    const { http, calls } = fakeHttp();
    const b = broker(store, clock, http, { forceRefresh: { dailyLimit: 2, minIntervalMs: 30_000 } });
    const t1 = await b.getToken();
    await store.put(b.key, { value: 'NEWER', expiresAt: clock.now() + 7_200_000, fetchedAt: clock.now() });
    await b.invalidateToken(t1.value);
    expect((await b.getToken()).value).toBe('NEWER');
    expect(calls).toHaveLength(1);
    await b.forceRefreshToken();
    clock.advance(30_000);
    await b.forceRefreshToken();
    clock.advance(30_000);
    const err = await b.forceRefreshToken().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WX_FORCE_REFRESH_BUDGET', details: { reason: 'daily-limit' } });
    expect(calls.filter((c) => (c.body as { force_refresh?: boolean }).force_refresh === true)).toHaveLength(
      2,
    );
  });
});
