// Several `wxsub serve` instances (startService) on one PostgreSQL and one consent secret, behind an imagined load
// balancer, with the real emulator as WeChat: a consent link minted on one instance completes on another, replays
// and simultaneous callbacks are refused everywhere but once, an instance with another secret refuses the links,
// and API keys, messages, campaigns, idempotency keys and pauses look the same from every instance.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/schema.js';
import { startService, type RunningService } from '../../src/cli/serve.js';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';
import { createApiKey } from '../../src/http/api-keys.js';
import { createCliLogger } from '../../src/cli/logger.js';
import { createTempDatabase, skipUnless, type TempDatabase } from '../support/services.js';
import {
  APP_ID,
  CookieJar,
  EMULATOR_SEED,
  ONE_TIME_TPL,
  USERS,
  submitConsentDecision,
} from './service-harness.js';

const SECRET = 'shared-consent-secret-of-ab-0123456789abcdef';
const OTHER_SECRET = 'OTHER-consent-secret-of-c-x-0123456789abcdef';
const NEXT = 'http://app.test/shop/page?ref=x#/orders/7';
const [ALICE, BOB] = USERS;
const APP_SECRET = '0123456789abcdef0123456789abcdef';

const skip = await skipUnless('postgres');

describe.skipIf(skip)('several instances on one PostgreSQL', () => {
  let emu: Emulator;
  let emuBase: string;
  let db: TempDatabase;
  let A: RunningService;
  let B: RunningService;
  let C: RunningService; // different consent secret
  let apiKey: string;

  const config = (secret: string) =>
    parseConfig({
      host: '127.0.0.1',
      port: 0,
      databaseUrl: db.url,
      logLevel: 'silent',
      wechat: { appId: APP_ID, appSecret: APP_SECRET, baseUrl: emuBase },
      consent: { secret, nextAllowlist: ['http://app.test/shop/'], oneTimeTemplates: [ONE_TIME_TPL] },
      delivery: { backoffBaseMs: 50, backoffMaxMs: 200 },
    });

  beforeAll(async () => {
    emu = await createEmulator({ seed: EMULATOR_SEED as never });
    emuBase = await emu.listen({ port: 0 });
    db = await createTempDatabase();
    const logger = createCliLogger({ level: 'silent' });
    // Started together: concurrent migrations must serialize.
    [A, B, C] = await Promise.all([
      startService(config(SECRET), { logger }),
      startService(config(SECRET), { logger }),
      startService(config(OTHER_SECRET), { logger }),
    ]);
    apiKey = (await createApiKey(A.store, 'multi')).key;
  }, 30_000);

  afterAll(async () => {
    await Promise.all([A?.close(), B?.close(), C?.close()]);
    await emu?.close();
    await db?.drop();
  });

  const held = (openid: string) =>
    A.store.grants.availableScenes({ appId: APP_ID, openid, templateId: ONE_TIME_TPL });
  const known = (openid: string) =>
    A.store.grants.knownScenes({ appId: APP_ID, openid, templateId: ONE_TIME_TPL });
  const refusals = () => A.store.grants.countRefusals({ appId: APP_ID });
  const code = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

  async function get(url: string, jar?: CookieJar): Promise<Response> {
    const res = await fetch(url, {
      redirect: 'manual',
      headers: jar && jar.cookies.size ? { cookie: jar.header() } : {},
    });
    jar?.take(res);
    return res;
  }

  /** Mints a link on `svc` in `jar`'s browser; returns the emulator consent URL. */
  async function begin(svc: RunningService, jar: CookieJar, scene = 'auto', next: string | null = NEXT) {
    const q = `template=${ONE_TIME_TPL}&scene=${scene}${next === null ? '' : `&next=${encodeURIComponent(next)}`}`;
    const res = await get(`${svc.url}/consent/one-time?${q}`, jar);
    expect(res.status, await res.clone().text()).toBe(302);
    return new URL(res.headers.get('location') as string);
  }

  /** The user decides on the emulator's page; returns the callback URL, re-pointed at `target` (the load balancer's pick). */
  async function decide(consent: URL, action: 'confirm' | 'cancel', openid: string, target: RunningService) {
    const res = await submitConsentDecision(emuBase, consent, action, openid);
    expect(res.status, await res.clone().text()).toBe(302);
    const cb = new URL(res.headers.get('location') as string);
    expect(cb.pathname).toBe('/consent/one-time/callback');
    const t = new URL(target.url);
    cb.host = t.host;
    return cb.toString();
  }

  const onInstance = (cb: string, svc: RunningService) => {
    const u = new URL(cb);
    u.host = new URL(svc.url).host;
    return u.toString();
  };

  const api = async (svc: RunningService, path: string, init: RequestInit = {}) => {
    const res = await fetch(`${svc.url}${path}`, {
      ...init,
      headers: {
        authorization: `Bearer ${apiKey}`,
        ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(init.headers as Record<string, string> | undefined),
      },
    });
    return res;
  };

  it('a link minted on A completes on B; replays on A and on B are refused and write nothing', async () => {
    const jar = new CookieJar();
    const consent = await begin(A, jar);
    const scene = Number(consent.searchParams.get('scene'));
    const cb = await decide(consent, 'confirm', ALICE, B);
    const snapshot = new CookieJar();
    for (const [k, v] of jar.cookies) snapshot.cookies.set(k, v); // the cookie as it was before the callback
    const back = await get(cb, jar);
    expect(back.status, await back.clone().text()).toBe(302);
    expect(back.headers.get('location')).toBe(
      `http://app.test/shop/page?ref=x&wxsub_outcome=confirmed&scene=${scene}#/orders/7`,
    );
    expect(await held(ALICE)).toContain(scene);
    const grantBefore = await A.store.grants.get({
      appId: APP_ID,
      openid: ALICE,
      templateId: ONE_TIME_TPL,
      scene,
    });
    const refusalsBefore = await refusals();

    for (const svc of [A, B, A, B]) {
      const r = await get(onInstance(cb, svc), snapshot);
      expect(r.status).toBe(409);
      expect(await code(r)).toBe('CONSENT_RESERVED_REPLAYED');
    }
    // a cancel replay of the same link is refused too (no refusal row)
    const cancelReplay = new URL(onInstance(cb, A));
    cancelReplay.searchParams.set('action', 'cancel');
    const cr = await get(cancelReplay.toString(), snapshot);
    expect(cr.status).toBe(409);
    expect(await code(cr)).toBe('CONSENT_RESERVED_REPLAYED');

    expect(await refusals()).toBe(refusalsBefore);
    expect(
      await A.store.grants.get({ appId: APP_ID, openid: ALICE, templateId: ONE_TIME_TPL, scene }),
    ).toEqual(grantBefore);
  });

  it('the same callback on A and B at the same moment records exactly one grant', async () => {
    for (let round = 0; round < 8; round++) {
      const jar = new CookieJar();
      const consent = await begin(round % 2 === 0 ? A : B, jar, 'auto', null);
      const cb = await decide(consent, 'confirm', BOB, A);
      const before = (await known(BOB)).length;
      const results = await Promise.all(
        [A, B, A, B].map((svc) =>
          fetch(onInstance(cb, svc), { redirect: 'manual', headers: { cookie: jar.header() } }),
        ),
      );
      const statuses = results.map((r) => r.status).sort();
      expect(statuses, `round ${round}`).toEqual([200, 409, 409, 409]);
      const ok = results.find((r) => r.status === 200) as Response;
      const body = (await ok.json()) as { outcome: string; created: boolean };
      expect(body.outcome).toBe('confirmed');
      for (const r of results.filter((x) => x.status === 409))
        expect(await code(r)).toBe('CONSENT_RESERVED_REPLAYED');
      expect((await known(BOB)).length).toBe(before + (body.created ? 1 : 0));
    }
  });

  it('simultaneous cancels on A and B record exactly one refusal', async () => {
    const jar = new CookieJar();
    const consent = await begin(B, jar, '4321', null);
    const cb = await decide(consent, 'cancel', BOB, A);
    const before = await refusals();
    const results = await Promise.all(
      [A, B, B, A].map((svc) =>
        fetch(onInstance(cb, svc), { redirect: 'manual', headers: { cookie: jar.header() } }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 409, 409, 409]);
    expect(await refusals()).toBe(before + 1);
  });

  it("an instance with another consent secret refuses the others' links with a stable code and burns nothing", async () => {
    const jar = new CookieJar();
    const consent = await begin(A, jar, '6001');
    const cb = await decide(consent, 'confirm', ALICE, C);
    const before = { held: await held(ALICE), refusals: await refusals() };
    for (let i = 0; i < 2; i++) {
      const r = await get(cb, jar);
      expect(r.status).toBe(400);
      expect(await code(r)).toBe('CONSENT_RESERVED_FORGED');
    }
    const cancel = new URL(cb);
    cancel.searchParams.set('action', 'cancel');
    const rc = await get(cancel.toString(), jar);
    expect(rc.status).toBe(400);
    expect(await code(rc)).toBe('CONSENT_RESERVED_FORGED');
    expect(await held(ALICE)).toEqual(before.held);
    expect(await refusals()).toBe(before.refusals);
    // The refused attempt did not burn the link: it still completes on B.
    const ok = await get(onInstance(cb, B), jar);
    expect(ok.status, await ok.clone().text()).toBe(302);
    expect(await held(ALICE)).toContain(6001);

    // And the other way: C's link is refused by A and B alike.
    const jarC = new CookieJar();
    const consentC = await begin(C, jarC, '6002');
    const cbC = await decide(consentC, 'confirm', ALICE, A);
    for (const svc of [A, B]) {
      const r = await get(onInstance(cbC, svc), jarC);
      expect(r.status).toBe(400);
      expect(await code(r)).toBe('CONSENT_RESERVED_FORGED');
    }
    expect(await held(ALICE)).not.toContain(6002);
  });

  it('scene=auto on different instances picks scenes the user does not hold, and distinct ones', async () => {
    const jar = new CookieJar();
    // First confirm (on A) gives the browser the openid hint.
    const first = await begin(A, jar);
    expect((await get(await decide(first, 'confirm', ALICE, A), jar)).status).toBe(302);
    expect(jar.cookies.has('wxsub_oid')).toBe(true);
    const holding = new Set(await known(ALICE));
    const links = [await begin(A, jar), await begin(B, jar), await begin(A, jar)];
    const scenes = links.map((l) => Number(l.searchParams.get('scene')));
    for (const s of scenes) expect(holding.has(s), `scene ${s}`).toBe(false);
    expect(new Set(scenes).size).toBe(scenes.length);
    // Completed crosswise: each adds a send.
    const n0 = (await held(ALICE)).length;
    const targets = [B, A, B];
    for (let i = 0; i < links.length; i++) {
      const r = await get(await decide(links[i] as URL, 'confirm', ALICE, targets[i] as RunningService), jar);
      expect(r.status).toBe(302);
    }
    expect((await held(ALICE)).length).toBe(n0 + 3);
  });

  it('an API key created once works on every instance, and its revocation too', async () => {
    const { id, key } = await createApiKey(B.store, 'second');
    for (const svc of [A, B, C]) {
      const r = await fetch(`${svc.url}/v1/status`, { headers: { authorization: `Bearer ${key}` } });
      expect(r.status).toBe(200);
    }
    await A.store.apiKeys.revoke(id, Date.now());
    for (const svc of [A, B, C]) {
      const r = await fetch(`${svc.url}/v1/status`, { headers: { authorization: `Bearer ${key}` } });
      expect(r.status).toBe(401);
      expect(await code(r)).toBe('AUTH_INVALID_KEY');
    }
  });

  it('a message sent through A is delivered once; B answers the same for it, for /v1/status and a campaign', async () => {
    const put = await api(B, `/v1/templates/${ONE_TIME_TPL}`, {
      method: 'PUT',
      body: JSON.stringify({ kind: 'one-time', title: '到货提醒' }),
    });
    expect(put.status, await put.clone().text()).toBe(200);

    // Give Bob a fresh scene through the consent flow (minted on B, completed on A).
    const jar = new CookieJar();
    const consent = await begin(B, jar, '9001', null);
    expect((await get(await decide(consent, 'confirm', BOB, A), jar)).status).toBe(200);

    const inbox = async (openid: string) =>
      (
        (await (await fetch(`${emuBase}/__emulator/apps/${APP_ID}/users/${openid}/messages`)).json()) as {
          messages: { title: string; scene: number }[];
        }
      ).messages;
    const r = await api(A, '/v1/messages', {
      method: 'POST',
      body: JSON.stringify({
        kind: 'one-time',
        openid: BOB,
        template: ONE_TIME_TPL,
        scene: 9001,
        title: 'multi-1',
        content: 'hello',
      }),
    });
    expect(r.status, await r.clone().text()).toBe(202);
    const { id } = (await r.json()) as { id: string };
    const deadline = Date.now() + 10_000;
    let status = '';
    while (Date.now() < deadline) {
      status = ((await (await api(B, `/v1/messages/${id}`)).json()) as { status: string }).status;
      if (status === 'sent') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(status).toBe('sent');
    await new Promise((res) => setTimeout(res, 500));
    expect((await inbox(BOB)).filter((m) => m.title === 'multi-1')).toHaveLength(1);
    const viewA = await (await api(A, `/v1/messages/${id}`)).json();
    const viewB = await (await api(B, `/v1/messages/${id}`)).json();
    expect(viewB).toEqual(viewA);

    // A campaign created on B to every Alice scene; progress read on A and B agrees.
    const aliceScenes = await held(ALICE);
    expect(aliceScenes.length).toBeGreaterThan(0);
    const cr = await api(B, '/v1/campaigns', {
      method: 'POST',
      body: JSON.stringify({
        name: 'multi',
        template: ONE_TIME_TPL,
        payload: { title: 'multi-camp', content: 'c' },
      }),
    });
    expect(cr.status, await cr.clone().text()).toBe(202);
    const cid = ((await cr.json()) as { id: string }).id;
    const until = Date.now() + 15_000;
    let camp: { status: string; stats?: Record<string, number> } = { status: '' };
    while (Date.now() < until) {
      camp = (await (await api(A, `/v1/campaigns/${cid}`)).json()) as typeof camp;
      if (camp.status === 'done') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(camp.status).toBe('done');
    const campB = await (await api(B, `/v1/campaigns/${cid}`)).json();
    expect(campB).toEqual(camp);
    // One message per current holder (docs/http-api.md, Campaigns): Alice and Bob.
    expect(camp.stats).toMatchObject({ total: 2, sent: 2, failed: 0, unknown: 0 });
    expect((await inbox(ALICE)).filter((m) => m.title === 'multi-camp')).toHaveLength(1);
    expect((await inbox(BOB)).filter((m) => m.title === 'multi-camp')).toHaveLength(1);

    const sA = (await (await api(A, '/v1/status')).json()) as Record<string, unknown>;
    const sB = (await (await api(B, '/v1/status')).json()) as Record<string, unknown>;
    const { dispatcher: dA, ...restA } = sA;
    const { dispatcher: dB, ...restB } = sB;
    expect(restB).toEqual(restA);
    expect(dA).not.toBeNull();
    expect(dB).not.toBeNull();
  }, 40_000);

  it('one Idempotency-Key sent to A and B at once gives one message and reserves one grant', async () => {
    const jar = new CookieJar();
    for (const sc of ['7001', '7002']) {
      const consent = await begin(A, jar, sc, null);
      expect((await get(await decide(consent, 'confirm', ALICE, B), jar)).status).toBe(200);
    }
    const before = await held(ALICE);
    const body = JSON.stringify({
      kind: 'one-time',
      openid: ALICE,
      template: ONE_TIME_TPL,
      scene: 7001,
      title: 'idem',
      content: 'x',
    });
    const rs = await Promise.all(
      [A, B, A, B].map((svc) =>
        api(svc, '/v1/messages', { method: 'POST', body, headers: { 'idempotency-key': 'multi-idem-1' } }),
      ),
    );
    expect(rs.map((r) => r.status)).toEqual([202, 202, 202, 202]);
    const ids = new Set(await Promise.all(rs.map(async (r) => ((await r.json()) as { id: string }).id)));
    expect(ids.size).toBe(1);
    expect(rs.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(3);
    const after = await held(ALICE);
    expect(before.filter((s) => !after.includes(s))).toEqual([7001]);
  });

  it('a daily-quota pause hit by one instance is reported by every instance and stops them all', async () => {
    emu.state.setFaults({ path: '/cgi-bin/message/template/subscribe', errcodes: { '45009': 1 } } as never);
    try {
      const jar = new CookieJar();
      const consent = await begin(B, jar, '7500', null);
      expect((await get(await decide(consent, 'confirm', BOB, A), jar)).status).toBe(200);
      const r = await api(A, '/v1/messages', {
        method: 'POST',
        body: JSON.stringify({
          kind: 'one-time',
          openid: BOB,
          template: ONE_TIME_TPL,
          scene: 7500,
          title: 'quota',
          content: 'q',
        }),
      });
      expect(r.status).toBe(202);
      const deadline = Date.now() + 10_000;
      let sA: { paused: boolean } = { paused: false };
      while (Date.now() < deadline) {
        sA = (await (await api(A, '/v1/status')).json()) as typeof sA;
        if (sA.paused) break;
        await new Promise((res) => setTimeout(res, 50));
      }
      expect(sA.paused).toBe(true);
      const sB = (await (await api(B, '/v1/status')).json()) as Record<string, unknown>;
      const sA2 = (await (await api(A, '/v1/status')).json()) as Record<string, unknown>;
      expect(sB.paused).toBe(true);
      expect(sB.pausedApps).toEqual(sA2.pausedApps);
      expect(
        (sB.dispatcher as { pausedApps: unknown[] }).pausedApps.length +
          (sA2.dispatcher as { pausedApps: unknown[] }).pausedApps.length,
      ).toBeGreaterThan(0);
    } finally {
      emu.state.clearFaults();
    }
  }, 20_000);

  it('two links for one scene completed on A and B at once leave one grant, created once', async () => {
    /** Links for `scene` minted on `mint[0]`/`mint[1]`, completed on A and B at once; returns each answer's `created`. */
    const confirmTogether = async (scene: string, mint: [RunningService, RunningService]) => {
      const jars = [new CookieJar(), new CookieJar()];
      const cbs = [
        await decide(await begin(mint[0], jars[0] as CookieJar, scene, null), 'confirm', BOB, A),
        await decide(await begin(mint[1], jars[1] as CookieJar, scene, null), 'confirm', BOB, B),
      ];
      const rs = await Promise.all(
        cbs.map((cb, i) =>
          fetch(cb, { redirect: 'manual', headers: { cookie: (jars[i] as CookieJar).header() } }),
        ),
      );
      expect(rs.map((r) => r.status)).toEqual([200, 200]);
      return Promise.all(rs.map(async (r) => ((await r.json()) as { created: boolean }).created));
    };
    for (const scene of ['8100', '8101']) {
      expect((await confirmTogether(scene, [A, B])).filter(Boolean)).toHaveLength(1);
      const g = await A.store.grants.get({
        appId: APP_ID,
        openid: BOB,
        templateId: ONE_TIME_TPL,
        scene: Number(scene),
      });
      expect(g?.state).toBe('available');
      // Consume it, then re-confirm on both at once: re-opened exactly once.
      expect(
        await A.store.grants.consume({
          appId: APP_ID,
          openid: BOB,
          templateId: ONE_TIME_TPL,
          scene: Number(scene),
          now: Date.now(),
        }),
      ).toBe(true);
      expect((await confirmTogether(scene, [B, A])).filter(Boolean)).toHaveLength(1);
    }
  });

  it('a campaign cancelled on A and B at once: exactly one 200', async () => {
    const cr = await api(A, '/v1/campaigns', {
      method: 'POST',
      body: JSON.stringify({
        name: 'cancel-race',
        template: ONE_TIME_TPL,
        scenes: { list: [9999] },
        payload: { title: 't', content: 'c' },
      }),
    });
    expect(cr.status).toBe(202);
    const cid = ((await cr.json()) as { id: string }).id;
    const rs = await Promise.all(
      [A, B].map((svc) => api(svc, `/v1/campaigns/${cid}/cancel`, { method: 'POST', body: '{}' })),
    );
    const st = rs.map((r) => r.status).sort();
    // Either it finished (no holder of 9999) before the cancels, or exactly one cancel wins.
    if (st[0] === 200) expect(st).toEqual([200, 409]);
    else expect(st).toEqual([409, 409]);
    const [a, b] = await Promise.all(
      [A, B].map(async (svc) => (await api(svc, `/v1/campaigns/${cid}`)).json()),
    );
    expect(b).toEqual(a);
  });
});
