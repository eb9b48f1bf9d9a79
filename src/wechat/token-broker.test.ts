// Token broker edge cases with a fake HTTP layer (waiting on another process's lease, lease timeout, refresh-ahead cap, budget, store sharing, invalidation races), and refresh races between instances against the emulator.
import { afterEach, describe, expect, it } from 'vitest';
import { APPID, SECRET, testEmulator, type TestEmulator } from '../emulator/test-support.js';
import { isAppError } from '../errors.js';
import { ManualClock } from '../util/clock.js';
import { createWeChatClient, type WeChatClient } from './client.js';
import type { CallSpec, Http } from './http.js';
import { silentLogger } from './redact.js';
import { createTokenBroker, type TokenBrokerOptions, type TokenMode } from './token-broker.js';
import { createMemoryTokenStore } from './token-stores/memory.js';
import type { TokenStore } from './token-store.js';

function fakeHttp(expiresIn = 7200) {
  const calls: CallSpec[] = [];
  const http: Http = {
    hosts: { api: 'http://x', mp: 'http://x', open: 'http://x' },
    totalTimeoutMs: 30_000,
    async call(spec) {
      calls.push(spec);
      return { access_token: `T${calls.length}`, expires_in: expiresIn };
    },
    async close() {},
  };
  return { http, calls };
}

const tick = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A promise that resolves when `open()` is called: holds a reply or a store call back. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

/** Waits (a few ms at a time, 1 s at most) until `cond()` holds. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await tick(2);
  if (!cond()) throw new Error('condition never held');
}

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

  it('never hands out a token it is invalidating, even while the store still holds it', async () => {
    const clock = new ManualClock();
    const inner = createMemoryTokenStore();
    // A networked store (PostgreSQL, Redis): invalidate takes a round trip, and a concurrent get is answered first.
    const slowInvalidate = gate();
    const store: TokenStore = {
      ...inner,
      invalidate: async (k, v) => {
        await slowInvalidate.wait;
        return inner.invalidate(k, v);
      },
    };
    const { http, calls } = fakeHttp();
    const b = broker(store, clock, http);
    expect((await b.getToken()).value).toBe('T1');
    // WeChat answered 40001 for T1; while the invalidation is on its way, another send asks for a token.
    const invalidating = b.invalidateToken('T1');
    const concurrent = await b.getToken();
    slowInvalidate.open();
    await invalidating;
    expect(concurrent.value).toBe('T2');
    expect(b.peek()?.value).toBe('T2');
    expect((await store.get(b.key))?.value).toBe('T2');
    expect(calls).toHaveLength(2);
  });
});

describe('token broker: refreshes racing across instances (emulator)', () => {
  let emu: TestEmulator | undefined;
  const clients: WeChatClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await emu?.close();
    emu = undefined;
  });

  /** One token store shared by every instance (as PostgreSQL, Redis or SQLite would be), counting refused leases. */
  function sharedStore() {
    const inner = createMemoryTokenStore();
    let refusedLeases = 0;
    const store: TokenStore = {
      ...inner,
      tryAcquireLease: async (...a) => {
        const ok = await inner.tryAcquireLease(...a);
        if (!ok) refusedLeases++;
        return ok;
      },
    };
    return { store, refusedLeases: () => refusedLeases };
  }

  /** WeChat issues the token at once, but the first reply of `path` reaches the caller only when `late` opens. */
  function lateFirstReply(e: TestEmulator, path: string, late: { wait: Promise<void> }): typeof fetch {
    let first = true;
    return async (input, init) => {
      const res = await e.fetch(input, init);
      if (first && String(input).includes(path)) {
        first = false;
        await late.wait;
      }
      return res;
    };
  }

  /** One service instance: its own SDK client (own lease owner) on the shared store. */
  function instance(e: TestEmulator, store: TokenStore, tokenMode: TokenMode, f: typeof fetch = e.fetch) {
    const c = createWeChatClient(
      { fetch: f, clock: e.clock, tokenStore: store },
      { appId: APPID, secret: SECRET, tokenMode, baseUrl: 'https://api.weixin.qq.com' },
    );
    clients.push(c);
    return c;
  }

  /** Tracks whether a promise has settled. */
  function settled(p: Promise<unknown>): () => boolean {
    let done = false;
    p.then(
      () => (done = true),
      () => (done = true),
    );
    return () => done;
  }

  it('the refresh lease outlives a slow token fetch (inside the HTTP budget): one fetch, a token WeChat keeps accepting', async () => {
    const e = (emu = await testEmulator());
    const { store, refusedLeases } = sharedStore();
    const late = gate();
    const a = instance(e, store, 'classic', lateFirstReply(e, '/cgi-bin/token', late));
    const b = instance(e, store, 'classic');
    const pa = a.getAccessToken();
    await until(() => e.state.counters(APPID).tokenFetches.classic === 1);
    e.clock.advance(15_001); // A is still inside its 30 s HTTP budget (a retried attempt, a slow network)
    const pb = b.getAccessToken();
    const bDone = settled(pb);
    await until(() => bDone() || refusedLeases() > 0); // B either refreshed on its own or is waiting for A
    late.open();
    const [ta, tb] = await Promise.all([pa, pb]);
    const fetches = e.state.counters(APPID).tokenFetches.classic;
    e.clock.advance(6 * 60_000); // past the 5-minute overlap a second classic token would have opened
    const stored = (await store.get(`token:${APPID}:classic`))?.value;
    expect({ fetches, tb, stored, storedAccepted: typeof e.state.checkToken(stored) !== 'number' }).toEqual({
      fetches: 1,
      tb: ta,
      stored: ta,
      storedAccepted: true,
    });
  });

  it('a refresh that lost its lease anyway does not put its older token over the newer one', async () => {
    const e = (emu = await testEmulator());
    const { store } = sharedStore();
    const late = gate();
    const a = instance(e, store, 'classic', lateFirstReply(e, '/cgi-bin/token', late));
    const b = instance(e, store, 'classic');
    const pa = a.getAccessToken();
    await until(() => e.state.counters(APPID).tokenFetches.classic === 1);
    e.clock.advance(60_001); // A stalled past any lease (a paused VM): B refreshes too, and stores first
    const tb = await b.getAccessToken();
    late.open();
    const ta = await pa;
    e.clock.advance(6 * 60_000);
    const stored = (await store.get(`token:${APPID}:classic`))?.value;
    expect({ ta, stored, storedAccepted: typeof e.state.checkToken(stored) !== 'number' }).toEqual({
      ta: tb,
      stored: tb,
      storedAccepted: true,
    });
  });

  it('a force refresh waits for a normal refresh in flight, so the revoked token is not put over the forced one', async () => {
    const e = (emu = await testEmulator());
    const { store, refusedLeases } = sharedStore();
    const late = gate();
    const worker = instance(e, store, 'stable', lateFirstReply(e, '/cgi-bin/stable_token', late));
    // `wxsub token --force-refresh` (an operator revoking a leaked token) on another process.
    const operator = instance(e, store, 'stable');
    const pw = worker.getAccessToken();
    await until(() => e.state.counters(APPID).tokenFetches.stable === 1);
    const pf = operator.forceRefreshToken();
    const forceDone = settled(pf);
    await until(() => forceDone() || refusedLeases() > 0); // the force either went ahead or is waiting for the worker
    late.open();
    const [old, forced] = await Promise.all([pw, pf]);
    expect(old).not.toBe(forced);
    expect(typeof e.state.checkToken(old)).toBe('number'); // the forced refresh revoked it
    expect(typeof e.state.checkToken(forced)).not.toBe('number');
    expect((await store.get(`token:${APPID}:stable`))?.value).toBe(forced);
  });
});
