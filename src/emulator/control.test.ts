// Tests of the control API, fault injection, inbox page, seed loading and robustness against bad input.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createEmulator, loadSeedFile } from './index.js';
import { APPID, NOTIFY, ONE_TIME, TEST_SEED, U1, testEmulator, type TestEmulator } from './test-support.js';

let emu: TestEmulator;
afterEach(async () => {
  await emu?.close();
});

const ctl = async (method: string, path: string, body?: unknown) => {
  const res = await emu.app.inject({
    method: method as 'GET',
    url: path,
    ...(body !== undefined
      ? { payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
      : {}),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> };
};

describe('control API', () => {
  it('creates apps, users, templates and grants, then the send shows in the inbox JSON and page', async () => {
    emu = await testEmulator();
    const app = await ctl('POST', '/__emulator/apps', { name: '新号' });
    expect(app.status).toBe(201);
    const appid = String(app.body.appid);
    expect(appid).toMatch(/^wx[0-9a-f]{16}$/);
    expect(app.body.secret).toMatch(/^[0-9a-f]{32}$/);
    const user = await ctl('POST', `/__emulator/apps/${appid}/users`, { nickname: '甲' });
    const openid = String(user.body.openid);
    const tpl = await ctl('POST', `/__emulator/apps/${appid}/templates`, { kind: 'one-time', title: '提醒' });
    const tplId = String(tpl.body.templateId);
    expect(
      (await ctl('POST', `/__emulator/apps/${appid}/grants`, { openid, template_id: tplId, scene: 3 }))
        .status,
    ).toBe(201);
    expect((await ctl('GET', `/__emulator/apps/${appid}/grants`)).body.oneTime).toHaveLength(1);

    const tok = await emu.call(
      `/cgi-bin/token?grant_type=client_credential&appid=${appid}&secret=${String(app.body.secret)}`,
    );
    const sent = await emu.call(
      `/cgi-bin/message/template/subscribe?access_token=${String(tok.access_token)}`,
      {
        touser: openid,
        template_id: tplId,
        scene: '3',
        title: '你好<b>',
        data: { content: { value: '第一行\n第二行' } },
        url: 'https://example.com/detail',
      },
    );
    expect(sent.errcode).toBe(0);
    const msgs = await ctl('GET', `/__emulator/apps/${appid}/users/${openid}/messages`);
    expect(msgs.body.messages).toHaveLength(1);
    const counters = await ctl('GET', `/__emulator/apps/${appid}/counters`);
    expect(counters.body).toMatchObject({
      tokenFetches: { classic: 1, stable: 0 },
      sends: { '/cgi-bin/message/template/subscribe': 1 },
    });

    const pageRes = await emu.app.inject({
      method: 'GET',
      url: `/__emulator/inbox/${openid}?appid=${appid}`,
    });
    expect(pageRes.statusCode).toBe(200);
    expect(pageRes.body).toContain('服务通知');
    expect(pageRes.body).toContain('你好&lt;b&gt;');
    expect(pageRes.body).toContain('第二行');
    expect(pageRes.body).toContain('href="https://example.com/detail"');
    expect(pageRes.body).toContain('详情');
    const empty = await emu.app.inject({ method: 'GET', url: `/__emulator/inbox/oNobody` });
    expect(empty.body).toContain('暂无服务通知');
  });

  it('lists newest first in the inbox', async () => {
    emu = await testEmulator();
    emu.state.grantNotification(APPID, U1, NOTIFY, 2);
    const t = await emu.token();
    for (const thing of ['第一', '第二']) {
      await emu.call(`/cgi-bin/message/subscribe/bizsend?access_token=${t}`, {
        touser: U1,
        template_id: NOTIFY,
        data: { thing1: { value: thing }, time2: { value: '10:00' } },
      });
      emu.clock.advance(1000);
    }
    const msgs = emu.state.inbox(APPID, U1);
    expect(msgs.map((m) => m.content.split('\n')[0])).toEqual(['物品:第二', '物品:第一']);
  });

  it('answers 404 JSON for unknown apps and 400 for bad bodies', async () => {
    emu = await testEmulator();
    const r = await ctl('GET', '/__emulator/apps/wxnope/counters');
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ error: { code: 'EMU_APP_NOT_FOUND' } });
    expect((await ctl('POST', '/__emulator/apps/wxnope/users', {})).status).toBe(404);
    expect((await ctl('POST', `/__emulator/apps/${APPID}/grants`, { openid: U1 })).body).toMatchObject({
      error: { code: 'EMU_BAD_ARGUMENT' },
    });
    expect(
      (await ctl('POST', `/__emulator/apps/${APPID}/grants`, { openid: U1, template_id: ONE_TIME })).status,
    ).toBe(400);
    expect(
      (
        await ctl('POST', `/__emulator/apps/${APPID}/grants`, {
          openid: 'oNo',
          template_id: ONE_TIME,
          scene: 1,
        })
      ).status,
    ).toBe(404);
    expect((await ctl('POST', '/__emulator/apps', { appid: APPID, secret: 'x' })).status).toBe(409);
    const bad = await emu.app.inject({
      method: 'POST',
      url: '/__emulator/apps',
      payload: '{',
      headers: { 'content-type': 'application/json' },
    });
    expect(bad.statusCode).toBe(400);
    expect((await ctl('GET', '/__emulator/nope')).status).toBe(404);
  });

  it('advances the clock and resets to the seed', async () => {
    emu = await testEmulator();
    const t = await emu.token();
    const before = (await ctl('GET', '/__emulator/clock')).body.now as number;
    expect((await ctl('POST', '/__emulator/clock', { advanceMs: 7_200_000 })).body.now).toBe(
      before + 7_200_000,
    );
    expect((await emu.call(`/wxaapi/newtmpl/getcategory?access_token=${t}`)).errcode).toBe(42001);
    await ctl('POST', `/__emulator/apps/${APPID}/users`, { openid: 'oExtra' });
    const created = (await ctl('GET', '/__emulator/behavior')).body;
    await ctl('PUT', '/__emulator/behavior', { fragmentEncoding: 'preserve' });
    await ctl('POST', '/__emulator/reset');
    expect(emu.state.requireApp(APPID).users.has('oExtra')).toBe(false);
    expect(emu.state.counters(APPID).tokenFetches.classic).toBe(0);
    // "Forgets everything": the switches go back to what the emulator was created with (a test that changed one
    // must not leak into the next one that resets).
    expect((await ctl('GET', '/__emulator/behavior')).body).toEqual(created);
  });

  it('resets its own clock offset too (the clock of an emulator on real time)', async () => {
    const real = await createEmulator({ seed: TEST_SEED });
    try {
      const at = async (method: string, path: string, body?: unknown) =>
        (
          await real.app.inject({ method: method as 'GET', url: path, ...(body ? { payload: body } : {}) })
        ).json<{
          now: number;
        }>();
      expect((await at('POST', '/__emulator/clock', { advanceMs: 86_400_000 })).now).toBeGreaterThan(
        Date.now() + 86_000_000,
      );
      await real.app.inject({ method: 'POST', url: '/__emulator/reset' });
      expect(Math.abs((await at('GET', '/__emulator/clock')).now - Date.now())).toBeLessThan(60_000);
    } finally {
      await real.close();
    }
  });

  it('changes behaviour and quotas', async () => {
    emu = await testEmulator();
    expect(
      (await ctl('PUT', '/__emulator/behavior', { fragmentEncoding: 'preserve' })).body.fragmentEncoding,
    ).toBe('preserve');
    expect((await ctl('PUT', '/__emulator/behavior', { nope: 1 })).status).toBe(400);
    await ctl('PUT', `/__emulator/apps/${APPID}/quotas`, { cgi_path: '/cgi-bin/token', dailyLimit: 1 });
    await emu.token();
    expect(
      (await emu.call(`/cgi-bin/token?grant_type=client_credential&appid=${APPID}&secret=x`)).errcode,
    ).not.toBe(0);
  });
});

describe('faults', () => {
  const run = async (seed: number) => {
    const e = await createEmulator({ randomSeed: seed, seed: { apps: [{ appid: 'wxa', secret: 's' }] } });
    e.state.setFaults({ path: '/cgi-bin/token', errcodes: { '-1': 0.3, '45011': 0.2 }, http5xx: 0.1 });
    const out: string[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await e.fetch('/cgi-bin/token?grant_type=client_credential&appid=wxa&secret=s');
      out.push(
        res.status === 503 ? '503' : String(((await res.json()) as { errcode?: number }).errcode ?? 'ok'),
      );
    }
    await e.close();
    return out;
  };

  it('is deterministic for a given randomSeed and injects each configured outcome', async () => {
    emu = await testEmulator();
    const a = await run(42);
    expect(await run(42)).toEqual(a);
    expect(new Set(a)).toEqual(new Set(['ok', '-1', '45011', '503']));
    expect(await run(43)).not.toEqual(a);
  });

  it('drops before processing (no state change) and after processing (state changed), then clears', async () => {
    emu = await testEmulator();
    expect((await ctl('PUT', '/__emulator/faults', { path: '/cgi-bin/token', drop: 1 })).status).toBe(200);
    await expect(emu.token()).rejects.toThrow(TypeError);
    expect(emu.state.counters(APPID).tokenFetches.classic).toBe(0);
    await ctl('PUT', '/__emulator/faults', { path: '/cgi-bin/token', drop: 1, dropAfterProcessing: true });
    await expect(emu.token()).rejects.toMatchObject({ cause: { code: 'UND_ERR_SOCKET' } });
    expect(emu.state.counters(APPID).tokenFetches.classic).toBe(1);
    // Control API is never faulted.
    await ctl('PUT', '/__emulator/faults', { path: '*', drop: 1 });
    expect((await ctl('GET', '/__emulator/faults')).body.faults).toHaveLength(2);
    await ctl('DELETE', '/__emulator/faults');
    expect(await emu.token()).toMatch(/^\d+_/);
    expect((await ctl('PUT', '/__emulator/faults', { path: '*', drop: 2 })).status).toBe(400);
  });
});

describe('robustness', () => {
  it('never crashes on bad JSON, wrong types, huge bodies, missing tokens or odd paths', async () => {
    emu = await testEmulator();
    const t = await emu.token();
    const paths = [
      '/cgi-bin/message/template/subscribe',
      '/cgi-bin/message/subscribe/bizsend',
      '/wxaapi/newtmpl/addtemplate',
      '/cgi-bin/openapi/quota/get',
      '/cgi-bin/stable_token',
    ];
    const bodies = [
      '',
      '{',
      'null',
      '"x"',
      '[]',
      '{"touser":{"$gt":1},"template_id":[1],"data":"x"}',
      '{"data":{"thing1":null}}',
      `{"x":"${'a'.repeat(1_048_576)}"}`,
    ];
    for (const p of paths) {
      for (const b of bodies) {
        for (const tok of [t, '', 'bad']) {
          const res = await emu.app.inject({
            method: 'POST',
            url: `${p}?access_token=${tok}`,
            payload: b,
            headers: { 'content-type': 'application/json' },
          });
          expect(res.statusCode, `${p} ${b.slice(0, 30)}`).toBe(200);
          expect(typeof (res.json() as { errcode: unknown }).errcode).toBe('number');
        }
      }
    }
    const huge = await emu.app.inject({
      method: 'POST',
      url: `/cgi-bin/stable_token`,
      payload: 'x'.repeat(5 * 1024 * 1024),
    });
    expect(huge.statusCode).toBe(413);
    for (const url of [
      '/cgi-bin/nope',
      '/cgi-bin/token?appid=a&appid=b',
      '/%E0%A4%A',
      '/__emulator/inbox/' + 'x'.repeat(300),
    ]) {
      const res = await emu.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBeLessThan(500);
    }
  });
});

describe('seed files', () => {
  it('loads the example seed and explains bad files', async () => {
    const seed = await loadSeedFile(new URL('./seed.example.json', import.meta.url).pathname);
    expect(seed.apps[0]?.users).toHaveLength(3);
    const dir = await mkdtemp(join(tmpdir(), 'wxemu-'));
    try {
      await writeFile(join(dir, 'bad.json'), '{"apps":[{"appid":"wx1"}]}');
      await expect(loadSeedFile(join(dir, 'bad.json'))).rejects.toThrow(/apps\.0\.secret/);
      await writeFile(join(dir, 'broken.json'), '{');
      await expect(loadSeedFile(join(dir, 'broken.json'))).rejects.toThrow(/not valid JSON/);
      await expect(loadSeedFile(join(dir, 'missing.json'))).rejects.toThrow(/Cannot read/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
