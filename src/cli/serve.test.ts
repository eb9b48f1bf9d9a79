// Tests of the service composition root: what `wxsub serve` runs besides the HTTP app and the dispatcher.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig, type ServiceConfig } from '../config/schema.js';
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

  const EMU_APP = 'wxserve00000002';
  const EMU_SECRET = 'serve-test-secret';
  const NOTIFY_TPL = 'ServeNotifyTpl01';
  const ONE_TIME_TPL = 'ServeOneTimeTpl01';
  /** An emulator on a real port with users `openids` and two templates, and the service sending to it. */
  async function startWithEmulator(
    openids: string[],
    wechat: Partial<ServiceConfig['wechat']> = {},
  ): Promise<RunningService & { key: string; emu: Emulator }> {
    const e = await createEmulator();
    emu = e;
    e.state.createApp({
      appid: EMU_APP,
      secret: EMU_SECRET,
      users: openids.map((openid) => ({ openid })),
      templates: [
        {
          templateId: NOTIFY_TPL,
          kind: 'notification',
          title: '进度',
          type: 2,
          content: '事项:{{thing1.DATA}}',
        },
        { templateId: ONE_TIME_TPL, kind: 'one-time', title: '到货提醒' },
      ],
    });
    const baseUrl = await e.listen({ port: 0 });
    dir = mkdtempSync(join(tmpdir(), 'wxsub-serve-'));
    const started = await startService(
      parseConfig({
        port: 0,
        sqlitePath: join(dir, 'wxsub.db'),
        wechat: { appId: EMU_APP, appSecret: EMU_SECRET, baseUrl, ...wechat },
      }),
      { logger: pino({ level: 'silent' }) },
    );
    svc = started;
    const { key } = await createApiKey(started.store, 'serve-test');
    return { ...started, key, emu: e };
  }
  const postMessage = (s: { url: string; key: string }, body: unknown) =>
    fetch(`${s.url}/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const inbox = (openid: string) => emu?.state.inbox(EMU_APP, openid) ?? [];
  async function waitForInbox(...openids: string[]): Promise<void> {
    for (let i = 0; i < 100 && openids.some((o) => inbox(o).length === 0); i++)
      await new Promise((r) => setTimeout(r, 50));
  }

  it('posts the one-time scene in the JSON type WXSUB_WECHAT_ONE_TIME_SCENE names', async () => {
    const s = await startWithEmulator(['oScene'], { oneTimeScene: 'number' });
    s.emu.state.behavior.oneTimeSceneType = 'number'; // a WeChat that takes integers only (spec §1.4 disagrees)
    s.emu.state.grantOneTime(EMU_APP, 'oScene', ONE_TIME_TPL, 7);
    await s.store.grants.recordOneTime({
      appId: EMU_APP,
      openid: 'oScene',
      templateId: ONE_TIME_TPL,
      scene: 7,
      now: Date.now(),
    });
    await s.store.templates.upsert({
      appId: EMU_APP,
      templateId: ONE_TIME_TPL,
      kind: 'one-time',
      title: '到货提醒',
      keywords: [],
    });
    const r = await postMessage(s, {
      kind: 'one-time',
      openid: 'oScene',
      template: ONE_TIME_TPL,
      scene: 7,
      title: '到货提醒',
      content: '已到货',
    });
    expect(r.status).toBe(202);
    await waitForInbox('oScene');
    expect(inbox('oScene')).toMatchObject([{ content: '已到货', scene: 7 }]);
  });

  it("exposes this instance's delivery on /metrics: outcomes, errors, messages held and in flight, paused apps", async () => {
    const s = await startWithEmulator(['oMetricsA', 'oMetricsB']);
    await s.store.templates.upsert({
      appId: EMU_APP,
      templateId: ONE_TIME_TPL,
      kind: 'one-time',
      title: '到货提醒',
      keywords: [],
    });
    const send = async (openid: string) => {
      s.emu.state.grantOneTime(EMU_APP, openid, ONE_TIME_TPL, 1);
      await s.store.grants.recordOneTime({
        appId: EMU_APP,
        openid,
        templateId: ONE_TIME_TPL,
        scene: 1,
        now: Date.now(),
      });
      const r = await postMessage(s, {
        kind: 'one-time',
        openid,
        template: ONE_TIME_TPL,
        scene: 1,
        title: '到货提醒',
        content: '已到货',
      });
      expect(r.status).toBe(202);
    };
    const metrics = async () => (await fetch(`${s.url}/metrics`)).text();
    const waitFor = async (line: string) => {
      for (let i = 0; i < 100 && !(await metrics()).includes(line); i++)
        await new Promise((r) => setTimeout(r, 50));
      return metrics();
    };
    await send('oMetricsA');
    const afterSent = await waitFor('wxsub_dispatcher_outcomes_total{outcome="sent"} 1');
    expect(afterSent).toContain('wxsub_dispatcher_outcomes_total{outcome="sent"} 1');
    expect(afterSent).toContain('wxsub_dispatcher_outcomes_total{outcome="failed"} 0');
    expect(afterSent).toContain('wxsub_dispatcher_errors_total{kind="token"} 0');
    expect(afterSent).toContain('wxsub_dispatcher_messages{state="in_flight"} 0');
    expect(afterSent).not.toContain('wxsub_app_paused_until_seconds{');
    // WeChat's daily quota runs out: the app pauses until 00:00 Beijing time, and the metric says until when.
    s.emu.state.setFaults({ path: '/cgi-bin/message/template/subscribe', errcodes: { '45009': 1 } });
    await send('oMetricsB');
    const paused = await waitFor(`wxsub_app_paused_until_seconds{app_id="${EMU_APP}"}`);
    const m = new RegExp(`wxsub_app_paused_until_seconds\\{app_id="${EMU_APP}"\\} (\\d+)`).exec(paused);
    const beijingMidnight = (Math.floor((Date.now() + 8 * 3_600_000) / 86_400_000) + 1) * 86_400 - 8 * 3600;
    expect(Number(m?.[1])).toBe(beijingMidnight);
    expect(paused).toContain('wxsub_dispatcher_outcomes_total{outcome="retried"} 1');
  });

  it("delivers a notification's miniprogram_state and lang to bizsend only when the message has them", async () => {
    const appId = EMU_APP;
    const tpl = NOTIFY_TPL;
    const { store, url, key, emu: e } = await startWithEmulator(['oWith', 'oWithout']);
    await store.templates.upsert({
      appId,
      templateId: tpl,
      kind: 'notification',
      title: '进度',
      keywords: [{ key: 'thing1', type: 'thing' }],
    });
    const send = async (openid: string, extra: Record<string, unknown>) => {
      e.state.grantNotification(appId, openid, tpl);
      await store.grants.addNotificationCredits({
        appId,
        openid,
        templateId: tpl,
        count: 1,
        now: Date.now(),
      });
      return postMessage(
        { url, key },
        { kind: 'notification', openid, template: tpl, data: { thing1: '发货' }, ...extra },
      );
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
    await waitForInbox('oWith', 'oWithout');
    expect(inbox('oWith')).toMatchObject([
      { content: '事项:发货', miniprogramState: 'trial', lang: 'en_US' },
    ]);
    const [plain] = inbox('oWithout');
    expect(plain).toMatchObject({ content: '事项:发货' });
    expect(plain && 'miniprogramState' in plain).toBe(false);
    expect(plain && 'lang' in plain).toBe(false);
  });
});
