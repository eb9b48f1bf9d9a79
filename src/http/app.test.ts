// In-memory tests of the service app (app.inject) on a real SQLite file: errors, auth, consent flow and its attacks, send API.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/schema.js';
import { createSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Store } from '../store/store.js';
import { ManualClock } from '../util/clock.js';
import { createApiKey } from './api-keys.js';
import { createServiceApp } from './app.js';

const APP_ID = 'wxtestapp';
const SECRET = 's'.repeat(40);
const NEXT = 'https://app.example.com/page#/orders/7?tab=1';

let dir: string;
let store: Store;
let app: FastifyInstance;
let clock: ManualClock;
let key: string;
let kicked: string[];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wxsub-http-'));
  store = createSqliteStore({ path: join(dir, 'db.sqlite') });
  await store.migrate();
  clock = new ManualClock();
  const config = parseConfig({
    publicBaseUrl: 'https://svc.example.com',
    wechat: { appId: APP_ID, baseUrl: 'http://emulator.test' },
    consent: { secret: SECRET, nextAllowlist: ['https://app.example.com'], oneTimeTemplates: ['TPL_ONCE'] },
    bodyLimitBytes: 64 * 1024,
  });
  kicked = [];
  app = await createServiceApp(
    { store, wechat: { appId: APP_ID }, clock, onCampaignCreated: (id) => kicked.push(id) },
    config,
  );
  key = (await createApiKey(store, 'test')).key;
});

afterEach(async () => {
  await app.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const err = (r: LightMyRequestResponse) => (r.json() as { error: { code: string } }).error.code;

function cookiesOf(r: LightMyRequestResponse): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of r.cookies) out[c.name] = c.value;
  return out;
}

async function start(query: string, cookies: Record<string, string> = {}) {
  const r = await app.inject({ method: 'GET', url: `/consent/one-time?${query}`, cookies });
  expect(r.statusCode, r.body).toBe(302);
  const loc = new URL(r.headers.location as string);
  return {
    r,
    loc,
    reserved: loc.searchParams.get('reserved') as string,
    scene: loc.searchParams.get('scene') as string,
    cookies: cookiesOf(r),
  };
}

async function callback(q: Record<string, string>, cookies: Record<string, string>) {
  return app.inject({ method: 'GET', url: `/consent/one-time/callback?${new URLSearchParams(q)}`, cookies });
}

const grantsOf = (openid: string) =>
  store.grants.availableScenes({ appId: APP_ID, openid, templateId: 'TPL_ONCE' });

describe('errors', () => {
  it('answers unknown routes, bad JSON, wrong media types and large bodies with stable codes', async () => {
    expect(err(await app.inject({ method: 'GET', url: '/nope' }))).toBe('HTTP_NOT_FOUND');
    const auth = { authorization: `Bearer ${key}` };
    const bad = await app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"kind":',
    });
    expect([bad.statusCode, err(bad)]).toEqual([400, 'HTTP_INVALID_JSON']);
    const text = await app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: { ...auth, 'content-type': 'text/plain' },
      payload: 'hi',
    });
    expect([text.statusCode, err(text)]).toEqual([415, 'HTTP_UNSUPPORTED_MEDIA_TYPE']);
    const big = await app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: JSON.stringify({ kind: 'one-time', pad: 'x'.repeat(100_000) }),
    });
    expect([big.statusCode, err(big)]).toEqual([413, 'HTTP_BODY_TOO_LARGE']);
  });

  it('answers router errors (overlong path parameter, bad %-escape) in the one error shape', async () => {
    const auth = { authorization: `Bearer ${key}` };
    const cases: [string, string, number, string][] = [
      ['GET', `/v1/messages/${'a'.repeat(300)}`, 400, 'HTTP_VALIDATION_FAILED'],
      ['GET', `/v1/users/${'o'.repeat(300)}/grants`, 400, 'HTTP_VALIDATION_FAILED'],
      ['POST', `/v1/campaigns/${'c'.repeat(300)}/cancel`, 400, 'HTTP_VALIDATION_FAILED'],
      ['GET', '/v1/messages/%E0%A4%A', 400, 'HTTP_BAD_REQUEST'],
      ['GET', '/consent/one-time/%E0%A4%A', 400, 'HTTP_BAD_REQUEST'],
    ];
    for (const [method, url, status, code] of cases) {
      const r = await app.inject({ method: method as 'GET', url, headers: auth });
      expect([r.statusCode, err(r)], url.slice(0, 40)).toEqual([status, code]);
      expect(Object.keys(r.json())).toEqual(['error']);
      expect(r.body).not.toContain('FST_ERR');
    }
    // A 129–256 character id gets the same answer from the route itself.
    const mid = await app.inject({ method: 'GET', url: `/v1/messages/${'a'.repeat(200)}`, headers: auth });
    expect([mid.statusCode, err(mid)]).toEqual([400, 'HTTP_VALIDATION_FAILED']);
  });

  it('requires a valid API key on /v1 and never echoes it', async () => {
    expect(err(await app.inject({ method: 'GET', url: '/v1/templates' }))).toBe('AUTH_MISSING_KEY');
    const wrong = await app.inject({
      method: 'GET',
      url: '/v1/templates',
      headers: { authorization: 'Bearer wxs_' + 'A'.repeat(32) },
    });
    expect([wrong.statusCode, err(wrong)]).toEqual([401, 'AUTH_INVALID_KEY']);
    expect(wrong.body).not.toContain('A'.repeat(32));
    expect(
      (await app.inject({ method: 'GET', url: '/v1/templates', headers: { authorization: `Bearer ${key}` } }))
        .statusCode,
    ).toBe(200);
  });

  it('serves health and metrics', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({
      status: 'ok',
      engine: 'sqlite',
    });
    const m = await app.inject({ method: 'GET', url: '/metrics' });
    expect(m.body).toContain('wxsub_http_requests_total');
    expect(m.body).toContain('wxsub_outbox_messages');
  });
});

describe('one-time consent', () => {
  it('redirects to the consent page with a bound token and records a confirm once', async () => {
    const s = await start(`template=TPL_ONCE&scene=5&next=${encodeURIComponent(NEXT)}`);
    expect(s.loc.origin + s.loc.pathname).toBe('http://emulator.test/mp/subscribemsg');
    expect(s.loc.hash).toBe('#wechat_redirect');
    expect(s.loc.searchParams.get('redirect_url')).toBe('https://svc.example.com/consent/one-time/callback');
    expect(s.reserved).toMatch(/^[A-Za-z0-9]{1,128}$/);
    const setCookie = String(s.r.headers['set-cookie']);
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Lax/);
    expect(setCookie).toMatch(/Path=\/consent/);

    const cb = await callback(
      { openid: 'oA', template_id: 'TPL_ONCE', action: 'confirm', scene: '5', reserved: s.reserved },
      s.cookies,
    );
    expect(cb.statusCode, cb.body).toBe(302);
    expect(cb.headers.location).toBe(
      'https://app.example.com/page?wxsub_outcome=confirmed&scene=5#/orders/7?tab=1',
    );
    expect(await grantsOf('oA')).toEqual([5]);

    const replay = await callback(
      { openid: 'oA', template_id: 'TPL_ONCE', action: 'confirm', scene: '5', reserved: s.reserved },
      s.cookies,
    );
    expect([replay.statusCode, err(replay)]).toEqual([409, 'CONSENT_RESERVED_REPLAYED']);
    // a second link for the same scene does not stack
    const s2 = await start(`template=TPL_ONCE&scene=5`);
    const cb2 = await callback(
      { openid: 'oA', template_id: 'TPL_ONCE', action: 'confirm', scene: '5', reserved: s2.reserved },
      s2.cookies,
    );
    expect(cb2.json()).toMatchObject({ outcome: 'confirmed', scene: 5, created: false });
    expect(await grantsOf('oA')).toEqual([5]);
  });

  it('scene=auto avoids scenes the returning user already holds', async () => {
    const first = await start('template=TPL_ONCE&scene=auto');
    const cb = await callback(
      {
        openid: 'oB',
        template_id: 'TPL_ONCE',
        action: 'confirm',
        scene: first.scene,
        reserved: first.reserved,
      },
      first.cookies,
    );
    const oid = cookiesOf(cb);
    expect(oid.wxsub_oid).toBeTruthy();
    const held = Number(first.scene);
    for (let i = 0; i < 5; i++) {
      const next = await start('template=TPL_ONCE&scene=auto', oid);
      expect(Number(next.scene)).not.toBe(held);
      const c = await callback(
        {
          openid: 'oB',
          template_id: 'TPL_ONCE',
          action: 'confirm',
          scene: next.scene,
          reserved: next.reserved,
        },
        { ...next.cookies, ...oid },
      );
      expect(c.statusCode).toBe(200);
    }
    expect((await grantsOf('oB')).length).toBe(6);
  });

  it('records a cancel without a grant', async () => {
    const s = await start(`template=TPL_ONCE&scene=9&next=${encodeURIComponent(NEXT)}`);
    const cb = await callback(
      { template_id: 'TPL_ONCE', action: 'cancel', scene: '9', reserved: s.reserved },
      s.cookies,
    );
    expect(cb.headers.location).toContain('wxsub_outcome=cancelled&scene=9#/orders/7');
    expect(await store.grants.countRefusals({ appId: APP_ID })).toBe(1);
  });

  it('rejects every attack with a stable code and leaves the ledger untouched', async () => {
    const s = await start(`template=TPL_ONCE&scene=5&next=${encodeURIComponent(NEXT)}`);
    const base = {
      openid: 'oV',
      template_id: 'TPL_ONCE',
      action: 'confirm',
      scene: '5',
      reserved: s.reserved,
    };
    const cookieName = Object.keys(s.cookies)[0] as string;
    const other = await start('template=TPL_ONCE&scene=5');
    const cases: [string, Record<string, string>, Record<string, string>, string][] = [
      ['forwarded link (no cookie)', base, {}, 'CONSENT_COOKIE_MISSING'],
      [
        'cookie of another flow',
        base,
        { [cookieName]: Object.values(other.cookies)[0] as string },
        'CONSENT_COOKIE_MISMATCH',
      ],
      [
        'tampered cookie',
        base,
        { [cookieName]: 'x' + (s.cookies[cookieName] as string) },
        'CONSENT_COOKIE_MISMATCH',
      ],
      [
        'forged token',
        { ...base, reserved: s.reserved.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')) },
        s.cookies,
        'CONSENT_RESERVED_FORGED',
      ],
      ['cross template', { ...base, template_id: 'TPL_OTHER' }, s.cookies, 'CONSENT_BINDING_MISMATCH'],
      ['scene mismatch', { ...base, scene: '6' }, s.cookies, 'CONSENT_SCENE_MISMATCH'],
      ['scene out of range', { ...base, scene: '10001' }, s.cookies, 'CONSENT_SCENE_OUT_OF_RANGE'],
      ['reserved over 128', { ...base, reserved: 'a'.repeat(129) }, s.cookies, 'CONSENT_RESERVED_MALFORMED'],
      ['reserved bad chars', { ...base, reserved: 'abc_def' }, s.cookies, 'CONSENT_RESERVED_MALFORMED'],
      ['confirm without openid', { ...base, openid: '' }, s.cookies, 'CONSENT_OPENID_MISSING'],
      ['bad action', { ...base, action: 'maybe' }, s.cookies, 'CONSENT_ACTION_INVALID'],
    ];
    for (const [name, q, cookies, code] of cases) {
      const r = await callback(q, cookies);
      expect(r.statusCode, name).toBeGreaterThanOrEqual(400);
      expect(r.statusCode, name).toBeLessThan(500);
      expect(err(r), name).toBe(code);
    }
    const big = await app.inject({
      method: 'GET',
      url: `/consent/one-time/callback?reserved=${'a'.repeat(100_000)}`,
    });
    expect([big.statusCode, err(big)]).toEqual([414, 'CONSENT_QUERY_TOO_LARGE']);
    clock.advance(600_000);
    const late = await callback(base, s.cookies);
    expect(err(late)).toBe('CONSENT_RESERVED_EXPIRED');
    expect(await grantsOf('oV')).toEqual([]);
    expect(await store.grants.countRefusals({ appId: APP_ID })).toBe(0);
  });

  it('refuses bad consent requests', async () => {
    const code = async (q: string) => err(await app.inject({ method: 'GET', url: `/consent/one-time?${q}` }));
    expect(await code('template=TPL_ONCE&next=https%3A%2F%2Fevil.example%2F')).toBe(
      'CONSENT_NEXT_NOT_ALLOWED',
    );
    expect(await code('template=TPL_ONCE&scene=10001')).toBe('CONSENT_SCENE_OUT_OF_RANGE');
    expect(await code('template=UNKNOWN')).toBe('CONSENT_TEMPLATE_UNKNOWN');
    expect(await code('scene=1')).toBe('CONSENT_QUERY_INVALID');
    expect(await code('template=TPL_ONCE&template=X')).toBe('CONSENT_QUERY_INVALID');
  });
});

describe('send API', () => {
  const auth = () => ({ authorization: `Bearer ${key}` });
  const send = (payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: { ...auth(), ...headers },
      payload: payload as object,
    });
  /** Records a one-time grant of TPL_ONCE for `openid` (now: the test clock's). */
  const grantOnce = (openid: string, scene: number, now = clock.now()) =>
    store.grants.recordOneTime({ appId: APP_ID, openid, templateId: 'TPL_ONCE', scene, now });
  const msg = {
    kind: 'one-time',
    openid: 'oS',
    template: 'TPL_ONCE',
    title: '到货提醒',
    content: '您关注的商品已到货',
  };

  beforeEach(async () => {
    const put = await app.inject({
      method: 'PUT',
      url: '/v1/templates/TPL_ONCE',
      headers: auth(),
      payload: { kind: 'one-time', title: '提醒' },
    });
    expect(put.statusCode, put.body).toBe(200);
    await app.inject({
      method: 'PUT',
      url: '/v1/templates/TPL_N',
      headers: auth(),
      payload: {
        kind: 'notification',
        title: '会议',
        keywords: [
          { key: 'thing1', type: 'thing' },
          { key: 'time2', type: 'time' },
        ],
      },
    });
  });

  it('reserves the grant and enqueues once; a second send has no grant', async () => {
    await grantOnce('oS', 3);
    const a = await send(msg);
    expect(a.statusCode, a.body).toBe(202);
    const id = a.json().id as string;
    expect(
      (await app.inject({ method: 'GET', url: `/v1/messages/${id}`, headers: auth() })).json(),
    ).toMatchObject({ id, status: 'queued', scene: 3 });
    const b = await send(msg);
    expect([b.statusCode, err(b)]).toEqual([409, 'GRANT_NOT_AVAILABLE']);
    expect(b.json().error.details).toMatchObject({ heldScenes: [] });
    const list = await app.inject({
      method: 'GET',
      url: '/v1/messages?status=queued&openid=oS',
      headers: auth(),
    });
    expect(list.json().items.map((m: { id: string }) => m.id)).toEqual([id]);
  });

  it('makes retries with an Idempotency-Key safe', async () => {
    await grantOnce('oS', 1);
    await grantOnce('oS', 2);
    const a = await send(msg, { 'idempotency-key': 'k1' });
    const b = await send({ ...msg }, { 'idempotency-key': 'k1' });
    expect(a.statusCode).toBe(202);
    expect(b.statusCode).toBe(202);
    expect(b.json().id).toBe(a.json().id);
    const c = await send({ ...msg, title: '其他' }, { 'idempotency-key': 'k1' });
    expect([c.statusCode, err(c)]).toEqual([409, 'MESSAGE_IDEMPOTENCY_CONFLICT']);
    expect(
      await store.grants.availableScenes({ appId: APP_ID, openid: 'oS', templateId: 'TPL_ONCE' }),
    ).toEqual([2]);
  });

  it('replays one message for every spelling of one send under an Idempotency-Key', async () => {
    for (const scene of [1, 2]) await grantOnce('oS', scene, 1);
    // The default scene left out, then spelled out.
    const a = await send(msg, { 'idempotency-key': 'k-scene' });
    const b = await send({ ...msg, scene: 'any' }, { 'idempotency-key': 'k-scene' });
    expect([a.statusCode, b.statusCode], b.body).toEqual([202, 202]);
    expect(b.json().id).toBe(a.json().id);
    expect(b.headers['idempotent-replayed']).toBe('true');
    // A data value as a string, then as { value }.
    await store.grants.addNotificationCredits({
      appId: APP_ID,
      openid: 'oS',
      templateId: 'TPL_N',
      count: 1,
      now: 1,
    });
    const note = { kind: 'notification', openid: 'oS', template: 'TPL_N' };
    const c = await send(
      { ...note, data: { thing1: '会议室A', time2: { value: '15:01' } } },
      { 'idempotency-key': 'k-data' },
    );
    const d = await send(
      { ...note, data: { thing1: { value: '会议室A' }, time2: '15:01' } },
      { 'idempotency-key': 'k-data' },
    );
    expect([c.statusCode, d.statusCode], d.body).toEqual([202, 202]);
    expect(d.json().id).toBe(c.json().id);
    // Another scene is another send.
    const e = await send({ ...msg, scene: 2 }, { 'idempotency-key': 'k-scene' });
    expect([e.statusCode, err(e)]).toEqual([409, 'MESSAGE_IDEMPOTENCY_CONFLICT']);
    expect(
      await store.grants.availableScenes({ appId: APP_ID, openid: 'oS', templateId: 'TPL_ONCE' }),
    ).toEqual([2]);
  });

  it('still replays a message an earlier release stored under the hash of its raw body', async () => {
    await grantOnce('oS', 1, 1);
    // The usual send, scene left out: its hash as enqueued now has scene "any", its raw hash does not.
    const body = msg;
    // Earlier releases hashed the parsed body as JSON with sorted keys.
    const sorted = JSON.stringify(
      Object.fromEntries(Object.entries(body).sort(([x], [y]) => (x < y ? -1 : 1))),
    );
    const old = await store.outbox.enqueueMessage({
      appId: APP_ID,
      kind: 'one-time',
      openid: 'oS',
      templateId: 'TPL_ONCE',
      scene: 'any',
      payload: { title: msg.title, content: msg.content },
      idempotencyKey: 'k-old',
      requestHash: createHash('sha256').update(sorted).digest('hex'),
      now: 1,
    });
    expect(old.ok).toBe(true);
    const again = await send(body, { 'idempotency-key': 'k-old' });
    expect([again.statusCode, again.headers['idempotent-replayed']], again.body).toEqual([202, 'true']);
    expect(again.json().id).toBe(old.ok ? old.message.id : null);
    const other = await send({ ...body, title: '其他' }, { 'idempotency-key': 'k-old' });
    expect([other.statusCode, err(other)]).toEqual([409, 'MESSAGE_IDEMPOTENCY_CONFLICT']);
  });

  it('refuses NUL, other control characters and lone surrogates in free text, and stores nothing', async () => {
    await grantOnce('oS', 1, 1);
    const campaign = { name: 'n', template: 'TPL_ONCE', payload: { title: 't', content: 'c' } };
    const note = { kind: 'notification', openid: 'oS', template: 'TPL_N' };
    const data = { thing1: { value: '会议室A' }, time2: { value: '15:01' } };
    // [method, url, body, status, code, first issue path]
    const cases: [string, string, unknown, number, string, string][] = [
      ['POST', '/v1/messages', { ...msg, title: 'a\u0000b' }, 422, 'MESSAGE_INVALID', 'title'],
      ['POST', '/v1/messages', { ...msg, content: 'hello\u0000' }, 422, 'MESSAGE_INVALID', 'content'],
      ['POST', '/v1/messages', { ...msg, content: 'bell\u0007' }, 422, 'MESSAGE_INVALID', 'content'],
      ['POST', '/v1/messages', { ...msg, title: 'a\ud800' }, 422, 'MESSAGE_INVALID', 'title'],
      ['POST', '/v1/messages', { ...msg, content: '\udc00b' }, 422, 'MESSAGE_INVALID', 'content'],
      [
        'POST',
        '/v1/messages',
        { ...msg, url: 'https://a.example.com/\u0000' },
        422,
        'MESSAGE_INVALID',
        'url',
      ],
      [
        'POST',
        '/v1/messages',
        { ...msg, miniprogram: { appid: 'wxmini', pagepath: 'index\u0000' } },
        422,
        'MESSAGE_INVALID',
        'miniprogram.pagepath',
      ],
      [
        'POST',
        '/v1/messages',
        { ...note, data: { ...data, thing1: { value: '会议\ud800' } } },
        422,
        'MESSAGE_INVALID',
        'data.thing1.value',
      ],
      [
        'POST',
        '/v1/messages',
        { ...note, data, page: 'https://a.example.com/\u0000' },
        422,
        'MESSAGE_INVALID',
        'page',
      ],
      ['POST', '/v1/messages', { ...msg, openid: 'o\u0000' }, 400, 'HTTP_VALIDATION_FAILED', 'openid'],
      ['POST', '/v1/campaigns', { ...campaign, name: 'spring\u0000' }, 400, 'HTTP_VALIDATION_FAILED', 'name'],
      [
        'POST',
        '/v1/campaigns',
        { ...campaign, payload: { title: 't', content: 'c\u0000' } },
        422,
        'MESSAGE_INVALID',
        'payload.content',
      ],
      [
        'PUT',
        '/v1/templates/TPL_X',
        { kind: 'one-time', title: '提醒\u0000' },
        400,
        'HTTP_VALIDATION_FAILED',
        'title',
      ],
      ['GET', '/v1/messages?campaign=%00', undefined, 400, 'HTTP_VALIDATION_FAILED', 'campaign'],
      ['GET', '/v1/messages?campaign=a%20b', undefined, 400, 'HTTP_VALIDATION_FAILED', 'campaign'],
    ];
    for (const [method, url, payload, status, code, path] of cases) {
      const r = await app.inject({
        method: method as 'GET',
        url,
        headers: auth(),
        ...(payload === undefined ? {} : { payload: payload as object }),
      });
      const label = `${method} ${url} ${JSON.stringify(payload)}`;
      expect([r.statusCode, err(r)], label).toEqual([status, code]);
      expect(r.json().error.details.issues[0].path, label).toBe(path);
    }
    expect((await store.outbox.countMessages({ appId: APP_ID })).total).toBe(0);
    expect(kicked).toEqual([]);
    expect(await store.templates.get(APP_ID, 'TPL_X')).toBeNull();
    // Tabs and line breaks stay allowed in free text.
    const ok = await send({ ...msg, content: '第一行\n第二行\r\n\t缩进' });
    expect(ok.statusCode, ok.body).toBe(202);
  });

  it('rejects bad input with stable codes and enqueues nothing', async () => {
    await grantOnce('oS', 1);
    const cases: [unknown, number, string][] = [
      [{ ...msg, title: '一二三四五六七八九十一二三四五六' }, 422, 'MESSAGE_INVALID'],
      [{ ...msg, content: 'x'.repeat(201) }, 422, 'MESSAGE_INVALID'],
      [{ ...msg, color: 'red' }, 422, 'MESSAGE_INVALID'],
      [{ ...msg, url: 'javascript:alert(1)' }, 422, 'MESSAGE_INVALID'],
      [{ ...msg, kind: 'other' }, 400, 'HTTP_VALIDATION_FAILED'],
      [{ ...msg, extra: 1 }, 400, 'HTTP_VALIDATION_FAILED'],
      [{ ...msg, scene: 10001 }, 400, 'HTTP_VALIDATION_FAILED'],
      [{ ...msg, title: 5 }, 400, 'HTTP_VALIDATION_FAILED'],
      [{ ...msg, template: 'NOPE' }, 422, 'MESSAGE_TEMPLATE_UNKNOWN'],
      [{ ...msg, template: 'TPL_N' }, 422, 'MESSAGE_KIND_MISMATCH'],
      [
        {
          kind: 'notification',
          openid: 'oS',
          template: 'TPL_N',
          data: { thing1: { value: 'x'.repeat(21) }, time2: { value: '15:01' } },
        },
        422,
        'MESSAGE_INVALID',
      ],
      [
        { kind: 'notification', openid: 'oS', template: 'TPL_N', data: { thing1: { value: 'ok' } } },
        422,
        'MESSAGE_INVALID',
      ],
      [[1, 2], 400, 'HTTP_VALIDATION_FAILED'],
    ];
    for (const [body, status, code] of cases) {
      const r = await send(body);
      expect([r.statusCode, err(r)], JSON.stringify(body).slice(0, 80)).toEqual([status, code]);
    }
    expect((await store.outbox.countMessages({ appId: APP_ID })).total).toBe(0);
    expect(
      await store.grants.availableScenes({ appId: APP_ID, openid: 'oS', templateId: 'TPL_ONCE' }),
    ).toEqual([1]);
  });

  it('types template keywords by their key, as WeChat does', async () => {
    const put = (keywords: unknown) =>
      app.inject({
        method: 'PUT',
        url: '/v1/templates/TPL_KW',
        headers: auth(),
        payload: { kind: 'notification', title: '订单', keywords },
      });
    // A declared type other than the key's prefix would be checked by one rule here and another at WeChat.
    const mismatch = await put([{ key: 'thing1', type: 'number' }]);
    expect([mismatch.statusCode, err(mismatch)]).toEqual([400, 'HTTP_VALIDATION_FAILED']);
    const derived = await put([{ key: 'thing1' }, { key: 'character_string2', type: 'character_string' }]);
    expect(derived.statusCode, derived.body).toBe(200);
    expect(derived.json().keywords).toEqual([
      { key: 'thing1', type: 'thing' },
      { key: 'character_string2', type: 'character_string' },
    ]);
  });

  it('refuses data keys WeChat would refuse when the template declares no keywords', async () => {
    await app.inject({
      method: 'PUT',
      url: '/v1/templates/TPL_FREE',
      headers: auth(),
      payload: { kind: 'notification', title: '通知' },
    });
    // Keys not shaped like `thing1` are refused by name; keys shaped like one but of no keyword type (spec §2.5:
    // WeChat answers 47003 and the SDK refuses them) by value, here, before a grant is reserved, not after the
    // message has waited in the outbox.
    const refused: [key: string, path: string][] = [
      ...['thing1.DATA', 'Thing1', 'foo'].map((k): [string, string] => [k, `data.${k}`]),
      ...['foo1', 'thin1', 'date_time2'].map((k): [string, string] => [k, `data.${k}.value`]),
    ];
    for (const [key, path] of refused) {
      const r = await send({
        kind: 'notification',
        openid: 'oS',
        template: 'TPL_FREE',
        data: { [key]: { value: 'x' } },
      });
      expect([r.statusCode, err(r)], key).toEqual([422, 'MESSAGE_INVALID']);
      expect(r.json().error.details.issues[0].path).toBe(path);
    }
    expect((await store.outbox.countMessages({ appId: APP_ID })).total).toBe(0);
  });

  it('lists grants and creates, reads and cancels campaigns', async () => {
    for (const o of ['o1', 'o2']) await grantOnce(o, 4);
    const g = await app.inject({ method: 'GET', url: '/v1/grants?template=TPL_ONCE', headers: auth() });
    expect(
      g
        .json()
        .oneTime.map((x: { openid: string }) => x.openid)
        .sort(),
    ).toEqual(['o1', 'o2']);
    const u = await app.inject({ method: 'GET', url: '/v1/users/o1/grants', headers: auth() });
    expect(u.json()).toMatchObject({ openid: 'o1', oneTime: [{ template: 'TPL_ONCE', scene: 4 }] });
    const badCursor = await app.inject({ method: 'GET', url: '/v1/grants?cursor=!!', headers: auth() });
    expect(badCursor.statusCode).toBe(400);
    // Well-formed cursors whose key is not an id (the store contract covers both engines).
    const forged = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
    for (const url of [
      `/v1/grants?cursor=${forged('g:\u0000')}`,
      `/v1/users/o1/grants?cursor=${forged('g:A\u0000B')}`,
      `/v1/messages?cursor=${forged('m:\u0000')}`,
    ]) {
      const r = await app.inject({ method: 'GET', url, headers: auth() });
      expect([r.statusCode, err(r)], url).toEqual([400, 'STORE_INVALID_CURSOR']);
    }

    const c = await app.inject({
      method: 'POST',
      url: '/v1/campaigns',
      headers: auth(),
      payload: { name: 'restock', template: 'TPL_ONCE', payload: { title: '到货', content: '到货了' } },
    });
    expect(c.statusCode, c.body).toBe(202);
    const id = c.json().id as string;
    expect(kicked).toEqual([id]);
    const got = await app.inject({ method: 'GET', url: `/v1/campaigns/${id}`, headers: auth() });
    expect(got.json()).toMatchObject({ id, status: 'enqueuing', stats: { total: 0 } });
    const cancel = await app.inject({ method: 'POST', url: `/v1/campaigns/${id}/cancel`, headers: auth() });
    expect(cancel.statusCode, cancel.body).toBe(200);
    const again = await app.inject({ method: 'POST', url: `/v1/campaigns/${id}/cancel`, headers: auth() });
    expect(err(again)).toBe('CAMPAIGN_NOT_CANCELLABLE');
    expect(err(await app.inject({ method: 'GET', url: '/v1/campaigns/nope', headers: auth() }))).toBe(
      'CAMPAIGN_NOT_FOUND',
    );
  });

  it('refuses a campaign scene filter that can match no scene', async () => {
    await grantOnce('o1', 3, 1);
    const create = (scenes: unknown) =>
      app.inject({
        method: 'POST',
        url: '/v1/campaigns',
        headers: auth(),
        payload: { name: 'c', template: 'TPL_ONCE', scenes, payload: { title: 't', content: 'c' } },
      });
    const cases: [unknown, string][] = [
      [{ min: 5, max: 2 }, 'scenes.max'],
      [{ list: [] }, 'scenes.list'],
      [{ min: 5, max: 9, list: [1, 2, 10] }, 'scenes.list'],
      [{ min: 4, list: [3] }, 'scenes.list'],
      [{ max: 2, list: [3] }, 'scenes.list'],
    ];
    for (const [scenes, path] of cases) {
      const r = await create(scenes);
      expect([r.statusCode, err(r)], JSON.stringify(scenes)).toEqual([400, 'HTTP_VALIDATION_FAILED']);
      expect(r.json().error.details.issues[0].path).toBe(path);
    }
    expect(kicked).toEqual([]);
    // Bounds are inclusive, and a list reaching into them is fine.
    for (const scenes of [
      { min: 3, max: 3 },
      { min: 2, max: 5, list: [1, 5] },
    ]) {
      const r = await create(scenes);
      expect(r.statusCode, r.body).toBe(202);
      // Read back as it was given (`list`), by the answer and by GET.
      expect(r.json().campaign.scenes).toEqual(scenes);
      const got = await app.inject({ method: 'GET', url: `/v1/campaigns/${r.json().id}`, headers: auth() });
      expect(got.json().scenes).toEqual(scenes);
    }
  });

  it("names a campaign payload's shape errors under payload, for either kind of template", async () => {
    await app.inject({
      method: 'PUT',
      url: '/v1/templates/TPL_SHAPE',
      headers: auth(),
      payload: { kind: 'notification', title: '通知', keywords: [{ key: 'thing1' }] },
    });
    const cases: [template: string, payload: unknown][] = [
      ['TPL_ONCE', { data: { thing1: 'x' } }],
      ['TPL_SHAPE', { title: 't', content: 'c' }],
    ];
    for (const [template, payload] of cases) {
      const r = await app.inject({
        method: 'POST',
        url: '/v1/campaigns',
        headers: auth(),
        payload: { name: 'c', template, payload },
      });
      expect([r.statusCode, err(r)], template).toEqual([400, 'HTTP_VALIDATION_FAILED']);
      const paths = r.json().error.details.issues.map((i: { path: string }) => i.path);
      expect(paths.length, template).toBeGreaterThan(0);
      for (const path of paths) expect(path, template).toMatch(/^payload(\.|$)/);
    }
    expect(kicked).toEqual([]);
  });

  it('refuses a template whose keywords no send could satisfy, and stores nothing', async () => {
    const cases: [keywords: unknown, path: string][] = [
      [[{ key: 'foo1' }], 'keywords.0.key'], // no WeChat keyword type: every send would be refused (422)
      [[{ key: 'thing1' }, { key: 'thing1' }], 'keywords'],
      [[{ key: 'thing1', enumValues: ['a'] }], 'keywords.0.enumValues'], // would be ignored
    ];
    for (const [keywords, path] of cases) {
      const r = await app.inject({
        method: 'PUT',
        url: '/v1/templates/TPL_BAD_KEYS',
        headers: auth(),
        payload: { kind: 'notification', title: '通知', keywords },
      });
      expect([r.statusCode, err(r)], JSON.stringify(keywords)).toEqual([400, 'HTTP_VALIDATION_FAILED']);
      expect(r.json().error.details.issues[0].path).toBe(path);
    }
    expect(await store.templates.get(APP_ID, 'TPL_BAD_KEYS')).toBeNull();
    const ok = await app.inject({
      method: 'PUT',
      url: '/v1/templates/TPL_BAD_KEYS',
      headers: auth(),
      payload: { kind: 'notification', title: '通知', keywords: [{ key: 'enum1', enumValues: ['a', 'b'] }] },
    });
    expect(ok.statusCode, ok.body).toBe(200);
  });
});

describe('GET /v1/status', () => {
  it('shows a 45009 pause shared through the store, and message counts', async () => {
    const auth = { authorization: `Bearer ${key}` };
    const before = await app.inject({ method: 'GET', url: '/v1/status', headers: auth });
    expect(before.statusCode).toBe(200);
    expect(before.json()).toMatchObject({
      paused: false,
      pausedApps: [],
      messages: { total: 0 },
      dispatcher: null,
    });

    const until = clock.now() + 3_600_000;
    await store.outbox.pauseApp({ appId: APP_ID, until, reason: '45009 reach max api daily quota limit' });
    const after = await app.inject({ method: 'GET', url: '/v1/status', headers: auth });
    expect(after.json()).toMatchObject({
      paused: true,
      pausedApps: [{ appId: APP_ID, until: new Date(until).toISOString() }],
    });

    clock.advance(3_600_001);
    const resumed = await app.inject({ method: 'GET', url: '/v1/status', headers: auth });
    expect(resumed.json()).toMatchObject({ paused: false });
  });

  it('needs an API key', async () => {
    const r = await app.inject({ method: 'GET', url: '/v1/status' });
    expect(r.statusCode).toBe(401);
    expect(err(r)).toBe('AUTH_MISSING_KEY');
  });
});
