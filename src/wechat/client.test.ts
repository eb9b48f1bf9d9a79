// The SDK client against the in-memory emulator: token broker behaviour, sends, templates, JS-SDK, OAuth, quota, faults.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createEmulator, type Emulator } from '../emulator/index.js';
import { isAppError } from '../errors.js';
import { ManualClock } from '../util/clock.js';
import { createWeChatClient, type WeChatClient, type WeChatClientOptions } from './client.js';
import {
  isWeChatApiError,
  isWeChatTokenUnavailableError,
  isWeChatTransportError,
  requestMayHaveTakenEffect,
  WeChatApiError,
} from './errors.js';
import { signJsSdk } from './jssdk.js';
import { createMemoryTokenStore } from './token-stores/memory.js';
import type { TokenStore } from './token-store.js';
import { keywordsFromTemplate } from './validate.js';

const APPID = 'wxsdktest00000001';
const SECRET = 'sdksecret0123456789abcdef012345';
const OPENID = 'oSdkUser000000000000000001';
const ONE_TIME = 'SdkOneTimeTpl000000000000000000000000000001';
const NOTIFY = 'SdkNotifyTpl0000000000000000000000000000001';

let clock: ManualClock;
let emu: Emulator;
let store: TokenStore;
const clients: WeChatClient[] = [];

function client(over: Partial<WeChatClientOptions> = {}, shared = store): WeChatClient {
  const c = createWeChatClient(
    { fetch: emu.fetch, clock, tokenStore: shared, sleep: async () => {} },
    { appId: APPID, secret: SECRET, baseUrl: 'http://emulator', ...over },
  );
  clients.push(c);
  return c;
}
const fetches = () => emu.state.counters(APPID).tokenFetches;

type Seen = { path: string; contentType: string };
/**
 * A client whose requests to `path` go through `answer`, for WeChat replies the emulator does not produce.
 * `answer` gets the request and a `forward` to the emulator; every request to `path` is recorded in `seen`.
 */
function clientAnswering(
  path: string,
  answer: (init: RequestInit, forward: () => Promise<Response>) => Response | Promise<Response>,
  over: Partial<WeChatClientOptions> = {},
): { wx: WeChatClient; seen: Seen[] } {
  const seen: Seen[] = [];
  const f = (async (input: string, init: RequestInit) => {
    if (new URL(input).pathname !== path) return emu.fetch(input, init);
    const contentType = (init.headers as Record<string, string> | undefined)?.['content-type'] ?? '';
    seen.push({ path, contentType });
    return answer(init, () => emu.fetch(input, init));
  }) as unknown as typeof fetch;
  const wx = createWeChatClient(
    { fetch: f, clock, tokenStore: store, sleep: async () => {} },
    { appId: APPID, secret: SECRET, baseUrl: 'http://emulator', ...over },
  );
  clients.push(wx);
  return { wx, seen };
}
const reply = (text: string) =>
  new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });

beforeEach(async () => {
  clock = new ManualClock(Date.UTC(2026, 0, 1, 4));
  store = createMemoryTokenStore();
  emu = await createEmulator({
    clock,
    randomSeed: 1,
    seed: {
      apps: [
        {
          appid: APPID,
          secret: SECRET,
          businessDomains: ['a.example'],
          users: [{ openid: OPENID }],
          templates: [
            { templateId: ONE_TIME, kind: 'one-time', title: '活动开始提醒' },
            {
              templateId: NOTIFY,
              kind: 'notification',
              title: '物流状态通知',
              tid: 2001,
              type: 2,
              content:
                '物品名称:{{thing1.DATA}}\n运单号:{{character_string2.DATA}}\n物流状态:{{phrase3.DATA}}\n更新时间:{{date4.DATA}}',
            },
          ],
        },
      ],
    } as never,
  });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await emu.close();
});

describe('token broker', () => {
  it('serves 50 concurrent callers with one token fetch', async () => {
    const wx = client();
    const tokens = await Promise.all(Array.from({ length: 50 }, () => wx.getAccessToken()));
    expect(new Set(tokens).size).toBe(1);
    expect(fetches().stable).toBe(1);
  });

  it('reuses the token until the refresh-ahead window, then refreshes once', async () => {
    const wx = client();
    const t1 = await wx.getAccessToken();
    clock.advance(7_200_000 - 200_000);
    expect(await wx.getAccessToken()).toBe(t1);
    expect(fetches().stable).toBe(1);
    clock.advance(60_000); // 140 s before expiry: inside the 180 s window
    await wx.getAccessToken();
    await new Promise((r) => setTimeout(r, 20));
    expect(fetches().stable).toBe(2);
    const t2 = await wx.getAccessToken();
    expect(t2).not.toBe(t1);
    await Promise.all(Array.from({ length: 10 }, () => wx.getAccessToken()));
    expect(fetches().stable).toBe(2);
  });

  it('uses classic /cgi-bin/token when asked', async () => {
    const wx = client({ tokenMode: 'classic' });
    await wx.getAccessToken();
    expect(fetches()).toEqual({ classic: 1, stable: 0 });
  });

  it('absorbs a 40001 caused by another instance’s refresh without a second refresh', async () => {
    const a = client();
    const b = client();
    emu.state.grantOneTime(APPID, OPENID, ONE_TIME, 1);
    await a.getAccessToken();
    await b.forceRefreshToken(); // kills a's cached token at WeChat and stores the new one
    expect(fetches().stable).toBe(2);
    await a.sendOneTime({
      touser: OPENID,
      template_id: ONE_TIME,
      scene: 1,
      title: 't',
      data: { content: { value: 'c' } },
    });
    expect(fetches().stable).toBe(2);
    expect(emu.state.inbox(APPID, OPENID)).toHaveLength(1);
  });

  it('on 40001 invalidates the failed token, refreshes once and retries the call', async () => {
    const wx = client();
    const other = createWeChatClient(
      { fetch: emu.fetch, clock },
      { appId: APPID, secret: SECRET, baseUrl: 'http://emulator' },
    ); // its own store
    clients.push(other);
    const t1 = await wx.getAccessToken();
    await other.forceRefreshToken();
    expect(await wx.getQuota('/cgi-bin/message/subscribe/bizsend')).toMatchObject({
      used: expect.any(Number),
    });
    expect(await wx.getAccessToken()).not.toBe(t1);
    expect(fetches().stable).toBe(3);
  });

  it('guards the force-refresh budget (30 s apart) without calling WeChat', async () => {
    const wx = client();
    await wx.forceRefreshToken();
    const err = await wx.forceRefreshToken().catch((e: unknown) => e);
    expect(isAppError(err, 'WX_FORCE_REFRESH_BUDGET')).toBe(true);
    expect((err as { details: { reason: string; retryAfterMs: number } }).details).toMatchObject({
      reason: 'too-soon',
      retryAfterMs: 30_000,
    });
    expect(fetches().stable).toBe(1);
    clock.advance(30_000);
    await wx.forceRefreshToken();
    expect(fetches().stable).toBe(2);
  });

  it('reports a wrong secret as a failing API error, not as refresh-and-retry', async () => {
    const wx = client({ secret: 'ffffffffffffffffffffffffffffffff' });
    const err = await wx.getAccessToken().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeChatApiError);
    expect(err).toMatchObject({ errcode: 40001, action: 'fail' });
    expect(JSON.stringify(err) + (err as Error).message).not.toContain('ffffffffffffffff');
  });
});

describe('sends', () => {
  /** A one-time send to OPENID on scene 2; resolves to the error when it fails. */
  const sendScene2 = (wx: WeChatClient) =>
    wx
      .sendOneTime({
        touser: OPENID,
        template_id: ONE_TIME,
        scene: 2,
        title: 't',
        data: { content: { value: 'c' } },
      })
      .catch((e: unknown) => e);

  it('one-time: 43101 without consent, ok after a grant, 43101 again, message in the inbox', async () => {
    const wx = client();
    const input = {
      touser: OPENID,
      template_id: ONE_TIME,
      scene: 1000,
      title: '活动开始提醒',
      data: { content: { value: '活动 10:00 开始', color: '#FF0000' } },
      url: 'https://a.example/x',
    };
    const first = await wx.sendOneTime(input).catch((e: unknown) => e);
    expect(isWeChatApiError(first, 43101)).toBe(true);
    expect(first).toMatchObject({
      action: 'consent-missing',
      errcodeName: 'user_refuse_to_accept',
      rid: expect.stringMatching(/^[0-9a-f]{8}-/),
    });
    emu.state.grantOneTime(APPID, OPENID, ONE_TIME, 1000);
    await expect(wx.sendOneTime(input)).resolves.toEqual({ errcode: 0 });
    await expect(wx.sendOneTime(input)).rejects.toMatchObject({ errcode: 43101 });
    const inbox = emu.state.inbox(APPID, OPENID);
    expect(inbox).toHaveLength(1);
    expect(JSON.stringify(inbox[0])).toContain('活动 10:00 开始');
  });

  it('rejects bad payloads locally with typed errors and sends nothing', async () => {
    const wx = client();
    await expect(
      wx.sendOneTime({
        touser: OPENID,
        template_id: ONE_TIME,
        scene: 1,
        title: '这是一个超过十五个字符长度的标题啊',
        data: { content: { value: 'x' } },
      }),
    ).rejects.toMatchObject({ code: 'WX_INVALID_ARGUMENT', field: 'title' });
    await expect(wx.sendOneTime(null as never)).rejects.toMatchObject({ code: 'WX_INVALID_ARGUMENT' });
    expect(emu.state.counters(APPID).sends).toEqual({});
  });

  it('notification: validates against the template keywords and returns msgid', async () => {
    const wx = client();
    emu.state.grantNotification(APPID, OPENID, NOTIFY, 1);
    const tpl = (await wx.templates.getTemplates()).find((t) => t.priTmplId === NOTIFY);
    expect(tpl).toBeDefined();
    const keywords = keywordsFromTemplate(tpl!);
    const data = {
      thing1: { value: '键盘' },
      character_string2: { value: 'SF123456' },
      phrase3: { value: '配送中' },
      date4: { value: '2026-01-01 10:00' },
    };
    await expect(
      wx.sendNotification(
        { touser: OPENID, template_id: NOTIFY, data: { ...data, phrase3: { value: '正在配送中啊' } } },
        { keywords },
      ),
    ).rejects.toMatchObject({ field: 'data.phrase3.value' });
    const r = await wx.sendNotification(
      { touser: OPENID, template_id: NOTIFY, data, page: 'https://a.example/p' },
      { keywords },
    );
    expect(r.msgid).toMatch(/^\d+$/);
    await expect(
      wx.sendNotification({ touser: OPENID, template_id: NOTIFY, data }, { keywords }),
    ).rejects.toMatchObject({ errcode: 43101 });
  });

  it('notification: returns the int64 msgid exactly, equal to the MsgID of the sent event', async () => {
    // WxJava reads msgid as a long: a JSON number above 2^53 that JSON.parse alone would round.
    const { wx } = clientAnswering('/cgi-bin/message/subscribe/bizsend', async (_init, forward) =>
      reply((await (await forward()).text()).replace(/"msgid":"(\d+)"/, '"msgid":$1')),
    );
    emu.state.grantNotification(APPID, OPENID, NOTIFY, 1);
    const data = {
      thing1: { value: '键盘' },
      character_string2: { value: 'SF123456' },
      phrase3: { value: '配送中' },
      date4: { value: '2026-01-01 10:00' },
    };
    const r = await wx.sendNotification({ touser: OPENID, template_id: NOTIFY, data });
    const event = emu.state.sentEvents(APPID).at(-1);
    expect(BigInt(event!.msgId)).toBeGreaterThan(2n ** 53n);
    expect(r.msgid).toBe(String(event!.msgId));
  });

  it.each([
    ['a gateway message', '{"message":"upstream timeout"}'],
    ['an empty object', '{}'],
  ])(
    'a send answered 200 with %s (no errcode) is WX_BAD_RESPONSE with an unknown outcome',
    async (_, text) => {
      const oneTime = clientAnswering('/cgi-bin/message/template/subscribe', () => reply(text));
      const notify = clientAnswering('/cgi-bin/message/subscribe/bizsend', () => reply(text));
      const errors = [
        await sendScene2(oneTime.wx),
        await notify.wx
          .sendNotification({ touser: OPENID, template_id: NOTIFY, data: { thing1: { value: '键盘' } } })
          .catch((e: unknown) => e),
      ];
      for (const err of errors) {
        expect(err).toMatchObject({ code: 'WX_BAD_RESPONSE' });
        // WeChat may have executed it: delivery records the outcome as unknown and never resends a notification.
        expect(requestMayHaveTakenEffect(err)).toBe(true);
      }
      expect(oneTime.seen).toHaveLength(1);
      expect(notify.seen).toHaveLength(1);
    },
  );

  it('does not retry a send whose connection dropped after processing; reports requestMayHaveLeft', async () => {
    const wx = client();
    await wx.getAccessToken();
    emu.state.grantOneTime(APPID, OPENID, ONE_TIME, 2);
    emu.state.setFaults({ path: '/cgi-bin/message/template/subscribe', drop: 1, dropAfterProcessing: true });
    const err = await sendScene2(wx);
    expect(isWeChatTransportError(err)).toBe(true);
    expect(err).toMatchObject({ requestMayHaveLeft: true });
    expect(emu.state.inbox(APPID, OPENID)).toHaveLength(1);
    expect(emu.state.counters(APPID).calls['/cgi-bin/message/template/subscribe']).toBe(1);
  });

  it('a send whose token could not be had never left, whatever the token endpoint did', async () => {
    emu.state.grantOneTime(APPID, OPENID, ONE_TIME, 2);
    // The token request's connection drops after WeChat processed it: that request "may have left", the send did not.
    emu.state.setFaults({ path: '/cgi-bin/stable_token', drop: 1, dropAfterProcessing: true });
    const dropped = await sendScene2(client({ retries: { max: 0 } }));
    expect(isWeChatTokenUnavailableError(dropped)).toBe(true);
    expect(dropped).toMatchObject({ code: 'WX_TOKEN_UNAVAILABLE', requestMayHaveLeft: false });
    expect(requestMayHaveTakenEffect(dropped)).toBe(false);
    expect(isWeChatTransportError((dropped as Error).cause)).toBe(true);
    // The token endpoint's own -1 is not the send's -1 (which would leave the send's outcome unknown).
    emu.state.setFaults({ path: '/cgi-bin/stable_token', errcodes: { '-1': 1 } });
    const busy = await sendScene2(client({ retries: { max: 0 } }, createMemoryTokenStore()));
    expect(busy).toMatchObject({
      code: 'WX_TOKEN_UNAVAILABLE',
      requestMayHaveLeft: false,
      details: { errcode: -1 },
    });
    expect(emu.state.counters(APPID).calls['/cgi-bin/message/template/subscribe']).toBeUndefined();
    expect(emu.state.hasOneTimeGrant(APPID, OPENID, ONE_TIME, 2)).toBe(true);
  });

  it('posts the one-time scene as a string, or as a number with oneTimeScene, for a WeChat that takes only one', async () => {
    // The docs disagree on scene's JSON type (spec §1.4); the emulator can be made to take only one of them.
    const outcomes: Record<string, unknown> = {};
    for (const platform of ['string', 'number'] as const) {
      emu.state.behavior.oneTimeSceneType = platform;
      for (const sdk of ['string', 'number'] as const) {
        emu.state.grantOneTime(APPID, OPENID, ONE_TIME, 2);
        const r = await sendScene2(client(sdk === 'string' ? {} : { oneTimeScene: sdk }));
        outcomes[`${platform} <- ${sdk}`] = r instanceof Error ? (r as { errcode?: number }).errcode : 'ok';
      }
    }
    expect(outcomes).toEqual({
      'string <- string': 'ok',
      'string <- number': 47003,
      'number <- string': 47003,
      'number <- number': 'ok',
    });
    expect(emu.state.inbox(APPID, OPENID)).toHaveLength(2);
    expect(() => client({ oneTimeScene: 'int' as never })).toThrow(
      expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field: 'oneTimeScene' }),
    );
  });

  it('retries -1 on calls that are safe to repeat', async () => {
    const wx = client();
    await wx.getAccessToken();
    emu.state.setFaults({ path: '/wxaapi/newtmpl/getcategory', errcodes: { '-1': 0.5 } });
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => wx.templates.getCategory()));
    expect(results.filter((r) => r.status === 'fulfilled').length).toBeGreaterThanOrEqual(7);
  });
});

describe('templates, JS-SDK, OAuth, quota', () => {
  it('runs the six template calls', async () => {
    const wx = client();
    const cats = await wx.templates.getCategory();
    expect(cats.length).toBeGreaterThan(0);
    const titles = await wx.templates.getPubTemplateTitles({ ids: [cats[0]!.id], start: 0, limit: 10 });
    expect(titles.data.length).toBeGreaterThan(0);
    const kws = await wx.templates.getPubTemplateKeywords(titles.data[0]!.tid);
    expect(kws.data.length).toBeGreaterThanOrEqual(2);
    const { priTmplId } = await wx.templates.addTemplate({
      tid: titles.data[0]!.tid,
      kidList: kws.data.slice(0, 2).map((k) => k.kid),
      sceneDesc: '测试',
    });
    expect((await wx.templates.getTemplates()).some((t) => t.priTmplId === priTmplId)).toBe(true);
    await wx.templates.delTemplate(priTmplId);
    expect((await wx.templates.getTemplates()).some((t) => t.priTmplId === priTmplId)).toBe(false);
    await expect(wx.templates.addTemplate({ tid: 999999, kidList: [1, 2] })).rejects.toMatchObject({
      errcode: 200014,
      action: 'fail',
    });
    await expect(wx.templates.getPubTemplateTitles({ ids: [], limit: 10 })).rejects.toMatchObject({
      code: 'WX_INVALID_ARGUMENT',
    });
  });

  /** A library template with two keywords, from the emulator. */
  async function libraryTemplate(wx: WeChatClient): Promise<{ tid: number; kidList: number[] }> {
    const cats = await wx.templates.getCategory();
    const titles = await wx.templates.getPubTemplateTitles({ ids: [cats[0]!.id], limit: 1 });
    const kws = await wx.templates.getPubTemplateKeywords(titles.data[0]!.tid);
    return { tid: titles.data[0]!.tid, kidList: kws.data.slice(0, 2).map((k) => k.kid) };
  }
  /** Answers a JSON addtemplate body like the mini-program doc says WeChat does; forwards a form body. */
  const refuseJson = (init: RequestInit, forward: () => Promise<Response>) =>
    String((init.headers as Record<string, string>)['content-type']).startsWith('application/json')
      ? reply('{"errcode":"200014","errmsg":"missing parameter tid rid: 64229bc2-48d0e8b1-2008ed9b"}')
      : forward();
  const FORM = 'application/x-www-form-urlencoded';

  it('addtemplate repeats a JSON body refused with 200014 once as a form, and creates the template', async () => {
    const { wx, seen } = clientAnswering('/wxaapi/newtmpl/addtemplate', refuseJson);
    const { priTmplId } = await wx.templates.addTemplate({
      ...(await libraryTemplate(wx)),
      sceneDesc: '到货提醒',
    });
    expect(seen.map((s) => s.contentType.split(';')[0])).toEqual(['application/json', FORM]);
    expect((await wx.templates.getTemplates()).some((t) => t.priTmplId === priTmplId)).toBe(true);
  });

  it("addtemplate with addTemplateBody 'form' posts only a form, with 'json' never falls back", async () => {
    const form = clientAnswering('/wxaapi/newtmpl/addtemplate', refuseJson, { addTemplateBody: 'form' });
    const { priTmplId } = await form.wx.templates.addTemplate({
      ...(await libraryTemplate(form.wx)),
      sceneDesc: '测试',
    });
    expect(form.seen.map((s) => s.contentType.split(';')[0])).toEqual([FORM]);
    expect((await form.wx.templates.getTemplates()).some((t) => t.priTmplId === priTmplId)).toBe(true);
    const json = clientAnswering('/wxaapi/newtmpl/addtemplate', refuseJson, { addTemplateBody: 'json' });
    await expect(
      json.wx.templates.addTemplate({ ...(await libraryTemplate(json.wx)), sceneDesc: '测试' }),
    ).rejects.toMatchObject({ errcode: 200014 });
    expect(json.seen).toHaveLength(1);
    expect(() => client({ addTemplateBody: 'xml' as never })).toThrow(
      expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field: 'addTemplateBody' }),
    );
  });

  it('deltemplate answered 200 without errcode is WX_BAD_RESPONSE, not a deletion', async () => {
    const { wx } = clientAnswering('/wxaapi/newtmpl/deltemplate', () => reply('{}'));
    await expect(wx.templates.delTemplate(NOTIFY)).rejects.toMatchObject({ code: 'WX_BAD_RESPONSE' });
  });

  it('caches the jsapi ticket per token generation and signs wx.config without the fragment', async () => {
    const wx = client();
    const ticket = await wx.jssdk.getTicket();
    await Promise.all(Array.from({ length: 20 }, () => wx.jssdk.getTicket()));
    expect(emu.state.counters(APPID).ticketFetches).toBe(1);
    const cfg = await wx.jssdk.signConfig({ url: 'https://a.example/page?x=1#/spa' });
    expect(cfg).toMatchObject({ appId: APPID, openTagList: ['wx-open-subscribe'], jsApiList: [] });
    expect(cfg.signature).toBe(
      signJsSdk({
        ticket,
        nonceStr: cfg.nonceStr,
        timestamp: cfg.timestamp,
        url: 'https://a.example/page?x=1',
      }),
    );
    clock.advance(31_000);
    await wx.forceRefreshToken(); // new token generation → the ticket is fetched again
    await wx.jssdk.getTicket();
    expect(emu.state.counters(APPID).ticketFetches).toBe(2);
  });

  it('builds the OAuth URL and exchanges a code once', async () => {
    const wx = client();
    const url = wx.oauth.authorizeUrl({
      redirectUri: 'https://a.example/cb',
      scope: 'snsapi_base',
      state: 'st1',
    });
    expect(url).toBe(
      'http://emulator/connect/oauth2/authorize?appid=wxsdktest00000001&redirect_uri=https%3A%2F%2Fa.example%2Fcb&response_type=code&scope=snsapi_base&state=st1#wechat_redirect',
    );
    const code = emu.state.issueOAuthCode(APPID, OPENID, 'snsapi_base');
    const r = await wx.oauth.exchangeCode(code);
    expect(r).toMatchObject({ openid: OPENID, scope: 'snsapi_base', isSnapshotUser: false });
    await expect(wx.oauth.exchangeCode(code)).rejects.toMatchObject({ errcode: 40163 });
    await expect(wx.oauth.exchangeCode('bad code!')).rejects.toMatchObject({ code: 'WX_INVALID_ARGUMENT' });
  });

  it('reports a wrong secret on the code exchange (40001) as a failure, not as refresh-token-and-retry', async () => {
    const wx = client({ secret: '0123456789abcdef0123456789abcdef' });
    const err = await wx.oauth
      .exchangeCode(emu.state.issueOAuthCode(APPID, OPENID, 'snsapi_base'))
      .catch((e: unknown) => e);
    expect(isWeChatApiError(err, 40001)).toBe(true);
    expect(err).toMatchObject({ action: 'fail', retryable: false });
    expect(fetches()).toEqual({ classic: 0, stable: 0 });
  });

  it('reads API quota', async () => {
    const wx = client();
    const q = await wx.getQuota('/cgi-bin/message/subscribe/bizsend');
    expect(q).toEqual({
      dailyLimit: expect.any(Number),
      used: expect.any(Number),
      remain: expect.any(Number),
    });
  });

  it('builds consent URLs on the configured host', () => {
    const wx = client();
    expect(
      wx.oneTimeConsentUrl({
        templateId: ONE_TIME,
        scene: 5,
        redirectUrl: 'https://a.example/cb',
        reserved: 'r1',
      }),
    ).toMatch(
      /^http:\/\/emulator\/mp\/subscribemsg\?action=get_confirm&appid=wxsdktest00000001&scene=5&.*#wechat_redirect$/,
    );
  });
});
