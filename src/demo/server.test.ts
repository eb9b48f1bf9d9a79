// Unit tests of the demo page server: consent link, outcome banners, remembered openid, the send relay and key secrecy.
import { afterEach, describe, expect, it } from 'vitest';
import { createDemoServer, parseOutcome, type DemoServer } from './server.js';

const KEY = 'wxk_secret_demo_key_123456';
let demo: DemoServer | undefined;
afterEach(async () => {
  await demo?.close();
  demo = undefined;
});

type Call = { url: string; init: RequestInit };
function fakeService(status: number, body: unknown): { fetch: typeof fetch; calls: Call[] } {
  const calls: Call[] = [];
  const f = (async (url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(url), init: init ?? {} });
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return { fetch: f, calls };
}

function make(f: typeof fetch): DemoServer {
  return createDemoServer(
    { fetch: f },
    {
      serviceUrl: 'http://127.0.0.1:4000/',
      apiKey: KEY,
      appId: 'wxapp',
      templateId: 'TPL1',
      emulatorUrl: 'http://127.0.0.1:4100',
      users: [
        { openid: 'oU1', nickname: '张三' },
        { openid: 'oU2', nickname: '李四' },
      ],
      publicUrl: 'http://127.0.0.1:4200',
    },
  );
}

describe('demo page', () => {
  it('links the button to the service consent endpoint with next = the demo URL', async () => {
    demo = make(fakeService(200, {}).fetch);
    const res = await demo.app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(200);
    const href = /id="subscribe" href="([^"]+)"/.exec(res.body)?.[1]?.replace(/&#38;/g, '&');
    const u = new URL(href ?? 'http://x/');
    expect(`${u.origin}${u.pathname}`).toBe('http://127.0.0.1:4000/consent/one-time');
    expect(u.searchParams.get('template')).toBe('TPL1');
    expect(u.searchParams.get('scene')).toBe('auto');
    expect(u.searchParams.get('next')).toBe('http://127.0.0.1:4200/');
    expect(res.body).toContain('张三 (oU1)');
    expect(res.body).not.toContain(KEY);
  });

  it('shows the subscribed outcome with its scene and remembers the returned openid', async () => {
    demo = make(fakeService(200, {}).fetch);
    const res = await demo.app.inject({ method: 'GET', url: '/?wxsub_outcome=confirmed&scene=7&openid=oU2' });
    expect(res.body).toContain('已订阅 — you are subscribed (scene 7)');
    expect(res.headers['set-cookie']).toContain('wxsub_demo_openid=oU2');
    expect(res.body).toMatch(/<option value="oU2" selected>/);
    expect(res.body).toContain('http://127.0.0.1:4100/__emulator/inbox/oU2');
    const again = await demo.app.inject({ method: 'GET', url: '/', cookies: { wxsub_demo_openid: 'oU2' } });
    expect(again.body).toMatch(/<option value="oU2" selected>/);
  });

  it('shows a cancelled outcome', async () => {
    demo = make(fakeService(200, {}).fetch);
    const res = await demo.app.inject({ method: 'GET', url: '/?wxsub_outcome=cancelled&scene=3' });
    expect(res.body).toContain('已取消 — cancelled');
    expect(res.body).not.toContain('已订阅');
  });

  it('escapes hostile query text', async () => {
    demo = make(fakeService(200, {}).fetch);
    const res = await demo.app.inject({
      method: 'GET',
      url: `/?outcome=subscribed&scene=${encodeURIComponent('<script>x</script>')}`,
    });
    expect(res.body).not.toContain('<script>x</script>');
    expect(res.body).toContain('&#60;script&#62;');
  });
});

describe('demo send relay', () => {
  it('calls POST /v1/messages with the API key server-side and shows the 202', async () => {
    const svc = fakeService(202, { id: 'msg_1', status: 'queued' });
    demo = make(svc.fetch);
    const res = await demo.app.inject({
      method: 'POST',
      url: '/send',
      payload: 'openid=oU1&title=Hello&content=World',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(svc.calls).toHaveLength(1);
    const call = svc.calls[0]!;
    expect(call.url).toBe('http://127.0.0.1:4000/v1/messages');
    expect((call.init.headers as Record<string, string>).authorization).toBe(`Bearer ${KEY}`);
    const sent = JSON.parse(String(call.init.body)) as Record<string, unknown>;
    expect(sent).toMatchObject({
      kind: 'one-time',
      openid: 'oU1',
      template: 'TPL1',
      title: 'Hello',
      content: 'World',
    });
    expect(res.body).toContain('data-status="202"');
    expect(res.body).toContain('msg_1');
    expect(res.body).not.toContain(KEY);
  });

  it('shows a 409 without a grant', async () => {
    const svc = fakeService(409, { error: { code: 'GRANT_NOT_FOUND', message: 'no grant' } });
    demo = make(svc.fetch);
    const res = await demo.app.inject({
      method: 'POST',
      url: '/send',
      payload: 'openid=oU1&title=Hi&content=There',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.body).toContain('data-status="409"');
    expect(res.body).toContain('GRANT_NOT_FOUND');
  });

  it('refuses a malformed openid without calling the service', async () => {
    const svc = fakeService(202, {});
    demo = make(svc.fetch);
    const res = await demo.app.inject({
      method: 'POST',
      url: '/send',
      payload: 'openid=%3Cx%3E&title=Hi&content=There',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(svc.calls).toHaveLength(0);
    expect(res.body).toContain('data-status="400"');
  });
});

describe('parseOutcome', () => {
  it('understands confirm/cancel spellings and ignores bad openids', () => {
    expect(parseOutcome({ action: 'confirm', scene: '2' }).outcome).toEqual({
      kind: 'subscribed',
      scene: '2',
    });
    expect(parseOutcome({ outcome: 'cancel' }).outcome).toEqual({ kind: 'cancelled' });
    expect(parseOutcome({ openid: 'a b' }).openid).toBeNull();
    expect(parseOutcome({}).outcome).toBeNull();
  });
});
