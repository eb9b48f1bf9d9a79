// The one contract suite every Store adapter must pass (run by sqlite/sqlite.test.ts and postgres/postgres.test.ts).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAppError } from '../errors.js';
import { emptyStats, encodeCursor } from './common.js';
import type {
  CampaignStats,
  EnqueueInput,
  NotificationPayload,
  OneTimePayload,
  OutboxMessage,
  Store,
} from './store.js';

/** How the suite obtains a fresh, migrated, empty store for every test and disposes of it. */
export type StoreContractOptions = {
  /** Returns a migrated store with no rows. */
  create: () => Promise<Store>;
  /** Closes the store (and drops whatever `create` made). @default store.close() */
  destroy?: (store: Store) => Promise<void>;
};

const T0 = Date.UTC(2026, 0, 1);
const APP = 'wxapp0000000000001';
const TPL = 'tpl-one-time';
const NTPL = 'tpl-notify';
const oneTimePayload: OneTimePayload = { title: 'Order shipped', content: 'Your order is on its way' };
const notifyPayload: NotificationPayload = { data: { thing1: { value: 'hello' } } };

const oneTime = (openid: string, extra: Partial<EnqueueInput> = {}): EnqueueInput => ({
  appId: APP,
  kind: 'one-time',
  openid,
  templateId: TPL,
  scene: 'any',
  payload: oneTimePayload,
  now: T0,
  ...extra,
});
const notification = (openid: string, extra: Partial<EnqueueInput> = {}): EnqueueInput => ({
  appId: APP,
  kind: 'notification',
  openid,
  templateId: NTPL,
  payload: notifyPayload,
  now: T0,
  ...extra,
});

/**
 * The kept message counts (`countMessages`, `getCampaign().stats`) must equal a recount of the messages themselves,
 * overall, per app and per campaign: checked after every contract test, so every status change the suite makes
 * (enqueue, claim, reclaim, expiry, completion, cancel) is also a test of the counts.
 */
async function expectCountsMatchMessages(store: Store): Promise<void> {
  const all: OutboxMessage[] = [];
  let cursor: string | null = null;
  do {
    const page: Awaited<ReturnType<Store['outbox']['listMessages']>> = await store.outbox.listMessages({
      limit: 500,
      ...(cursor ? { cursor } : {}),
    });
    all.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null);
  const recount = (pick: (m: OutboxMessage) => boolean): CampaignStats => {
    const s: CampaignStats = emptyStats();
    for (const m of all.filter(pick)) {
      s[m.status]++;
      s.total++;
    }
    return s;
  };
  await expectCounts(store, all, recount);
  // Where counts are folded later, folding must not change them.
  if (store.outbox.foldMessageCounts !== undefined) {
    await store.outbox.foldMessageCounts();
    await expectCounts(store, all, recount);
  }
}

async function expectCounts(
  store: Store,
  all: OutboxMessage[],
  recount: (pick: (m: OutboxMessage) => boolean) => CampaignStats,
): Promise<void> {
  expect(await store.outbox.countMessages({}), 'counts of all messages').toEqual(recount(() => true));
  for (const appId of new Set(all.map((m) => m.appId)))
    expect(await store.outbox.countMessages({ appId }), `counts of app ${appId}`).toEqual(
      recount((m) => m.appId === appId),
    );
  for (const campaignId of new Set(all.flatMap((m) => (m.campaignId === null ? [] : [m.campaignId])))) {
    const want = recount((m) => m.campaignId === campaignId);
    expect(await store.outbox.countMessages({ campaignId }), `counts of campaign ${campaignId}`).toEqual(
      want,
    );
    expect((await store.outbox.getCampaign(campaignId))?.stats, `stats of campaign ${campaignId}`).toEqual(
      want,
    );
  }
}

/**
 * Registers the store contract tests under `describe(name)`.
 * @example runStoreContract('sqlite', { create: async () => { const s = createSqliteStore({ path }); await s.migrate(); return s; } })
 */
export function runStoreContract(name: string, options: StoreContractOptions): void {
  describe(`store contract: ${name}`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await options.create();
    });
    afterEach(async () => {
      try {
        await expectCountsMatchMessages(store);
      } finally {
        await (options.destroy ? options.destroy(store) : store.close());
      }
    });

    const grant = (openid: string, scene: number, now = T0, templateId = TPL) =>
      store.grants.recordOneTime({ appId: APP, openid, templateId, scene, now });
    const getGrant = (openid: string, scene: number) =>
      store.grants.get({ appId: APP, openid, templateId: TPL, scene });
    /** A new campaign (state `enqueuing`) on TPL or NTPL, with the usual payload of its kind, created at T0. */
    const newCampaign = (name: string, kind: 'one-time' | 'notification') =>
      store.outbox.createCampaign({
        appId: APP,
        name,
        kind,
        templateId: kind === 'one-time' ? TPL : NTPL,
        sceneFilter: null,
        payload: kind === 'one-time' ? oneTimePayload : notifyPayload,
        now: T0,
      });
    /** A one-time campaign over every available grant, its messages enqueued (one batch). */
    const enqueuedOneTimeCampaign = async (name: string) => {
      const c = await newCampaign(name, 'one-time');
      await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 10, now: T0 });
      return c;
    };
    const mustEnqueue = async (input: EnqueueInput) => {
      const r = await store.outbox.enqueueMessage(input);
      if (!r.ok) throw new Error(`enqueue failed: ${r.reason}`);
      return r.message;
    };

    describe('migrations', () => {
      it('re-running migrate applies nothing', async () => {
        expect(await store.migrate()).toBe(0);
      });
    });

    describe('one-time grants', () => {
      it('records a confirm once; repeated confirms do not stack', async () => {
        const a = await grant('u1', 1000);
        expect(a.created).toBe(true);
        expect(a.grant).toMatchObject({
          appId: APP,
          openid: 'u1',
          templateId: TPL,
          scene: 1000,
          state: 'available',
          closedAt: null,
        });
        expect(a.grant.id).toMatch(/^[0-9A-Z]{26}$/);
        const b = await grant('u1', 1000, T0 + 5000);
        expect(b.created).toBe(false);
        expect(b.grant.id).toBe(a.grant.id);
        expect(b.grant.confirmedAt).toBe(T0 + 5000);
        expect(
          await store.grants.consume({ appId: APP, openid: 'u1', templateId: TPL, scene: 1000, now: T0 }),
        ).toBe(true);
        expect(
          await store.grants.consume({ appId: APP, openid: 'u1', templateId: TPL, scene: 1000, now: T0 }),
        ).toBe(false);
      });

      it('re-opens a consumed or revoked grant as a new send right', async () => {
        await grant('u1', 1);
        await store.grants.consume({ appId: APP, openid: 'u1', templateId: TPL, scene: 1, now: T0 + 1 });
        expect(await getGrant('u1', 1)).toMatchObject({ state: 'consumed', closedAt: T0 + 1 });
        const again = await grant('u1', 1, T0 + 2);
        expect(again.created).toBe(true);
        expect(again.grant).toMatchObject({ state: 'available', closedAt: null, confirmedAt: T0 + 2 });
        expect(await store.grants.revoke({ appId: APP, openid: 'u1', templateId: TPL, now: T0 + 3 })).toBe(1);
        expect((await grant('u1', 1, T0 + 4)).grant.state).toBe('available');
      });

      it('keeps a reserved grant reserved on a new confirm', async () => {
        await grant('u1', 7);
        await mustEnqueue(oneTime('u1', { scene: 7 }));
        const r = await grant('u1', 7, T0 + 10);
        expect(r.created).toBe(false);
        expect(r.grant.state).toBe('reserved');
      });

      it('re-opens a grant revoked while its message waits for that message: no second message gets it', async () => {
        await grant('u1', 1);
        const m1 = await mustEnqueue(oneTime('u1', { scene: 1 }));
        expect(await store.grants.revoke({ appId: APP, openid: 'u1', templateId: TPL, now: T0 + 1 })).toBe(1);
        // The user confirms scene 1 again (popup or consent page): one right, and m1 still waits to use it.
        const again = await grant('u1', 1, T0 + 2);
        expect(again).toMatchObject({ created: true, grant: { state: 'reserved', closedAt: null } });
        const m2 = await store.outbox.enqueueMessage(oneTime('u1', { scene: 1, now: T0 + 3 }));
        expect(m2).toMatchObject({ ok: false, reason: 'no-grant', heldScenes: [] });
        // The same through the consent redeem, after m1 was sent on that right.
        const [c] = await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 1000, now: T0 + 4 });
        expect(c?.id).toBe(m1.id);
        await store.outbox.complete({ id: m1.id, owner: 'w', outcome: { status: 'sent' }, now: T0 + 5 });
        expect((await getGrant('u1', 1))?.state).toBe('consumed');
        await grant('u1', 1, T0 + 6);
        const m3 = await mustEnqueue(oneTime('u1', { scene: 1, now: T0 + 6 }));
        await store.grants.revoke({ appId: APP, openid: 'u1', templateId: TPL, scene: 1, now: T0 + 7 });
        const redeemed = await store.nonces.redeemOneTime({
          nonce: 'n-reserved',
          expiresAt: T0 + 600_000,
          appId: APP,
          templateId: TPL,
          scene: 1,
          now: T0 + 8,
          action: 'confirm',
          openid: 'u1',
        });
        expect(redeemed).toMatchObject({ fresh: true, grant: { state: 'reserved' } });
        expect((await store.outbox.enqueueMessage(oneTime('u1', { now: T0 + 9 }))).ok).toBe(false);
        expect((await store.outbox.getMessage(m3.id))?.status).toBe('queued');
      });

      it('a 43101 leaves available a consent the user gave again while that attempt was in flight', async () => {
        const revoke = {
          status: 'failed' as const,
          grant: 'revoke' as const,
          lastErrcode: 43101,
          errorCode: 'DELIVERY_CONSENT_REVOKED',
          errorMessage: '43101',
        };
        await grant('u1', 1);
        await grant('u2', 1);
        const a = await mustEnqueue(oneTime('u1'));
        const b = await mustEnqueue(oneTime('u2'));
        await store.outbox.claim({ owner: 'w', limit: 2, leaseMs: 30_000, now: T0 });
        await store.outbox.markAttemptStarted({ ids: [a.id, b.id], owner: 'w', now: T0 + 1 });
        await grant('u1', 1, T0 + 5); // confirmed again on WeChat's page after WeChat looked at the send
        expect(
          await store.outbox.completeMany?.({
            owner: 'w',
            now: T0 + 6,
            items: [
              { id: a.id, outcome: revoke },
              { id: b.id, outcome: revoke },
            ],
          }),
        ).toEqual([true, true]);
        expect(await getGrant('u1', 1)).toMatchObject({ state: 'available', confirmedAt: T0 + 5 });
        expect((await getGrant('u2', 1))?.state).toBe('revoked');
        // The new consent is one send right, for the next message.
        expect((await mustEnqueue(oneTime('u1', { now: T0 + 7 }))).scene).toBe(1);
      });

      it('revokes every open grant of a template, or one scene', async () => {
        await grant('u1', 1);
        await grant('u1', 2);
        await grant('u1', 3);
        await store.grants.consume({ appId: APP, openid: 'u1', templateId: TPL, scene: 3, now: T0 });
        expect(
          await store.grants.revoke({ appId: APP, openid: 'u1', templateId: TPL, scene: 1, now: T0 }),
        ).toBe(1);
        expect(await store.grants.availableScenes({ appId: APP, openid: 'u1', templateId: TPL })).toEqual([
          2,
        ]);
        expect(await store.grants.revoke({ appId: APP, openid: 'u1', templateId: TPL, now: T0 })).toBe(1);
        expect(
          await store.grants.consume({ appId: APP, openid: 'u1', templateId: TPL, scene: 2, now: T0 }),
        ).toBe(false);
        expect((await getGrant('u1', 3))?.state).toBe('consumed');
      });

      it('lists available and known scenes, one grant, and a user’s holdings', async () => {
        await grant('u1', 30);
        await grant('u1', 10);
        await grant('u1', 20);
        await grant('u2', 5);
        await store.grants.consume({ appId: APP, openid: 'u1', templateId: TPL, scene: 20, now: T0 });
        expect(await store.grants.availableScenes({ appId: APP, openid: 'u1', templateId: TPL })).toEqual([
          10, 30,
        ]);
        expect(await store.grants.knownScenes({ appId: APP, openid: 'u1', templateId: TPL })).toEqual([
          10, 20, 30,
        ]);
        expect(await getGrant('u9', 1)).toBeNull();
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'u1',
          templateId: NTPL,
          count: 2,
          now: T0,
        });
        const h = await store.grants.listForUser({ appId: APP, openid: 'u1' });
        expect(h.grants.map((g) => [g.scene, g.state])).toEqual([
          [10, 'available'],
          [20, 'consumed'],
          [30, 'available'],
        ]);
        expect(h.credits).toMatchObject([{ templateId: NTPL, available: 2 }]);
        expect(
          (await store.grants.listForUser({ appId: APP, openid: 'u1', templateId: NTPL })).grants,
        ).toEqual([]);
      });

      it('pages available grants with an opaque cursor', async () => {
        for (let i = 0; i < 7; i++) await grant(`p${i}`, i);
        await store.grants.consume({ appId: APP, openid: 'p3', templateId: TPL, scene: 3, now: T0 });
        const seen: string[] = [];
        let cursor: string | undefined;
        for (let guard = 0; guard < 10; guard++) {
          const page = await store.grants.listAvailable({
            appId: APP,
            templateId: TPL,
            limit: 2,
            ...(cursor ? { cursor } : {}),
          });
          seen.push(...page.items.map((g) => g.openid));
          if (page.nextCursor === null) break;
          cursor = page.nextCursor;
        }
        expect(seen.sort()).toEqual(['p0', 'p1', 'p2', 'p4', 'p5', 'p6']);
        expect(
          (await store.grants.listAvailable({ appId: APP, openid: 'p5' })).items.map((g) => g.scene),
        ).toEqual([5]);
        expect((await store.grants.listAvailable({ appId: 'other' })).items).toEqual([]);
        await expect(store.grants.listAvailable({ appId: APP, cursor: 'not a cursor!' })).rejects.toSatisfy(
          (e) => isAppError(e, 'STORE_INVALID_CURSOR'),
        );
      });

      it('refuses a well-formed cursor whose key is not an id, on every engine alike', async () => {
        await grant('f1', 1);
        // Keys an engine would treat differently (PostgreSQL refuses NUL in text) or that no id can equal.
        for (const key of ['\u0000', 'A\u0000B', '\ud800', "' OR 1=1 --", 'x'.repeat(129)]) {
          await expect(
            store.grants.listAvailable({ appId: APP, cursor: encodeCursor('g', key) }),
            JSON.stringify(key),
          ).rejects.toSatisfy((e) => isAppError(e, 'STORE_INVALID_CURSOR'));
          await expect(
            store.outbox.listMessages({ cursor: encodeCursor('m', key) }),
            JSON.stringify(key),
          ).rejects.toSatisfy((e) => isAppError(e, 'STORE_INVALID_CURSOR'));
        }
        // A cursor of the other listing is refused too.
        await expect(store.outbox.listMessages({ cursor: encodeCursor('g', 'A') })).rejects.toSatisfy((e) =>
          isAppError(e, 'STORE_INVALID_CURSOR'),
        );
      });

      it('counts refusals', async () => {
        await store.grants.recordRefusal({ appId: APP, templateId: TPL, scene: 1, now: T0 });
        await store.grants.recordRefusal({ appId: APP, templateId: TPL, scene: 2, openid: 'u1', now: T0 });
        await store.grants.recordRefusal({ appId: APP, templateId: 'other', scene: 2, now: T0 });
        expect(await store.grants.countRefusals({ appId: APP, templateId: TPL })).toBe(2);
        expect(await store.grants.countRefusals({ appId: APP })).toBe(3);
        expect(await store.grants.countRefusals({ appId: 'nobody' })).toBe(0);
      });
    });

    describe('notification credits', () => {
      const credits = (openid: string, count: number, now = T0) =>
        store.grants.addNotificationCredits({ appId: APP, openid, templateId: NTPL, count, now });
      const creditOf = (openid: string) =>
        store.grants.getNotificationCredit({ appId: APP, openid, templateId: NTPL });
      const revoked = {
        status: 'failed' as const,
        grant: 'revoke' as const,
        lastErrcode: 43101,
        errorCode: 'DELIVERY_CONSENT_REVOKED',
        errorMessage: '43101',
      };
      const released = {
        status: 'failed' as const,
        grant: 'release' as const,
        lastErrcode: 47003,
        errorCode: 'DELIVERY_REJECTED',
        errorMessage: '47003',
      };

      it('credits cleared while a message holds one: cancelling that message gives nothing back', async () => {
        await credits('u1', 1);
        const c = await newCampaign('n', 'notification');
        expect(await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 10, now: T0 })).toBe(1);
        // The user turned the template off (subscribe_msg_change_event): WeChat holds no credit for them any more.
        await store.grants.clearNotificationCredits({
          appId: APP,
          openid: 'u1',
          templateId: NTPL,
          now: T0 + 1,
        });
        expect(await creditOf('u1')).toMatchObject({ available: 0, reserved: 0, longTerm: false });
        expect(await store.outbox.cancelCampaign({ id: c.id, now: T0 + 2 })).toEqual({
          cancelled: true,
          messages: 1,
        });
        expect(await creditOf('u1')).toMatchObject({ available: 0, reserved: 0 });
      });

      it('after a 43101 another message of the user released by a 47003 gives nothing back', async () => {
        await credits('u1', 2);
        const a = await mustEnqueue(notification('u1'));
        const b = await mustEnqueue(notification('u1'));
        await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 30_000, now: T0 });
        await store.outbox.markAttemptStarted({ ids: [a.id], owner: 'w', now: T0 });
        expect(await store.outbox.complete({ id: a.id, owner: 'w', outcome: revoked, now: T0 + 1 })).toBe(
          true,
        );
        expect(await creditOf('u1')).toMatchObject({ available: 0, reserved: 0, longTerm: false });
        const [c] = await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 30_000, now: T0 + 2 });
        expect(c?.id).toBe(b.id);
        await store.outbox.markAttemptStarted({ ids: [b.id], owner: 'w', now: T0 + 2 });
        expect(await store.outbox.complete({ id: b.id, owner: 'w', outcome: released, now: T0 + 3 })).toBe(
          true,
        );
        expect(await creditOf('u1')).toMatchObject({ available: 0, reserved: 0 });
      });

      it('a group [43101, 47003] of one user, in either order: no credit left, none reserved', async () => {
        for (const [n, order] of [
          ['x', [revoked, released]],
          ['y', [released, revoked]],
        ] as const) {
          await credits(n, 3);
          const a = await mustEnqueue(notification(n));
          const b = await mustEnqueue(notification(n));
          const rest = await mustEnqueue(notification(n));
          const claimed = await store.outbox.claim({ owner: n, limit: 10, leaseMs: 30_000, now: T0 });
          const ids = claimed.filter((m) => m.openid === n).map((m) => m.id);
          expect(ids).toEqual([a.id, b.id, rest.id]);
          await store.outbox.markAttemptStarted({ ids: [a.id, b.id], owner: n, now: T0 });
          // The third was never sent: put back, it stays queued without a credit to give back.
          const putBack = {
            status: 'retry' as const,
            nextAttemptAt: T0,
            errorCode: 'DELIVERY_RELEASED',
            errorMessage: 'x',
            unsent: true,
          };
          expect(
            await store.outbox.completeMany?.({
              owner: n,
              now: T0 + 1,
              items: [
                { id: a.id, outcome: order[0] },
                { id: b.id, outcome: order[1] },
                { id: rest.id, outcome: putBack },
              ],
            }),
          ).toEqual([true, true, true]);
          expect(await creditOf(n), n).toMatchObject({ available: 0, reserved: 0, longTerm: false });
          const [again] = await store.outbox.claim({ owner: n, limit: 1, leaseMs: 30_000, now: T0 + 2 });
          expect(again?.id).toBe(rest.id);
          await store.outbox.markAttemptStarted({ ids: [rest.id], owner: n, now: T0 + 2 });
          await store.outbox.complete({ id: rest.id, owner: n, outcome: released, now: T0 + 3 });
          expect(await creditOf(n), n).toMatchObject({ available: 0, reserved: 0 });
        }
      });

      it('a 43101 keeps credits the user accepted while that attempt was in flight, and wipes older ones', async () => {
        // WeChat answered 43101 for a send it looked at before the new accept: the accept still stands there.
        await credits('u1', 1);
        const a = await mustEnqueue(notification('u1'));
        await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 30_000, now: T0 });
        await store.outbox.markAttemptStarted({ ids: [a.id], owner: 'w', now: T0 + 1 });
        await credits('u1', 1, T0 + 5);
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'u1',
          templateId: NTPL,
          count: 0,
          longTerm: true,
          now: T0 + 5,
        });
        expect(await store.outbox.complete({ id: a.id, owner: 'w', outcome: revoked, now: T0 + 6 })).toBe(
          true,
        );
        expect(await creditOf('u1')).toMatchObject({ available: 1, reserved: 0, longTerm: true });
        // Accepted before the attempt started: WeChat had it when it answered 43101, so it is gone.
        await credits('u2', 1);
        const b = await mustEnqueue(notification('u2'));
        await credits('u2', 2, T0 + 1);
        const c = await mustEnqueue(notification('u2'));
        await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 30_000, now: T0 + 2 });
        await store.outbox.markAttemptStarted({ ids: [b.id], owner: 'w', now: T0 + 2 });
        expect(await store.outbox.complete({ id: b.id, owner: 'w', outcome: revoked, now: T0 + 6 })).toBe(
          true,
        );
        expect(await creditOf('u2')).toMatchObject({ available: 0, reserved: 0, longTerm: false });
        // The other queued message's credit was detached: releasing it gives nothing back.
        await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 30_000, now: T0 + 7 });
        await store.outbox.markAttemptStarted({ ids: [c.id], owner: 'w', now: T0 + 7 });
        await store.outbox.complete({ id: c.id, owner: 'w', outcome: released, now: T0 + 8 });
        expect(await creditOf('u2')).toMatchObject({ available: 0, reserved: 0 });
      });

      it('a 43101 that started after the last accept wipes it, in a group with one that started before', async () => {
        await credits('u1', 3);
        const a = await mustEnqueue(notification('u1'));
        const b = await mustEnqueue(notification('u1'));
        await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 30_000, now: T0 });
        await store.outbox.markAttemptStarted({ ids: [a.id], owner: 'w', now: T0 });
        await credits('u1', 1, T0 + 1);
        await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 30_000, now: T0 + 2 });
        await store.outbox.markAttemptStarted({ ids: [b.id], owner: 'w', now: T0 + 2 });
        expect(
          await store.outbox.completeMany?.({
            owner: 'w',
            now: T0 + 3,
            items: [
              { id: a.id, outcome: revoked },
              { id: b.id, outcome: revoked },
            ],
          }),
        ).toEqual([true, true]);
        expect(await creditOf('u1')).toMatchObject({ available: 0, reserved: 0, longTerm: false });
      });

      it('adds, reads and clears credits; long-term sticks until cleared', async () => {
        expect(
          await store.grants.getNotificationCredit({ appId: APP, openid: 'u1', templateId: NTPL }),
        ).toBeNull();
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'u1',
          templateId: NTPL,
          count: 1,
          now: T0,
        });
        const c = await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'u1',
          templateId: NTPL,
          count: 2,
          now: T0 + 1,
        });
        expect(c).toMatchObject({ available: 3, reserved: 0, longTerm: false, updatedAt: T0 + 1 });
        const lt = await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'u1',
          templateId: NTPL,
          count: 0,
          longTerm: true,
          now: T0,
        });
        expect(lt.longTerm).toBe(true);
        await store.grants.clearNotificationCredits({
          appId: APP,
          openid: 'u1',
          templateId: NTPL,
          now: T0 + 2,
        });
        expect(
          await store.grants.getNotificationCredit({ appId: APP, openid: 'u1', templateId: NTPL }),
        ).toMatchObject({
          available: 0,
          longTerm: false,
        });
      });
    });

    describe('enqueue', () => {
      it('reserves the requested scene, or the lowest available one for "any"', async () => {
        await grant('u1', 50);
        await grant('u1', 20);
        await grant('u1', 90);
        const m1 = await mustEnqueue(oneTime('u1'));
        expect(m1).toMatchObject({
          kind: 'one-time',
          scene: 20,
          status: 'queued',
          attempts: 0,
          nextAttemptAt: T0,
          payload: oneTimePayload,
        });
        expect(m1.grantId).toBe((await getGrant('u1', 20))?.id);
        expect((await getGrant('u1', 20))?.state).toBe('reserved');
        const m2 = await mustEnqueue(oneTime('u1', { scene: 90 }));
        expect(m2.scene).toBe(90);
        expect(await store.grants.availableScenes({ appId: APP, openid: 'u1', templateId: TPL })).toEqual([
          50,
        ]);
      });

      it('without a grant reports what the user holds and writes nothing', async () => {
        await grant('u1', 5);
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'u1',
          templateId: TPL,
          count: 2,
          now: T0,
        });
        const r = await store.outbox.enqueueMessage(
          oneTime('u1', { scene: 6, idempotencyKey: 'k1', requestHash: 'h' }),
        );
        expect(r).toEqual({ ok: false, reason: 'no-grant', heldScenes: [5], notificationCredits: 2 });
        expect(await store.outbox.enqueueMessage(oneTime('nobody'))).toEqual({
          ok: false,
          reason: 'no-grant',
          heldScenes: [],
          notificationCredits: 0,
        });
        expect((await store.outbox.countMessages({})).total).toBe(0);
        expect((await getGrant('u1', 5))?.state).toBe('available');
        // The failed idempotency key was not taken.
        await grant('u1', 6);
        expect(
          await store.outbox.enqueueMessage(
            oneTime('u1', { scene: 6, idempotencyKey: 'k1', requestHash: 'h' }),
          ),
        ).toMatchObject({
          ok: true,
          created: true,
        });
      });

      it('reserves one notification credit; long-term templates need none', async () => {
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'u1',
          templateId: NTPL,
          count: 1,
          now: T0,
        });
        const m = await mustEnqueue(notification('u1'));
        expect(m).toMatchObject({ kind: 'notification', scene: null, grantId: null, payload: notifyPayload });
        expect(
          await store.grants.getNotificationCredit({ appId: APP, openid: 'u1', templateId: NTPL }),
        ).toMatchObject({
          available: 0,
          reserved: 1,
        });
        expect(await store.outbox.enqueueMessage(notification('u1'))).toMatchObject({
          ok: false,
          reason: 'no-grant',
          notificationCredits: 0,
        });
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'u2',
          templateId: NTPL,
          count: 0,
          longTerm: true,
          now: T0,
        });
        for (let i = 0; i < 3; i++) await mustEnqueue(notification('u2'));
        expect(
          await store.grants.getNotificationCredit({ appId: APP, openid: 'u2', templateId: NTPL }),
        ).toMatchObject({
          available: 0,
          reserved: 0,
          longTerm: true,
        });
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'u3',
          templateId: NTPL,
          count: 0,
          now: T0,
        });
        expect((await store.outbox.enqueueMessage(notification('u3'))).ok).toBe(false);
      });

      it('honours idempotency keys: same hash returns the first message, another hash conflicts', async () => {
        await grant('u1', 1);
        await grant('u1', 2);
        const a = await store.outbox.enqueueMessage(
          oneTime('u1', { idempotencyKey: 'key-1', requestHash: 'h1' }),
        );
        const b = await store.outbox.enqueueMessage(
          oneTime('u1', { idempotencyKey: 'key-1', requestHash: 'h1' }),
        );
        expect(a).toMatchObject({ ok: true, created: true });
        expect(b).toMatchObject({ ok: true, created: false });
        if (!a.ok || !b.ok) throw new Error('unreachable');
        expect(b.message.id).toBe(a.message.id);
        expect(b.message.idempotencyKey).toBe('key-1');
        const c = await store.outbox.enqueueMessage(
          oneTime('u1', { idempotencyKey: 'key-1', requestHash: 'h2' }),
        );
        expect(c).toEqual({ ok: false, reason: 'idempotency-conflict', existingId: a.message.id });
        expect(await store.grants.availableScenes({ appId: APP, openid: 'u1', templateId: TPL })).toEqual([
          2,
        ]);
        // Keys are per app.
        await store.grants.recordOneTime({ appId: 'app2', openid: 'u1', templateId: TPL, scene: 1, now: T0 });
        expect(
          await store.outbox.enqueueMessage(
            oneTime('u1', { appId: 'app2', idempotencyKey: 'key-1', requestHash: 'h9' }),
          ),
        ).toMatchObject({ ok: true, created: true });
      });

      it('100 concurrent enqueues for one grant: exactly one wins, for any scene or that scene', async () => {
        for (const [openid, scene] of [
          ['race', 'any'],
          ['race1', 1],
        ] as const) {
          await grant(openid, 1);
          const results = await Promise.all(
            Array.from({ length: 100 }, () => store.outbox.enqueueMessage(oneTime(openid, { scene }))),
          );
          expect(
            results.filter((r) => r.ok),
            `scene ${scene}`,
          ).toHaveLength(1);
          expect(results.filter((r) => !r.ok && r.reason === 'no-grant')).toHaveLength(99);
          expect((await store.outbox.countMessages({})).total).toBe(openid === 'race' ? 1 : 2);
        }
      });

      it('concurrent retries with one idempotency key create one message', async () => {
        for (let s = 0; s < 20; s++) await grant('idem', s);
        const results = await Promise.all(
          Array.from({ length: 20 }, () =>
            store.outbox.enqueueMessage(oneTime('idem', { idempotencyKey: 'same', requestHash: 'h' })),
          ),
        );
        const ids = new Set(results.map((r) => (r.ok ? r.message.id : 'x')));
        expect(ids.size).toBe(1);
        expect(results.filter((r) => r.ok && r.created)).toHaveLength(1);
        expect(
          (await store.grants.availableScenes({ appId: APP, openid: 'idem', templateId: TPL })).length,
        ).toBe(19);
      });

      it('retries of one keyed request never hold a grant another request needs, and the first takes the lowest scene', async () => {
        await grant('pair', 1);
        await grant('pair', 2);
        // Two grants, two distinct requests: each must get one, however many retries of the first run alongside.
        const results = await Promise.all([
          ...Array.from({ length: 15 }, () =>
            store.outbox.enqueueMessage(oneTime('pair', { idempotencyKey: 'first', requestHash: 'h1' })),
          ),
          store.outbox.enqueueMessage(oneTime('pair', { idempotencyKey: 'second', requestHash: 'h2' })),
        ]);
        expect(results.every((r) => r.ok)).toBe(true);
        const ids = new Set(results.map((r) => (r.ok ? r.message.id : 'x')));
        expect(ids.size).toBe(2);
        expect(await store.grants.availableScenes({ appId: APP, openid: 'pair', templateId: TPL })).toEqual(
          [],
        );
        // Alone, a keyed request with retries in flight takes the lowest scene it holds.
        await grant('low', 3);
        await grant('low', 4);
        const retried = await Promise.all(
          Array.from({ length: 15 }, () =>
            store.outbox.enqueueMessage(oneTime('low', { idempotencyKey: 'only', requestHash: 'h' })),
          ),
        );
        expect(new Set(retried.map((r) => (r.ok ? r.message.scene : -1)))).toEqual(new Set([3]));
        expect(await store.grants.availableScenes({ appId: APP, openid: 'low', templateId: TPL })).toEqual([
          4,
        ]);
      });
    });

    describe('consume under contention', () => {
      it('200 concurrent consumes of one grant: exactly one wins', async () => {
        await grant('hot', 42);
        const results = await Promise.all(
          Array.from({ length: 200 }, () =>
            store.grants.consume({ appId: APP, openid: 'hot', templateId: TPL, scene: 42, now: T0 }),
          ),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect((await getGrant('hot', 42))?.state).toBe('consumed');
      });
    });

    describe('claim, lease and complete', () => {
      const seed = async (n: number, prefix = 'c') => {
        const out = [];
        for (let i = 0; i < n; i++) {
          await grant(`${prefix}${i}`, 1);
          out.push(await mustEnqueue(oneTime(`${prefix}${i}`)));
        }
        return out;
      };

      it('claims due messages with a lease and an attempt, skipping future and paused ones', async () => {
        await seed(3);
        await grant('later', 1);
        await mustEnqueue(oneTime('later', { now: T0 + 60_000 }));
        await store.grants.recordOneTime({
          appId: 'paused',
          openid: 'p',
          templateId: TPL,
          scene: 1,
          now: T0,
        });
        await mustEnqueue(oneTime('p', { appId: 'paused' }));
        const got = await store.outbox.claim({
          owner: 'w1',
          limit: 10,
          leaseMs: 120_000,
          now: T0 + 1,
          excludeAppIds: ['paused'],
        });
        expect(got).toHaveLength(3);
        for (const m of got)
          expect(m).toMatchObject({
            status: 'sending',
            attempts: 1,
            leaseOwner: 'w1',
            leaseUntil: T0 + 120_001,
          });
        expect(
          await store.outbox.claim({
            owner: 'w2',
            limit: 10,
            leaseMs: 30_000,
            now: T0 + 2,
            excludeAppIds: ['paused'],
          }),
        ).toEqual([]);
        const later = await store.outbox.claim({ owner: 'w2', limit: 10, leaseMs: 30_000, now: T0 + 60_000 });
        expect(later.map((m) => m.openid).sort()).toEqual(['later', 'p']);
        expect(await store.outbox.claim({ owner: 'w2', limit: 0, leaseMs: 1, now: T0 + 60_000 })).toEqual([]);
      });

      it('two concurrent owners never get the same message', async () => {
        await seed(40);
        const claims = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            store.outbox.claim({ owner: `w${i % 2}`, limit: 7, leaseMs: 30_000, now: T0 + 1 }),
          ),
        );
        const ids = claims.flat().map((m) => m.id);
        expect(new Set(ids).size).toBe(ids.length);
        expect(ids.length).toBe(40);
      });

      it('re-claims one-time messages after the lease expires and fences the old owner', async () => {
        const [m] = await seed(1);
        await store.outbox.claim({ owner: 'dead', limit: 5, leaseMs: 10_000, now: T0 });
        // The dead owner's request was about to leave.
        expect(
          await store.outbox.markAttemptStarted({ ids: [m?.id ?? ''], owner: 'dead', now: T0 + 5 }),
        ).toEqual([true]);
        expect(await store.outbox.claim({ owner: 'w2', limit: 5, leaseMs: 10_000, now: T0 + 9_999 })).toEqual(
          [],
        );
        const again = await store.outbox.claim({ owner: 'w2', limit: 5, leaseMs: 10_000, now: T0 + 10_000 });
        expect(again).toHaveLength(1);
        expect(again[0]).toMatchObject({
          id: m?.id,
          attempts: 2,
          leaseOwner: 'w2',
          errorCode: 'DELIVERY_MAY_HAVE_LEFT',
          attemptStartedAt: null,
        });
        expect(
          await store.outbox.complete({
            id: m?.id ?? '',
            owner: 'dead',
            outcome: { status: 'sent' },
            now: T0 + 10_001,
          }),
        ).toBe(false);
        expect(
          await store.outbox.complete({
            id: m?.id ?? '',
            owner: 'w2',
            outcome: { status: 'sent', msgid: '77' },
            now: T0 + 10_002,
          }),
        ).toBe(true);
        expect(await store.outbox.getMessage(m?.id ?? '')).toMatchObject({
          status: 'sent',
          msgid: '77',
          sentAt: T0 + 10_002,
          leaseOwner: null,
        });
      });

      it('marks notifications whose lease expired mid-send unknown, never re-claimed', async () => {
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'n1',
          templateId: NTPL,
          count: 2,
          now: T0,
        });
        const m = await mustEnqueue(notification('n1'));
        await store.outbox.claim({ owner: 'dead', limit: 5, leaseMs: 10_000, now: T0 });
        await store.outbox.markAttemptStarted({ ids: [m.id], owner: 'dead', now: T0 + 1 });
        expect(
          await store.outbox.claim({ owner: 'w2', limit: 5, leaseMs: 10_000, now: T0 + 20_000 }),
        ).toEqual([]);
        expect(await store.outbox.getMessage(m.id)).toMatchObject({
          status: 'unknown',
          errorCode: 'DELIVERY_OUTCOME_UNKNOWN',
          attempts: 1,
        });
        expect(
          await store.grants.getNotificationCredit({ appId: APP, openid: 'n1', templateId: NTPL }),
        ).toMatchObject({
          available: 1,
          reserved: 0,
        });
        expect(
          await store.outbox.complete({
            id: m.id,
            owner: 'dead',
            outcome: { status: 'sent' },
            now: T0 + 20_001,
          }),
        ).toBe(false);
      });

      it('re-claims expired leases of one claim in id order when the limit splits them', async () => {
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'a',
          templateId: NTPL,
          count: 1,
          now: T0,
        });
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'b',
          templateId: NTPL,
          count: 1,
          now: T0,
        });
        const a = await mustEnqueue(notification('a'));
        await mustEnqueue(notification('b'));
        // a is claimed and put back unsent once (a stopping dispatcher), which rewrites its row; then one claim takes
        // both, so their leases end at the same instant.
        await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 1000, now: T0 });
        const unsent = {
          status: 'retry' as const,
          nextAttemptAt: T0,
          errorCode: 'DELIVERY_RELEASED',
          errorMessage: 'stopping',
          unsent: true,
        };
        expect(await store.outbox.complete({ id: a.id, owner: 'w', outcome: unsent, now: T0 + 1 })).toBe(
          true,
        );
        expect(
          await store.outbox.claim({ owner: 'dead', limit: 10, leaseMs: 1000, now: T0 + 2 }),
        ).toHaveLength(2);
        const [one] = await store.outbox.claim({ owner: 'heir', limit: 1, leaseMs: 1000, now: T0 + 60_000 });
        expect(one?.id).toBe(a.id);
      });

      it('re-claims a dead owner’s unstarted claims like queued ones: nothing unknown, no attempt counted', async () => {
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'n1',
          templateId: NTPL,
          count: 1,
          now: T0,
        });
        const n = await mustEnqueue(notification('n1'));
        const [o] = await seed(1, 'u');
        const oid = o?.id ?? '';
        // A first attempt that ended in a retry, so the one-time message carries errors from a real attempt.
        await store.outbox.claim({ owner: 'w1', limit: 5, leaseMs: 10_000, now: T0 });
        await store.outbox.markAttemptStarted({ ids: [n.id, oid], owner: 'w1', now: T0 });
        await store.outbox.complete({
          id: oid,
          owner: 'w1',
          outcome: {
            status: 'retry',
            nextAttemptAt: T0,
            lastErrcode: -1,
            errorCode: 'DELIVERY_WECHAT_BUSY',
            errorMessage: 'busy',
          },
          now: T0,
        });
        await store.outbox.complete({
          id: n.id,
          owner: 'w1',
          outcome: {
            status: 'retry',
            nextAttemptAt: T0,
            lastErrcode: 45011,
            errorCode: 'DELIVERY_WECHAT_BUSY',
            errorMessage: 'busy',
          },
          now: T0,
        });
        // The second claim dies before sending anything.
        const dead = await store.outbox.claim({ owner: 'dead', limit: 5, leaseMs: 10_000, now: T0 + 1 });
        expect(dead.map((m) => [m.attempts, m.attemptStartedAt])).toEqual([
          [2, null],
          [2, null],
        ]);
        expect(
          await store.outbox.claim({ owner: 'w2', limit: 5, leaseMs: 10_000, now: T0 + 10_000 }),
        ).toEqual([]);
        const again = await store.outbox.claim({ owner: 'w2', limit: 5, leaseMs: 10_000, now: T0 + 10_001 });
        expect(again.map((m) => m.id).sort()).toEqual([n.id, oid].sort());
        for (const m of again)
          expect(m).toMatchObject({
            status: 'sending',
            attempts: 2,
            leaseOwner: 'w2',
            errorCode: 'DELIVERY_WECHAT_BUSY',
            attemptStartedAt: null,
          });
        expect((await store.outbox.countMessages({})).unknown).toBe(0);
        // The credit is still held by the message; the grant still reserved.
        expect(
          await store.grants.getNotificationCredit({ appId: APP, openid: 'n1', templateId: NTPL }),
        ).toMatchObject({ available: 0, reserved: 1 });
        expect((await getGrant('u0', 1))?.state).toBe('reserved');
        // The dead owner is fenced off: it can neither start nor record.
        expect(
          await store.outbox.markAttemptStarted({ ids: [n.id], owner: 'dead', now: T0 + 10_002 }),
        ).toEqual([false]);
        expect(
          await store.outbox.complete({
            id: n.id,
            owner: 'dead',
            outcome: { status: 'sent' },
            now: T0 + 10_002,
          }),
        ).toBe(false);
        expect(
          await store.outbox.completeMany?.({
            owner: 'w2',
            now: T0 + 10_003,
            items: again.map((m) => ({ id: m.id, outcome: { status: 'sent' as const } })),
          }),
        ).toEqual([true, true]);
      });

      it('a retry put back unsent gives back the attempt its claim counted; a retry after a send does not', async () => {
        const [a, b] = await seed(2, 'r');
        await store.outbox.claim({ owner: 'w1', limit: 2, leaseMs: 10_000, now: T0 });
        const retry = { status: 'retry' as const, nextAttemptAt: T0, errorCode: 'X', errorMessage: 'x' };
        expect(
          await store.outbox.completeMany?.({
            owner: 'w1',
            now: T0 + 1,
            items: [
              { id: a?.id ?? '', outcome: { ...retry, unsent: true } },
              { id: b?.id ?? '', outcome: retry },
            ],
          }),
        ).toEqual([true, true]);
        expect(await store.outbox.getMessage(a?.id ?? '')).toMatchObject({ status: 'queued', attempts: 0 });
        expect(await store.outbox.getMessage(b?.id ?? '')).toMatchObject({ status: 'queued', attempts: 1 });
        await store.outbox.claim({ owner: 'w1', limit: 1, leaseMs: 10_000, now: T0 + 2 });
        expect(
          await store.outbox.complete({
            id: a?.id ?? '',
            owner: 'w1',
            outcome: { ...retry, unsent: true },
            now: T0 + 3,
          }),
        ).toBe(true);
        expect(await store.outbox.getMessage(a?.id ?? '')).toMatchObject({ attempts: 0 });
      });

      it('markAttemptStarted refuses an owner whose lease ran out, even before anyone else claims', async () => {
        const [m] = await seed(1, 'x');
        await store.outbox.claim({ owner: 'w1', limit: 1, leaseMs: 10_000, now: T0 });
        // Its lease timer could not reach the store: by now another instance may claim and send it.
        expect(
          await store.outbox.markAttemptStarted({ ids: [m?.id ?? ''], owner: 'w1', now: T0 + 10_000 }),
        ).toEqual([false]);
        expect(await store.outbox.getMessage(m?.id ?? '')).toMatchObject({ attemptStartedAt: null });
        expect(
          await store.outbox.markAttemptStarted({ ids: [m?.id ?? ''], owner: 'w1', now: T0 + 9_999 }),
        ).toEqual([true]);
      });

      it('markAttemptStarted marks only the owner’s sending messages, in one call for a group', async () => {
        const ms = await seed(4, 's');
        const ids = ms.map((m) => m.id);
        await store.outbox.claim({ owner: 'w1', limit: 3, leaseMs: 10_000, now: T0 });
        expect(await store.outbox.markAttemptStarted({ ids: [], owner: 'w1', now: T0 })).toEqual([]);
        // ids[3] is still queued; nobody else's lease counts.
        expect(await store.outbox.markAttemptStarted({ ids, owner: 'w1', now: T0 + 7 })).toEqual([
          true,
          true,
          true,
          false,
        ]);
        expect(
          await store.outbox.markAttemptStarted({ ids: [ids[0] ?? ''], owner: 'w9', now: T0 + 8 }),
        ).toEqual([false]);
        expect(await store.outbox.getMessage(ids[0] ?? '')).toMatchObject({ attemptStartedAt: T0 + 7 });
        expect(await store.outbox.getMessage(ids[3] ?? '')).toMatchObject({
          status: 'queued',
          attemptStartedAt: null,
        });
        // Started one-time messages come back flagged after the lease; the unstarted one (claimed later) plainly.
        await store.outbox.claim({ owner: 'w1', limit: 1, leaseMs: 10_000, now: T0 + 1 });
        const again = await store.outbox.claim({ owner: 'w2', limit: 10, leaseMs: 10_000, now: T0 + 20_000 });
        expect(
          again
            .map((m) => [m.openid, m.attempts, m.errorCode])
            .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
        ).toEqual([
          ['s0', 2, 'DELIVERY_MAY_HAVE_LEFT'],
          ['s1', 2, 'DELIVERY_MAY_HAVE_LEFT'],
          ['s2', 2, 'DELIVERY_MAY_HAVE_LEFT'],
          ['s3', 1, null],
        ]);
      });

      it('extendLease keeps a message from being re-claimed', async () => {
        const [m] = await seed(1);
        await store.outbox.claim({ owner: 'w1', limit: 1, leaseMs: 10_000, now: T0 });
        await store.outbox.extendLease({ ids: [m?.id ?? ''], owner: 'w1', leaseUntil: T0 + 50_000 });
        await store.outbox.extendLease({ ids: [m?.id ?? ''], owner: 'intruder', leaseUntil: T0 + 1 });
        expect(
          await store.outbox.claim({ owner: 'w2', limit: 1, leaseMs: 10_000, now: T0 + 20_000 }),
        ).toEqual([]);
        expect((await store.outbox.getMessage(m?.id ?? ''))?.leaseUntil).toBe(T0 + 50_000);
      });

      it('applies each outcome to the one-time grant', async () => {
        const ms = await seed(5, 'o');
        await store.outbox.claim({ owner: 'w', limit: 10, leaseMs: 30_000, now: T0 });
        const id = (i: number) => ms[i]?.id ?? '';
        const done = async (i: number, outcome: Parameters<Store['outbox']['complete']>[0]['outcome']) =>
          expect(await store.outbox.complete({ id: id(i), owner: 'w', outcome, now: T0 + 1 })).toBe(true);
        await done(0, { status: 'sent', msgid: '1' });
        await done(1, {
          status: 'failed',
          grant: 'release',
          lastErrcode: 47003,
          errorCode: 'DELIVERY_REJECTED',
          errorMessage: 'bad',
        });
        await done(2, {
          status: 'failed',
          grant: 'revoke',
          lastErrcode: 43101,
          errorCode: 'DELIVERY_CONSENT_REVOKED',
          errorMessage: 'no',
        });
        await done(3, { status: 'unknown', errorCode: 'DELIVERY_OUTCOME_UNKNOWN', errorMessage: '?' });
        await done(4, {
          status: 'retry',
          nextAttemptAt: T0 + 5_000,
          lastErrcode: -1,
          errorCode: 'DELIVERY_WECHAT_BUSY',
          errorMessage: 'busy',
        });
        const states = await Promise.all([0, 1, 2, 3, 4].map((i) => getGrant(`o${i}`, 1)));
        expect(states.map((g) => g?.state)).toEqual([
          'consumed',
          'available',
          'revoked',
          'consumed',
          'reserved',
        ]);
        expect(await store.outbox.getMessage(id(1))).toMatchObject({
          status: 'failed',
          lastErrcode: 47003,
          errorCode: 'DELIVERY_REJECTED',
          errorMessage: 'bad',
        });
        expect(await store.outbox.getMessage(id(4))).toMatchObject({
          status: 'queued',
          nextAttemptAt: T0 + 5_000,
          leaseOwner: null,
          leaseUntil: null,
        });
        expect(await store.outbox.claim({ owner: 'w', limit: 10, leaseMs: 30_000, now: T0 + 4_999 })).toEqual(
          [],
        );
        const re = await store.outbox.claim({ owner: 'w', limit: 10, leaseMs: 30_000, now: T0 + 5_000 });
        expect(re.map((m) => [m.id, m.attempts])).toEqual([[id(4), 2]]);
        // A completed message cannot be completed again.
        expect(
          await store.outbox.complete({ id: id(0), owner: 'w', outcome: { status: 'sent' }, now: T0 + 2 }),
        ).toBe(false);
      });

      it('applies each outcome to notification credits', async () => {
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'n',
          templateId: NTPL,
          count: 4,
          now: T0,
        });
        const ms: OutboxMessage[] = [];
        for (let i = 0; i < 4; i++) ms.push(await mustEnqueue(notification('n')));
        const credit = () =>
          store.grants.getNotificationCredit({ appId: APP, openid: 'n', templateId: NTPL });
        expect(await credit()).toMatchObject({ available: 0, reserved: 4 });
        await store.outbox.claim({ owner: 'w', limit: 10, leaseMs: 30_000, now: T0 });
        const id = (i: number) => ms[i]?.id ?? '';
        await store.outbox.complete({ id: id(0), owner: 'w', outcome: { status: 'sent' }, now: T0 });
        expect(await credit()).toMatchObject({ available: 0, reserved: 3 });
        await store.outbox.complete({
          id: id(1),
          owner: 'w',
          outcome: { status: 'failed', grant: 'release', errorCode: 'DELIVERY_REJECTED', errorMessage: 'x' },
          now: T0,
        });
        expect(await credit()).toMatchObject({ available: 1, reserved: 2 });
        await store.outbox.complete({
          id: id(2),
          owner: 'w',
          outcome: { status: 'unknown', errorCode: 'DELIVERY_OUTCOME_UNKNOWN', errorMessage: 'x' },
          now: T0,
        });
        expect(await credit()).toMatchObject({ available: 1, reserved: 1 });
        await store.outbox.complete({
          id: id(3),
          owner: 'w',
          outcome: {
            status: 'failed',
            grant: 'revoke',
            errorCode: 'DELIVERY_CONSENT_REVOKED',
            errorMessage: 'x',
          },
          now: T0,
        });
        expect(await credit()).toMatchObject({ available: 0, reserved: 0, longTerm: false });
      });

      it('completeMany records many outcomes in one go and reports lost leases', async () => {
        const ms = await seed(3, 'cm');
        await store.outbox.claim({ owner: 'w', limit: 2, leaseMs: 30_000, now: T0 });
        const res = await store.outbox.completeMany?.({
          owner: 'w',
          now: T0 + 1,
          items: ms.map((m) => ({ id: m.id, outcome: { status: 'sent' as const } })),
        });
        expect(res).toEqual([true, true, false]);
        expect((await store.outbox.countMessages({})).sent).toBe(2);
        expect((await getGrant('cm2', 1))?.state).toBe('reserved');
      });
    });

    describe('listing and counting', () => {
      it('lists newest first with filters and cursors, and counts by status', async () => {
        const made = [];
        for (let i = 0; i < 5; i++) {
          await grant(`l${i % 2}`, i);
          made.push(await mustEnqueue(oneTime(`l${i % 2}`, { scene: i, now: T0 + i })));
        }
        await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 1000, now: T0 + 10 });
        const all = [];
        let cursor: string | null = null;
        do {
          const page: Awaited<ReturnType<Store['outbox']['listMessages']>> = await store.outbox.listMessages({
            appId: APP,
            limit: 2,
            ...(cursor ? { cursor } : {}),
          });
          all.push(...page.items);
          cursor = page.nextCursor;
        } while (cursor !== null);
        expect(all.map((m) => m.id)).toEqual(made.map((m) => m.id).reverse());
        expect((await store.outbox.listMessages({ openid: 'l1' })).items).toHaveLength(2);
        expect((await store.outbox.listMessages({ status: 'sending' })).items.map((m) => m.id)).toEqual([
          made[0]?.id,
        ]);
        expect((await store.outbox.listMessages({ templateId: 'nope' })).items).toEqual([]);
        expect(await store.outbox.countMessages({ appId: APP })).toEqual({
          total: 5,
          queued: 4,
          sending: 1,
          sent: 0,
          failed: 0,
          unknown: 0,
          cancelled: 0,
        });
        expect(await store.outbox.getMessage('missing')).toBeNull();
        await expect(store.outbox.listMessages({ cursor: 'Zm9vOmJhcg' })).rejects.toSatisfy((e) =>
          isAppError(e, 'STORE_INVALID_CURSOR'),
        );
      });
    });

    describe('campaigns', () => {
      it('enqueues one message per holder in batches, lowest matching scene, then runs and finishes', async () => {
        for (let i = 0; i < 7; i++) await grant(`h${i}`, 10);
        await grant('h0', 5); // h0 holds two scenes: only one message
        await grant('h1', 99); // outside the filter, ignored
        await grant('x', 99);
        await store.grants.consume({ appId: APP, openid: 'h6', templateId: TPL, scene: 10, now: T0 }); // not a holder any more
        const c = await store.outbox.createCampaign({
          appId: APP,
          name: 'launch',
          kind: 'one-time',
          templateId: TPL,
          sceneFilter: { max: 50 },
          payload: oneTimePayload,
          now: T0,
        });
        expect(c).toMatchObject({ status: 'enqueuing', name: 'launch', sceneFilter: { max: 50 } });
        expect((await store.outbox.listEnqueuingCampaigns()).map((x) => x.id)).toEqual([c.id]);
        const batches: number[] = [];
        for (let guard = 0; guard < 10; guard++) {
          const n = await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 4, now: T0 + 1 });
          batches.push(n);
          if (n === 0) break;
        }
        expect(batches).toEqual([4, 2, 0]);
        expect(await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 4, now: T0 + 1 })).toBe(
          0,
        );
        const got = await store.outbox.getCampaign(c.id);
        expect(got).toMatchObject({ status: 'running', stats: { total: 6, queued: 6 } });
        expect(await store.outbox.listEnqueuingCampaigns()).toEqual([]);
        const msgs = (await store.outbox.listMessages({ campaignId: c.id })).items;
        expect(msgs.find((m) => m.openid === 'h0')?.scene).toBe(5);
        expect((await getGrant('h0', 10))?.state).toBe('available');
        expect((await getGrant('h1', 99))?.state).toBe('available');
        expect(await store.outbox.finishCampaignIfDrained({ id: c.id, now: T0 + 2 })).toBe(false);
        const claimed = await store.outbox.claim({ owner: 'w', limit: 100, leaseMs: 1000, now: T0 + 2 });
        await store.outbox.completeMany?.({
          owner: 'w',
          now: T0 + 3,
          items: claimed.map((m) => ({ id: m.id, outcome: { status: 'sent' } })),
        });
        expect(await store.outbox.finishCampaignIfDrained({ id: c.id, now: T0 + 4 })).toBe(true);
        expect((await store.outbox.getCampaign(c.id))?.status).toBe('done');
        expect(await store.outbox.getCampaign('missing')).toBeNull();
      });

      it('honours an explicit scene list', async () => {
        await grant('a', 1);
        await grant('a', 2);
        await grant('b', 3);
        const c = await store.outbox.createCampaign({
          appId: APP,
          name: 's',
          kind: 'one-time',
          templateId: TPL,
          sceneFilter: { scenes: [2, 3] },
          payload: oneTimePayload,
          now: T0,
        });
        expect(await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 100, now: T0 })).toBe(
          2,
        );
        const scenes = (await store.outbox.listMessages({ campaignId: c.id })).items
          .map((m) => `${m.openid}:${m.scene}`)
          .sort();
        expect(scenes).toEqual(['a:2', 'b:3']);
      });

      it('cancels once: a second cancel, or one after done, says so and changes nothing', async () => {
        // A campaign with no holders is done at once.
        const empty = await newCampaign('nobody', 'one-time');
        expect(
          await store.outbox.enqueueCampaignBatch({ campaignId: empty.id, batchSize: 10, now: T0 }),
        ).toBe(0);
        expect(await store.outbox.finishCampaignIfDrained({ id: empty.id, now: T0 + 1 })).toBe(true);
        for (let i = 0; i < 2; i++) await grant(`x${i}`, 1);
        const c = await enqueuedOneTimeCampaign('x');
        expect(await store.outbox.cancelCampaign({ id: c.id, now: T0 + 1 })).toEqual({
          cancelled: true,
          messages: 2,
        });
        const after = await store.outbox.getCampaign(c.id);
        expect(await store.outbox.cancelCampaign({ id: c.id, now: T0 + 2 })).toEqual({
          cancelled: false,
          messages: 0,
        });
        expect(await store.outbox.getCampaign(c.id)).toEqual(after); // not even updated_at moved
        expect(await store.outbox.cancelCampaign({ id: 'no-such-campaign', now: T0 + 3 })).toEqual({
          cancelled: false,
          messages: 0,
        });
        expect(await store.outbox.cancelCampaign({ id: empty.id, now: T0 + 2 })).toEqual({
          cancelled: false,
          messages: 0,
        });
        expect((await store.outbox.getCampaign(empty.id))?.status).toBe('done');
      });

      it('cancels: queued and claimed-but-unstarted messages cancelled, grants and credits back to available', async () => {
        for (let i = 0; i < 3; i++) await grant(`k${i}`, 1);
        const c = await enqueuedOneTimeCampaign('k');
        const [first, second] = await store.outbox.claim({ owner: 'w', limit: 2, leaseMs: 1000, now: T0 });
        await store.outbox.markAttemptStarted({ ids: [first?.id ?? ''], owner: 'w', now: T0 });
        // Only the attempt already on its way to WeChat stays; the claimed one that has not started goes too.
        expect(await store.outbox.cancelCampaign({ id: c.id, now: T0 + 1 })).toEqual({
          cancelled: true,
          messages: 2,
        });
        const got = await store.outbox.getCampaign(c.id);
        expect(got).toMatchObject({ status: 'cancelled', stats: { total: 3, cancelled: 2, sending: 1 } });
        const states = await Promise.all([0, 1, 2].map((i) => getGrant(`k${i}`, 1)));
        expect(states.filter((g) => g?.state === 'available')).toHaveLength(2);
        const grantOf = async (m: OutboxMessage | undefined) =>
          (await store.grants.get({ appId: APP, openid: m?.openid ?? '', templateId: TPL, scene: 1 }))?.state;
        expect(await grantOf(first)).toBe('reserved');
        expect(
          await store.outbox.markAttemptStarted({ ids: [second?.id ?? ''], owner: 'w', now: T0 + 2 }),
        ).toEqual([false]);
        // The attempt in flight comes back with a retry: it is not queued again but cancelled, its grant back.
        expect(
          await store.outbox.complete({
            id: first?.id ?? '',
            owner: 'w',
            outcome: {
              status: 'retry',
              nextAttemptAt: T0 + 5,
              errorCode: 'DELIVERY_WECHAT_BUSY',
              errorMessage: '-1',
            },
            now: T0 + 3,
          }),
        ).toBe(true);
        expect(await store.outbox.getMessage(first?.id ?? '')).toMatchObject({ status: 'cancelled' });
        expect(await grantOf(first)).toBe('available');
        expect((await store.outbox.getCampaign(c.id))?.stats).toMatchObject({
          cancelled: 3,
          sending: 0,
          queued: 0,
        });
        expect(await store.outbox.claim({ owner: 'w2', limit: 10, leaseMs: 1000, now: T0 + 10 })).toEqual([]);
        expect(await store.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: 10, now: T0 })).toBe(0);

        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'n1',
          templateId: NTPL,
          count: 1,
          now: T0,
        });
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'n2',
          templateId: NTPL,
          count: 0,
          longTerm: true,
          now: T0,
        });
        await store.grants.addNotificationCredits({
          appId: APP,
          openid: 'n3',
          templateId: NTPL,
          count: 0,
          now: T0,
        });
        const n = await newCampaign('n', 'notification');
        expect(await store.outbox.enqueueCampaignBatch({ campaignId: n.id, batchSize: 10, now: T0 })).toBe(2);
        expect(
          await store.grants.getNotificationCredit({ appId: APP, openid: 'n1', templateId: NTPL }),
        ).toMatchObject({ available: 0, reserved: 1 });
        expect(await store.outbox.cancelCampaign({ id: n.id, now: T0 })).toEqual({
          cancelled: true,
          messages: 2,
        });
        expect(
          await store.grants.getNotificationCredit({ appId: APP, openid: 'n1', templateId: NTPL }),
        ).toMatchObject({ available: 1, reserved: 0 });
        expect(
          await store.grants.getNotificationCredit({ appId: APP, openid: 'n2', templateId: NTPL }),
        ).toMatchObject({ available: 0, reserved: 0, longTerm: true });
      });

      it('a cancelled campaign’s retry after an attempt that may have reached WeChat ends unknown, its grant spent', async () => {
        await grant('m0', 1);
        const c = await enqueuedOneTimeCampaign('m');
        const [m] = await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 1000, now: T0 });
        await store.outbox.markAttemptStarted({ ids: [m?.id ?? ''], owner: 'w', now: T0 });
        expect(await store.outbox.cancelCampaign({ id: c.id, now: T0 + 1 })).toEqual({
          cancelled: true,
          messages: 0,
        });
        const outcome = {
          status: 'retry' as const,
          nextAttemptAt: T0 + 5,
          errorCode: 'DELIVERY_MAY_HAVE_LEFT',
          errorMessage: 'timed out after the request left',
        };
        expect(
          await store.outbox.completeMany?.({
            owner: 'w',
            items: [{ id: m?.id ?? '', outcome }],
            now: T0 + 2,
          }),
        ).toEqual([true]);
        expect(await store.outbox.getMessage(m?.id ?? '')).toMatchObject({
          status: 'unknown',
          errorCode: 'DELIVERY_OUTCOME_UNKNOWN',
        });
        expect((await getGrant('m0', 1))?.state).toBe('consumed');
      });

      it('cancelling a campaign whose message waits to retry an attempt that may have reached WeChat: unknown, grant spent', async () => {
        await grant('q0', 1);
        const c = await enqueuedOneTimeCampaign('q');
        const [m] = await store.outbox.claim({ owner: 'w', limit: 1, leaseMs: 30_000, now: T0 });
        const id = m?.id ?? '';
        await store.outbox.markAttemptStarted({ ids: [id], owner: 'w', now: T0 });
        const outcome = {
          status: 'retry' as const,
          nextAttemptAt: T0 + 5000,
          errorCode: 'DELIVERY_MAY_HAVE_LEFT',
          errorMessage: 'timed out after the request left',
        };
        expect(await store.outbox.complete({ id, owner: 'w', outcome, now: T0 + 1 })).toBe(true);
        expect(await store.outbox.cancelCampaign({ id: c.id, now: T0 + 2 })).toEqual({
          cancelled: true,
          messages: 1,
        });
        expect(await store.outbox.getMessage(id)).toMatchObject({
          status: 'unknown',
          errorCode: 'DELIVERY_OUTCOME_UNKNOWN',
        });
        expect((await getGrant('q0', 1))?.state).toBe('consumed');
        expect((await store.outbox.getCampaign(c.id))?.stats).toMatchObject({ unknown: 1, queued: 0 });
      });

      it('cancelling a campaign after a dead sender’s started message was re-claimed: unknown, grant spent', async () => {
        await grant('r0', 1);
        const c = await enqueuedOneTimeCampaign('r');
        const [m] = await store.outbox.claim({ owner: 'dead', limit: 1, leaseMs: 1000, now: T0 });
        const id = m?.id ?? '';
        await store.outbox.markAttemptStarted({ ids: [id], owner: 'dead', now: T0 });
        const [again] = await store.outbox.claim({
          owner: 'heir',
          limit: 1,
          leaseMs: 30_000,
          now: T0 + 5000,
        });
        expect(again).toMatchObject({ id, errorCode: 'DELIVERY_MAY_HAVE_LEFT' });
        // The heir has not started its attempt: the cancel ends the message, but the dead sender's may have left.
        expect(await store.outbox.cancelCampaign({ id: c.id, now: T0 + 5001 })).toEqual({
          cancelled: true,
          messages: 1,
        });
        expect(await store.outbox.getMessage(id)).toMatchObject({
          status: 'unknown',
          errorCode: 'DELIVERY_OUTCOME_UNKNOWN',
          leaseOwner: null,
        });
        expect((await getGrant('r0', 1))?.state).toBe('consumed');
      });

      it('a cancelled campaign’s started message whose sender died is not sent again: unknown, grant spent', async () => {
        await grant('d0', 1);
        await grant('d1', 2);
        const c = await enqueuedOneTimeCampaign('d');
        const claimed = await store.outbox.claim({ owner: 'dead', limit: 2, leaseMs: 1000, now: T0 });
        const started = claimed[0]?.id ?? '';
        await store.outbox.markAttemptStarted({ ids: [started], owner: 'dead', now: T0 });
        // The unstarted one is cancelled at once; the started one stays with its (soon dead) sender.
        expect(await store.outbox.cancelCampaign({ id: c.id, now: T0 + 1 })).toEqual({
          cancelled: true,
          messages: 1,
        });
        // A plain one-time message started by the same dead sender is still retried, as before.
        await grant('p0', 3);
        const plain = await mustEnqueue({
          appId: APP,
          kind: 'one-time',
          openid: 'p0',
          templateId: TPL,
          scene: 3,
          payload: oneTimePayload,
          now: T0,
        });
        const [p] = await store.outbox.claim({ owner: 'dead', limit: 1, leaseMs: 1000, now: T0 + 2 });
        expect(p?.id).toBe(plain.id);
        await store.outbox.markAttemptStarted({ ids: [plain.id], owner: 'dead', now: T0 + 2 });

        const again = await store.outbox.claim({ owner: 'heir', limit: 10, leaseMs: 1000, now: T0 + 5000 });
        expect(again.map((m) => m.id)).toEqual([plain.id]);
        expect(await store.outbox.getMessage(started)).toMatchObject({
          status: 'unknown',
          errorCode: 'DELIVERY_OUTCOME_UNKNOWN',
        });
        const startedGrant = claimed[0]?.openid === 'd0' ? getGrant('d0', 1) : getGrant('d1', 2);
        expect((await startedGrant)?.state).toBe('consumed');
        expect((await store.outbox.getCampaign(c.id))?.stats).toMatchObject({ unknown: 1, cancelled: 1 });
      });
    });

    describe('pauses, templates, API keys, nonces', () => {
      it('pauses apps until a time', async () => {
        await store.outbox.pauseApp({ appId: 'a1', until: T0 + 1000, reason: '45009' });
        await store.outbox.pauseApp({ appId: 'a2', until: T0 + 10, reason: '45009' });
        await store.outbox.pauseApp({ appId: 'a2', until: T0 + 2000, reason: 'again' });
        expect(await store.outbox.pausedApps(T0 + 500)).toEqual([
          { appId: 'a1', until: T0 + 1000, reason: '45009' },
          { appId: 'a2', until: T0 + 2000, reason: 'again' },
        ]);
        expect((await store.outbox.pausedApps(T0 + 1000)).map((p) => p.appId)).toEqual(['a2']);
      });

      it('never shortens a pause: a minute limit during the daily pause leaves the day', async () => {
        await store.outbox.pauseApp({ appId: 'a1', until: T0 + 86_400_000, reason: 'errcode 45009' });
        await store.outbox.pauseApp({ appId: 'a1', until: T0 + 60_000, reason: 'errcode 45011' });
        expect(await store.outbox.pausedApps(T0 + 61_000)).toEqual([
          { appId: 'a1', until: T0 + 86_400_000, reason: 'errcode 45009' },
        ]);
        await store.outbox.pauseApp({
          appId: 'a1',
          until: T0 + 2 * 86_400_000,
          reason: 'errcode 45009 again',
        });
        expect(await store.outbox.pausedApps(T0)).toEqual([
          { appId: 'a1', until: T0 + 2 * 86_400_000, reason: 'errcode 45009 again' },
        ]);
      });

      it('stores templates', async () => {
        await store.templates.upsert({
          appId: APP,
          templateId: 't1',
          kind: 'notification',
          title: 'A',
          keywords: [{ key: 'thing1', type: 'thing' }],
          type: 2,
        });
        await store.templates.upsert({
          appId: APP,
          templateId: 't0',
          kind: 'one-time',
          title: 'B',
          keywords: [],
        });
        await store.templates.upsert({
          appId: APP,
          templateId: 't1',
          kind: 'notification',
          title: 'A2',
          keywords: [{ key: 'phrase2', type: 'phrase', enumValues: ['ok'] }],
          type: 3,
        });
        expect(await store.templates.get(APP, 't1')).toEqual({
          appId: APP,
          templateId: 't1',
          kind: 'notification',
          title: 'A2',
          keywords: [{ key: 'phrase2', type: 'phrase', enumValues: ['ok'] }],
          type: 3,
        });
        expect(await store.templates.get(APP, 'nope')).toBeNull();
        expect((await store.templates.list(APP)).map((t) => t.templateId)).toEqual(['t0', 't1']);
        expect(await store.templates.get(APP, 't0')).not.toHaveProperty('type');
      });

      it('stores API key hashes and revokes them', async () => {
        const k = await store.apiKeys.create({ id: 'k1', name: 'ci', keyHash: 'h1', now: T0 });
        expect(k).toEqual({ id: 'k1', name: 'ci', createdAt: T0, revokedAt: null });
        await store.apiKeys.create({ id: 'k2', name: 'ops', keyHash: 'h2', now: T0 + 1 });
        expect(await store.apiKeys.findByHash('h1')).toEqual(k);
        await store.apiKeys.revoke('k1', T0 + 5);
        expect(await store.apiKeys.findByHash('h1')).toBeNull();
        expect(await store.apiKeys.list()).toEqual([
          { id: 'k1', name: 'ci', createdAt: T0, revokedAt: T0 + 5 },
          { id: 'k2', name: 'ops', createdAt: T0 + 1, revokedAt: null },
        ]);
      });

      it('uses a nonce once and purges expired ones', async () => {
        expect(await store.nonces.use({ nonce: 'n1', expiresAt: T0 + 100, now: T0 })).toBe(true);
        expect(await store.nonces.use({ nonce: 'n1', expiresAt: T0 + 100, now: T0 + 1 })).toBe(false);
        await store.nonces.use({ nonce: 'n2', expiresAt: T0 + 1000, now: T0 });
        const raced = await Promise.all(
          Array.from({ length: 20 }, () => store.nonces.use({ nonce: 'n3', expiresAt: T0 + 1000, now: T0 })),
        );
        expect(raced.filter(Boolean)).toHaveLength(1);
        expect(await store.nonces.purgeExpired(T0 + 100)).toBe(1);
        expect(await store.nonces.use({ nonce: 'n2', expiresAt: T0 + 1000, now: T0 + 200 })).toBe(false);
      });

      it('purges in bounded steps, the longest-expired first, and never a nonce still in force', async () => {
        // Spent out of expiry order, as links are when people take their time.
        for (const k of [5, 1, 4, 2, 3, 9, 8])
          expect(await store.nonces.use({ nonce: `p${k}`, expiresAt: T0 + k * 100, now: T0 })).toBe(true);
        expect(await store.nonces.purgeExpired(T0 + 500, 2)).toBe(2);
        // p1 and p2 are gone (usable again: nothing guards an expired nonce), p3 is not yet.
        expect(await store.nonces.use({ nonce: 'p1', expiresAt: T0 + 100, now: T0 + 1 })).toBe(true);
        expect(await store.nonces.use({ nonce: 'p3', expiresAt: T0 + 300, now: T0 + 1 })).toBe(false);
        expect(await store.nonces.purgeExpired(T0 + 500, 10)).toBe(4); // p1 again, p3, p4, p5
        expect(await store.nonces.purgeExpired(T0 + 500, 10)).toBe(0);
        expect(await store.nonces.use({ nonce: 'p8', expiresAt: T0 + 800, now: T0 + 1 })).toBe(false);
        expect(await store.nonces.use({ nonce: 'p9', expiresAt: T0 + 900, now: T0 + 1 })).toBe(false);
        // The same nonce under another expiry is another token's: it cannot come from a signed token, and
        // the key does not conflate them.
        expect(await store.nonces.use({ nonce: 'p9', expiresAt: T0 + 901, now: T0 + 1 })).toBe(true);
      });
    });

    describe('consent redeem (nonce + grant in one transaction)', () => {
      const redeemConfirm = (nonce: string, openid: string, scene: number, now = T0) =>
        store.nonces.redeemOneTime({
          nonce,
          expiresAt: T0 + 600_000,
          appId: APP,
          templateId: TPL,
          scene,
          now,
          action: 'confirm',
          openid,
        });
      const everything = async () => ({
        u1: await store.grants.listForUser({ appId: APP, openid: 'u1' }),
        u2: await store.grants.listForUser({ appId: APP, openid: 'u2' }),
        refusals: await store.grants.countRefusals({ appId: APP }),
      });

      it('a confirm spends the nonce and records the grant; a replayed nonce changes nothing', async () => {
        const r = await redeemConfirm('k1', 'u1', 5);
        expect(r).toMatchObject({ fresh: true, action: 'confirm', created: true });
        if (!r.fresh || r.action !== 'confirm') throw new Error('expected a fresh confirm');
        expect(r.grant).toMatchObject({ openid: 'u1', scene: 5, state: 'available', confirmedAt: T0 });
        expect(await getGrant('u1', 5)).toEqual(r.grant);
        const before = await everything();
        // Same nonce again: same user and scene, another user, another scene, a cancel — none writes anything.
        expect(await redeemConfirm('k1', 'u1', 5, T0 + 10)).toEqual({ fresh: false });
        expect(await redeemConfirm('k1', 'u2', 6, T0 + 10)).toEqual({ fresh: false });
        expect(
          await store.nonces.redeemOneTime({
            nonce: 'k1',
            expiresAt: T0 + 600_000,
            appId: APP,
            templateId: TPL,
            scene: 5,
            now: T0 + 10,
            action: 'cancel',
            openid: 'u1',
          }),
        ).toEqual({ fresh: false });
        expect(await everything()).toEqual(before);
        // The redeemed nonce is spent for the plain nonce API too.
        expect(await store.nonces.use({ nonce: 'k1', expiresAt: T0 + 600_000, now: T0 + 20 })).toBe(false);
      });

      it('a confirm follows recordOneTime: no stacking, re-opens a consumed grant', async () => {
        await redeemConfirm('k1', 'u1', 5);
        const again = await redeemConfirm('k2', 'u1', 5, T0 + 5);
        expect(again).toMatchObject({ fresh: true, created: false, grant: { confirmedAt: T0 + 5 } });
        expect(await store.grants.availableScenes({ appId: APP, openid: 'u1', templateId: TPL })).toEqual([
          5,
        ]);
        await store.grants.consume({ appId: APP, openid: 'u1', templateId: TPL, scene: 5, now: T0 + 6 });
        const reopened = await redeemConfirm('k3', 'u1', 5, T0 + 7);
        expect(reopened).toMatchObject({
          fresh: true,
          created: true,
          grant: { state: 'available', closedAt: null },
        });
      });

      it('a cancel spends the nonce and counts a refusal, once', async () => {
        const cancel = (now: number) =>
          store.nonces.redeemOneTime({
            nonce: 'c1',
            expiresAt: T0 + 600_000,
            appId: APP,
            templateId: TPL,
            scene: 3,
            now,
            action: 'cancel',
          });
        expect(await cancel(T0)).toEqual({ fresh: true, action: 'cancel' });
        expect(await store.grants.countRefusals({ appId: APP, templateId: TPL })).toBe(1);
        expect(await cancel(T0 + 1)).toEqual({ fresh: false });
        expect(await store.grants.countRefusals({ appId: APP, templateId: TPL })).toBe(1);
        expect((await store.grants.listAvailable({ appId: APP })).items).toEqual([]);
      });

      it('a redeem that fails writes nothing and does not fail the redeems committed with it', async () => {
        // Issued in one event-loop turn, so an engine that group-commits puts all three in one transaction.
        const [a, bad, c] = await Promise.allSettled([
          redeemConfirm('g1', 'u1', 1),
          redeemConfirm('g2', null as unknown as string, 2), // no openid: the grant insert fails
          redeemConfirm('g3', 'u2', 3),
        ]);
        expect(a).toMatchObject({ status: 'fulfilled', value: { fresh: true, created: true } });
        expect(c).toMatchObject({ status: 'fulfilled', value: { fresh: true, created: true } });
        expect(bad.status).toBe('rejected');
        expect(await getGrant('u1', 1)).not.toBeNull();
        expect(await getGrant('u2', 3)).not.toBeNull();
        // The failed redeem's nonce was not spent: a proper callback with that link still goes through.
        expect(await redeemConfirm('g2', 'u1', 2)).toMatchObject({ fresh: true, created: true });
      });

      it('a nonce already used through nonces.use is not redeemed', async () => {
        expect(await store.nonces.use({ nonce: 'k9', expiresAt: T0 + 600_000, now: T0 })).toBe(true);
        expect(await redeemConfirm('k9', 'u1', 1)).toEqual({ fresh: false });
        expect(await getGrant('u1', 1)).toBeNull();
      });

      it('of 20 concurrent redeems of one nonce exactly one writes', async () => {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, k) => redeemConfirm('race', k % 2 === 0 ? 'u1' : 'u2', k)),
        );
        expect(results.filter((r) => r.fresh)).toHaveLength(1);
        const held = await everything();
        expect(held.u1.grants.length + held.u2.grants.length).toBe(1);
      });

      it('when the grant cannot be written the nonce stays unspent', async () => {
        // A NOT NULL violation inside the transaction: the nonce insert must roll back with it.
        await expect(redeemConfirm('k5', null as unknown as string, 1)).rejects.toThrow();
        expect(await store.grants.listAvailable({ appId: APP })).toEqual({ items: [], nextCursor: null });
        expect(await redeemConfirm('k5', 'u1', 1)).toMatchObject({ fresh: true, created: true });
      });

      it('concurrent redeems succeed or fail one by one (a failing one neither blocks nor spends the others)', async () => {
        const [bad, good1, good2, replay] = await Promise.allSettled([
          redeemConfirm('b1', null as unknown as string, 1),
          redeemConfirm('g1', 'u1', 1),
          redeemConfirm('g2', 'u2', 2),
          redeemConfirm('g1', 'u2', 9),
        ]);
        expect(bad.status).toBe('rejected');
        const fresh = [good1, good2, replay].map((r) => r.status === 'fulfilled' && r.value.fresh);
        expect(fresh.filter(Boolean)).toHaveLength(2);
        expect(fresh[1]).toBe(true);
        // Whichever of the two uses of 'g1' came first wrote its grant; the other wrote nothing.
        expect((await getGrant('u1', 1))?.state ?? null).toBe(fresh[0] ? 'available' : null);
        expect(await store.grants.availableScenes({ appId: APP, openid: 'u2', templateId: TPL })).toEqual(
          fresh[0] ? [2] : [2, 9],
        );
        // The failed callback's nonce is still good.
        expect(await redeemConfirm('b1', 'u1', 3)).toMatchObject({ fresh: true, created: true });
      });
    });
  });
}
