// Three `wxsub serve` processes on one PostgreSQL share a 20,000-message campaign with no coordinator; one is
// killed (-9) mid-campaign: every message is still delivered exactly once.
import { describe, expect, it } from 'vitest';
import { skipUnless } from '../support/services.js';
import {
  createCampaign,
  deliveredCount,
  inboxHistogram,
  killHard,
  makeStoreTarget,
  openStore,
  seedConsents,
  spawnServe,
  startEmulator,
  stopGracefully,
  waitFor,
  useServeContext,
  type ServeProcess,
} from './support/delivery.js';

const N = 20_000;
const skip = await skipUnless('postgres');

const ctx = useServeContext();

describe.skipIf(skip)('three instances on PostgreSQL', () => {
  it('share the campaign; one is killed; every message is delivered exactly once', async () => {
    ctx.target = await makeStoreTarget('postgres');
    const store = (ctx.store = await openStore(ctx.target));
    const { emu, baseUrl } = await startEmulator();
    ctx.emu = emu;
    await seedConsents(store, emu, N, 'one-time');
    // Some -1 so retries cross instances too.
    emu.state.setFaults({ path: '/cgi-bin/message/template/subscribe', errcodes: { '-1': 0.05 } });

    const procs = [
      spawnServe(ctx.target, baseUrl),
      spawnServe(ctx.target, baseUrl),
      spawnServe(ctx.target, baseUrl),
    ];
    ctx.procs.push(...procs);
    await Promise.all(procs.map((p) => p.url));
    const campaignId = await createCampaign(store, 'one-time');

    await waitFor(() => deliveredCount(emu) >= N / 3, 120_000, 20);
    const victim = procs[0] as ServeProcess;
    await killHard(victim);
    const atKill = await store.outbox.countMessages({ campaignId });

    await waitFor(async () => (await store.outbox.getCampaign(campaignId))?.status === 'done', 150_000, 250);
    await Promise.all(procs.slice(1).map((p) => stopGracefully(p)));

    const c = await store.outbox.getCampaign(campaignId);
    const inbox = inboxHistogram(emu, N);
    console.log('[delivery-multi] at kill', atKill, 'final', c?.stats, inbox);
    expect(atKill.total).toBeGreaterThan(0);
    expect(c?.stats).toMatchObject({ total: N, sent: N, failed: 0, unknown: 0, queued: 0, sending: 0 });
    expect(inbox).toMatchObject({ received: N, max: 1, twice: 0, none: 0 });
  }, 240_000);
});
