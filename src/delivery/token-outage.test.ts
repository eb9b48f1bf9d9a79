// The dispatcher with the real SDK client and the emulator as WeChat, when no access token can be had: messages go
// back unsent (no attempt used), 45009 from the token endpoint pauses the app until the quota resets, and a backlog
// does not ask a failing token endpoint once per message.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { APPID, ONE_TIME, SECRET, testEmulator, type TestEmulator } from '../emulator/test-support.js';
import { createSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Store } from '../store/store.js';
import { createWeChatClient, errcodeInfo } from '../wechat/index.js';
import type { TokenStore } from '../wechat/token-store.js';
import { createMemoryTokenStore } from '../wechat/token-stores/memory.js';
import { createDispatcher, type DispatcherOptions } from './dispatcher.js';
import { createMemoryRateLimiter } from './rate-limit/memory.js';
import { nextQuotaReset } from './outcome.js';

let dir: string;
let store: Store;
let emu: TestEmulator;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wxsub-token-outage-'));
  store = createSqliteStore({ path: join(dir, 'db.sqlite') });
  await store.migrate();
  emu = await testEmulator();
});
afterEach(async () => {
  await store.close();
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
});

const opts: DispatcherOptions = {
  concurrency: 4,
  batchSize: 50,
  leaseMs: 30_000,
  pollIntervalMs: 20,
  maxAttempts: 8,
  backoffBaseMs: 500,
  backoffMaxMs: 60_000,
};

/** Grants `openid` scene 1 on both sides and enqueues a one-time message; returns its id. */
async function enqueue(openid: string): Promise<string> {
  const now = emu.clock.now();
  emu.state.grantOneTime(APPID, openid, ONE_TIME, 1);
  await store.grants.recordOneTime({ appId: APPID, openid, templateId: ONE_TIME, scene: 1, now });
  const r = await store.outbox.enqueueMessage({
    appId: APPID,
    kind: 'one-time',
    openid,
    templateId: ONE_TIME,
    scene: 1,
    payload: { title: '提醒', content: '到货了' },
    now,
  });
  if (!r.ok) throw new Error('enqueue failed');
  return r.message.id;
}

/** Emulated users of the test app beyond the seed's two. */
function users(n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    const openid = `oTokenOutage${String(i).padStart(16, '0')}`;
    emu.state.createUser(APPID, { openid, nickname: `u${i}` });
    return openid;
  });
}

/** Runs the dispatcher for `minutes` of emulated time, one cycle every 10 s. */
async function run(d: ReturnType<typeof createDispatcher>, minutes: number): Promise<void> {
  for (let i = 0; i < minutes * 6; i++) {
    await d.runOnce();
    emu.clock.advance(10_000);
  }
}

function dispatcherWith(tokenStore: TokenStore, onTokenRequest = () => {}) {
  const wx = createWeChatClient(
    {
      fetch: (url, init) => {
        if (String(url).includes('/cgi-bin/stable_token')) onTokenRequest();
        return emu.fetch(url, init);
      },
      clock: emu.clock,
      tokenStore,
      sleep: async () => {},
    },
    { appId: APPID, secret: SECRET, baseUrl: 'https://api.weixin.qq.com' },
  );
  return createDispatcher(
    {
      store,
      wechat: () => wx,
      clock: emu.clock,
      random: () => 0.5,
      rateLimiter: createMemoryRateLimiter({ ratePerSecond: 1000 }),
      errcodeAction: (c) => errcodeInfo(c).action,
    },
    opts,
  );
}

describe('no access token to be had', () => {
  it('a token store outage (Redis down) keeps messages queued unsent, then they go once each', async () => {
    const openids = users(3);
    const ids = await Promise.all(openids.map(enqueue));
    let down = true;
    const inner = createMemoryTokenStore();
    const fail = () => Promise.reject(new Error('Connection is closed.'));
    const tokenStore: TokenStore = {
      get: (k) => (down ? fail() : inner.get(k)),
      put: (k, t) => (down ? fail() : inner.put(k, t)),
      tryAcquireLease: (...a) => (down ? fail() : inner.tryAcquireLease(...a)),
      releaseLease: (...a) => (down ? fail() : inner.releaseLease(...a)),
      invalidate: (...a) => (down ? fail() : inner.invalidate(...a)),
      reserveForceRefresh: (...a) => (down ? fail() : inner.reserveForceRefresh(...a)),
      close: () => inner.close(),
    };
    const d = dispatcherWith(tokenStore);
    await run(d, 5);
    for (const id of ids) {
      expect(await store.outbox.getMessage(id)).toMatchObject({
        status: 'queued',
        attempts: 0,
        errorCode: 'DELIVERY_TOKEN_UNAVAILABLE',
      });
    }
    expect(d.status().tokenUnavailable).toEqual([
      expect.objectContaining({
        appId: APPID,
        reason: expect.stringContaining('Connection is closed') as unknown,
      }),
    ]);
    expect(d.status().counters.tokenErrors).toBeGreaterThan(0);
    down = false;
    await run(d, 1.5); // the wait is at most a minute
    for (const id of ids) expect((await store.outbox.getMessage(id))?.status).toBe('sent');
    for (const openid of openids) expect(emu.state.inbox(APPID, openid)).toHaveLength(1);
    expect(d.status().tokenUnavailable).toEqual([]);
  });

  it('a failing token endpoint is asked once per wait, not once per queued message', async () => {
    const ids = await Promise.all(users(20).map(enqueue));
    emu.state.setFaults({ path: '/cgi-bin/stable_token', errcodes: { '-1': 1 } });
    let tokenRequests = 0;
    const d = dispatcherWith(createMemoryTokenStore(), () => tokenRequests++);
    await run(d, 2); // 12 cycles, each finding all 20 messages due without the per-app wait
    const waits = d.status().tokenUnavailable[0]?.failures ?? 0;
    expect(waits).toBeGreaterThanOrEqual(5); // 1, 2, 4, 8, 16, 32, 60 s …
    expect(tokenRequests).toBeLessThanOrEqual(waits * 4); // the SDK's own retries of a -1 included
    for (const id of ids) expect((await store.outbox.getMessage(id))?.attempts).toBe(0);
    emu.state.clearFaults();
    await run(d, 1.5);
    for (const id of ids) expect((await store.outbox.getMessage(id))?.status).toBe('sent');
  });

  it('45009 from the token endpoint pauses the app until the daily reset, then its messages go', async () => {
    const [u] = users(1);
    const id = await enqueue(u as string);
    emu.state.setQuota(APPID, '/cgi-bin/stable_token', { dailyLimit: 1 });
    await emu.call('/cgi-bin/stable_token', {
      grant_type: 'client_credential',
      appid: APPID,
      secret: SECRET,
    });
    const d = dispatcherWith(createMemoryTokenStore());
    await run(d, 10);
    const reset = nextQuotaReset(emu.clock.now());
    expect(await store.outbox.getMessage(id)).toMatchObject({
      status: 'queued',
      attempts: 0,
      errorCode: 'DELIVERY_APP_PAUSED',
      nextAttemptAt: reset,
    });
    expect(await store.outbox.pausedApps(emu.clock.now())).toEqual([
      expect.objectContaining({ appId: APPID, until: reset }),
    ]);
    emu.clock.set(reset + 1000);
    await run(d, 0.5);
    expect((await store.outbox.getMessage(id))?.status).toBe('sent');
  });
});
