// The campaign lifecycle (issue #4) on both engines (a SQLite file in a temp dir and a throwaway PostgreSQL
// database), with the real dispatcher, the real SDK client and the real emulator on a shared ManualClock: exact stats
// at every step (a recount of the campaign's message rows), cancel in every phase, scene filters, two campaigns on
// one template, notification credits (counted and long-term), finishing after a crash and a restart, and the HTTP API.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/schema.js';
import { createDispatcher, type Dispatcher, type DispatcherOptions } from '../../src/delivery/dispatcher.js';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';
import { createApiKey } from '../../src/http/api-keys.js';
import { createServiceApp } from '../../src/http/app.js';
import { createPostgresStore } from '../../src/store/postgres/postgres-store.js';
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type {
  Campaign,
  CampaignStats,
  Engine,
  MessageKind,
  OutboxMessage,
  Store,
} from '../../src/store/store.js';
import { ManualClock } from '../../src/util/clock.js';
import { createWeChatClient, type WeChatClient } from '../../src/wechat/client.js';
import { errcodeInfo } from '../../src/wechat/errcodes.js';
import { createMemoryTokenStore } from '../../src/wechat/token-stores/memory.js';
import { createTempDatabase, skipUnless, type TempDatabase } from '../support/services.js';

const APP = 'wxcampaignlife001';
const SECRET = '0123456789abcdef0123456789abcdef';
const OT = 'AuditCampOneTimeTpl00000000000000000000001';
const NT = 'AuditCampNotifyTpl000000000000000000000001';
const LT = 'AuditCampLongTermTpl0000000000000000000001';
const SEND_OT = '/cgi-bin/message/template/subscribe';
const OT_PAYLOAD = { title: '上新提醒', content: '新品已上架' };
const NT_PAYLOAD = { data: { thing1: { value: '已发货' } } };

const pgSkip = await skipUnless('postgres');

let dir: string;
let store: Store;
let clock: ManualClock;
let emu: Emulator;
let baseUrl: string;
let clients: WeChatClient[];
let dispatchers: Dispatcher[];
let tempDb: TempDatabase | undefined;
let raw: pg.Client | undefined;
let app: FastifyInstance | undefined;

async function open(engine: Engine): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'wxsub-campaign-'));
  if (engine === 'postgres') {
    tempDb = await createTempDatabase('wxsub_camp');
    store = createPostgresStore({ url: tempDb.url });
  } else {
    store = createSqliteStore({ path: join(dir, 'db.sqlite') });
  }
  await store.migrate();
  clock = new ManualClock(Date.UTC(2026, 0, 1, 2, 0, 0)); // 10:00 Beijing
  emu = await createEmulator({ clock, randomSeed: 3 });
  emu.state.createApp({
    appid: APP,
    secret: SECRET,
    templates: [
      { templateId: OT, kind: 'one-time', title: '活动提醒' },
      { templateId: NT, kind: 'notification', title: '进度通知', type: 2, content: '事项:{{thing1.DATA}}' },
      { templateId: LT, kind: 'notification', title: '长期通知', type: 3, content: '事项:{{thing1.DATA}}' },
    ],
  });
  baseUrl = await emu.listen({ port: 0 });
  clients = [];
  dispatchers = [];
}

afterEach(async () => {
  for (const d of dispatchers) await d.stop();
  await app?.close();
  app = undefined;
  for (const c of clients) await c.close();
  await emu?.close();
  await raw?.end().catch(() => undefined);
  raw = undefined;
  await store?.close();
  await tempDb?.drop();
  tempDb = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function client(): WeChatClient {
  const c = createWeChatClient(
    { clock, tokenStore: createMemoryTokenStore() },
    {
      appId: APP,
      secret: SECRET,
      baseUrl,
      attemptTimeoutMs: 3000,
      totalTimeoutMs: 6000,
      retries: { max: 0 },
    },
  );
  clients.push(c);
  return c;
}

const OPTS: DispatcherOptions = {
  concurrency: 4,
  batchSize: 50,
  leaseMs: 30_000,
  pollIntervalMs: 20,
  maxAttempts: 5,
  backoffBaseMs: 1000,
  backoffMaxMs: 8000,
  completeLingerMs: 0,
  campaignBatchSize: 1000,
};

function dispatcher(o: Partial<DispatcherOptions> = {}): Dispatcher {
  const d = createDispatcher(
    { store, wechat: () => client(), clock, random: () => 0.5, errcodeAction: (x) => errcodeInfo(x).action },
    { ...OPTS, ...o },
  );
  dispatchers.push(d);
  return d;
}

const users = new Set<string>();
function user(openid: string): void {
  if (users.has(openid)) return;
  users.add(openid);
  emu.state.createUser(APP, { openid });
}

/** A one-time holder of `scenes` (in WeChat and in the ledger). */
async function holder(openid: string, scenes: number[]): Promise<void> {
  user(openid);
  for (const scene of scenes) {
    emu.state.grantOneTime(APP, openid, OT, scene);
    await store.grants.recordOneTime({ appId: APP, openid, templateId: OT, scene, now: clock.now() });
  }
}

/** A notification holder with `count` counted credits (NT) or a long-term subscriber (LT). */
async function subscriber(
  openid: string,
  templateId: string,
  count: number,
  longTerm = false,
): Promise<void> {
  user(openid);
  if (count > 0 || longTerm) emu.state.grantNotification(APP, openid, templateId, Math.max(1, count));
  await store.grants.addNotificationCredits({
    appId: APP,
    openid,
    templateId,
    count,
    longTerm,
    now: clock.now(),
  });
}

async function campaign(
  kind: MessageKind,
  sceneFilter: Campaign['sceneFilter'] = null,
  templateId = kind === 'one-time' ? OT : NT,
): Promise<Campaign> {
  return store.outbox.createCampaign({
    appId: APP,
    name: `lifecycle-${kind}`,
    kind,
    templateId,
    sceneFilter,
    payload: kind === 'one-time' ? OT_PAYLOAD : NT_PAYLOAD,
    now: clock.now(),
  });
}

async function enqueueAll(id: string, batchSize = 1000): Promise<number[]> {
  const batches: number[] = [];
  for (let guard = 0; guard < 1000; guard++) {
    const n = await store.outbox.enqueueCampaignBatch({ campaignId: id, batchSize, now: clock.now() });
    batches.push(n);
    if (n === 0) return batches;
  }
  throw new Error('enqueue did not end');
}

/** Every message row of a campaign (through listMessages, all pages). */
async function rowsOf(campaignId: string): Promise<OutboxMessage[]> {
  const all: OutboxMessage[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await store.outbox.listMessages({ campaignId, limit: 1000, ...(cursor ? { cursor } : {}) });
    all.push(...page.items);
    if (page.nextCursor === null) return all;
    cursor = page.nextCursor;
  }
}

/** The campaign's reported stats equal a recount of its rows, and total is the sum of the statuses. */
async function expectExact(campaignId: string, label: string): Promise<CampaignStats> {
  const c = await store.outbox.getCampaign(campaignId);
  if (c === null) throw new Error(`no campaign ${campaignId}`);
  const want: CampaignStats = {
    total: 0,
    queued: 0,
    sending: 0,
    sent: 0,
    failed: 0,
    unknown: 0,
    cancelled: 0,
  };
  for (const m of await rowsOf(campaignId)) {
    want[m.status]++;
    want.total++;
  }
  expect(c.stats, label).toEqual(want);
  const s = c.stats;
  expect(s.queued + s.sending + s.sent + s.failed + s.unknown + s.cancelled, label).toBe(s.total);
  return c.stats;
}

const grantState = async (openid: string, scene: number) =>
  (await store.grants.get({ appId: APP, openid, templateId: OT, scene }))?.state;
const credit = async (openid: string, templateId = NT) =>
  store.grants.getNotificationCredit({ appId: APP, openid, templateId });
const statusOf = async (id: string) => (await store.outbox.getCampaign(id))?.status;
const inbox = (openid: string) => emu.state.inbox(APP, openid).length;
const totalDelivered = () => Object.values(emu.state.counters(APP).sends).reduce((a, b) => a + b, 0);

/** Runs dispatcher cycles (moving the clock 1 s each, so new campaigns are noticed) until `done` or `max` cycles. */
async function drive(d: Dispatcher, done: () => Promise<boolean>, max = 60, stepMs = 1000): Promise<void> {
  for (let i = 0; i < max; i++) {
    await d.runOnce();
    if (await done()) return;
    clock.advance(stepMs);
  }
  throw new Error('did not settle');
}

/** How many backends of the temp database wait on a lock. */
async function lockWaiters(c: pg.Client): Promise<number> {
  // Inside a transaction pg_stat_activity is read from a snapshot taken at its first use: refresh it.
  await c.query('SELECT pg_stat_clear_snapshot()');
  const r = await c.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
  );
  return Number(r.rows[0]?.n ?? 0);
}
async function untilLockWaiters(c: pg.Client, n: number): Promise<void> {
  const end = Date.now() + 10_000;
  while ((await lockWaiters(c)) < n) {
    if (Date.now() > end) throw new Error(`fewer than ${n} lock waiters`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(['sqlite', 'postgres'] as Engine[])('campaign lifecycle on %s', (engine) => {
  beforeEach(async (ctx) => {
    if (engine === 'postgres' && pgSkip) ctx.skip();
    users.clear();
    await open(engine);
  });

  it('stats equal a recount of the rows at every step: batches, a dead sender, retries, dispatch, done', async () => {
    const N = 37;
    for (let i = 0; i < N; i++) await holder(`oStat${String(i).padStart(3, '0')}`, [3]);
    const c = await campaign('one-time');
    await expectExact(c.id, 'created');
    // Enqueue in small batches, checking after each one.
    let enqueued = 0;
    for (let guard = 0; guard < 20; guard++) {
      const n = await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 8, now: clock.now() });
      enqueued += n;
      const s = await expectExact(c.id, `after batch ${guard}`);
      expect(s.total).toBe(enqueued);
      expect(await statusOf(c.id)).toBe(n === 0 ? 'running' : 'enqueuing');
      if (n === 0) break;
    }
    expect(enqueued).toBe(N);
    // A sender claims 20, starts 6, and dies.
    const dead = await store.outbox.claim({ owner: 'dead', limit: 20, leaseMs: 5000, now: clock.now() });
    expect(dead).toHaveLength(20);
    await store.outbox.markAttemptStarted({
      ids: dead.slice(0, 6).map((m) => m.id),
      owner: 'dead',
      now: clock.now(),
    });
    expect(await expectExact(c.id, 'dead claim')).toMatchObject({ sending: 20, queued: N - 20 });
    // WeChat is busy for one cycle: every attempt of the live dispatcher ends in a retry (queued again).
    const d = dispatcher({ batchSize: 100 });
    emu.state.setFaults({ path: SEND_OT, errcodes: { '-1': 1 } });
    await d.runOnce();
    expect(await expectExact(c.id, 'busy cycle')).toMatchObject({ queued: N - 20, sending: 20 });
    expect(await statusOf(c.id)).toBe('running');
    emu.state.clearFaults();
    // Past the dead sender's lease and the backoff: everything goes out once.
    clock.advance(10_000);
    await drive(d, async () => {
      await expectExact(c.id, 'dispatch');
      return (await statusOf(c.id)) === 'done';
    });
    expect(await expectExact(c.id, 'done')).toMatchObject({ total: N, sent: N });
    for (let i = 0; i < N; i++) expect(inbox(`oStat${String(i).padStart(3, '0')}`)).toBe(1);
  });

  it('cancel while enqueuing: nothing more is enqueued or sent, released grants back, untouched holders untouched', async () => {
    const N = 23;
    const ids = Array.from({ length: N }, (_, i) => `oEnq${String(i).padStart(3, '0')}`);
    for (const o of ids) await holder(o, [4]);
    const c = await campaign('one-time');
    expect(
      await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 5, now: clock.now() }),
    ).toBe(5);
    expect(
      await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 5, now: clock.now() }),
    ).toBe(5);
    expect(await statusOf(c.id)).toBe('enqueuing');
    expect(await store.outbox.cancelCampaign({ id: c.id, now: clock.now() })).toEqual({
      cancelled: true,
      messages: 10,
    });
    expect(await statusOf(c.id)).toBe('cancelled');
    expect(await expectExact(c.id, 'cancelled')).toMatchObject({ total: 10, cancelled: 10 });
    for (const o of ids) expect(await grantState(o, 4), o).toBe('available');
    // A dispatcher (fresh: it lists enqueuing campaigns) enqueues and sends nothing of it.
    const d = dispatcher({ campaignBatchSize: 5 });
    for (let i = 0; i < 4; i++) {
      await d.runOnce();
      clock.advance(1500);
    }
    expect(
      await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 5, now: clock.now() }),
    ).toBe(0);
    expect(await expectExact(c.id, 'after cycles')).toMatchObject({ total: 10, cancelled: 10 });
    expect(await statusOf(c.id)).toBe('cancelled');
    expect(totalDelivered()).toBe(0);
    expect(await store.outbox.listEnqueuingCampaigns()).toEqual([]);
    // Cancel twice: nothing more, still cancelled.
    expect(await store.outbox.cancelCampaign({ id: c.id, now: clock.now() })).toEqual({
      cancelled: false,
      messages: 0,
    });
    expect(await statusOf(c.id)).toBe('cancelled');
  });

  it('cancel while a dispatcher enqueues and sends: only attempts already started go out afterwards', async () => {
    const N = 40;
    const ids = Array.from({ length: N }, (_, i) => `oRun${String(i).padStart(3, '0')}`);
    for (const o of ids) await holder(o, [6]);
    const c = await campaign('one-time');
    emu.state.setFaults({ path: SEND_OT, latencyMs: 60 });
    const d = dispatcher({ campaignBatchSize: 10, batchSize: 8, concurrency: 4 });
    d.start();
    const end = Date.now() + 15_000;
    while (totalDelivered() < 8) {
      if (Date.now() > end) throw new Error('nothing sent');
      await new Promise((r) => setTimeout(r, 10));
    }
    await store.outbox.cancelCampaign({ id: c.id, now: clock.now() });
    // What may still leave: attempts started before the cancel (still `sending`, attempt started).
    const atCancel = await rowsOf(c.id);
    const started = atCancel.filter((m) => m.status === 'sending' && m.attemptStartedAt !== null).length;
    const deliveredAtCancel = totalDelivered();
    expect(atCancel.filter((m) => m.status === 'sending' && m.attemptStartedAt === null)).toEqual([]);
    const waitEnd = Date.now() + 15_000;
    for (;;) {
      const s = await expectExact(c.id, 'after cancel');
      if (s.sending === 0 && s.queued === 0) break;
      if (Date.now() > waitEnd) throw new Error('campaign did not settle');
      await new Promise((r) => setTimeout(r, 30));
    }
    await d.stop();
    expect(totalDelivered() - deliveredAtCancel).toBeLessThanOrEqual(started);
    const s = await expectExact(c.id, 'settled');
    expect(await statusOf(c.id)).toBe('cancelled');
    expect(s.sent).toBe(totalDelivered());
    expect(s.sent + s.cancelled).toBe(s.total);
    expect(s.total).toBeLessThanOrEqual(N);
    // Ledger: sent → consumed; cancelled and never-enqueued → available; nobody twice.
    for (const m of await rowsOf(c.id))
      expect(await grantState(m.openid, 6), m.status).toBe(m.status === 'sent' ? 'consumed' : 'available');
    const inCampaign = new Set((await rowsOf(c.id)).map((m) => m.openid));
    for (const o of ids) {
      expect(inbox(o)).toBeLessThanOrEqual(1);
      if (!inCampaign.has(o)) expect(await grantState(o, 6)).toBe('available');
    }
    expect(await store.outbox.cancelCampaign({ id: c.id, now: clock.now() })).toEqual({
      cancelled: false,
      messages: 0,
    });
  });

  it('scene filters select exactly the holders; one message per user on the lowest matching scene', async () => {
    await holder('oSceneA', [1, 5, 9]);
    await holder('oSceneB', [5]);
    await holder('oSceneC', [12]);
    await holder('oSceneD', [3, 7]);
    await holder('oSceneE', [20]);
    const picked = async (id: string) => (await rowsOf(id)).map((m) => `${m.openid}:${m.scene}`).sort();

    const range = await campaign('one-time', { min: 4, max: 10 });
    await enqueueAll(range.id, 2);
    expect(await picked(range.id)).toEqual(['oSceneA:5', 'oSceneB:5', 'oSceneD:7']);
    expect(await grantState('oSceneA', 1)).toBe('available');
    expect(await grantState('oSceneA', 9)).toBe('available');
    expect(await grantState('oSceneD', 3)).toBe('available');
    expect(await grantState('oSceneA', 5)).toBe('reserved');
    expect(await store.outbox.cancelCampaign({ id: range.id, now: clock.now() })).toEqual({
      cancelled: true,
      messages: 3,
    });
    expect(await grantState('oSceneA', 5)).toBe('available');

    const list = await campaign('one-time', { min: 2, max: 15, scenes: [1, 9, 12, 20] });
    await enqueueAll(list.id, 1);
    expect(await picked(list.id)).toEqual(['oSceneA:9', 'oSceneC:12']);
    await store.outbox.cancelCampaign({ id: list.id, now: clock.now() });

    const all = await campaign('one-time');
    await enqueueAll(all.id, 3);
    expect(await picked(all.id)).toEqual(['oSceneA:1', 'oSceneB:5', 'oSceneC:12', 'oSceneD:3', 'oSceneE:20']);
    await store.outbox.cancelCampaign({ id: all.id, now: clock.now() });

    // No holder: done with total 0, through the dispatcher.
    const none = await campaign('one-time', { scenes: [10_000] });
    const d = dispatcher();
    await drive(d, async () => (await statusOf(none.id)) === 'done', 5);
    expect(await expectExact(none.id, 'empty')).toMatchObject({ total: 0 });
    expect(totalDelivered()).toBe(0);
  });

  it('two campaigns on one template enqueued at once: the second takes the grants the first did not reserve', async () => {
    const ids = ['oTwo0', 'oTwo1', 'oTwo2', 'oTwo3'];
    for (const o of ids) await holder(o, [1, 2]);
    await holder('oTwoSingle', [1]);
    const a = await campaign('one-time');
    const b = await campaign('one-time');
    let na: number;
    let nb: number;
    if (engine === 'postgres') {
      // Deterministic interleaving of two instances: A's batch has reserved its grants but not yet committed (its
      // count trigger waits on a table lock held here) when B's batch reads its candidates.
      raw = new pg.Client({ connectionString: tempDb?.url });
      await raw.connect();
      await raw.query('BEGIN');
      await raw.query('LOCK TABLE message_count_deltas IN EXCLUSIVE MODE');
      const pa = store.outbox.enqueueCampaignBatch({ campaignId: a.id, batchSize: 100, now: clock.now() });
      await untilLockWaiters(raw, 1);
      const pb = store.outbox.enqueueCampaignBatch({ campaignId: b.id, batchSize: 100, now: clock.now() });
      await untilLockWaiters(raw, 2);
      await raw.query('COMMIT');
      [na, nb] = await Promise.all([pa, pb]);
    } else {
      [na, nb] = await Promise.all([
        store.outbox.enqueueCampaignBatch({ campaignId: a.id, batchSize: 100, now: clock.now() }),
        store.outbox.enqueueCampaignBatch({ campaignId: b.id, batchSize: 100, now: clock.now() }),
      ]);
    }
    await enqueueAll(a.id);
    await enqueueAll(b.id);
    expect(na).toBe(5);
    const ra = await rowsOf(a.id);
    const rb = await rowsOf(b.id);
    // No grant in two messages.
    const grantIds = [...ra, ...rb].map((m) => m.grantId);
    expect(new Set(grantIds).size).toBe(grantIds.length);
    // A took every holder's lowest scene; B every holder's remaining one (oTwoSingle has none left).
    expect(ra.map((m) => `${m.openid}:${m.scene}`).sort()).toEqual([
      'oTwo0:1',
      'oTwo1:1',
      'oTwo2:1',
      'oTwo3:1',
      'oTwoSingle:1',
    ]);
    expect(rb.map((m) => `${m.openid}:${m.scene}`).sort()).toEqual([
      'oTwo0:2',
      'oTwo1:2',
      'oTwo2:2',
      'oTwo3:2',
    ]);
    expect(nb).toBe(4);
    await expectExact(a.id, 'a');
    await expectExact(b.id, 'b');
  });

  it('a campaign batch racing an API send for the same user does not skip the user’s other matching grant', async () => {
    await holder('oRace', [1, 2]);
    const c = await campaign('one-time');
    const send = () =>
      store.outbox.enqueueMessage({
        appId: APP,
        kind: 'one-time',
        openid: 'oRace',
        templateId: OT,
        scene: 'any',
        payload: OT_PAYLOAD,
        now: clock.now(),
      });
    let api;
    if (engine === 'postgres') {
      // The API send has reserved scene 1 but not committed yet when the campaign batch reads its candidates.
      raw = new pg.Client({ connectionString: tempDb?.url });
      await raw.connect();
      await raw.query('BEGIN');
      await raw.query('LOCK TABLE message_count_deltas IN EXCLUSIVE MODE');
      const pm = send();
      await untilLockWaiters(raw, 1);
      const pc = store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 100, now: clock.now() });
      await untilLockWaiters(raw, 2);
      await raw.query('COMMIT');
      [api] = await Promise.all([pm, pc]);
    } else {
      [api] = await Promise.all([
        send(),
        store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 100, now: clock.now() }),
      ]);
    }
    await enqueueAll(c.id);
    expect(api.ok).toBe(true);
    // Both scenes are used: one by the API message, the other by the campaign.
    const rows = await rowsOf(c.id);
    expect(rows.map((m) => m.scene)).toHaveLength(1);
    expect(await grantState('oRace', 1)).toBe('reserved');
    expect(await grantState('oRace', 2)).toBe('reserved');
  });

  it('notification campaigns: counted credits reserved and spent, long-term untouched, zero credits get nothing', async () => {
    await subscriber('oNc2', NT, 2);
    await subscriber('oNc1', NT, 1);
    await subscriber('oNc0', NT, 0);
    await subscriber('oLt1', LT, 0, true);
    await subscriber('oLt2', LT, 3, true);
    // A campaign cancelled before sending gives the counted credits back.
    const first = await campaign('notification');
    await enqueueAll(first.id, 1);
    expect((await rowsOf(first.id)).map((m) => m.openid).sort()).toEqual(['oNc1', 'oNc2']);
    expect(await credit('oNc2')).toMatchObject({ available: 1, reserved: 1 });
    expect(await credit('oNc1')).toMatchObject({ available: 0, reserved: 1 });
    expect(await store.outbox.cancelCampaign({ id: first.id, now: clock.now() })).toEqual({
      cancelled: true,
      messages: 2,
    });
    expect(await credit('oNc2')).toMatchObject({ available: 2, reserved: 0 });
    expect(await credit('oNc1')).toMatchObject({ available: 1, reserved: 0 });
    expect(await credit('oNc0')).toMatchObject({ available: 0, reserved: 0 });

    const counted = await campaign('notification');
    const lt = await campaign('notification', null, LT);
    const d = dispatcher();
    await drive(
      d,
      async () => (await statusOf(counted.id)) === 'done' && (await statusOf(lt.id)) === 'done',
      10,
    );
    expect(await expectExact(counted.id, 'counted')).toMatchObject({ total: 2, sent: 2 });
    expect(await expectExact(lt.id, 'long-term')).toMatchObject({ total: 2, sent: 2 });
    expect(await credit('oNc2')).toMatchObject({ available: 1, reserved: 0 });
    expect(await credit('oNc1')).toMatchObject({ available: 0, reserved: 0 });
    expect(await credit('oLt1', LT)).toMatchObject({ available: 0, reserved: 0, longTerm: true });
    expect(await credit('oLt2', LT)).toMatchObject({ available: 3, reserved: 0, longTerm: true });
    expect([inbox('oNc2'), inbox('oNc1'), inbox('oNc0'), inbox('oLt1'), inbox('oLt2')]).toEqual([
      1, 1, 0, 1, 1,
    ]);
    // A long-term campaign cancelled before sending leaves the subscriptions as they were.
    const lt2 = await campaign('notification', null, LT);
    await enqueueAll(lt2.id);
    expect(await store.outbox.cancelCampaign({ id: lt2.id, now: clock.now() })).toEqual({
      cancelled: true,
      messages: 2,
    });
    expect(await credit('oLt2', LT)).toMatchObject({ available: 3, reserved: 0, longTerm: true });
  });

  it('after a crash and a restart the campaigns finish: started notifications unknown, started one-time retried', async () => {
    for (let i = 0; i < 12; i++) await holder(`oCrOt${String(i).padStart(2, '0')}`, [2]);
    for (let i = 0; i < 12; i++) await subscriber(`oCrNt${String(i).padStart(2, '0')}`, NT, 1);
    const ot = await campaign('one-time');
    const nt = await campaign('notification');
    await enqueueAll(ot.id, 5);
    await enqueueAll(nt.id, 5);
    const dead = await store.outbox.claim({ owner: 'dead', limit: 100, leaseMs: 5000, now: clock.now() });
    expect(dead).toHaveLength(24);
    const startedOt = dead.filter((m) => m.kind === 'one-time').slice(0, 3);
    const startedNt = dead.filter((m) => m.kind === 'notification').slice(0, 4);
    await store.outbox.markAttemptStarted({
      ids: [...startedOt, ...startedNt].map((m) => m.id),
      owner: 'dead',
      now: clock.now(),
    });
    await expectExact(ot.id, 'ot dead');
    await expectExact(nt.id, 'nt dead');
    // A new instance before the lease ran out: nothing to claim, nothing finished.
    const d = dispatcher();
    expect(await d.runOnce()).toBe(0);
    expect(await statusOf(ot.id)).toBe('running');
    clock.advance(6000);
    await drive(d, async () => (await statusOf(ot.id)) === 'done' && (await statusOf(nt.id)) === 'done', 20);
    expect(await expectExact(ot.id, 'ot')).toMatchObject({ total: 12, sent: 12 });
    expect(await expectExact(nt.id, 'nt')).toMatchObject({ total: 12, sent: 8, unknown: 4 });
    for (const m of startedNt) expect(await credit(m.openid)).toMatchObject({ available: 0, reserved: 0 });

    // Drained while its dispatcher was down: a restarted dispatcher (listRunningCampaigns) marks it done.
    await holder('oLate', [8]);
    const late = await campaign('one-time');
    await enqueueAll(late.id);
    const claimed = await store.outbox.claim({ owner: 'gone', limit: 10, leaseMs: 5000, now: clock.now() });
    await store.outbox.markAttemptStarted({ ids: claimed.map((m) => m.id), owner: 'gone', now: clock.now() });
    await store.outbox.complete({
      id: claimed[0]?.id ?? '',
      owner: 'gone',
      outcome: { status: 'sent' },
      now: clock.now(),
    });
    expect(await statusOf(late.id)).toBe('running');
    expect((await store.outbox.listRunningCampaigns()).map((x) => x.id)).toEqual([late.id]);
    const restarted = dispatcher();
    await restarted.runOnce();
    expect(await statusOf(late.id)).toBe('done');
    expect(await store.outbox.listRunningCampaigns()).toEqual([]);
    // Cancel after done: nothing changes.
    expect(await store.outbox.cancelCampaign({ id: late.id, now: clock.now() })).toEqual({
      cancelled: false,
      messages: 0,
    });
    expect(await statusOf(late.id)).toBe('done');
    expect(await grantState('oLate', 8)).toBe('consumed');
  });

  it('a restarted dispatcher resumes an interrupted enqueue: every holder once, nobody twice', async () => {
    const N = 17;
    const ids = Array.from({ length: N }, (_, i) => `oResume${String(i).padStart(2, '0')}`);
    for (const o of ids) await holder(o, [5, 6]);
    const c = await campaign('one-time');
    // The instance that created it enqueued two batches, then died.
    expect(
      await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 4, now: clock.now() }),
    ).toBe(4);
    expect(
      await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 4, now: clock.now() }),
    ).toBe(4);
    const d = dispatcher({ campaignBatchSize: 3 });
    await drive(d, async () => (await statusOf(c.id)) === 'done', 30);
    expect(await expectExact(c.id, 'resumed')).toMatchObject({ total: N, sent: N });
    const rows = await rowsOf(c.id);
    expect(new Set(rows.map((m) => m.openid)).size).toBe(N);
    for (const o of ids) {
      expect(inbox(o)).toBe(1);
      expect(await grantState(o, 5)).toBe('consumed');
      expect(await grantState(o, 6)).toBe('available');
    }
  });

  it('a drained campaign is marked done while another campaign keeps the dispatcher busy', async () => {
    for (let i = 0; i < 3; i++) await holder(`oSmall${i}`, [1]);
    const small = await campaign('one-time');
    await enqueueAll(small.id);
    const BIG = 600;
    for (let i = 0; i < BIG; i++) await holder(`oBig${String(i).padStart(4, '0')}`, [2]);
    const big = await campaign('one-time', { min: 2 });
    await enqueueAll(big.id);
    emu.state.setFaults({ path: SEND_OT, latencyMs: 40 });
    const d = dispatcher({ batchSize: 50, concurrency: 4 });
    d.start();
    const end = Date.now() + 10_000;
    for (;;) {
      const s = await store.outbox.countMessages({ campaignId: small.id });
      if (s.sent === 3) break;
      if (Date.now() > end) throw new Error('small campaign not sent');
      await new Promise((r) => setTimeout(r, 10));
    }
    // Nothing of `small` is queued or sending any more; give the dispatcher well over a poll, and move the shared
    // clock past its 1 s throttle of finishing checks.
    for (let i = 0; i < 3; i++) {
      clock.advance(1000);
      await new Promise((r) => setTimeout(r, 300));
    }
    const bigStats = await store.outbox.countMessages({ campaignId: big.id });
    const smallStatus = await statusOf(small.id);
    await d.stop();
    expect(bigStats.queued + bigStats.sending, 'the big campaign is still sending').toBeGreaterThan(0);
    expect(await expectExact(small.id, 'small')).toMatchObject({ total: 3, sent: 3, queued: 0, sending: 0 });
    expect(smallStatus).toBe('done');
  });

  describe('HTTP API', () => {
    let key: string;
    const auth = () => ({ authorization: `Bearer ${key}` });
    const err = (r: LightMyRequestResponse) => (r.json() as { error: { code: string } }).error.code;

    beforeEach(async () => {
      if (store === undefined) return;
      await store.templates.upsert({
        appId: APP,
        templateId: OT,
        kind: 'one-time',
        title: '活动提醒',
        keywords: [],
      });
      await store.templates.upsert({
        appId: APP,
        templateId: NT,
        kind: 'notification',
        title: '进度通知',
        keywords: [{ key: 'thing1', type: 'thing' }],
        type: 2,
      });
      const config = parseConfig({
        publicBaseUrl: 'https://svc.example.com',
        wechat: { appId: APP, baseUrl },
        consent: {
          secret: 's'.repeat(40),
          nextAllowlist: ['https://app.example.com'],
          oneTimeTemplates: [OT],
        },
      });
      app = await createServiceApp({ store, wechat: { appId: APP }, clock }, config);
      key = (await createApiKey(store, 'audit')).key;
    });

    it('creates (202), reports, finishes and refuses to cancel a done campaign; 404 for unknown ids', async () => {
      for (let i = 0; i < 6; i++) await holder(`oHttp${i}`, [1, 2]);
      const post = await app!.inject({
        method: 'POST',
        url: '/v1/campaigns',
        headers: auth(),
        payload: { name: 'spring', template: OT, scenes: { min: 2 }, payload: OT_PAYLOAD },
      });
      expect(post.statusCode, post.body).toBe(202);
      const id = post.json().id as string;
      expect(post.json()).toMatchObject({ id, status: 'enqueuing', campaign: { id, status: 'enqueuing' } });
      const d = dispatcher();
      await drive(d, async () => (await statusOf(id)) === 'done', 10);
      const got = await app!.inject({ method: 'GET', url: `/v1/campaigns/${id}`, headers: auth() });
      expect(got.statusCode).toBe(200);
      expect(got.json()).toMatchObject({
        id,
        status: 'done',
        stats: { total: 6, queued: 0, sending: 0, sent: 6, failed: 0, unknown: 0, cancelled: 0 },
      });
      for (let i = 0; i < 6; i++) expect(await grantState(`oHttp${i}`, 1)).toBe('available');
      const cancel = await app!.inject({
        method: 'POST',
        url: `/v1/campaigns/${id}/cancel`,
        headers: auth(),
      });
      expect([cancel.statusCode, err(cancel)]).toEqual([409, 'CAMPAIGN_NOT_CANCELLABLE']);
      const unknownGet = await app!.inject({ method: 'GET', url: '/v1/campaigns/nope123', headers: auth() });
      expect([unknownGet.statusCode, err(unknownGet)]).toEqual([404, 'CAMPAIGN_NOT_FOUND']);
      const unknownCancel = await app!.inject({
        method: 'POST',
        url: '/v1/campaigns/nope123/cancel',
        headers: auth(),
      });
      expect([unknownCancel.statusCode, err(unknownCancel)]).toEqual([404, 'CAMPAIGN_NOT_FOUND']);
      // Another app's campaign in the same store is not this service's.
      const other = await store.outbox.createCampaign({
        appId: 'wxotherapp000001',
        name: 'other',
        kind: 'one-time',
        templateId: OT,
        sceneFilter: null,
        payload: OT_PAYLOAD,
        now: clock.now(),
      });
      const otherGet = await app!.inject({
        method: 'GET',
        url: `/v1/campaigns/${other.id}`,
        headers: auth(),
      });
      expect([otherGet.statusCode, err(otherGet)]).toEqual([404, 'CAMPAIGN_NOT_FOUND']);
      const otherCancel = await app!.inject({
        method: 'POST',
        url: `/v1/campaigns/${other.id}/cancel`,
        headers: auth(),
      });
      expect([otherCancel.statusCode, err(otherCancel)]).toEqual([404, 'CAMPAIGN_NOT_FOUND']);
      expect(await statusOf(other.id)).toBe('enqueuing');
    });

    it('cancel answers per docs: 200 with the count and the cancelled campaign, then 409; grants back', async () => {
      for (let i = 0; i < 5; i++) await holder(`oHc${i}`, [3]);
      const post = await app!.inject({
        method: 'POST',
        url: '/v1/campaigns',
        headers: auth(),
        payload: { name: 'c', template: OT, payload: OT_PAYLOAD },
      });
      const id = post.json().id as string;
      await enqueueAll(id);
      const cancel = await app!.inject({
        method: 'POST',
        url: `/v1/campaigns/${id}/cancel`,
        headers: auth(),
      });
      expect(cancel.statusCode, cancel.body).toBe(200);
      expect(cancel.json()).toMatchObject({
        id,
        cancelled: 5,
        campaign: { id, status: 'cancelled', stats: { total: 5, cancelled: 5 } },
      });
      for (let i = 0; i < 5; i++) expect(await grantState(`oHc${i}`, 3)).toBe('available');
      const again = await app!.inject({ method: 'POST', url: `/v1/campaigns/${id}/cancel`, headers: auth() });
      expect([again.statusCode, err(again)]).toEqual([409, 'CAMPAIGN_NOT_CANCELLABLE']);
    });

    it('two cancels of one campaign sent at once: one 200, the other 409 CAMPAIGN_NOT_CANCELLABLE', async () => {
      for (let i = 0; i < 3; i++) await holder(`oHd${i}`, [3]);
      const post = await app!.inject({
        method: 'POST',
        url: '/v1/campaigns',
        headers: auth(),
        payload: { name: 'c', template: OT, payload: OT_PAYLOAD },
      });
      const id = post.json().id as string;
      await enqueueAll(id);
      const [r1, r2] = await Promise.all([
        app!.inject({ method: 'POST', url: `/v1/campaigns/${id}/cancel`, headers: auth() }),
        app!.inject({ method: 'POST', url: `/v1/campaigns/${id}/cancel`, headers: auth() }),
      ]);
      const codes = [r1.statusCode, r2.statusCode].sort();
      expect(codes, `${r1.body} / ${r2.body}`).toEqual([200, 409]);
    });
  });
});
