// Tests of the one-time consent page and its decision form (wechat-spec.md §1.2, §1.3, §1.6).
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendBeforeFragment, hostAllowed } from './routes/consent.js';
import { APPID, NOTIFY, ONE_TIME, U1, U2, testEmulator, type TestEmulator } from './test-support.js';

let emu: TestEmulator;
beforeEach(async () => {
  emu = await testEmulator();
});
afterEach(async () => {
  await emu.close();
});

const params = (over: Record<string, string | undefined> = {}) => {
  const base: Record<string, string | undefined> = {
    action: 'get_confirm',
    appid: APPID,
    scene: '1000',
    template_id: ONE_TIME,
    redirect_url: 'https://example.com/cb',
    reserved: 'abcXYZ123',
    ...over,
  };
  return new URLSearchParams(Object.entries(base).filter((e): e is [string, string] => e[1] !== undefined));
};
const page = (q: URLSearchParams) =>
  emu.app.inject({ method: 'GET', url: `/mp/subscribemsg?${q.toString()}` });
const decide = (form: Record<string, string>) =>
  emu.app.inject({
    method: 'POST',
    url: '/mp/subscribemsg/decide',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams(form).toString(),
  });
const form = (over: Record<string, string> = {}) => ({
  appid: APPID,
  template_id: ONE_TIME,
  scene: '1000',
  redirect_url: 'https://example.com/cb',
  reserved: 'abcXYZ123',
  openid: U1,
  action: 'confirm',
  ...over,
});

describe('consent page', () => {
  it('renders account name, title, user picker and real 允许/取消 buttons', async () => {
    const res = await page(params());
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/html');
    expect(res.headers['x-emulator-error']).toBeUndefined();
    const html = res.body;
    expect(html).toContain('测试服务号');
    expect(html).toContain('活动提醒');
    expect(html).toMatch(/<select name="openid"[^>]*>.*<option value="oTestUser0000000000000000001">小明/s);
    expect(html).toMatch(/<button[^>]*value="confirm"[^>]*>允许<\/button>/);
    expect(html).toMatch(/<button[^>]*value="cancel"[^>]*>取消<\/button>/);
    expect(html).toContain("location.hash!=='#wechat_redirect'");
    expect(html).toContain('<input type="hidden" name="reserved" value="abcXYZ123">');
  });

  it('escapes what it renders', async () => {
    emu.state.updateApp(APPID, { name: '<script>alert(1)</script>' });
    emu.state.createUser(APPID, { openid: 'oEvil', nickname: '"><img src=x onerror=alert(1)>' });
    const html = (await page(params({ redirect_url: 'https://example.com/cb?a="<b>' }))).body;
    expect(html).not.toContain('<script>alert(1)');
    expect(html).not.toContain('<img src=x');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('value="https://example.com/cb?a=&quot;&lt;b&gt;"');
  });

  it('can switch the #wechat_redirect check off by query', async () => {
    const html = (await page(params({ __emulator_hash_check: '0' }))).body;
    expect(html).toContain('var required=false');
  });

  it.each([
    [{ action: 'confirm' }, 40035, 'action'],
    [{ appid: 'wxunknown' }, 40013, 'appid'],
    [{ appid: undefined }, 40013, 'appid'],
    [{ template_id: 'nope' }, 40037, 'template_id'],
    [{ template_id: NOTIFY }, 40037, 'template_id'],
    [{ scene: '10001' }, 40035, 'scene'],
    [{ scene: '-1' }, 40035, 'scene'],
    [{ scene: '1.5' }, 40035, 'scene'],
    [{ scene: undefined }, 40035, 'scene'],
    [{ reserved: 'has-dash' }, 40035, 'reserved'],
    [{ reserved: 'a'.repeat(129) }, 40035, 'reserved'],
    [{ redirect_url: 'notaurl' }, 40035, 'redirect_url'],
    [{ redirect_url: 'javascript:alert(1)' }, 40035, 'redirect_url'],
    [{ redirect_url: 'https://evil.com/cb' }, 10003, 'redirect_url_domain'],
    [{ redirect_url: 'https://shop.example.com/cb' }, 10003, 'redirect_url_domain'],
  ])('shows the error page for %o', async (over, code, reason) => {
    const res = await page(params(over));
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-emulator-error']).toBe(String(code));
    expect(res.headers['x-emulator-error-reason']).toBe(reason);
    expect(res.body).toContain('参数错误');
    expect(res.body).toContain(`错误码：${code}`);
  });

  it('accepts boundary values and port-specific domains', async () => {
    for (const over of [
      { scene: '0' },
      { scene: '10000' },
      { reserved: 'a'.repeat(128) },
      { reserved: undefined },
      { redirect_url: 'http://example.com:3000/x' },
      { redirect_url: 'https://shop.example.com:8443/cb' },
    ]) {
      const res = await page(params(over));
      expect(res.headers['x-emulator-error'], JSON.stringify(over)).toBeUndefined();
    }
  });

  it('never answers 500 whatever the query', async () => {
    const key = fc.constantFrom('action', 'appid', 'scene', 'template_id', 'redirect_url', 'reserved', 'x');
    const valueGen = fc.oneof(
      fc.string(),
      fc.constantFrom(
        'get_confirm',
        APPID,
        ONE_TIME,
        '1000',
        'https://example.com/cb',
        '%',
        '%E0%A4%A',
        '\u0000',
      ),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(key, valueGen), { maxLength: 8 }), async (pairs) => {
        const q = new URLSearchParams(pairs).toString();
        const res = await emu.app.inject({ method: 'GET', url: `/mp/subscribemsg?${q}` });
        expect(res.statusCode).toBe(200);
      }),
      { numRuns: 300 },
    );
    for (const raw of ['%', '%zz', 'scene=%E0%A4%A', 'a=b&&&=', 'redirect_url=%00']) {
      const res = await emu.app.inject({ method: 'GET', url: `/mp/subscribemsg?${raw}` });
      expect(res.statusCode).toBeLessThan(500);
    }
  });
});

describe('consent decision', () => {
  it('confirm records one grant and redirects with openid, template_id, action, reserved, scene', async () => {
    const res = await decide(form());
    expect(res.statusCode).toBe(302);
    const loc = new URL(String(res.headers.location));
    expect(loc.origin + loc.pathname).toBe('https://example.com/cb');
    expect(Object.fromEntries(loc.searchParams)).toEqual({
      openid: U1,
      template_id: ONE_TIME,
      action: 'confirm',
      reserved: 'abcXYZ123',
      scene: '1000',
    });
    expect(emu.state.hasOneTimeGrant(APPID, U1, ONE_TIME, 1000)).toBe(true);
  });

  it('cancel redirects without openid and grants nothing', async () => {
    const res = await decide(form({ action: 'cancel', openid: U2 }));
    const loc = new URL(String(res.headers.location));
    expect(loc.searchParams.has('openid')).toBe(false);
    expect(loc.searchParams.get('action')).toBe('cancel');
    expect(emu.state.listGrants(APPID).oneTime).toEqual([]);
  });

  it('inserts the query before the fragment and re-encodes it like WeChat', async () => {
    const res = await decide(form({ redirect_url: 'https://example.com/?from=x#/live/detail/28' }));
    expect(res.headers.location).toBe(
      `https://example.com/?from=x&openid=${U1}&template_id=${ONE_TIME}&action=confirm&reserved=abcXYZ123&scene=1000#%23/live/detail/28`,
    );
    emu.state.behavior.fragmentEncoding = 'preserve';
    const res2 = await decide(form({ redirect_url: 'https://example.com/#/a' }));
    expect(String(res2.headers.location)).toMatch(/scene=1000#\/a$/);
  });

  it('omits reserved when it was absent and rejects unknown users and tampered forms', async () => {
    const { reserved: _r, ...noReserved } = form();
    const res = await decide(noReserved);
    expect(new URL(String(res.headers.location)).searchParams.has('reserved')).toBe(false);
    expect((await decide(form({ openid: 'oNobody' }))).headers['x-emulator-error']).toBe('40003');
    expect((await decide(form({ redirect_url: 'https://evil.com/' }))).headers['x-emulator-error']).toBe(
      '10003',
    );
    expect((await decide(form({ action: 'maybe' }))).headers['x-emulator-error']).toBe('40035');
    expect((await emu.app.inject({ method: 'POST', url: '/mp/subscribemsg/decide' })).statusCode).toBe(200);
  });

  it('the confirmed grant allows exactly one send', async () => {
    await decide(form());
    const token = await emu.token();
    const send = () =>
      emu.call(`/cgi-bin/message/template/subscribe?access_token=${token}`, {
        touser: U1,
        template_id: ONE_TIME,
        scene: 1000,
        title: 't',
        data: { content: { value: 'v' } },
      });
    expect((await send()).errcode).toBe(0);
    expect((await send()).errcode).toBe(43101);
  });
});

describe('helpers', () => {
  it('hostAllowed: host matches any port, host:port only that port, empty list = loopback', () => {
    expect(hostAllowed(new URL('http://a.com:1/'), ['a.com'])).toBe(true);
    expect(hostAllowed(new URL('https://a.com/'), ['a.com:443'])).toBe(true);
    expect(hostAllowed(new URL('https://a.com:8443/'), ['a.com:443'])).toBe(false);
    expect(hostAllowed(new URL('https://b.a.com/'), ['a.com'])).toBe(false);
    expect(hostAllowed(new URL('http://localhost:3000/'), [])).toBe(true);
    expect(hostAllowed(new URL('http://example.com/'), [])).toBe(false);
  });

  it('appendBeforeFragment percent-encodes non-ASCII', () => {
    expect(appendBeforeFragment('https://a.com/路径', [['k', 'v']], 'wechat')).toBe(
      'https://a.com/%E8%B7%AF%E5%BE%84?k=v',
    );
  });
});
