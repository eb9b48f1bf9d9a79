// Tests of the emulated web OAuth: authorize page and code exchange (wechat-spec.md §5).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { APPID, SECRET, U1, testEmulator, type TestEmulator } from './test-support.js';

let emu: TestEmulator;
beforeEach(async () => {
  emu = await testEmulator();
});
afterEach(async () => {
  await emu.close();
});

const authorize = (over: Record<string, string> = {}, headers: Record<string, string> = {}) =>
  emu.app.inject({
    method: 'GET',
    url: `/connect/oauth2/authorize?${new URLSearchParams({
      appid: APPID,
      redirect_uri: 'https://example.com/oauth/cb#/spa',
      response_type: 'code',
      scope: 'snsapi_base',
      state: 'st4te',
      ...over,
    }).toString()}`,
    headers,
  });
const exchange = (code: string) =>
  emu.call(
    `/sns/oauth2/access_token?appid=${APPID}&secret=${SECRET}&code=${code}&grant_type=authorization_code`,
  );

describe('oauth', () => {
  it('shows a user picker, then redirects with code and state before the fragment and remembers the user', async () => {
    const pick = await authorize();
    expect(pick.statusCode).toBe(200);
    expect(pick.body).toContain('<select name="openid"');
    const res = await authorize({ openid: U1 });
    expect(res.statusCode).toBe(302);
    const loc = String(res.headers.location);
    expect(loc).toMatch(/^https:\/\/example\.com\/oauth\/cb\?code=[A-Za-z0-9_-]+&state=st4te#\/spa$/);
    const cookie = String(res.headers['set-cookie']).split(';')[0] ?? '';
    const again = await authorize({}, { cookie });
    expect(again.statusCode).toBe(302);
  });

  it('exchanges a code once (40163 after), 40029 for unknown or expired codes', async () => {
    const code =
      new URL(String((await authorize({ openid: U1 })).headers.location)).searchParams.get('code') ?? '';
    const r = await exchange(code);
    expect(r).toMatchObject({ openid: U1, scope: 'snsapi_base', expires_in: 7200 });
    expect(r.access_token).toBeTypeOf('string');
    expect((await exchange(code)).errcode).toBe(40163);
    expect((await exchange('nope')).errcode).toBe(40029);
    const code2 =
      new URL(String((await authorize({ openid: U1 })).headers.location)).searchParams.get('code') ?? '';
    emu.clock.advance(300_000);
    expect((await exchange(code2)).errcode).toBe(40029);
    expect(emu.state.counters(APPID).oauthCodeExchanges).toBe(1);
  });

  it('serves userinfo for snsapi_userinfo only, and refreshes tokens', async () => {
    const code =
      new URL(
        String((await authorize({ openid: U1, scope: 'snsapi_userinfo' })).headers.location),
      ).searchParams.get('code') ?? '';
    const t = await exchange(code);
    const info = await emu.call(
      `/sns/userinfo?access_token=${String(t.access_token)}&openid=${U1}&lang=zh_CN`,
    );
    expect(info).toMatchObject({ openid: U1, nickname: '小明' });
    const r = await emu.call(
      `/sns/oauth2/refresh_token?appid=${APPID}&grant_type=refresh_token&refresh_token=${String(t.refresh_token)}`,
    );
    expect(r.openid).toBe(U1);
    expect(
      (
        await emu.call(
          `/sns/oauth2/refresh_token?appid=${APPID}&grant_type=refresh_token&refresh_token=${String(t.refresh_token)}`,
        )
      ).errcode,
    ).toBe(40030);
  });

  it.each([
    [{ redirect_uri: 'https://evil.com/cb' }, '10003'],
    [{ scope: 'snsapi_login' }, '10005'],
    [{ appid: 'wxnope' }, '10012'],
    [{ response_type: 'token' }, '10015'],
    [{ redirect_uri: '::' }, '10011'],
  ])('shows an error page for %o', async (over, code) => {
    const res = await authorize(over);
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-emulator-error']).toBe(code);
  });

  it('rejects wrong sns parameters', async () => {
    expect(
      (await emu.call(`/sns/oauth2/access_token?secret=${SECRET}&code=x&grant_type=authorization_code`))
        .errcode,
    ).toBe(41002);
    expect(
      (await emu.call(`/sns/oauth2/access_token?appid=${APPID}&secret=${SECRET}&code=x&grant_type=x`))
        .errcode,
    ).toBe(40002);
    expect(
      (
        await emu.call(
          `/sns/oauth2/access_token?appid=${APPID}&secret=bad&code=x&grant_type=authorization_code`,
        )
      ).errcode,
    ).toBe(40125);
  });
});
