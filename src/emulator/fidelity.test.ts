// The emulator against wechat-spec.md where it used to differ (IP whitelist forms, clear_quota/v2, OAuth state,
// the disputed sceneDesc) and its control API's promise: bad input gets a clear error and changes nothing.
// Every test talks real HTTP to an emulator listening on port 0.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createEmulator, type Emulator } from './index.js';
import { APPID, SECRET, TEST_SEED, U1 } from './test-support.js';
import { ManualClock } from '../util/clock.js';

let emu: Emulator | undefined;
afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

async function start(listen: { host?: string } = {}): Promise<{ base: string; port: number }> {
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 2, 0, 0));
  emu = await createEmulator({ clock, seed: structuredClone(TEST_SEED), randomSeed: 1 });
  const base = await emu.listen(listen);
  const port = Number(/:(\d+)$/.exec(base)?.[1]);
  return { base: `http://127.0.0.1:${port}`, port };
}

type Res = { status: number; headers: http.IncomingHttpHeaders; text: string; json: () => any }; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON of many shapes

/** A plain node:http request (real socket, no redirect following). */
function req(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const u = new URL(base + path);
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const h: Record<string, string> = { ...headers };
    if (payload !== undefined) {
      h['content-length'] = String(Buffer.byteLength(payload));
      if (!('content-type' in h)) h['content-type'] = 'application/json';
    }
    const r = http.request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: h },
      (resp) => {
        let text = '';
        resp.setEncoding('utf8');
        resp.on('data', (c: string) => (text += c));
        resp.on('end', () =>
          resolve({
            status: resp.statusCode ?? 0,
            headers: resp.headers,
            text,
            json: () => JSON.parse(text),
          }),
        );
      },
    );
    r.on('error', reject);
    if (payload !== undefined) r.write(payload);
    r.end();
  });
}

const tokenPath = `/cgi-bin/token?grant_type=client_credential&appid=${APPID}&secret=${SECRET}`;

describe('emulator: token endpoints', () => {
  // Spec §3.1: the IP-whitelist errmsg WeChat returns names one caller as both
  // "invalid ip 61.159.140.4 ipv6 ::ffff:61.159.140.4" — an IPv4 client and its IPv4-mapped IPv6 form are the
  // same caller. A whitelisted IPv4 address must therefore pass when the emulator listens dual-stack ('::').
  it('accepts a whitelisted IPv4 caller when the emulator listens on a dual-stack socket', async () => {
    const { base } = await start({ host: '::' });
    const patch = await req(base, 'PATCH', `/__emulator/apps/${APPID}`, { ipWhitelist: ['127.0.0.1'] });
    expect(patch.status).toBe(200);
    const r = (await req(base, 'GET', tokenPath)).json();
    expect(r).toMatchObject({ expires_in: 7200 });
    expect(typeof r.access_token).toBe('string');
  });
});

describe('emulator: quota APIs', () => {
  // Spec §3.4: "reset by secret: POST /cgi-bin/clear_quota/v2 {appid, appsecret}" (no access_token needed).
  it('implements POST /cgi-bin/clear_quota/v2 {appid, appsecret}', async () => {
    const { base } = await start();
    const tok = (await req(base, 'GET', tokenPath)).json().access_token as string;
    const limit = await req(base, 'PUT', `/__emulator/apps/${APPID}/quotas`, {
      cgi_path: '/cgi-bin/ticket/getticket',
      dailyLimit: 1,
    });
    expect(limit.status).toBe(200);
    const t1 = (await req(base, 'GET', `/cgi-bin/ticket/getticket?access_token=${tok}&type=jsapi`)).json();
    expect(t1.errcode).toBe(0);
    const t2 = (await req(base, 'GET', `/cgi-bin/ticket/getticket?access_token=${tok}&type=jsapi`)).json();
    expect(t2.errcode).toBe(45009);
    const clear = await req(base, 'POST', '/cgi-bin/clear_quota/v2', { appid: APPID, appsecret: SECRET });
    expect(clear.status).toBe(200);
    expect(clear.json()).toEqual({ errcode: 0, errmsg: 'ok' });
    const t3 = (await req(base, 'GET', `/cgi-bin/ticket/getticket?access_token=${tok}&type=jsapi`)).json();
    expect(t3.errcode).toBe(0);
  });
});

describe('emulator: template management', () => {
  // Spec §2.6 / §7.6: `sceneDesc` is "required in service-account doc, optional in mini-program doc" — a
  // disputed point. The emulator neither accepts both (as it does for the disputed content-type, §2.6
  // "Emulator: accept both") nor offers a behaviour switch; it always answers 200021. The project's own SDK
  // (src/wechat/client.ts addTemplate) treats sceneDesc as optional, so its calls without one fail only here.
  it('addtemplate requires sceneDesc by default; behaviour addtemplateSceneDescRequired=false accepts none', async () => {
    const { base } = await start();
    const tok = (await req(base, 'GET', tokenPath)).json().access_token as string;
    const add = async (body: Record<string, unknown>) =>
      (await req(base, 'POST', `/wxaapi/newtmpl/addtemplate?access_token=${tok}`, body)).json();
    expect((await add({ tid: '2001', kidList: [1, 2] })).errcode).toBe(200021);
    const put = await req(base, 'PUT', '/__emulator/behavior', { addtemplateSceneDescRequired: false });
    expect(put.status).toBe(200);
    const r = await add({ tid: '2001', kidList: [1, 2] });
    expect(r).toMatchObject({ errcode: 0 });
    expect(typeof r.priTmplId).toBe('string');
    // One that is given must still be 1–15 characters.
    expect((await add({ tid: '2001', kidList: [1, 2], sceneDesc: '' })).errcode).toBe(200021);
    expect((await add({ tid: '2001', kidList: [1, 2], sceneDesc: '很'.repeat(16) })).errcode).toBe(200021);
  });
});

describe('emulator: OAuth authorize', () => {
  // Spec §5 step 1: "`state`: `a-zA-Z0-9`, ≤128 bytes" — the same rule as the one-time `reserved` (§1.2),
  // which the emulator does enforce (40035 error page). OAuth's state is passed through unchecked.
  it('refuses a state longer than 128 bytes or outside a-zA-Z0-9 instead of redirecting with it', async () => {
    const { base } = await start();
    const url = (state: string) =>
      `/connect/oauth2/authorize?appid=${APPID}&redirect_uri=${encodeURIComponent(
        'https://example.com/oauth/cb',
      )}&response_type=code&scope=snsapi_base&state=${encodeURIComponent(state)}&openid=${U1}#wechat_redirect`;
    const ok = await req(base, 'GET', url('abc123'));
    expect(ok.status).toBe(302);
    const long = await req(base, 'GET', url('a'.repeat(129)));
    expect(long.status).not.toBe(302);
    expect(long.headers['x-emulator-error']).toBeDefined();
    const odd = await req(base, 'GET', url('a-b_c/d'));
    expect(odd.status).not.toBe(302);
    expect(odd.headers['x-emulator-error']).toBeDefined();
  });
});

describe('emulator: control API — bad input gets a clear error and changes nothing', () => {
  // ARCHITECTURE "Non-negotiables": bad input anywhere gets a clear error with a stable code, never a 500, and
  // changes nothing. README control API: 400 EMU_BAD_ARGUMENT for bad input.
  it('POST /__emulator/clock with an advanceMs beyond the Date range is a 400 and leaves the clock usable', async () => {
    const { base } = await start();
    const before = (await req(base, 'GET', '/__emulator/clock')).json().now as number;
    const r = await req(base, 'POST', '/__emulator/clock', { advanceMs: 8_700_000_000_000_000 });
    expect(r.status).toBe(400);
    const after = await req(base, 'GET', '/__emulator/clock');
    expect(after.status).toBe(200);
    expect(after.json().now).toBe(before);
  });

  it('POST /__emulator/apps with a duplicate user openid fails without creating a half app', async () => {
    const { base } = await start();
    const r = await req(base, 'POST', '/__emulator/apps', {
      appid: 'wxdupusers000001',
      secret: '0123456789abcdef0123456789abcdef',
      users: [{ openid: 'oDup' }, { openid: 'oDup' }],
    });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    const look = await req(base, 'GET', '/__emulator/apps/wxdupusers000001');
    expect(look.status).toBe(404);
  });

  it('DELETE /__emulator/apps/:appid/grants for an unknown template is an error, not {ok:true}', async () => {
    const { base } = await start();
    const r = await req(base, 'DELETE', `/__emulator/apps/${APPID}/grants`, {
      openid: U1,
      template_id: 'NoSuchTemplate',
    });
    expect(r.status).toBe(404);
    expect(r.json()).toMatchObject({ error: { code: 'EMU_TEMPLATE_NOT_FOUND' } });
  });

  // Spec §1.2: the business domain is a bare domain ("且业务域名不能带路径"); README: domain lists accept
  // `host` or `host:port`. An entry with a scheme or path can never match, so it must be refused up front.
  it('PATCH businessDomains with a scheme or path is refused and the app is unchanged', async () => {
    const { base } = await start();
    const r = await req(base, 'PATCH', `/__emulator/apps/${APPID}`, {
      businessDomains: ['https://shop.example.org/app'],
    });
    expect(r.status).toBe(400);
    const app = (await req(base, 'GET', `/__emulator/apps/${APPID}`)).json();
    expect(app.businessDomains).toEqual(['example.com', 'shop.example.com:8443']);
  });

  it('PUT /__emulator/faults with a path that can never match (no leading "/", not "*") is refused', async () => {
    const { base } = await start();
    const r = await req(base, 'PUT', '/__emulator/faults', {
      path: 'cgi-bin/token',
      errcodes: { '-1': 1 },
    });
    expect(r.status).toBe(400);
    expect((await req(base, 'GET', '/__emulator/faults')).json()).toEqual({ faults: [] });
  });

  // Spec §2.5: `enum` values "must be one of the template's enum values (keywordEnumValueList)". A notification
  // template with an {{enumN.DATA}} placeholder but no enum list can never be sent to (every bizsend → 47003).
  it('POST /__emulator/apps/:appid/templates refuses an enum placeholder without enum values', async () => {
    const { base } = await start();
    const r = await req(base, 'POST', `/__emulator/apps/${APPID}/templates`, {
      templateId: 'EnumWithoutValues',
      kind: 'notification',
      title: '进度',
      content: '进度:{{enum1.DATA}}',
    });
    expect(r.status).toBe(400);
    expect(
      (await req(base, 'GET', `/__emulator/apps/${APPID}/templates`)).json().templates,
    ).not.toContainEqual(expect.objectContaining({ templateId: 'EnumWithoutValues' }));
  });
});
