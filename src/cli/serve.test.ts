// Tests of the service composition root: what `wxsub serve` runs besides the HTTP app and the dispatcher.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/schema.js';
import { NONCE_PURGE_GRACE_MS } from '../consent/nonce-purge.js';
import { createEmulator, type Emulator } from '../emulator/index.js';
import { createApiKey } from '../http/api-keys.js';
import { ManualClock } from '../util/clock.js';
import { startService, type RunningService } from './serve.js';

describe('startService', () => {
  let dir: string | undefined;
  let svc: RunningService | undefined;
  let emu: Emulator | undefined;
  afterEach(async () => {
    await svc?.close();
    svc = undefined;
    await emu?.close();
    emu = undefined;
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  async function start(purgeIntervalSeconds: number, clock: ManualClock): Promise<RunningService> {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-serve-'));
    svc = await startService(
      parseConfig({
        port: 0,
        sqlitePath: join(dir, 'wxsub.db'),
        wechat: { appId: 'wxserve00000001', appSecret: 'not-used-here', baseUrl: 'http://127.0.0.1:9' },
        consent: { purgeIntervalSeconds },
      }),
      { clock, logger: pino({ level: 'silent' }) },
    );
    return svc;
  }

  it('purges spent nonces of long-expired links on its interval, and keeps the ones still guarding a link', async () => {
    const clock = new ManualClock();
    const { store } = await start(1, clock);
    const t = clock.now();
    await store.nonces.use({ nonce: 'expired', expiresAt: t - NONCE_PURGE_GRACE_MS - 1, now: t });
    await store.nonces.use({ nonce: 'live', expiresAt: t + 600_000, now: t });
    const isSpent = async (nonce: string, expiresAt: number) =>
      !(await store.nonces.use({ nonce, expiresAt, now: t }));
    let purged = false; // found gone: `use` took the nonce afresh
    for (let i = 0; i < 60 && !purged; i++) {
      purged = !(await isSpent('expired', t - NONCE_PURGE_GRACE_MS - 1));
      if (!purged) await new Promise((r) => setTimeout(r, 50));
    }
    expect(purged).toBe(true);
    expect(await isSpent('live', t + 600_000)).toBe(true);
  });

  it('never purges when the interval is 0', async () => {
    const clock = new ManualClock();
    const { store } = await start(0, clock);
    const t = clock.now();
    await store.nonces.use({ nonce: 'expired', expiresAt: t - NONCE_PURGE_GRACE_MS - 1, now: t });
    await new Promise((r) => setTimeout(r, 1500));
    expect(
      await store.nonces.use({ nonce: 'expired', expiresAt: t - NONCE_PURGE_GRACE_MS - 1, now: t }),
    ).toBe(false);
  });

  it("delivers a notification's miniprogram_state and lang to bizsend only when the message has them", async () => {
    const appId = 'wxserve00000002';
    const tpl = 'ServeNotifyTpl01';
    emu = await createEmulator();
    emu.state.createApp({
      appid: appId,
      secret: 'serve-test-secret',
      users: [{ openid: 'oWith' }, { openid: 'oWithout' }],
      templates: [
        { templateId: tpl, kind: 'notification', title: '进度', type: 2, content: '事项:{{thing1.DATA}}' },
      ],
    });
    const baseUrl = await emu.listen({ port: 0 });
    dir = mkdtempSync(join(tmpdir(), 'wxsub-serve-'));
    svc = await startService(
      parseConfig({
        port: 0,
        sqlitePath: join(dir, 'wxsub.db'),
        wechat: { appId, appSecret: 'serve-test-secret', baseUrl },
      }),
      { logger: pino({ level: 'silent' }) },
    );
    const { store, url } = svc;
    await store.templates.upsert({
      appId,
      templateId: tpl,
      kind: 'notification',
      title: '进度',
      keywords: [{ key: 'thing1', type: 'thing' }],
    });
    const { key } = await createApiKey(store, 'serve-test');
    const send = async (openid: string, extra: Record<string, unknown>) => {
      emu?.state.grantNotification(appId, openid, tpl);
      await store.grants.addNotificationCredits({
        appId,
        openid,
        templateId: tpl,
        count: 1,
        now: Date.now(),
      });
      return fetch(`${url}/v1/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          kind: 'notification',
          openid,
          template: tpl,
          data: { thing1: '发货' },
          ...extra,
        }),
      });
    };
    // Values outside the doc's lists are refused before anything is reserved or queued.
    for (const bad of [{ miniprogram_state: 'release' }, { lang: 'fr_FR' }, { lang: 1 }]) {
      const r = await send('oWith', bad);
      expect([r.status, ((await r.json()) as { error: { code: string } }).error.code]).toEqual([
        400,
        'HTTP_VALIDATION_FAILED',
      ]);
    }
    expect((await store.outbox.listMessages({ appId })).items).toEqual([]);
    expect((await send('oWith', { miniprogram_state: 'trial', lang: 'en_US' })).status).toBe(202);
    expect((await send('oWithout', {})).status).toBe(202);
    const inbox = async (openid: string) => emu?.state.inbox(appId, openid) ?? [];
    for (
      let i = 0;
      i < 100 && ((await inbox('oWith')).length === 0 || (await inbox('oWithout')).length === 0);
      i++
    )
      await new Promise((r) => setTimeout(r, 50));
    expect(await inbox('oWith')).toMatchObject([
      { content: '事项:发货', miniprogramState: 'trial', lang: 'en_US' },
    ]);
    const [plain] = await inbox('oWithout');
    expect(plain).toMatchObject({ content: '事项:发货' });
    expect(plain && 'miniprogramState' in plain).toBe(false);
    expect(plain && 'lang' in plain).toBe(false);
  });
});
