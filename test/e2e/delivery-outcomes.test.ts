// Delivery outcomes between the rows of the errcode table (issue #4), on a real emulator (real socket, real SDK), on
// SQLite and a throwaway PostgreSQL database: what a 45009 does to a message's attempts, what a 43101 after a -1
// means (both found by an audit of the dispatcher against the table), and how a real per-minute limit (45011) is met.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { createPostgresStore } from '../../src/store/postgres/postgres-store.js';
import type { Engine, Store } from '../../src/store/store.js';
import { createTempDatabase, skipUnless, type TempDatabase } from '../support/services.js';
import { ManualClock } from '../../src/util/clock.js';
import { createWeChatClient, type WeChatClient } from '../../src/wechat/client.js';
import { errcodeInfo } from '../../src/wechat/errcodes.js';
import { createMemoryTokenStore } from '../../src/wechat/token-stores/memory.js';
import { createDispatcher, type DispatcherOptions } from '../../src/delivery/dispatcher.js';

const APP = 'wxauditdlv0000001';
const SECRET = '0123456789abcdef0123456789abcdef';
const OT = 'AuditOneTimeTpl000000000000000000000000001';
const SCENE = 7;
const SEND_OT = '/cgi-bin/message/template/subscribe';

let dir: string;
let store: Store;
let clock: ManualClock;
let emu: Emulator;
let baseUrl: string;
let clients: WeChatClient[];
let tempDb: TempDatabase | undefined;
const pgSkip = await skipUnless('postgres');

async function openEngine(engine: Engine): Promise<void> {
  if (engine === 'postgres') {
    await store.close();
    tempDb = await createTempDatabase('wxsub_audit');
    store = createPostgresStore({ url: tempDb.url });
    await store.migrate();
  }
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wxsub-audit-'));
  store = createSqliteStore({ path: join(dir, 'db.sqlite') });
  await store.migrate();
  clock = new ManualClock(Date.UTC(2026, 0, 1, 2, 0, 0)); // 10:00 Beijing
  emu = await createEmulator({ clock, randomSeed: 1 });
  emu.state.createApp({
    appid: APP,
    secret: SECRET,
    templates: [{ templateId: OT, kind: 'one-time', title: '活动提醒' }],
  });
  baseUrl = await emu.listen({ port: 0 });
  clients = [];
});
afterEach(async () => {
  for (const c of clients) await c.close();
  await emu.close();
  await store.close();
  await tempDb?.drop();
  tempDb = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function client(): WeChatClient {
  const c = createWeChatClient(
    { clock, tokenStore: createMemoryTokenStore() },
    {
      appId: APP,
      secret: SECRET,
      baseUrl,
      attemptTimeoutMs: 2000,
      totalTimeoutMs: 5000,
      retries: { max: 0 },
    },
  );
  clients.push(c);
  return c;
}

const opts: DispatcherOptions = {
  concurrency: 4,
  batchSize: 50,
  leaseMs: 30_000,
  pollIntervalMs: 20,
  maxAttempts: 3,
  backoffBaseMs: 1000,
  backoffMaxMs: 8000,
  completeLingerMs: 0,
};

function dispatcher(c: WeChatClient, o: Partial<DispatcherOptions> = {}) {
  return createDispatcher(
    { store, wechat: () => c, clock, random: () => 0.5, errcodeAction: (x) => errcodeInfo(x).action },
    { ...opts, ...o },
  );
}

/** Enqueues a one-time message on a grant the ledger holds; WeChat holds it too unless `wechatGrant` is false. */
async function oneTime(openid: string, wechatGrant = true): Promise<string> {
  emu.state.createUser(APP, { openid });
  if (wechatGrant) emu.state.grantOneTime(APP, openid, OT, SCENE);
  await store.grants.recordOneTime({ appId: APP, openid, templateId: OT, scene: SCENE, now: clock.now() });
  const r = await store.outbox.enqueueMessage({
    appId: APP,
    kind: 'one-time',
    openid,
    templateId: OT,
    scene: SCENE,
    payload: { title: '上新', content: '新品已上架' },
    now: clock.now(),
  });
  if (!r.ok) throw new Error('enqueue failed');
  return r.message.id;
}

const grantState = async (openid: string) =>
  (await store.grants.get({ appId: APP, openid, templateId: OT, scene: SCENE }))?.state;
const msg = async (id: string) => {
  const m = await store.outbox.getMessage(id);
  if (m === null) throw new Error('no message');
  return m;
};

/** Runs cycles, moving the clock past each backoff, until `id` is final. */
async function settle(d: ReturnType<typeof dispatcher>, id: string, stepMs = 10_000, max = 30) {
  for (let i = 0; i < max; i++) {
    await d.runOnce();
    const m = await msg(id);
    if (m.status !== 'queued' && m.status !== 'sending') return m;
    clock.advance(stepMs);
  }
  throw new Error('did not settle');
}

describe.each(['sqlite', 'postgres'] as Engine[])('%s', (engine) => {
  beforeEach(async (ctx) => {
    if (engine === 'postgres' && pgSkip) ctx.skip();
    await openEngine(engine);
  });

  // Table: "45009 → pause that app's sending until the quota resets" and "-1, 45011, … → retry with jittered
  // exponential backoff, bounded". A 45009 is not an attempt WeChat processed: it must not use up a retry.
  it('a 45009 uses up no attempt: after the quota reset the message still has all its retries', async () => {
    const id = await oneTime('oAuditQ1');
    const d = dispatcher(client(), { maxAttempts: 2 });
    emu.state.setFaults({ path: SEND_OT, errcodes: { '45009': 1 } });
    await d.runOnce();
    const paused = await msg(id);
    expect(paused).toMatchObject({ status: 'queued', lastErrcode: 45009, errorCode: 'DELIVERY_APP_PAUSED' });
    expect(await grantState('oAuditQ1')).toBe('reserved'); // kept over the pause: right
    // After the reset WeChat answers -1 once (then would accept the send).
    emu.state.setFaults({ path: SEND_OT, errcodes: { '-1': 1 } });
    clock.set(paused.nextAttemptAt);
    await d.runOnce();
    const after = await msg(id);
    // Before the fix: 'unknown' ("… (after 2 attempts)"), grant consumed, never delivered.
    expect(after.status).toBe('queued');
    emu.state.clearFaults();
    clock.advance(60_000);
    expect((await settle(d, id)).status).toBe('sent');
    expect(emu.state.inbox(APP, 'oAuditQ1')).toHaveLength(1);
  });

  // WeChat's 45011 reads "api minute-quota reach limit, must slower, retry next minute". Against a real minute limit
  // (the emulator's, on the shared clock) the old plain retry spent an attempt per refusal: with more messages than
  // a few minutes' quota, messages ended `failed` (DELIVERY_RETRIES_EXHAUSTED) though WeChat would have taken them.
  it('a per-minute limit (45011) delays a campaign-sized backlog by minutes and fails nothing', async () => {
    const LIMIT = 4;
    const n = 20;
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(await oneTime(`oMinute${i}`));
    emu.state.setQuota(APP, SEND_OT, { minuteLimit: LIMIT });
    const d = dispatcher(client(), { maxAttempts: 2 });
    const start = clock.now();
    let cycles = 0;
    while ((await store.outbox.countMessages({ appId: APP })).sent < n && cycles++ < 200) {
      await d.runOnce();
      clock.advance(5_000);
    }
    const messages = await Promise.all(ids.map(msg));
    expect(messages.map((m) => m.status)).toEqual(ids.map(() => 'sent'));
    // No refusal counted as an attempt (each message was sent on its first counted attempt)...
    expect(messages.map((m) => m.attempts)).toEqual(ids.map(() => 1));
    // ...at most LIMIT sends a minute went through, so it took about n / LIMIT minutes...
    const minutes = (clock.now() - start) / 60_000;
    expect(minutes).toBeGreaterThanOrEqual(n / LIMIT - 1);
    expect(minutes).toBeLessThan(n / LIMIT + 2);
    // ...and everyone got exactly one message.
    for (let i = 0; i < n; i++) expect(emu.state.inbox(APP, `oMinute${i}`)).toHaveLength(1);
  });

  // Table: "43101 → failed with a consent code, and the ledger marks the grant revoked"; the only exception is "a
  // timeout after the request left: for one-time messages retry (… a duplicate into 43101, which then confirms the
  // first attempt went through: record sent)". A -1 is the busy row ("retry with … backoff"), not a timeout; the
  // emulator answers it without processing. A later 43101 is no confirmation of delivery.
  it('one-time: -1 then 43101 is failed with the grant revoked, not "sent" for a message no one received', async () => {
    const openid = 'oAuditM1';
    // The ledger holds a grant WeChat does not (used elsewhere, or never confirmed there): WeChat answers 43101.
    const id = await oneTime(openid, false);
    const d = dispatcher(client());
    emu.state.setFaults({ path: SEND_OT, errcodes: { '-1': 1 } });
    await d.runOnce();
    emu.state.clearFaults();
    clock.advance(10_000);
    const m = await settle(d, id);
    expect(emu.state.inbox(APP, openid)).toHaveLength(0);
    // Before the fix: 'sent' with DELIVERY_CONFIRMED_BY_43101, grant 'consumed'.
    expect(m).toMatchObject({ status: 'failed', errorCode: 'DELIVERY_CONSENT_REVOKED', lastErrcode: 43101 });
    expect(await grantState(openid)).toBe('revoked');
  });
});
