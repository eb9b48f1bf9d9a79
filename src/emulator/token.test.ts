// Tests of the emulated token, stable_token, ticket and quota endpoints (wechat-spec.md §3, §2.2).
import { afterEach, describe, expect, it } from 'vitest';
import { APPID, RID, SECRET, testEmulator, type TestEmulator } from './test-support.js';

let emu: TestEmulator;
afterEach(async () => {
  await emu?.close();
});

const tokenUrl = (q: Record<string, string>) => `/cgi-bin/token?${new URLSearchParams(q).toString()}`;
const good = { grant_type: 'client_credential', appid: APPID, secret: SECRET };
const quotaGet = (token: string) =>
  emu.call(`/cgi-bin/openapi/quota/get?access_token=${token}`, { cgi_path: '/wxaapi/newtmpl/getcategory' });
const stable = (body: Record<string, unknown>) =>
  emu.call('/cgi-bin/stable_token', {
    grant_type: 'client_credential',
    appid: APPID,
    secret: SECRET,
    ...body,
  });

describe('/cgi-bin/token', () => {
  it('issues a token with expires_in 7200 and counts the fetch', async () => {
    emu = await testEmulator();
    const r = await emu.call(tokenUrl(good));
    expect(r.expires_in).toBe(7200);
    expect(String(r.access_token)).toMatch(/^\d+_[A-Za-z0-9_-]{64,}$/);
    expect(emu.state.counters(APPID).tokenFetches).toEqual({ classic: 1, stable: 0 });
  });

  it.each([
    [{ grant_type: 'client_credential', secret: SECRET }, 41002],
    [{ grant_type: 'client_credential', appid: APPID }, 41004],
    [{ grant_type: 'password', appid: APPID, secret: SECRET }, 40002],
    [{ grant_type: 'client_credential', appid: 'wxnope', secret: SECRET }, 40013],
    [{ grant_type: 'client_credential', appid: APPID, secret: 'ffffffffffffffffffffffffffffffff' }, 40001],
    [{ grant_type: 'client_credential', appid: APPID, secret: 'short' }, 40125],
  ])('rejects %o with %i', async (q, code) => {
    emu = await testEmulator();
    const r = await emu.call(tokenUrl(q as Record<string, string>));
    expect(r.errcode).toBe(code);
    expect(String(r.errmsg)).toMatch(RID);
    expect(emu.state.counters(APPID).tokenFetches.classic).toBe(0);
  });

  it('keeps the previous token valid for 5 minutes only, and the one before it dies at once', async () => {
    emu = await testEmulator();
    const t1 = await emu.token();
    const t2 = await emu.token();
    expect(t2).not.toBe(t1);
    expect((await quotaGet(t1)).errcode).toBe(0);
    emu.clock.advance(299_000);
    expect((await quotaGet(t1)).errcode).toBe(0);
    emu.clock.advance(1_000);
    expect((await quotaGet(t1)).errcode).toBe(40001);
    expect((await quotaGet(t2)).errcode).toBe(0);
    const t3 = await emu.token();
    await emu.token();
    expect((await quotaGet(t3)).errcode).toBe(0);
    expect((await quotaGet(t2)).errcode).toBe(40001);
  });

  it('expires after 7200 s with 42001', async () => {
    emu = await testEmulator();
    const t = await emu.token();
    emu.clock.advance(7_199_000);
    expect((await quotaGet(t)).errcode).toBe(0);
    emu.clock.advance(1_000);
    expect((await quotaGet(t)).errcode).toBe(42001);
  });

  it('answers 41001 / 40014 / 40001 for missing, malformed and unknown tokens', async () => {
    emu = await testEmulator();
    const body = { cgi_path: '/cgi-bin/token' };
    expect((await emu.call('/cgi-bin/openapi/quota/get', body)).errcode).toBe(41001);
    expect((await emu.call('/cgi-bin/openapi/quota/get?access_token=', body)).errcode).toBe(41001);
    expect((await emu.call('/cgi-bin/openapi/quota/get?access_token=garbage', body)).errcode).toBe(40014);
    const wellFormed = `99_${'a'.repeat(100)}`;
    expect((await emu.call(`/cgi-bin/openapi/quota/get?access_token=${wellFormed}`, body)).errcode).toBe(
      40001,
    );
  });

  it('enforces the IP whitelist with the configured code', async () => {
    emu = await testEmulator();
    emu.state.updateApp(APPID, { ipWhitelist: ['10.0.0.1'] });
    const r = await emu.call(tokenUrl(good));
    expect(r.errcode).toBe(40164);
    expect(String(r.errmsg)).toMatch(
      /^invalid ip 127\.0\.0\.1 ipv6 ::ffff:127\.0\.0\.1, not in whitelist rid: /,
    );
    emu.state.updateApp(APPID, { ipWhitelistErrcode: 61004 });
    expect((await emu.call(tokenUrl(good))).errcode).toBe(61004);
    emu.state.updateApp(APPID, { ipWhitelist: ['127.0.0.1'] });
    expect((await emu.call(tokenUrl(good))).access_token).toBeTypeOf('string');
  });

  it('refuses beyond the 2000/day quota with 45009 and resets at Beijing midnight', async () => {
    emu = await testEmulator();
    emu.state.setQuota(APPID, '/cgi-bin/token', { dailyLimit: 3 });
    for (let i = 0; i < 3; i++) await emu.token();
    expect((await emu.call(tokenUrl(good))).errcode).toBe(45009);
    // Clock starts 2026-01-01 02:00 UTC = 10:00 Beijing; 14 h later is the next Beijing day.
    emu.clock.advance(14 * 3_600_000);
    expect((await emu.call(tokenUrl(good))).access_token).toBeTypeOf('string');
  });

  it('answers 43001 for POST', async () => {
    emu = await testEmulator();
    expect((await emu.call(tokenUrl(good), {})).errcode).toBe(43001);
  });
});

describe('/cgi-bin/stable_token', () => {
  it('returns the same token until 5 minutes before expiry, then a new one while the old still works', async () => {
    emu = await testEmulator();
    const a = await stable({});
    expect(a.expires_in).toBe(7200);
    emu.clock.advance(3_600_000);
    const b = await stable({ force_refresh: false });
    expect(b.access_token).toBe(a.access_token);
    expect(b.expires_in).toBe(3600);
    emu.clock.advance(3_300_000); // 300 s left: inside the renewal window
    const c = await stable({});
    expect(c.access_token).not.toBe(a.access_token);
    expect(c.expires_in).toBe(7200);
    expect((await quotaGet(String(a.access_token))).errcode).toBe(0);
    expect((await stable({})).access_token).toBe(c.access_token);
    emu.clock.advance(300_000);
    expect((await quotaGet(String(a.access_token))).errcode).toBe(42001);
    expect((await quotaGet(String(c.access_token))).errcode).toBe(0);
    expect(emu.state.counters(APPID).tokenFetches.stable).toBe(4);
  });

  it('is isolated from /cgi-bin/token', async () => {
    emu = await testEmulator();
    const s = await stable({});
    const c1 = await emu.token();
    await emu.token();
    await emu.token();
    expect((await quotaGet(String(s.access_token))).errcode).toBe(0);
    expect((await stable({})).access_token).toBe(s.access_token);
    expect((await quotaGet(c1)).errcode).toBe(40001);
  });

  it('force_refresh kills the previous token at once, needs 30 s spacing (45011) and max 20/day (45009)', async () => {
    emu = await testEmulator();
    const a = await stable({});
    const b = await stable({ force_refresh: true });
    expect(b.access_token).not.toBe(a.access_token);
    expect((await quotaGet(String(a.access_token))).errcode).toBe(40001);
    const refused = await stable({ force_refresh: true });
    expect(refused.errcode).toBe(45011);
    expect(String(refused.errmsg)).toMatch(
      /^api minute-quota reach limit {2}must slower {2}retry next minute rid: /,
    );
    expect((await quotaGet(String(b.access_token))).errcode).toBe(0);
    for (let i = 0; i < 19; i++) {
      emu.clock.advance(30_000);
      expect((await stable({ force_refresh: true })).access_token).toBeTypeOf('string');
    }
    emu.clock.advance(30_000);
    expect((await stable({ force_refresh: true })).errcode).toBe(45009);
    expect((await stable({})).access_token).toBeTypeOf('string');
  });

  it('judges the JSON body: 44002 empty, 47001 malformed, 40002/41002/41004/40013', async () => {
    emu = await testEmulator();
    expect((await emu.call('/cgi-bin/stable_token', '')).errcode).toBe(44002);
    expect((await emu.call('/cgi-bin/stable_token', '{"appid":')).errcode).toBe(47001);
    expect((await emu.call('/cgi-bin/stable_token', '[1,2]')).errcode).toBe(47001);
    expect((await stable({ grant_type: 'x' })).errcode).toBe(40002);
    expect((await stable({ appid: '' })).errcode).toBe(41002);
    expect((await stable({ secret: null })).errcode).toBe(41004);
    expect((await stable({ appid: 12 })).errcode).toBe(40013);
    expect((await emu.call('/cgi-bin/stable_token')).errcode).toBe(43002);
  });
});

describe('/cgi-bin/ticket/getticket', () => {
  it('returns the same ticket until it expires, for any token of the app, and counts fetches', async () => {
    emu = await testEmulator();
    const t1 = await emu.token();
    const a = await emu.call(`/cgi-bin/ticket/getticket?access_token=${t1}&type=jsapi`);
    expect(a).toMatchObject({ errcode: 0, errmsg: 'ok', expires_in: 7200 });
    emu.clock.advance(1_000_000);
    const t2 = await emu.token();
    const b = await emu.call(`/cgi-bin/ticket/getticket?access_token=${t2}&type=jsapi`);
    expect(b.ticket).toBe(a.ticket);
    expect(b.expires_in).toBe(6200);
    expect(emu.state.isTicketValid(APPID, String(a.ticket))).toBe(true);
    emu.clock.advance(6_200_000);
    expect(emu.state.isTicketValid(APPID, String(a.ticket))).toBe(false);
    const t3 = await emu.token();
    const c = await emu.call(`/cgi-bin/ticket/getticket?access_token=${t3}&type=jsapi`);
    expect(c.ticket).not.toBe(a.ticket);
    expect(emu.state.counters(APPID).ticketFetches).toBe(3);
    expect((await emu.call(`/cgi-bin/ticket/getticket?access_token=${t3}&type=wx_card`)).errcode).toBe(40035);
  });
});

describe('quota APIs', () => {
  it('reports daily_limit/used/remain and enforces a per-minute limit with 45011', async () => {
    emu = await testEmulator();
    const t = await emu.token();
    emu.state.setQuota(APPID, '/wxaapi/newtmpl/getcategory', { dailyLimit: 10, minuteLimit: 2 });
    expect((await emu.call(`/wxaapi/newtmpl/getcategory?access_token=${t}`)).errcode).toBe(0);
    expect((await emu.call(`/wxaapi/newtmpl/getcategory?access_token=${t}`)).errcode).toBe(0);
    expect((await emu.call(`/wxaapi/newtmpl/getcategory?access_token=${t}`)).errcode).toBe(45011);
    const q = await quotaGet(t);
    expect(q.quota).toEqual({ daily_limit: 10, used: 2, remain: 8 });
    emu.clock.advance(60_000);
    expect((await emu.call(`/wxaapi/newtmpl/getcategory?access_token=${t}`)).errcode).toBe(0);
    expect(
      (
        await emu.call(`/cgi-bin/openapi/quota/clear?access_token=${t}`, {
          cgi_path: '/wxaapi/newtmpl/getcategory',
        })
      ).errcode,
    ).toBe(0);
    expect((await quotaGet(t)).quota).toEqual({ daily_limit: 10, used: 0, remain: 10 });
  });

  it('allows clear_quota 10 times a month, then 48006', async () => {
    emu = await testEmulator();
    const t = await emu.token();
    for (let i = 0; i < 10; i++) {
      expect((await emu.call(`/cgi-bin/clear_quota?access_token=${t}`, { appid: APPID })).errcode).toBe(0);
    }
    expect((await emu.call(`/cgi-bin/clear_quota?access_token=${t}`, { appid: APPID })).errcode).toBe(48006);
  });
});
