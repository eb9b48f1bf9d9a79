// The campaign-under-faults suite, defined per engine by delivery-campaign-<engine>.test.ts: 20,000-message campaigns through the real dispatcher, SDK and emulator (real sockets) while the emulator injects
// 10% -1, 5% 45011 and 2% dropped connections: every message ends final and no user receives anything twice.
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatcher, type Dispatcher } from '../../../src/delivery/dispatcher.js';
import type { Emulator } from '../../../src/emulator/index.js';
import type { Engine, Store } from '../../../src/store/store.js';
import { createWeChatClient } from '../../../src/wechat/client.js';
import { errcodeInfo } from '../../../src/wechat/errcodes.js';
import { skipUnless } from '../../support/services.js';
import {
  APP_ID,
  APP_SECRET,
  FAST_DELIVERY,
  createCampaign,
  inboxHistogram,
  makeStoreTarget,
  openStore,
  seedConsents,
  startEmulator,
  waitFor,
  type StoreTarget,
} from './delivery.js';

const N = 20_000;

type Ctx = {
  target?: StoreTarget;
  store?: Store;
  emu?: Emulator;
  dispatcher?: Dispatcher;
  client?: { close?: () => Promise<void> };
};
let ctx: Ctx = {};

async function cleanup(): Promise<void> {
  await ctx.dispatcher?.stop();
  await ctx.client?.close?.();
  await ctx.emu?.close();
  await ctx.store?.close();
  await ctx.target?.cleanup();
  ctx = {};
}

async function runCampaign(engine: Engine, kind: 'one-time' | 'notification', dropAfterProcessing: boolean) {
  ctx.target = await makeStoreTarget(engine);
  const store = (ctx.store = await openStore(ctx.target));
  const { emu, baseUrl } = await startEmulator();
  ctx.emu = emu;
  await seedConsents(store, emu, N, kind);
  const path =
    kind === 'one-time' ? '/cgi-bin/message/template/subscribe' : '/cgi-bin/message/subscribe/bizsend';
  emu.state.setFaults({ path, errcodes: { '-1': 0.1, '45011': 0.05 }, drop: 0.02, dropAfterProcessing });

  const client = createWeChatClient({}, { appId: APP_ID, secret: APP_SECRET, baseUrl });
  ctx.client = client as { close?: () => Promise<void> };
  const dispatcher = (ctx.dispatcher = createDispatcher(
    { store, wechat: () => client, errcodeAction: (c) => errcodeInfo(c).action },
    // Injected at random, 45011 is a transient fault here, not a per-minute limit: retried with backoff.
    { ...FAST_DELIVERY, pollIntervalMs: 50, campaignBatchSize: 2000, minuteLimit: 'backoff' },
  ));
  const campaignId = await createCampaign(store, kind);
  const t0 = Date.now();
  dispatcher.start();
  await waitFor(async () => (await store.outbox.getCampaign(campaignId))?.status === 'done', 150_000, 250);
  const elapsed = Date.now() - t0;
  await dispatcher.stop();
  const campaign = await store.outbox.getCampaign(campaignId);
  const inbox = inboxHistogram(emu, N);
  console.log(
    `[delivery-campaign] ${engine} ${kind}: ${N} in ${elapsed} ms`,
    campaign?.stats,
    inbox,
    dispatcher.status().counters,
  );
  return { campaign, inbox, counters: dispatcher.status().counters };
}

/** Registers the two campaign tests (one-time and notification) for `engine`. */
export async function defineCampaignSuite(engine: Engine): Promise<void> {
  const skip = engine === 'postgres' && (await skipUnless('postgres'));
  describe(`campaign of 20,000 under faults on ${engine}`, () => {
    afterEach(cleanup);

    it.skipIf(skip)(
      'one-time: every message sent exactly once, retries and dropped connections included',
      async () => {
        // Dropped after processing: WeChat delivered, the sender never heard; the retry's 43101 confirms it.
        const { campaign, inbox, counters } = await runCampaign(engine, 'one-time', true);
        expect(campaign?.stats).toMatchObject({
          total: N,
          queued: 0,
          sending: 0,
          sent: N,
          failed: 0,
          unknown: 0,
        });
        expect(inbox).toMatchObject({ received: N, max: 1, twice: 0, none: 0 });
        // The faults really happened and were retried.
        expect(counters.retried).toBeGreaterThan(N * 0.1);
      },
      240_000,
    );

    it.skipIf(skip)(
      'notification: retried on -1/45011, unknown (never resent) after a dropped connection, nobody twice',
      async () => {
        const { campaign, inbox } = await runCampaign(engine, 'notification', engine === 'sqlite');
        const s = campaign?.stats;
        expect(s).toMatchObject({ total: N, queued: 0, sending: 0, failed: 0 });
        if (s === undefined) throw new Error('no campaign');
        expect(s.sent + s.unknown).toBe(N);
        // About 2% of first attempts are dropped; the emulator gave every user 2 credits, so a resend would show.
        expect(s.unknown).toBeGreaterThan(N * 0.01);
        expect(s.unknown).toBeLessThan(N * 0.04);
        expect(inbox.twice).toBe(0);
        expect(inbox.received).toBeGreaterThanOrEqual(s.sent);
        expect(inbox.received).toBeLessThanOrEqual(s.sent + s.unknown);
      },
      240_000,
    );
  });
}
