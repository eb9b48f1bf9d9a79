// E2E: the emulator over a real port-0 socket with undici/fetch, including a dropped connection.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';

const APPID = 'wxe2e0000000001';
const SECRET = '0123456789abcdef0123456789abcdef';
const OPENID = 'oE2eUser00000000000000000001';
const TPL = 'E2eOneTimeTpl0000000000000000000000000001';

let emu: Emulator | undefined;
afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

async function start(): Promise<string> {
  emu = await createEmulator({
    randomSeed: 7,
    seed: {
      apps: [
        {
          appid: APPID,
          secret: SECRET,
          businessDomains: ['127.0.0.1'],
          users: [{ openid: OPENID }],
          templates: [{ templateId: TPL, kind: 'one-time', title: '提醒' }],
        },
      ],
    },
  });
  return emu.listen();
}

describe('emulator over HTTP', () => {
  it('listens on a port-0 socket and serves the token → consent → send flow', async () => {
    const base = await start();
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const tok = (await (
      await fetch(`${base}/cgi-bin/token?grant_type=client_credential&appid=${APPID}&secret=${SECRET}`)
    ).json()) as {
      access_token: string;
    };
    const redirect = `${base}/landing#/page`;
    const page = await fetch(
      `${base}/mp/subscribemsg?action=get_confirm&appid=${APPID}&scene=9&template_id=${TPL}&redirect_url=${encodeURIComponent(redirect)}&reserved=abc#wechat_redirect`,
    );
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('允许');
    const decided = await fetch(`${base}/mp/subscribemsg/decide`, {
      method: 'POST',
      redirect: 'manual',
      body: new URLSearchParams({
        appid: APPID,
        template_id: TPL,
        scene: '9',
        redirect_url: redirect,
        reserved: 'abc',
        openid: OPENID,
        action: 'confirm',
      }),
    });
    expect(decided.status).toBe(302);
    expect(decided.headers.get('location')).toBe(
      `${base}/landing?openid=${OPENID}&template_id=${TPL}&action=confirm&reserved=abc&scene=9#%23/page`,
    );
    const send = await request(
      `${base}/cgi-bin/message/template/subscribe?access_token=${tok.access_token}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          touser: OPENID,
          template_id: TPL,
          scene: 9,
          title: 't',
          data: { content: { value: 'v' } },
        }),
      },
    );
    expect(await send.body.json()).toEqual({ errcode: 0, errmsg: 'ok' });
    const counters = (await (await fetch(`${base}/__emulator/apps/${APPID}/counters`)).json()) as {
      sends: Record<string, number>;
    };
    expect(counters.sends['/cgi-bin/message/template/subscribe']).toBe(1);
  });

  it('a dropped connection surfaces as a socket error, and processing still happened with dropAfterProcessing', async () => {
    const base = await start();
    await fetch(`${base}/__emulator/faults`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ path: '/cgi-bin/token', drop: 1 }),
    });
    const url = `${base}/cgi-bin/token?grant_type=client_credential&appid=${APPID}&secret=${SECRET}`;
    const err = await fetch(url).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TypeError);
    await expect(request(url)).rejects.toMatchObject({
      code: expect.stringMatching(/^UND_ERR_SOCKET$|^ECONNRESET$/),
    });
    expect(emu?.state.counters(APPID).tokenFetches.classic).toBe(0);
    emu?.state.setFaults({ path: '/cgi-bin/token', drop: 1, dropAfterProcessing: true });
    await expect(fetch(url)).rejects.toBeInstanceOf(TypeError);
    expect(emu?.state.counters(APPID).tokenFetches.classic).toBe(1);
    emu?.state.clearFaults();
    const ok = (await (await fetch(url)).json()) as { access_token?: string };
    expect(ok.access_token).toBeTypeOf('string');
  });
});
