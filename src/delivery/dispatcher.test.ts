// Dispatcher unit tests on a real SQLite store with a scripted stand-in for the WeChat client and a manual clock.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { OneTimePayload, Store } from '../store/store.js';
import { ManualClock } from '../util/clock.js';
import { createDispatcher, kickingStore, type DeliverySender, type DispatcherOptions } from './dispatcher.js';
import { createMemoryRateLimiter } from './rate-limit/memory.js';

const APP = 'wxapp';
const TPL = 'tpl-one';
const payload: OneTimePayload = { title: 'Hello', content: 'World' };

type Call = { kind: 'one-time' | 'notification'; touser: string };
type Script = (call: Call, n: number) => unknown;

function apiError(errcode: number): Error {
  return Object.assign(new Error(`errcode ${errcode}`), {
    name: 'WeChatApiError',
    errcode,
    errmsg: `e${errcode}`,
  });
}
function timeoutAfterLeaving(): Error {
  return Object.assign(new Error('timed out'), { name: 'WeChatTimeoutError', requestMayHaveLeft: true });
}

let dir: string;
let store: Store;
let clock: ManualClock;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wxsub-dispatch-'));
  store = createSqliteStore({ path: join(dir, 'db.sqlite') });
  await store.migrate();
  clock = new ManualClock(Date.UTC(2026, 0, 1, 2, 0, 0));
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function scripted(script: Script): { sender: DeliverySender; calls: Call[] } {
  const calls: Call[] = [];
  const perUser = new Map<string, number>();
  const run = (call: Call) => {
    calls.push(call);
    const n = (perUser.get(call.touser) ?? 0) + 1;
    perUser.set(call.touser, n);
    const r = script(call, n);
    return r instanceof Error ? Promise.reject(r) : Promise.resolve(r);
  };
  return {
    calls,
    sender: {
      sendOneTime: (i) => run({ kind: 'one-time', touser: i.touser }),
      sendNotification: (i) => run({ kind: 'notification', touser: i.touser }),
    },
  };
}

const opts: DispatcherOptions = {
  concurrency: 4,
  batchSize: 50,
  leaseMs: 30_000,
  pollIntervalMs: 20,
  maxAttempts: 4,
  backoffBaseMs: 1000,
  backoffMaxMs: 8000,
};

async function enqueueOneTime(openid: string, scene = 1): Promise<string> {
  await store.grants.recordOneTime({ appId: APP, openid, templateId: TPL, scene, now: clock.now() });
  const r = await store.outbox.enqueueMessage({
    appId: APP,
    kind: 'one-time',
    openid,
    templateId: TPL,
    scene,
    payload,
    now: clock.now(),
  });
  if (!r.ok) throw new Error('enqueue failed');
  return r.message.id;
}

/** Gives `openid` one notification credit and enqueues a notification on it; returns the message id. */
async function enqueueNotification(openid: string): Promise<string> {
  await store.grants.addNotificationCredits({
    appId: APP,
    openid,
    templateId: 'tpl-n',
    count: 1,
    now: clock.now(),
  });
  const r = await store.outbox.enqueueMessage({
    appId: APP,
    kind: 'notification',
    openid,
    templateId: 'tpl-n',
    payload: { data: { thing1: { value: 'x' } } },
    now: clock.now(),
  });
  if (!r.ok) throw new Error('enqueue failed');
  return r.message.id;
}

/** Runs cycles, moving the clock past every backoff, until nothing is queued. */
async function drain(d: ReturnType<typeof createDispatcher>, maxCycles = 50): Promise<void> {
  for (let i = 0; i < maxCycles; i++) {
    await d.runOnce();
    const s = await store.outbox.countMessages({ appId: APP });
    if (s.queued === 0 && s.sending === 0) return;
    clock.advance(10_000);
  }
  throw new Error('did not drain');
}

describe('dispatcher', () => {
  it('sends, records sent and consumes the grant', async () => {
    const id = await enqueueOneTime('u1');
    const { sender, calls } = scripted(() => ({}));
    const d = createDispatcher({ store, wechat: () => sender, clock, random: () => 0.5 }, opts);
    expect(await d.runOnce()).toBe(1);
    expect(calls).toHaveLength(1);
    expect((await store.outbox.getMessage(id))?.status).toBe('sent');
    expect((await store.grants.get({ appId: APP, openid: 'u1', templateId: TPL, scene: 1 }))?.state).toBe(
      'consumed',
    );
    expect(d.status().counters).toMatchObject({ claimed: 1, sent: 1 });
  });

  it("retries -1 and (minuteLimit 'backoff') 45011 with backoff until success", async () => {
    const id = await enqueueOneTime('u1');
    const { sender, calls } = scripted((_c, n) => (n === 1 ? apiError(-1) : n === 2 ? apiError(45011) : {}));
    const d = createDispatcher(
      { store, wechat: () => sender, clock, random: () => 0.5 },
      { ...opts, minuteLimit: 'backoff' },
    );
    await d.runOnce();
    const m = await store.outbox.getMessage(id);
    expect(m).toMatchObject({
      status: 'queued',
      lastErrcode: -1,
      errorCode: 'DELIVERY_WECHAT_BUSY',
      nextAttemptAt: clock.now() + 500,
    });
    // Not due yet: nothing is claimed.
    expect(await d.runOnce()).toBe(0);
    await drain(d);
    expect(calls).toHaveLength(3);
    expect((await store.outbox.getMessage(id))?.status).toBe('sent');
  });

  it('gives up after maxAttempts and releases the grant', async () => {
    const id = await enqueueOneTime('u1');
    const { sender, calls } = scripted(() => apiError(-1));
    const d = createDispatcher({ store, wechat: () => sender, clock, random: () => 0.5 }, opts);
    await drain(d);
    expect(calls).toHaveLength(4);
    expect(await store.outbox.getMessage(id)).toMatchObject({
      status: 'failed',
      errorCode: 'DELIVERY_RETRIES_EXHAUSTED',
    });
    expect((await store.grants.get({ appId: APP, openid: 'u1', templateId: TPL, scene: 1 }))?.state).toBe(
      'available',
    );
  });

  it('43101 fails the message and revokes the grant', async () => {
    const id = await enqueueOneTime('u1');
    const { sender } = scripted(() => apiError(43101));
    const d = createDispatcher({ store, wechat: () => sender, clock }, opts);
    await d.runOnce();
    expect(await store.outbox.getMessage(id)).toMatchObject({
      status: 'failed',
      errorCode: 'DELIVERY_CONSENT_REVOKED',
      lastErrcode: 43101,
    });
    expect((await store.grants.get({ appId: APP, openid: 'u1', templateId: TPL, scene: 1 }))?.state).toBe(
      'revoked',
    );
  });

  it('a one-time timeout after the request left is retried; the 43101 that follows records sent', async () => {
    const id = await enqueueOneTime('u1');
    const { sender, calls } = scripted((_c, n) => (n === 1 ? timeoutAfterLeaving() : apiError(43101)));
    const d = createDispatcher({ store, wechat: () => sender, clock, random: () => 0.5 }, opts);
    await drain(d);
    expect(calls).toHaveLength(2);
    expect(await store.outbox.getMessage(id)).toMatchObject({
      status: 'sent',
      errorCode: 'DELIVERY_CONFIRMED_BY_43101',
    });
    expect((await store.grants.get({ appId: APP, openid: 'u1', templateId: TPL, scene: 1 }))?.state).toBe(
      'consumed',
    );
  });

  it('a notification timeout after the request left is recorded unknown and never resent', async () => {
    const id = await enqueueNotification('n1');
    const { sender, calls } = scripted(() => timeoutAfterLeaving());
    const d = createDispatcher({ store, wechat: () => sender, clock }, opts);
    await drain(d);
    expect(calls).toHaveLength(1);
    expect(await store.outbox.getMessage(id)).toMatchObject({
      status: 'unknown',
      errorCode: 'DELIVERY_OUTCOME_UNKNOWN',
    });
  });

  it('keeps the msgid of a notification', async () => {
    const id = await enqueueNotification('n1');
    const { sender } = scripted(() => ({ msgid: '1700827132819554304' }));
    await createDispatcher({ store, wechat: () => sender, clock }, opts).runOnce();
    expect(await store.outbox.getMessage(id)).toMatchObject({
      status: 'sent',
      msgid: '1700827132819554304',
    });
  });

  it('45009 pauses the app (shared through the store) until 00:00 Asia/Shanghai and stops sending its messages', async () => {
    for (let i = 0; i < 5; i++) await enqueueOneTime(`u${i}`);
    const { sender, calls } = scripted(() => apiError(45009));
    const d = createDispatcher({ store, wechat: () => sender, clock }, { ...opts, concurrency: 1 });
    await d.runOnce();
    // The first send hit the quota; the rest of the batch was put back without a request.
    expect(calls).toHaveLength(1);
    const reset = Date.UTC(2026, 0, 1, 16, 0, 0);
    expect(d.status().pausedApps).toEqual([
      { appId: APP, until: reset, reason: expect.stringContaining('45009') as unknown },
    ]);
    expect(await store.outbox.pausedApps(clock.now())).toMatchObject([{ appId: APP, until: reset }]);
    const stats = await store.outbox.countMessages({ appId: APP });
    expect(stats.queued).toBe(5);
    // Another instance sees the pause too and claims nothing of that app.
    const other = createDispatcher({ store, wechat: () => sender, clock }, opts);
    clock.advance(60_000);
    expect(await other.runOnce()).toBe(0);
    expect(calls).toHaveLength(1);
    // After the reset the messages go out.
    clock.set(reset + 1);
    const ok = scripted(() => ({}));
    const after = createDispatcher({ store, wechat: () => ok.sender, clock }, opts);
    await after.runOnce();
    expect(ok.calls).toHaveLength(5);
  });

  it('45011 pauses the app until the next minute; no message spends an attempt on it', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await enqueueOneTime(`u${i}`));
    clock.advance(42_000); // 02:00:42
    let limited = true;
    const { sender, calls } = scripted(() => (limited ? apiError(45011) : {}));
    const d = createDispatcher({ store, wechat: () => sender, clock }, { ...opts, concurrency: 1 });
    await d.runOnce();
    // One refused send; the rest of the batch went back without a request.
    expect(calls).toHaveLength(1);
    const resume = Date.UTC(2026, 0, 1, 2, 1, 1);
    expect(d.status().pausedApps).toEqual([
      { appId: APP, until: resume, reason: expect.stringContaining('45011') as unknown },
    ]);
    expect(await store.outbox.pausedApps(clock.now())).toMatchObject([{ appId: APP, until: resume }]);
    const first = await store.outbox.getMessage(ids[0] as string);
    expect(first).toMatchObject({
      status: 'queued',
      attempts: 0,
      lastErrcode: 45011,
      errorCode: 'DELIVERY_MINUTE_LIMIT',
      nextAttemptAt: resume,
    });
    for (const id of ids.slice(1))
      expect(await store.outbox.getMessage(id)).toMatchObject({ status: 'queued', attempts: 0 });
    // Still the same minute: nothing is sent.
    clock.advance(10_000);
    expect(await d.runOnce()).toBe(0);
    // A minute limit that goes on costs one refused send per minute, never an attempt.
    for (let minute = 0; minute < 10; minute++) {
      clock.set(Date.UTC(2026, 0, 1, 2, 1 + minute, 1));
      await d.runOnce();
    }
    expect(calls).toHaveLength(11);
    expect((await store.outbox.countMessages({ appId: APP })).queued).toBe(5);
    expect((await store.outbox.getMessage(ids[0] as string))?.attempts).toBe(0);
    // Once WeChat takes sends again, all go out.
    limited = false;
    clock.set(Date.UTC(2026, 0, 1, 2, 11, 1));
    await drain(d);
    expect(calls).toHaveLength(16);
    expect((await store.outbox.countMessages({ appId: APP })).sent).toBe(5);
  });

  it('47003/40003/40037 fail for good and give the grant back', async () => {
    const ids = [await enqueueOneTime('a'), await enqueueOneTime('b'), await enqueueOneTime('c')];
    const codes: Record<string, number> = { a: 47003, b: 40003, c: 40037 };
    const { sender } = scripted((c) => apiError(codes[c.touser] ?? 0));
    await createDispatcher({ store, wechat: () => sender, clock }, opts).runOnce();
    for (const [i, id] of ids.entries()) {
      const openid = ['a', 'b', 'c'][i] as string;
      expect(await store.outbox.getMessage(id)).toMatchObject({
        status: 'failed',
        errorCode: 'DELIVERY_REJECTED',
        lastErrcode: codes[openid],
      });
      expect((await store.grants.get({ appId: APP, openid, templateId: TPL, scene: 1 }))?.state).toBe(
        'available',
      );
    }
  });

  it('a message whose sender died is picked up after the lease and a 43101 then confirms delivery', async () => {
    const id = await enqueueOneTime('u1');
    // The dead instance claimed it, started the attempt (its request went through) and never recorded anything.
    const claimed = await store.outbox.claim({ owner: 'dead', limit: 10, leaseMs: 30_000, now: clock.now() });
    expect(claimed).toHaveLength(1);
    await store.outbox.markAttemptStarted({ ids: [id], owner: 'dead', now: clock.now() });
    const { sender, calls } = scripted(() => apiError(43101));
    const d = createDispatcher({ store, wechat: () => sender, clock }, opts);
    expect(await d.runOnce()).toBe(0);
    clock.advance(30_001);
    expect(await d.runOnce()).toBe(1);
    expect(calls).toHaveLength(1);
    expect(await store.outbox.getMessage(id)).toMatchObject({
      status: 'sent',
      errorCode: 'DELIVERY_CONFIRMED_BY_43101',
    });
  });

  it('a message a dead sender claimed but never started is sent normally after the lease; 43101 then fails it', async () => {
    const id = await enqueueOneTime('u1');
    await store.outbox.claim({ owner: 'dead', limit: 10, leaseMs: 30_000, now: clock.now() });
    const { sender, calls } = scripted(() => apiError(43101));
    const d = createDispatcher({ store, wechat: () => sender, clock }, opts);
    clock.advance(30_001);
    expect(await d.runOnce()).toBe(1);
    expect(calls).toHaveLength(1);
    // No earlier attempt can have reached WeChat, so 43101 means the consent is gone.
    expect(await store.outbox.getMessage(id)).toMatchObject({
      status: 'failed',
      attempts: 1,
      errorCode: 'DELIVERY_CONSENT_REVOKED',
    });
  });

  it('a crash leaves unknown only the attempts that started; the claimed-but-unsent go to another instance', async () => {
    for (let i = 0; i < 6; i++) {
      await enqueueNotification(`n${i}`);
    }
    // Instance A's store goes away with the process: every later call fails.
    let dead = false;
    const outbox = new Proxy(store.outbox, {
      get(target, key, receiver) {
        const v: unknown = Reflect.get(target, key, receiver);
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) =>
          dead
            ? Promise.reject(new Error('process is gone'))
            : (v as (...a: unknown[]) => unknown).apply(target, args);
      },
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const reachedA: string[] = [];
    const senderA: DeliverySender = {
      sendOneTime: () => Promise.resolve({}),
      async sendNotification(i) {
        reachedA.push(i.touser);
        await gate;
        return {};
      },
    };
    const a = createDispatcher(
      { store: { ...store, outbox }, wechat: () => senderA, clock },
      { ...opts, concurrency: 2, batchSize: 6, instanceId: 'A' },
    );
    a.start();
    for (let i = 0; i < 200 && reachedA.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect(reachedA).toHaveLength(2);
    expect(a.status().held).toBe(6);
    dead = true;
    clock.advance(opts.leaseMs + 1);

    const { sender: senderB, calls } = scripted(() => ({}));
    const b = createDispatcher({ store, wechat: () => senderB, clock }, { ...opts, instanceId: 'B' });
    expect(await b.runOnce()).toBe(4);
    expect(calls.map((c) => c.touser).sort()).toEqual(
      ['n0', 'n1', 'n2', 'n3', 'n4', 'n5'].filter((u) => !reachedA.includes(u)),
    );
    expect(await store.outbox.countMessages({ appId: APP })).toMatchObject({ sent: 4, unknown: 2 });

    // A comes back to life (for cleanup): fenced off, it sends nothing more and records nothing.
    dead = false;
    release();
    await a.stop();
    expect(reachedA).toHaveLength(2);
    expect(a.status().counters).toMatchObject({ sent: 0, leaseLost: 6 });
    expect(await store.outbox.countMessages({ appId: APP })).toMatchObject({ sent: 4, unknown: 2 });
  });

  it('a message enqueued through the kicking store is sent at once, not at the next poll', async () => {
    const { sender, calls } = scripted(() => ({}));
    const d = createDispatcher({ store, wechat: () => sender }, { ...opts, pollIntervalMs: 60_000 });
    d.start();
    await d.idle();
    const kicking = kickingStore(store, () => d.kick());
    await kicking.grants.recordOneTime({
      appId: APP,
      openid: 'k1',
      templateId: TPL,
      scene: 1,
      now: Date.now(),
    });
    const r = await kicking.outbox.enqueueMessage({
      appId: APP,
      kind: 'one-time',
      openid: 'k1',
      templateId: TPL,
      scene: 1,
      payload,
      now: Date.now(),
    });
    if (!r.ok) throw new Error('enqueue');
    for (let i = 0; i < 200 && calls.length === 0; i++) await new Promise((res) => setTimeout(res, 5));
    expect(calls).toHaveLength(1);
    await d.stop();
    expect((await store.outbox.getMessage(r.message.id))?.status).toBe('sent');
  });

  it("folds the store's appended message counts now and then while it runs, and a failing fold changes nothing else", async () => {
    const { sender } = scripted(() => ({}));
    let folds = 0;
    const folding: Store = {
      ...store,
      outbox: {
        ...store.outbox,
        async foldMessageCounts() {
          folds++;
          if (folds === 1) throw new Error('database went away');
          return 0;
        },
      },
    };
    const d = createDispatcher({ store: folding, wechat: () => sender }, { ...opts, leaseMs: 750 });
    d.start();
    for (let i = 0; i < 200 && folds < 2; i++) await new Promise((res) => setTimeout(res, 10));
    const counters = d.status().counters;
    await d.stop();
    expect(folds).toBeGreaterThanOrEqual(2);
    expect(counters.storeErrors).toBe(1);
  });

  it('bounds concurrency and applies the rate limit per app', async () => {
    for (let i = 0; i < 12; i++) await enqueueOneTime(`u${i}`);
    let inFlight = 0;
    let peak = 0;
    const sender: DeliverySender = {
      async sendOneTime() {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        return {};
      },
      sendNotification: () => Promise.resolve({}),
    };
    // Real time here: 6 tokens at once, then 100/s.
    const limiter = createMemoryRateLimiter({ ratePerSecond: 100, burst: 6 });
    const d = createDispatcher(
      { store, wechat: () => sender, rateLimiter: limiter },
      { ...opts, concurrency: 3 },
    );
    const t0 = performance.now();
    await d.runOnce();
    const elapsed = performance.now() - t0;
    expect(peak).toBeLessThanOrEqual(3);
    expect(peak).toBeGreaterThan(1);
    // 6 more tokens at 100/s take about 60 ms.
    expect(elapsed).toBeGreaterThanOrEqual(45);
    expect((await store.outbox.countMessages({ appId: APP })).sent).toBe(12);
  });

  it('a failing rate limiter puts messages back unsent; they go once it answers again', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await enqueueOneTime(`u${i}`));
    const { sender, calls } = scripted(() => ({}));
    let down = true;
    const inner = createMemoryRateLimiter({ ratePerSecond: 1000 });
    const limiter = {
      take: (key: string, now: number) =>
        down ? Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379')) : inner.take(key, now),
      close: () => inner.close(),
    };
    const d = createDispatcher({ store, wechat: () => sender, rateLimiter: limiter, clock }, opts);
    await d.runOnce();
    // Nothing was sent or left stranded in `sending` under this instance's lease.
    expect(calls).toHaveLength(0);
    expect(await store.outbox.countMessages({ appId: APP })).toMatchObject({ queued: 5, sending: 0 });
    expect(d.status().counters.rateLimiterErrors).toBe(5);
    expect(d.status().held).toBe(0);
    const m = await store.outbox.getMessage(ids[0] as string);
    // Nothing left, so no attempt is used up.
    expect(m).toMatchObject({
      status: 'queued',
      errorCode: 'DELIVERY_RATE_LIMITER_UNAVAILABLE',
      attempts: 0,
    });
    down = false;
    await drain(d);
    expect(calls).toHaveLength(5);
    expect((await store.outbox.countMessages({ appId: APP })).sent).toBe(5);
  });

  it('a message whose lease ran out while this instance still held it is not delivered a second time', async () => {
    await enqueueOneTime('u1');
    let sends = 0;
    let letSendFinish!: () => void;
    const sendGate = new Promise<void>((r) => (letSendFinish = r));
    const sender: DeliverySender = {
      async sendOneTime() {
        if (sends++ === 0) await sendGate;
        return {};
      },
      sendNotification: () => Promise.resolve({}),
    };
    let letTokenCome!: () => void;
    const tokenGate = new Promise<void>((r) => (letTokenCome = r));
    let takes = 0;
    // The first token is slow to come (a busy shared limiter): long enough for the message's lease to run out.
    const limiter = {
      take: async () => {
        if (takes++ === 0) await tokenGate;
        return 0;
      },
      close: async () => {},
    };
    const d = createDispatcher({ store, wechat: () => sender, rateLimiter: limiter, clock }, opts);
    const tick = () => new Promise((r) => setTimeout(r, 1));
    const first = d.runOnce();
    for (let i = 0; i < 100 && takes === 0; i++) await tick();
    clock.advance(opts.leaseMs + 1);
    // The next cycle meets the expired lease, its own, while the first delivery still waits for its token.
    const second = d.runOnce();
    for (let i = 0; i < 20; i++) await tick();
    letTokenCome();
    for (let i = 0; i < 20; i++) await tick();
    letSendFinish();
    await Promise.all([first, second]);
    expect(sends).toBe(1);
    expect(await store.outbox.countMessages({ appId: APP })).toMatchObject({ sent: 1, sending: 0 });
  });

  it('enqueues campaigns in batches, sends them and marks them done; the background loop drains and stops cleanly', async () => {
    for (let i = 0; i < 30; i++)
      await store.grants.recordOneTime({
        appId: APP,
        openid: `c${String(i).padStart(3, '0')}`,
        templateId: TPL,
        scene: 7,
        now: clock.now(),
      });
    const campaign = await store.outbox.createCampaign({
      appId: APP,
      name: 'spring',
      kind: 'one-time',
      templateId: TPL,
      sceneFilter: null,
      payload,
      now: clock.now(),
    });
    const { sender, calls } = scripted(() => ({}));
    const d = createDispatcher(
      { store, wechat: () => sender },
      { ...opts, campaignBatchSize: 7, batchSize: 8, pollIntervalMs: 5 },
    );
    d.start();
    for (let i = 0; i < 400; i++) {
      const c = await store.outbox.getCampaign(campaign.id);
      if (c?.status === 'done') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await d.stop();
    const c = await store.outbox.getCampaign(campaign.id);
    expect(c).toMatchObject({ status: 'done', stats: { total: 30, sent: 30, queued: 0, sending: 0 } });
    expect(new Set(calls.map((x) => x.touser)).size).toBe(30);
    expect(calls).toHaveLength(30);
    expect(d.status()).toMatchObject({ running: false, held: 0, inFlight: 0 });
    expect(d.status().counters.campaignEnqueued).toBe(30);
  });

  it('a restarted instance marks done a campaign whose last message a dead sender had started (now unknown)', async () => {
    await store.grants.addNotificationCredits({
      appId: APP,
      openid: 'n1',
      templateId: 'tpl-n',
      count: 1,
      now: clock.now(),
    });
    const campaign = await store.outbox.createCampaign({
      appId: APP,
      name: 'restart',
      kind: 'notification',
      templateId: 'tpl-n',
      sceneFilter: null,
      payload: { data: { thing1: { value: 'x' } } },
      now: clock.now(),
    });
    // The instance that died: enqueued the campaign (→ running), claimed its one message and started sending it.
    await store.outbox.enqueueCampaignBatch({ campaignId: campaign.id, batchSize: 10, now: clock.now() });
    await store.outbox.enqueueCampaignBatch({ campaignId: campaign.id, batchSize: 10, now: clock.now() });
    const [m] = await store.outbox.claim({ owner: 'dead', limit: 10, leaseMs: 30_000, now: clock.now() });
    await store.outbox.markAttemptStarted({ ids: [m?.id ?? ''], owner: 'dead', now: clock.now() });

    clock.advance(60_000); // the lease has run out
    const { sender, calls } = scripted(() => ({}));
    const d = createDispatcher({ store, wechat: () => sender, clock }, opts);
    await d.runOnce(); // its claim ends the started notification `unknown` and returns nothing
    expect(calls).toHaveLength(0);
    expect(await store.outbox.getCampaign(campaign.id)).toMatchObject({
      status: 'done',
      stats: { total: 1, unknown: 1, queued: 0, sending: 0 },
    });
  });

  it('stop() waits for requests already sent and records them; unsent claimed messages go back to the queue', async () => {
    for (let i = 0; i < 6; i++) await enqueueOneTime(`u${i}`);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    const sender: DeliverySender = {
      async sendOneTime() {
        started++;
        await gate;
        return {};
      },
      sendNotification: () => Promise.resolve({}),
    };
    const d = createDispatcher({ store, wechat: () => sender }, { ...opts, concurrency: 2 });
    d.start();
    for (let i = 0; i < 200 && started < 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect(started).toBe(2);
    const stopping = d.stop();
    release();
    await stopping;
    const stats = await store.outbox.countMessages({ appId: APP });
    expect(stats).toMatchObject({ sent: 2, queued: 4, sending: 0 });
  });
});
