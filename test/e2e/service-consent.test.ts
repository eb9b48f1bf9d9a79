// The one-time consent flow over real sockets: service (SQLite and PostgreSQL) + emulator; every attack is a 4xx with a stable code and no ledger change.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_NEXT_LENGTH } from '../../src/consent/allowlist.js';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { skipUnless } from '../support/services.js';
import {
  APP_ID,
  CookieJar,
  EMULATOR_SEED,
  get,
  ONE_TIME_TPL,
  startService,
  USERS,
  type Engine,
  type RunningService,
  submitConsentDecision,
} from './service-harness.js';

const NEXT = 'http://app.test/shop/page?ref=x#/orders/7?tab=2';
const [ALICE, BOB] = USERS;

for (const engine of ['sqlite', 'postgres'] as Engine[]) {
  describe(`one-time consent over HTTP (${engine})`, async () => {
    const skip = engine === 'postgres' && (await skipUnless('postgres'));
    let emu: Emulator;
    let emuBase: string;
    let svc: RunningService;

    beforeAll(async () => {
      if (skip) return;
      emu = await createEmulator({ seed: EMULATOR_SEED as never });
      emuBase = await emu.listen({ port: 0 });
      svc = await startService(engine, {
        wechat: { appId: APP_ID, baseUrl: emuBase },
        consent: {
          secret: 'e2e-consent-secret-0123456789abcdef',
          nextAllowlist: ['http://app.test/shop/'],
          oneTimeTemplates: [ONE_TIME_TPL],
        },
      });
    });
    afterAll(async () => {
      if (skip) return;
      await svc?.close();
      await emu?.close();
    });

    const held = (openid: string) =>
      svc.store.grants.availableScenes({ appId: APP_ID, openid, templateId: ONE_TIME_TPL });
    const refusals = () => svc.store.grants.countRefusals({ appId: APP_ID });

    /** Starts a flow in `jar`'s browser and opens the emulator's consent page. */
    async function begin(jar: CookieJar, scene = 'auto', next = NEXT) {
      const res = await get(
        `${svc.baseUrl}/consent/one-time?template=${ONE_TIME_TPL}&scene=${scene}&next=${encodeURIComponent(next)}`,
        jar,
      );
      expect(res.status, await res.clone().text()).toBe(302);
      const consentUrl = res.headers.get('location') as string;
      expect(consentUrl.startsWith(`${emuBase}/mp/subscribemsg?`)).toBe(true);
      expect(consentUrl.endsWith('#wechat_redirect')).toBe(true);
      const page = await get(consentUrl);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('允许');
      return new URL(consentUrl);
    }

    /** Submits 允许/取消 on the emulator's page as `openid`; returns the callback URL WeChat sends the browser to. */
    async function decide(
      consentUrl: URL,
      action: 'confirm' | 'cancel',
      openid: string,
      serviceBase = svc.baseUrl,
    ) {
      const res = await submitConsentDecision(emuBase, consentUrl, action, openid);
      expect(res.status).toBe(302);
      const cb = res.headers.get('location') as string;
      expect(cb.startsWith(`${serviceBase}/consent/one-time/callback?`)).toBe(true);
      return cb;
    }

    const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

    it.skipIf(skip)(
      'confirm → grant written once → 302 to next with the outcome before the fragment',
      async () => {
        const jar = new CookieJar();
        const consent = await begin(jar);
        const scene = Number(consent.searchParams.get('scene'));
        const cb = await decide(consent, 'confirm', ALICE);
        const back = await get(cb, jar);
        expect(back.status).toBe(302);
        expect(back.headers.get('location')).toBe(
          `http://app.test/shop/page?ref=x&wxsub_outcome=confirmed&scene=${scene}#/orders/7?tab=2`,
        );
        expect(await held(ALICE)).toEqual([scene]);

        // scene=auto on the next link from this browser picks a scene Alice does not hold: she collects two sends.
        const again = await begin(jar);
        expect(Number(again.searchParams.get('scene'))).not.toBe(scene);
        expect((await get(await decide(again, 'confirm', ALICE), jar)).status).toBe(302);
        expect((await held(ALICE)).length).toBe(2);
      },
    );

    it.skipIf(skip)(
      'repeated confirms under one scene do not stack; cancel records a refusal without a grant',
      async () => {
        const jar = new CookieJar();
        for (let i = 0; i < 2; i++) {
          const c = await begin(jar, '77');
          expect((await get(await decide(c, 'confirm', BOB), jar)).status).toBe(302);
        }
        expect(await held(BOB)).toEqual([77]);
        const before = await refusals();
        const c = await begin(jar, '78');
        const back = await get(await decide(c, 'cancel', BOB), jar);
        expect(back.headers.get('location')).toContain('wxsub_outcome=cancelled&scene=78#/orders/7');
        expect(await held(BOB)).toEqual([77]);
        expect(await refusals()).toBe(before + 1);
      },
    );

    it.skipIf(skip)(
      'rejects every attack with a 4xx and a stable code, the ledger untouched, the real link still good',
      async () => {
        const victim = new CookieJar();
        const consent = await begin(victim, '500');
        const cbUrl = new URL(await decide(consent, 'confirm', BOB));
        // decide() granted in the emulator only; our ledger changes only through a valid callback.
        const base = Object.fromEntries(cbUrl.searchParams);
        const withQ = (over: Record<string, string>) =>
          `${svc.baseUrl}/consent/one-time/callback?${new URLSearchParams({ ...base, ...over })}`;
        const cookieName = [...victim.cookies.keys()].find((k) => k.startsWith('wxsub_c_')) as string;
        const attacker = new CookieJar();
        await begin(attacker, '500');
        const attackerCookie = [...attacker.cookies].find(([k]) => k.startsWith('wxsub_c_'))?.[1] as string;
        const jarWith = (cookies: Record<string, string>) => {
          const j = new CookieJar();
          for (const [k, v] of Object.entries(cookies)) j.cookies.set(k, v);
          return j;
        };
        const victimCookies = Object.fromEntries(victim.cookies);
        const before = { bob: await held(BOB), alice: await held(ALICE), refusals: await refusals() };
        const reserved = base.reserved as string;
        const flipped = reserved.slice(0, 10) + (reserved[10] === 'a' ? 'b' : 'a') + reserved.slice(11);
        const cases: [string, string, CookieJar, number | null, string][] = [
          [
            'forwarded link (other browser, no cookie)',
            withQ({}),
            new CookieJar(),
            403,
            'CONSENT_COOKIE_MISSING',
          ],
          [
            'attacker cookie under the victim link',
            withQ({}),
            jarWith({ [cookieName]: attackerCookie }),
            403,
            'CONSENT_COOKIE_MISMATCH',
          ],
          [
            'forged signature',
            withQ({ reserved: flipped }),
            jarWith(victimCookies),
            400,
            'CONSENT_RESERVED_FORGED',
          ],
          [
            'cross-template',
            withQ({ template_id: 'OtherTemplate0001' }),
            jarWith(victimCookies),
            400,
            'CONSENT_BINDING_MISMATCH',
          ],
          ['scene mismatch', withQ({ scene: '501' }), jarWith(victimCookies), 400, 'CONSENT_SCENE_MISMATCH'],
          [
            'scene out of range',
            withQ({ scene: '10001' }),
            jarWith(victimCookies),
            400,
            'CONSENT_SCENE_OUT_OF_RANGE',
          ],
          [
            'reserved over 128',
            withQ({ reserved: 'A'.repeat(129) }),
            jarWith(victimCookies),
            400,
            'CONSENT_RESERVED_MALFORMED',
          ],
          [
            'reserved not alphanumeric',
            withQ({ reserved: `${reserved.slice(0, 20)}-` }),
            jarWith(victimCookies),
            400,
            'CONSENT_RESERVED_MALFORMED',
          ],
          [
            'confirm without openid',
            withQ({ openid: '' }),
            jarWith(victimCookies),
            400,
            'CONSENT_OPENID_MISSING',
          ],
          [
            '100 KB query',
            `${withQ({})}&pad=${'x'.repeat(100_000)}`,
            jarWith(victimCookies),
            null,
            'HTTP_URI_TOO_LONG',
          ],
          [
            'next not allowed',
            `${svc.baseUrl}/consent/one-time?template=${ONE_TIME_TPL}&next=${encodeURIComponent('https://evil.example/')}`,
            new CookieJar(),
            400,
            'CONSENT_NEXT_NOT_ALLOWED',
          ],
          [
            'next too long once normalized (144 characters, 1101 percent-encoded)',
            `${svc.baseUrl}/consent/one-time?template=${ONE_TIME_TPL}&next=${encodeURIComponent(`http://app.test/shop/${'商'.repeat(120)}`)}`,
            new CookieJar(),
            400,
            'CONSENT_NEXT_NOT_ALLOWED',
          ],
          [
            'open redirect via prefix trick',
            `${svc.baseUrl}/consent/one-time?template=${ONE_TIME_TPL}&next=${encodeURIComponent('http://app.test/shopper')}`,
            new CookieJar(),
            400,
            'CONSENT_NEXT_NOT_ALLOWED',
          ],
        ];
        for (const [name, url, jar, status, code] of cases) {
          const res = await get(url, jar);
          if (status !== null) expect(res.status, name).toBe(status);
          expect(res.status, name).toBeGreaterThanOrEqual(400);
          expect(res.status, name).toBeLessThan(500);
          expect(await errorCode(res), name).toBe(code);
        }
        expect({ bob: await held(BOB), alice: await held(ALICE), refusals: await refusals() }).toEqual(
          before,
        );

        // None of that burned the link: the victim's own browser completes it, exactly once.
        const ok = await get(cbUrl.toString(), victim);
        expect(ok.status).toBe(302);
        expect(await held(BOB)).toEqual([...before.bob, 500].sort((a, b) => a - b));
        const replay = await get(cbUrl.toString(), jarWith(victimCookies));
        expect([replay.status, await errorCode(replay)]).toEqual([409, 'CONSENT_RESERVED_REPLAYED']);
        expect(await held(BOB)).toEqual([...before.bob, 500].sort((a, b) => a - b));
      },
    );

    it.skipIf(skip)(
      'a next with non-ASCII characters completes: 302 to its normalized form, the grant written',
      async () => {
        const cases: [string, number, string][] = [
          [
            'http://app.test/shop/商品/7?q=é#/详情',
            601,
            'http://app.test/shop/%E5%95%86%E5%93%81/7?q=%C3%A9&wxsub_outcome=confirmed&scene=601#/%E8%AF%A6%E6%83%85',
          ],
          ['http://ａpp.test/shop/done', 602, 'http://app.test/shop/done?wxsub_outcome=confirmed&scene=602'],
        ];
        for (const [next, scene, want] of cases) {
          const jar = new CookieJar();
          const back = await get(await decide(await begin(jar, String(scene), next), 'confirm', ALICE), jar);
          expect({ status: back.status, location: back.headers.get('location') }, next).toEqual({
            status: 302,
            location: want,
          });
        }
        expect(await held(ALICE)).toEqual(expect.arrayContaining([601, 602]));
      },
    );

    it.skipIf(skip)(
      'a browser that abandons many links still starts new ones; its newest links complete, older ones are cleared',
      async () => {
        // An allowlisted next near the limit (an SPA route carrying its state in the fragment).
        const next = `http://app.test/shop/#/item?state=${'x'.repeat(MAX_NEXT_LENGTH - 40)}`;
        expect(next.length).toBeLessThanOrEqual(MAX_NEXT_LENGTH);
        const jar = new CookieJar();
        const links: URL[] = [];
        let largestCookieHeader = 0;
        for (let i = 0; i < 20; i++) {
          largestCookieHeader = Math.max(largestCookieHeader, jar.header().length);
          links.push(await begin(jar, String(700 + i), next)); // 302 every time
        }
        // What one browser carries for consent stays well under Node's 16 KiB header limit, room left for the site's own.
        expect(largestCookieHeader).toBeLessThanOrEqual(8192);
        expect([...jar.cookies.keys()].filter((k) => k.startsWith('wxsub_c_'))).toHaveLength(4);

        const oldest = await get(await decide(links[0] as URL, 'confirm', BOB), jar);
        expect([oldest.status, await errorCode(oldest)]).toEqual([403, 'CONSENT_COOKIE_MISSING']);
        for (const i of [19, 16]) {
          const back = await get(await decide(links[i] as URL, 'confirm', BOB), jar);
          expect(back.status).toBe(302);
          expect(back.headers.get('location')).toContain(
            `wxsub_outcome=confirmed&scene=${700 + i}#/item?state=`,
          );
        }
        expect(await held(BOB)).toEqual(expect.arrayContaining([716, 719]));
        expect(await held(BOB)).not.toContain(700);
      },
    );

    it.skipIf(skip)('an expired link is refused and changes nothing', async () => {
      // The service listens on a real port but reads time from a manual clock, so no sleeping.
      const clock = new ManualClock(Date.now());
      const short = await startService(
        engine,
        {
          wechat: { appId: APP_ID, baseUrl: emuBase },
          consent: {
            secret: 'e2e-consent-secret-0123456789abcdef',
            ttlSeconds: 60,
            oneTimeTemplates: [ONE_TIME_TPL],
          },
        },
        clock,
      );
      try {
        const jar = new CookieJar();
        const res = await get(`${short.baseUrl}/consent/one-time?template=${ONE_TIME_TPL}&scene=3`, jar);
        const consent = new URL(res.headers.get('location') as string);
        expect(consent.searchParams.get('redirect_url')).toBe(`${short.baseUrl}/consent/one-time/callback`);
        const cb = await decide(consent, 'confirm', ALICE, short.baseUrl);
        clock.advance(61_000);
        const late = await get(cb, jar);
        expect([late.status, await errorCode(late)]).toEqual([400, 'CONSENT_RESERVED_EXPIRED']);
        expect(
          await short.store.grants.availableScenes({
            appId: APP_ID,
            openid: ALICE,
            templateId: ONE_TIME_TPL,
          }),
        ).toEqual([]);
      } finally {
        await short.close();
      }
    });
  });
}
