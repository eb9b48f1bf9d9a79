// The copy-paste session through the SDK against the emulator, in memory and over a real port-0 socket, plus transport failures on real sockets.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';
import {
  createWeChatClient,
  isWeChatApiError,
  isWeChatTimeoutError,
  isWeChatTransportError,
  type WeChatClient,
} from '../../src/wechat/index.js';

const APPID = 'wxe2esdk000000001';
const SECRET = 'e2esecret0123456789abcdef0123456';
const OPENID = 'oE2eUser000000000000000001';
const TPL = 'E2eOneTimeTpl000000000000000000000000000001';
const seed = {
  apps: [
    {
      appid: APPID,
      secret: SECRET,
      businessDomains: ['a.example'],
      users: [{ openid: OPENID }],
      templates: [{ templateId: TPL, kind: 'one-time' as const, title: '活动开始提醒' }],
    },
  ],
};

async function session(
  wx: WeChatClient,
  control: (path: string, init?: RequestInit) => Promise<Response>,
  scene: number,
): Promise<void> {
  const token = await wx.getAccessToken();
  expect(token.length).toBeGreaterThan(10);
  const send = () =>
    wx.sendOneTime({
      touser: OPENID,
      template_id: TPL,
      scene,
      title: '活动开始提醒',
      data: { content: { value: `scene ${scene} 开始` } },
    });
  const denied = await send().catch((e: unknown) => e);
  expect(isWeChatApiError(denied, 43101)).toBe(true);
  const grant = await control(`/__emulator/apps/${APPID}/grants`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ openid: OPENID, template_id: TPL, scene }),
  });
  expect(grant.status).toBeLessThan(300);
  await expect(send()).resolves.toEqual({ errcode: 0 });
  await expect(send()).rejects.toMatchObject({ errcode: 43101, action: 'consent-missing' });
  const inbox = (await (await control(`/__emulator/apps/${APPID}/users/${OPENID}/messages`)).json()) as {
    messages: unknown[];
  };
  expect(JSON.stringify(inbox.messages)).toContain(`scene ${scene} 开始`);
}

describe('SDK ↔ emulator', () => {
  let emu: Emulator;
  let base: string;
  beforeAll(async () => {
    emu = await createEmulator({ seed, randomSeed: 7 });
    base = await emu.listen({ port: 0 });
  });
  afterAll(async () => {
    await emu.close();
  });

  it('runs the session in memory (emulator.fetch)', async () => {
    const wx = createWeChatClient(
      { fetch: emu.fetch },
      { appId: APPID, secret: SECRET, baseUrl: 'http://emulator.local' },
    );
    await session(wx, (p, init) => emu.fetch(`http://emulator.local${p}`, init), 11);
    await wx.close();
  });

  it('runs the session over a real port-0 socket with the default undici pool', async () => {
    const wx = createWeChatClient({}, { appId: APPID, secret: SECRET, baseUrl: base });
    await session(wx, (p, init) => fetch(`${base}${p}`, init), 12);
    await wx.close();
  });

  it('shares one token fetch among 50 concurrent callers over the socket', async () => {
    const before = emu.state.counters(APPID).tokenFetches.stable;
    const wx = createWeChatClient({}, { appId: APPID, secret: SECRET, baseUrl: base });
    await Promise.all(Array.from({ length: 50 }, () => wx.getAccessToken()));
    expect(emu.state.counters(APPID).tokenFetches.stable - before).toBe(1);
    await wx.close();
  });
});

describe('transport failures on real sockets', () => {
  const servers: Server[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  const listen = async (handler: Parameters<typeof createServer>[1]): Promise<string> => {
    const s = createServer(handler);
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  const tokenReply = JSON.stringify({ access_token: 'TOKEN_abcdefghijklmnop', expires_in: 7200 });

  it('a refused connection says the request never left', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const wx = createWeChatClient(
      {},
      { appId: APPID, secret: SECRET, baseUrl: `http://127.0.0.1:${port}`, retries: { max: 0 } },
    );
    const err = await wx.getAccessToken().catch((e: unknown) => e);
    expect(isWeChatTransportError(err)).toBe(true);
    expect(err).toMatchObject({ requestMayHaveLeft: false });
    await wx.close();
  });

  it('a reset after the send was written says it may have left, and the send is not repeated', async () => {
    let sends = 0;
    const base = await listen((req, res) => {
      if (req.url?.startsWith('/cgi-bin/stable_token')) {
        res.setHeader('content-type', 'application/json');
        res.end(tokenReply);
        return;
      }
      sends++;
      req.on('data', () => {});
      req.on('end', () => req.socket.destroy());
    });
    const wx = createWeChatClient({}, { appId: APPID, secret: SECRET, baseUrl: base });
    const err = await wx
      .sendOneTime({
        touser: OPENID,
        template_id: TPL,
        scene: 1,
        title: 't',
        data: { content: { value: 'c' } },
      })
      .catch((e: unknown) => e);
    expect(isWeChatTransportError(err)).toBe(true);
    expect(err).toMatchObject({ requestMayHaveLeft: true });
    expect((err as Error).message).not.toContain('TOKEN_abcdefghijklmnop');
    expect(sends).toBe(1);
    await wx.close();
  });

  it('a server that never answers yields a timeout after attemptTimeoutMs', async () => {
    const base = await listen((req, res) => {
      if (req.url?.startsWith('/cgi-bin/stable_token')) {
        res.setHeader('content-type', 'application/json');
        res.end(tokenReply);
      }
      // otherwise: hang
    });
    const wx = createWeChatClient({}, { appId: APPID, secret: SECRET, baseUrl: base, attemptTimeoutMs: 200 });
    const err = await wx
      .sendOneTime({
        touser: OPENID,
        template_id: TPL,
        scene: 1,
        title: 't',
        data: { content: { value: 'c' } },
      })
      .catch((e: unknown) => e);
    expect(isWeChatTimeoutError(err)).toBe(true);
    expect(err).toMatchObject({ requestMayHaveLeft: true, timeout: 'attempt' });
    await wx.close();
  });
});
