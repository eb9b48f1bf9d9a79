// The three validators of a send, which must agree with each other and with the spec (wechat-spec.md):
//   (1) the SDK's local checks (src/wechat/validate.ts, via the real createWeChatClient),
//   (2) the emulator (src/emulator/keywords.ts + routes/send.ts, over a real port-0 socket),
//   (3) the service's POST /v1/messages (src/http/message-schemas.ts), followed through the real dispatcher, SDK and
//       emulator to the message's final status.
// Property tests over the wire path and the delivered text (test/keyword-rules.test.ts compares the two keyword
// functions in isolation), and the disagreements an audit found, each of which let the service accept (202) a message
// that then failed at the send: an enum keyword registered without its values, a blank miniprogram field, a
// miniprogram length counted in UTF-16 units by the SDK, and a url limit of 1024 in the service against 2048 in the SDK.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/schema.js';
import { createDispatcher, type Dispatcher } from '../../src/delivery/dispatcher.js';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';
import { createApiKey } from '../../src/http/api-keys.js';
import { createServiceApp } from '../../src/http/app.js';
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import {
  createWeChatClient,
  errcodeInfo,
  keywordsFromTemplate,
  type KeywordSpec,
  type WeChatClient,
} from '../../src/wechat/index.js';
import { WeChatInvalidArgumentError } from '../../src/wechat/errors.js';

const APPID = 'wxvalidate00000001';
const SECRET = 'validsecret0123456789abcdef01234';
const OPENID = 'oValidUser0000000000000001';
const ONE_TIME = 'ValidOneTimeTpl00000000000000000000000001';
const ENUM_TPL = 'ValidEnumTpl000000000000000000000000000001';
const ALL_TPL = 'ValidAllTypesTpl00000000000000000000000001';
const ENUM_VALUES = ['已受理', '办理中'];

/** One placeholder of every keyword type of spec §2.5. */
const ALL_KEYS = [
  'thing1',
  'number2',
  'letter3',
  'symbol4',
  'character_string5',
  'time6',
  'date7',
  'amount8',
  'phone_number9',
  'car_number10',
  'name11',
  'phrase12',
  'enum13',
] as const;
type Key = (typeof ALL_KEYS)[number];

/** Valid values per key (spec §2.5 examples and limits, incl. astral characters counted as one). */
const SAMPLES: Record<Key, string[]> = {
  thing1: ['耳机', 'a'.repeat(20), '字'.repeat(20), '😀'.repeat(20)],
  number2: ['339208499', '1'.repeat(32), '3.14'],
  letter3: ['abc', 'A'.repeat(32)],
  symbol4: ['!@#', '★☆', '😀😀😀😀😀'],
  character_string5: ['SF1234567890', 'x'.repeat(32)],
  time6: ['15:01', '15:01:59', '2019年10月1日 15:01', '15:01~16:00'],
  date7: ['2019年10月1日', '2018-01-01', '2018/01/01 15:01', '01-01', '2019年10月1日 15:01~16:00'],
  amount8: ['¥99.00', '99元', '$1234567890'],
  phone_number9: ['+86-0766-66888866', '13800138000'],
  car_number10: ['粤A8Z888挂', '粤AD12345'],
  name11: ['张三', 'John Smith', '张'.repeat(10)],
  phrase12: ['配送中', '已签收'],
  enum13: ENUM_VALUES,
};
/** Characters the rules care about: digits, letters, CJK, separators, currency, astral and zero-width chars. */
const NOISE = [...'0123456789aZé字粤年月日元 .-/:~¥$+()#*_!'].concat([
  '😀',
  '\u3000',
  '\u2028',
  '\u200b',
  '\ufeff',
  '👨‍👩‍👧',
  '\t',
]);
const noise = (max: number) => fc.array(fc.constantFrom(...NOISE), { maxLength: max }).map((a) => a.join(''));
/** A value for `key`: a valid sample, a sample pushed one character over, or noise. */
const keywordValue = (key: Key) =>
  fc.oneof(
    fc.constantFrom(...SAMPLES[key]),
    fc.constantFrom(...SAMPLES[key]).map((v) => `${v}x`),
    fc.constantFrom(...SAMPLES[key]).map((v) => `${v}😀`),
    noise(34),
  );
/** A data object whose keys are all valid but one, which gets `keywordValue`. */
const notificationData = fc
  .record(
    Object.fromEntries(ALL_KEYS.map((k) => [k, fc.constantFrom(...SAMPLES[k])])) as Record<
      Key,
      fc.Arbitrary<string>
    >,
  )
  .chain((valid) =>
    fc
      .constantFrom(...ALL_KEYS)
      .chain((k) => keywordValue(k).map((v) => ({ ...valid, [k]: v }) as Record<Key, string>)),
  );
/** Title/content text around the 15/200 limits: CJK, emoji (2 UTF-16 units), ZWJ sequences, odd whitespace. */
const textChar = fc.constantFrom('a', '字', '😀', ' ', '\n', 'é', '\u200b', '\u3000', '👨‍👩‍👧', '𠀀');
const text = (min: number, max: number) =>
  fc.array(textChar, { minLength: min, maxLength: max }).map((a) => a.join(''));

let emu: Emulator;
let base: string;
let wx: WeChatClient;
let scene = 0;
const nextScene = () => ++scene;

beforeAll(async () => {
  emu = await createEmulator({
    randomSeed: 11,
    seed: {
      apps: [
        {
          appid: APPID,
          secret: SECRET,
          users: [{ openid: OPENID }],
          templates: [
            { templateId: ONE_TIME, kind: 'one-time', title: '到货提醒' },
            {
              templateId: ALL_TPL,
              kind: 'notification',
              title: '全类型',
              type: 2,
              content: ALL_KEYS.map((k) => `${k}:{{${k}.DATA}}`).join('\n'),
              keywordEnumValueList: [{ keywordCode: 'enum13.DATA', enumValueList: ENUM_VALUES }],
            },
            {
              templateId: ENUM_TPL,
              kind: 'notification',
              title: '办事进度通知',
              type: 2,
              content: '事项:{{thing1.DATA}}\n进度:{{enum2.DATA}}',
              keywordEnumValueList: [{ keywordCode: 'enum2.DATA', enumValueList: ENUM_VALUES }],
            },
          ],
        },
      ],
    },
  });
  base = await emu.listen({ port: 0 });
  wx = createWeChatClient({}, { appId: APPID, secret: SECRET, baseUrl: base });
});

afterAll(async () => {
  await wx?.close();
  await emu?.close();
});

/** Posts a raw body to an emulator send path, bypassing the SDK's local checks. */
async function rawSend(path: string, body: unknown): Promise<{ errcode: number; errmsg: string }> {
  const token = await wx.getAccessToken();
  const res = await fetch(`${base}${path}?access_token=${token}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await res.json()) as { errcode: number; errmsg: string };
}
const ONE_TIME_PATH = '/cgi-bin/message/template/subscribe';
const BIZSEND_PATH = '/cgi-bin/message/subscribe/bizsend';

/** The newest message of the user's emulated inbox. */
async function lastInbox(): Promise<{ title: string; content: string; url?: string }> {
  const r = await fetch(`${base}/__emulator/apps/${APPID}/users/${OPENID}/messages`);
  const { messages } = (await r.json()) as { messages: { title: string; content: string; url?: string }[] };
  return messages[0] as { title: string; content: string; url?: string };
}

async function setBehavior(b: Record<string, unknown>): Promise<void> {
  const r = await fetch(`${base}/__emulator/behavior`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(b),
  });
  expect(r.status).toBe(200);
}

/** Runs `f`; 'ok', or the SDK's local refusal (never sent), or rethrows anything else. */
async function sdkVerdict(f: () => Promise<unknown>): Promise<'ok' | WeChatInvalidArgumentError> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    if (e instanceof WeChatInvalidArgumentError) return e;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
describe('SDK ↔ emulator over a real socket (agreement)', () => {
  it('one-time title/content: the SDK accepts ⇔ the emulator delivers them verbatim; an SDK refusal is a 47003', async () => {
    const seen = { ok: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(text(10, 17), fc.oneof(text(1, 6), text(195, 202)), async (title, content) => {
        const s = nextScene();
        emu.state.grantOneTime(APPID, OPENID, ONE_TIME, s);
        const input = {
          touser: OPENID,
          template_id: ONE_TIME,
          scene: s,
          title,
          data: { content: { value: content } },
        };
        const sdk = await sdkVerdict(() => wx.sendOneTime(input));
        seen[sdk === 'ok' ? 'ok' : 'refused']++;
        if (sdk === 'ok') {
          const got = await lastInbox();
          expect(got.title).toBe(title);
          expect(got.content).toBe(content);
        } else {
          // Spec §1.4: title ≤ 15 characters, content ≤ 200; default behaviour answers 47003 (spec §1.5 [UNVERIFIED]).
          expect(['title', 'data.content.value']).toContain(sdk.field);
          const raw = await rawSend(ONE_TIME_PATH, { ...input, scene: String(s) });
          expect(raw.errcode, `${JSON.stringify({ title, content })} ${raw.errmsg}`).toBe(47003);
          expect(raw.errmsg).toContain(sdk.field === 'title' ? 'title' : 'data.content.value');
        }
      }),
      { numRuns: 120 },
    );
    expect(seen.ok).toBeGreaterThan(10);
    expect(seen.refused).toBeGreaterThan(10);
  });

  it('one-time lengths are code points on both sides: 15 astral chars pass, 16 fail (47003, or 45003/45002 in size-limit mode)', async () => {
    const s = nextScene();
    emu.state.grantOneTime(APPID, OPENID, ONE_TIME, s);
    const ok = {
      touser: OPENID,
      template_id: ONE_TIME,
      scene: s,
      title: '😀'.repeat(15),
      data: { content: { value: '𠀀'.repeat(200) } },
    };
    await expect(wx.sendOneTime(ok)).resolves.toEqual({ errcode: 0 });
    const s2 = nextScene();
    emu.state.grantOneTime(APPID, OPENID, ONE_TIME, s2);
    const title16 = { ...ok, scene: String(s2), title: '😀'.repeat(16) };
    const content201 = { ...ok, scene: String(s2), data: { content: { value: '𠀀'.repeat(201) } } };
    await expect(sdkVerdict(() => wx.sendOneTime({ ...title16, scene: s2 }))).resolves.toBeInstanceOf(
      WeChatInvalidArgumentError,
    );
    await expect(sdkVerdict(() => wx.sendOneTime({ ...content201, scene: s2 }))).resolves.toBeInstanceOf(
      WeChatInvalidArgumentError,
    );
    expect((await rawSend(ONE_TIME_PATH, title16)).errcode).toBe(47003);
    expect((await rawSend(ONE_TIME_PATH, content201)).errcode).toBe(47003);
    await setBehavior({ overLengthErrcodes: 'size-limit' });
    try {
      expect((await rawSend(ONE_TIME_PATH, title16)).errcode).toBe(45003);
      expect((await rawSend(ONE_TIME_PATH, content201)).errcode).toBe(45002);
    } finally {
      await setBehavior({ overLengthErrcodes: 'argument-invalid' });
    }
  });

  it('bizsend, every keyword type: the SDK (keywords from gettemplate) accepts ⇔ the emulator delivers; an SDK refusal is a 47003 naming the field', async () => {
    const tpl = (await wx.templates.getTemplates()).find((t) => t.priTmplId === ALL_TPL);
    expect(tpl).toBeDefined();
    const keywords: KeywordSpec[] = keywordsFromTemplate(tpl!);
    expect(keywords.map((k) => k.key)).toEqual([...ALL_KEYS]);
    expect(keywords.find((k) => k.key === 'enum13')?.enumValues).toEqual(ENUM_VALUES);
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(notificationData, async (values) => {
        emu.state.grantNotification(APPID, OPENID, ALL_TPL, 1);
        const data = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { value: v }]));
        const input = { touser: OPENID, template_id: ALL_TPL, data };
        const sdk = await sdkVerdict(() => wx.sendNotification(input, { keywords }));
        if (sdk === 'ok') {
          accepted++;
          const got = await lastInbox();
          for (const k of ALL_KEYS) expect(got.content).toContain(`${k}:${values[k]}`);
        } else {
          const raw = await rawSend(BIZSEND_PATH, input);
          expect(raw.errcode, `${JSON.stringify(values)} sdk: ${sdk.message}`).toBe(47003);
          expect(raw.errmsg).toContain(sdk.field);
          // The unused credit stays (credits stack); the next run adds its own.
        }
      }),
      { numRuns: 250 },
    );
    expect(accepted).toBeGreaterThan(20);
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('service POST /v1/messages → dispatcher → SDK → emulator', () => {
  let dir: string;
  let store: Store;
  let app: FastifyInstance;
  let auth: Record<string, string>;
  let dispatcher: Dispatcher;
  let svcWx: WeChatClient;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-validation-'));
    store = createSqliteStore({ path: join(dir, 'db.sqlite') });
    await store.migrate();
    app = await createServiceApp(
      { store, wechat: { appId: APPID } },
      parseConfig({ wechat: { appId: APPID }, consent: { secret: 'a'.repeat(40) } }),
    );
    auth = { authorization: `Bearer ${(await createApiKey(store, 'validation')).key}` };
    // The client the service's own composition builds (src/cli/serve.ts openWeChatClient), on the emulator.
    svcWx = createWeChatClient({}, { appId: APPID, secret: SECRET, baseUrl: base, oneTimeScene: 'string' });
    dispatcher = createDispatcher(
      { store, wechat: () => svcWx, errcodeAction: (c) => errcodeInfo(c).action },
      { concurrency: 4, batchSize: 50, leaseMs: 30_000, maxAttempts: 1, backoffBaseMs: 1, backoffMaxMs: 1 },
    );
    const put = async (id: string, body: unknown) =>
      expect(
        (
          await app.inject({
            method: 'PUT',
            url: `/v1/templates/${id}`,
            headers: auth,
            payload: body as object,
          })
        ).statusCode,
      ).toBe(200);
    await put(ONE_TIME, { kind: 'one-time', title: '到货提醒' });
    await put(ALL_TPL, {
      kind: 'notification',
      title: '全类型',
      keywords: ALL_KEYS.map((k) => (k === 'enum13' ? { key: k, enumValues: ENUM_VALUES } : { key: k })),
    });
  });
  afterAll(async () => {
    await dispatcher?.stop();
    await svcWx?.close();
    await app?.close();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  type Final = {
    status: string;
    errorCode: string | null;
    errorMessage: string | null;
    lastErrcode: number | null;
  };
  /** POSTs the body; when 202, runs the dispatcher once and returns the message's final state. */
  async function deliver(
    body: Record<string, unknown>,
  ): Promise<{ status: number; error?: string; message?: Final }> {
    const r = await app.inject({ method: 'POST', url: '/v1/messages', headers: auth, payload: body });
    if (r.statusCode !== 202)
      return {
        status: r.statusCode,
        error: (r.json() as { error?: { message?: string } }).error?.message ?? '',
      };
    const id = (r.json() as { id: string }).id;
    await dispatcher.runOnce();
    const m = await app.inject({ method: 'GET', url: `/v1/messages/${id}`, headers: auth });
    return { status: 202, message: m.json() as Final };
  }
  /** Grants a one-time send for a fresh scene in both the service ledger and the emulated WeChat. */
  async function grantOneTime(): Promise<number> {
    const s = nextScene();
    await store.grants.recordOneTime({
      appId: APPID,
      openid: OPENID,
      templateId: ONE_TIME,
      scene: s,
      now: Date.now(),
    });
    emu.state.grantOneTime(APPID, OPENID, ONE_TIME, s);
    return s;
  }
  async function grantNotification(templateId: string): Promise<void> {
    await store.grants.addNotificationCredits({
      appId: APPID,
      openid: OPENID,
      templateId,
      count: 1,
      now: Date.now(),
    });
    emu.state.grantNotification(APPID, OPENID, templateId, 1);
  }
  /** "202 ⇒ delivered": what the service accepted, WeChat must accept too. */
  const expectDelivered = (out: { status: number; error?: string; message?: Final }, what: unknown) => {
    expect(out.status, `${JSON.stringify(what)} → ${out.error}`).toBe(202);
    expect(out.message?.status, `${JSON.stringify(what)} → ${JSON.stringify(out.message)}`).toBe('sent');
  };

  it('notification, every keyword type: a 202 is delivered; a 422 is a value WeChat refuses with 47003', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(notificationData, async (data) => {
        await grantNotification(ALL_TPL);
        const out = await deliver({ kind: 'notification', openid: OPENID, template: ALL_TPL, data });
        if (out.status === 202) {
          accepted++;
          expect(out.message?.status, `${JSON.stringify(data)} → ${JSON.stringify(out.message)}`).toBe(
            'sent',
          );
        } else {
          expect(out.status, out.error).toBe(422);
          const raw = await rawSend(BIZSEND_PATH, {
            touser: OPENID,
            template_id: ALL_TPL,
            data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, { value: v }])),
          });
          expect(raw.errcode, `${JSON.stringify(data)}: service said ${out.error}`).toBe(47003);
        }
      }),
      { numRuns: 150 },
    );
    expect(accepted).toBeGreaterThan(20);
  });

  it('one-time title/content/colour around the limits: the service accepts ⇔ the SDK accepts, and a 202 is delivered', async () => {
    await fc.assert(
      fc.asyncProperty(
        text(10, 17),
        fc.oneof(text(1, 6), text(195, 202)),
        fc.option(fc.constantFrom('#FF0000', '#ff00aa', 'red', '#FFF'), { nil: undefined }),
        async (title, content, color) => {
          const s = await grantOneTime();
          const body = {
            kind: 'one-time',
            openid: OPENID,
            template: ONE_TIME,
            scene: s,
            title,
            content,
            ...(color ? { color } : {}),
          };
          const out = await deliver(body);
          const charsOk = [...title].length <= 15 && [...content].length <= 200;
          const colorOk = color === undefined || /^#[0-9A-Fa-f]{6}$/.test(color);
          if (charsOk && colorOk) expectDelivered(out, body);
          else expect(out.status, JSON.stringify(body)).toBe(422);
        },
      ),
      { numRuns: 100 },
    );
  });

  // --- disagreements found by an audit (each failed before its fix) ----------------------------------------------

  it.each([
    ['enumValues omitted', { key: 'enum2' }],
    ['enumValues: []', { key: 'enum2', enumValues: [] }],
  ])(
    'an enum keyword registered with %s is refused up front, not accepted (202) and then refused by WeChat (47003)',
    async (_name, enumKeyword) => {
      // Spec §2.5: "enum | must be one of the template's enum values". The service stores the enum key without its
      // values (PUT 200), then message-schemas.ts keywordProblem() passes `undefined` to checkKeywordValue(), which
      // accepts anything; the emulator (like WeChat) has the list and refuses.
      const put = await app.inject({
        method: 'PUT',
        url: `/v1/templates/${ENUM_TPL}`,
        headers: auth,
        payload: { kind: 'notification', title: '进度', keywords: [{ key: 'thing1' }, enumKeyword] },
      });
      await grantNotification(ENUM_TPL);
      const body = {
        kind: 'notification',
        openid: OPENID,
        template: ENUM_TPL,
        data: { thing1: '居住证', enum2: '已完成' },
      };
      const out = put.statusCode === 200 ? await deliver(body) : { status: put.statusCode };
      // Right: refuse the template (400) or the message (422) up front — never 202 then DELIVERY_REJECTED/47003.
      if (out.status === 202) expect(out.message?.status, JSON.stringify(out.message)).toBe('sent');
      else expect([400, 422]).toContain(out.status);
    },
  );

  it.each([
    ['one-time', 'appid', ' '],
    ['one-time', 'pagepath', '\t'],
    ['notification', 'appid', '  '],
  ] as const)(
    '%s miniprogram.%s of whitespace only is 422, not accepted (202) and then refused by the SDK',
    async (kind, field, blank) => {
      const miniprogram = { appid: 'wxmini0000000001', pagepath: 'pages/index', [field]: blank };
      const body =
        kind === 'one-time'
          ? {
              kind,
              openid: OPENID,
              template: ONE_TIME,
              scene: await grantOneTime(),
              title: '到货',
              content: '已到货',
              miniprogram,
            }
          : (await grantNotification(ALL_TPL),
            {
              kind,
              openid: OPENID,
              template: ALL_TPL,
              data: Object.fromEntries(ALL_KEYS.map((k) => [k, SAMPLES[k][0]])),
              miniprogram,
            });
      const out = await deliver(body);
      // Right: 422 MESSAGE_INVALID like every other local rule (or deliver it); never 202 then DELIVERY_REJECTED.
      if (out.status === 202) expect(out.message?.status, JSON.stringify(out.message)).toBe('sent');
      else expect(out.status).toBe(422);
    },
  );

  it('a miniprogram.pagepath of 524 code points (1034 UTF-16 units) is counted alike by the service and the SDK: delivered', async () => {
    const pagepath = `pages/index?x=${'😀'.repeat(510)}`; // 524 code points, 1034 UTF-16 units
    expect([...pagepath].length).toBeLessThanOrEqual(1024);
    expect(pagepath.length).toBeGreaterThan(1024);
    const s = await grantOneTime();
    const body = {
      kind: 'one-time',
      openid: OPENID,
      template: ONE_TIME,
      scene: s,
      title: '到货',
      content: '已到货',
      miniprogram: { appid: 'wxmini0000000001', pagepath },
    };
    const out = await deliver(body);
    if (out.status === 202)
      expect(out.message?.status, `${out.message?.errorCode}: ${out.message?.errorMessage}`).toBe('sent');
    else expect(out.status).toBe(422);
  });

  it('a 1500-character url the SDK and the emulator accept and deliver is accepted by the service too', async () => {
    const url = `https://a.example/${'p'.repeat(1482)}`;
    expect(url.length).toBe(1500);
    // SDK (limit 2048) and emulator: accepted and delivered.
    const s1 = nextScene();
    emu.state.grantOneTime(APPID, OPENID, ONE_TIME, s1);
    await expect(
      wx.sendOneTime({
        touser: OPENID,
        template_id: ONE_TIME,
        scene: s1,
        title: '到货',
        data: { content: { value: '已到货' } },
        url,
      }),
    ).resolves.toEqual({ errcode: 0 });
    expect((await lastInbox()).url).toBe(url);
    // Service: the same message.
    const s2 = await grantOneTime();
    const out = await deliver({
      kind: 'one-time',
      openid: OPENID,
      template: ONE_TIME,
      scene: s2,
      title: '到货',
      content: '已到货',
      url,
    });
    expectDelivered(out, { url: `${url.slice(0, 40)}… (${url.length} chars)` });
  });
});
