// Tests of the emulated send APIs: one-time template/subscribe and 订阅通知 bizsend (wechat-spec.md §1.4–§2.8).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  APPID,
  LONG_TERM,
  NOTIFY,
  ONE_TIME,
  RID,
  U1,
  U2,
  testEmulator,
  type TestEmulator,
} from './test-support.js';

let emu: TestEmulator;
let token: string;
beforeEach(async () => {
  emu = await testEmulator();
  token = await emu.token();
});
afterEach(async () => {
  await emu.close();
});

const oneTime = (body: Record<string, unknown>) =>
  emu.call(`/cgi-bin/message/template/subscribe?access_token=${token}`, {
    touser: U1,
    template_id: ONE_TIME,
    scene: '1000',
    title: '活动开始',
    data: { content: { value: '您关注的活动开始了', color: '#FF0000' } },
    ...body,
  });
const bizsend = (body: Record<string, unknown>) =>
  emu.call(`/cgi-bin/message/subscribe/bizsend?access_token=${token}`, {
    touser: U1,
    template_id: NOTIFY,
    page: 'https://example.com/order/1',
    data: { thing1: { value: '书籍' }, time2: { value: '15:01' } },
    ...body,
  });

describe('one-time template/subscribe', () => {
  it('sends once per confirm; confirms under one scene do not stack; other scenes are separate', async () => {
    emu.state.grantOneTime(APPID, U1, ONE_TIME, 1000);
    emu.state.grantOneTime(APPID, U1, ONE_TIME, 1000);
    emu.state.grantOneTime(APPID, U1, ONE_TIME, 7);
    expect(await oneTime({})).toEqual({ errcode: 0, errmsg: 'ok' });
    const again = await oneTime({});
    expect(again.errcode).toBe(43101);
    expect(String(again.errmsg)).toMatch(/^user refuse to accept the msg rid: /);
    expect((await oneTime({ scene: 7 })).errcode).toBe(0);
    expect(emu.state.counters(APPID).sends).toEqual({ '/cgi-bin/message/template/subscribe': 2 });
  });

  it('delivers into the user inbox with title, content and url', async () => {
    emu.state.grantOneTime(APPID, U1, ONE_TIME, 1000);
    await oneTime({ url: 'https://example.com/x' });
    const [m] = emu.state.inbox(APPID, U1);
    expect(m).toMatchObject({
      kind: 'one-time',
      title: '活动开始',
      content: '您关注的活动开始了',
      url: 'https://example.com/x',
      scene: 1000,
    });
    expect(m?.msgid).toMatch(/^\d+$/);
    expect(emu.state.inbox(APPID, U2)).toEqual([]);
  });

  it('rejects unknown or notification templates with 40037 and foreign openids with 40003', async () => {
    expect((await oneTime({ template_id: 'nope' })).errcode).toBe(40037);
    expect((await oneTime({ template_id: NOTIFY })).errcode).toBe(40037);
    expect((await oneTime({ touser: 'oSomeoneElse' })).errcode).toBe(40003);
    expect((await oneTime({ touser: 5 })).errcode).toBe(40003);
  });

  it('can answer 43101 for a notification template, as one report saw (spec §2.4)', async () => {
    emu.state.behavior.notificationTemplateOnOneTime = 43101;
    const r = await oneTime({ template_id: NOTIFY });
    expect([r.errcode, r.errmsg]).toEqual([43101, expect.stringMatching(/^user refuse to accept the msg/)]);
    expect((await oneTime({ template_id: 'nope' })).errcode).toBe(40037);
  });

  it.each([
    [{ title: '' }, 'argument invalid! title is emtpy'],
    [{ title: 'x'.repeat(16) }, 'argument invalid! title size out of limit'],
    [{ data: {} }, 'argument invalid! data.content.value is emtpy'],
    [{ data: { content: { value: '' } } }, 'argument invalid! data.content.value is emtpy'],
    [{ data: { content: { value: 12 } } }, 'argument invalid! data.content.value invalid'],
    [
      { data: { content: { value: '字'.repeat(201) } } },
      'argument invalid! data.content.value size out of limit',
    ],
    [{ scene: 10001 }, 'argument invalid! scene invalid'],
    [{ scene: undefined }, 'argument invalid! scene is emtpy'],
    [{ miniprogram: { pagepath: 'x' } }, 'argument invalid! miniprogram.appid is emtpy'],
    [{ miniprogram: { appid: 'wxmini', pagepath: '' } }, 'argument invalid! miniprogram.pagepath is emtpy'],
  ])('answers 47003 for %o', async (patch, message) => {
    emu.state.grantOneTime(APPID, U1, ONE_TIME, 1000);
    const r = await oneTime(patch);
    expect(r.errcode).toBe(47003);
    expect(String(r.errmsg)).toBe(`${message}${String(r.errmsg).match(RID)?.[0]}`);
    // A rejected payload does not consume the grant.
    expect(emu.state.hasOneTimeGrant(APPID, U1, ONE_TIME, 1000)).toBe(true);
  });

  it('accepts exactly 15 title / 200 content characters and scene as int', async () => {
    emu.state.grantOneTime(APPID, U1, ONE_TIME, 1000);
    expect(
      (await oneTime({ scene: 1000, title: '标'.repeat(15), data: { content: { value: '字'.repeat(200) } } }))
        .errcode,
    ).toBe(0);
  });

  it('can answer 45003/45002 for over-length fields', async () => {
    emu.state.behavior.overLengthErrcodes = 'size-limit';
    emu.state.grantOneTime(APPID, U1, ONE_TIME, 1000);
    expect((await oneTime({ title: 'x'.repeat(16) })).errcode).toBe(45003);
    expect((await oneTime({ data: { content: { value: 'x'.repeat(201) } } })).errcode).toBe(45002);
  });
});

describe('bizsend', () => {
  it('uses one credit per accept and returns a digit-string msgid; accepts stack by default', async () => {
    emu.state.grantNotification(APPID, U1, NOTIFY, 1);
    emu.state.grantNotification(APPID, U1, NOTIFY, 1);
    const a = await bizsend({ miniprogram_state: 'formal', lang: 'zh_CN' });
    expect(a).toMatchObject({ errcode: 0, errmsg: 'ok' });
    expect(a.msgid).toMatch(/^\d{10,19}$/);
    const b = await bizsend({});
    expect(b.errcode).toBe(0);
    expect(BigInt(String(b.msgid))).toBeGreaterThan(BigInt(String(a.msgid)));
    const c = await bizsend({});
    expect(c.errcode).toBe(43101);
    expect(String(c.errmsg)).toMatch(/^user refuse to accept the msg rid: /);
  });

  it('caps at one pending send when stacking is off', async () => {
    emu.state.behavior.notificationCreditsStack = false;
    emu.state.grantNotification(APPID, U1, NOTIFY, 3);
    emu.state.grantNotification(APPID, U1, NOTIFY);
    expect((await bizsend({})).errcode).toBe(0);
    expect((await bizsend({})).errcode).toBe(43101);
  });

  it('long-term templates are unlimited after one accept, and stop after a reject', async () => {
    emu.state.grantNotification(APPID, U1, LONG_TERM);
    const send = () =>
      bizsend({ template_id: LONG_TERM, data: { thing1: { value: '居住证' }, enum2: { value: '已受理' } } });
    for (let i = 0; i < 5; i++) expect((await send()).errcode).toBe(0);
    emu.state.revokeNotification(APPID, U1, LONG_TERM);
    expect((await send()).errcode).toBe(43101);
  });

  it('renders the content into the inbox and records a subscribe_msg_sent_event', async () => {
    emu.state.grantNotification(APPID, U1, NOTIFY);
    const r = await bizsend({});
    const [m] = emu.state.inbox(APPID, U1);
    expect(m).toMatchObject({
      kind: 'notification',
      title: '物流状态通知',
      content: '物品:书籍\n时间:15:01',
      page: 'https://example.com/order/1',
      msgid: r.msgid,
    });
    const [ev] = emu.state.sentEvents(APPID);
    expect(ev).toMatchObject({
      openid: U1,
      templateId: NOTIFY,
      msgId: r.msgid,
      errorCode: 0,
      errorStatus: 'success',
    });
  });

  it('answers 40037, 40003 and 43101 without a grant', async () => {
    expect((await bizsend({ template_id: ONE_TIME })).errcode).toBe(40037);
    expect((await bizsend({ template_id: undefined })).errcode).toBe(40037);
    expect((await bizsend({ touser: 'oStranger' })).errcode).toBe(40003);
    expect((await bizsend({})).errcode).toBe(43101);
  });

  it.each([
    [{ thing1: { value: '书籍' } }, 'argument invalid! data.time2.value is emtpy'],
    [{ thing1: { value: '' }, time2: { value: '15:01' } }, 'argument invalid! data.thing1.value is emtpy'],
    [
      { thing1: { value: 'x'.repeat(21) }, time2: { value: '15:01' } },
      'argument invalid! data.thing1.value invalid',
    ],
    [{ thing1: { value: 5 }, time2: { value: '15:01' } }, 'argument invalid! data.thing1.value invalid'],
    [{ thing1: { value: '书籍' }, time2: { value: '25:01' } }, 'argument invalid! data.time2.value invalid'],
    [
      { 'thing1.DATA': { value: '书籍' }, time2: { value: '15:01' } },
      'argument invalid! data.thing1.value is emtpy',
    ],
  ])('answers 47003 for data %o and keeps the credit', async (data, message) => {
    emu.state.grantNotification(APPID, U1, NOTIFY);
    const r = await bizsend({ data });
    expect(r.errcode).toBe(47003);
    expect(String(r.errmsg).replace(RID, '')).toBe(message);
    expect(emu.state.notificationCredits(APPID, U1, NOTIFY)).toBe(1);
  });

  it('rejects array data and enum values outside the template list', async () => {
    emu.state.grantNotification(APPID, U1, LONG_TERM);
    expect((await bizsend({ data: [] })).errcode).toBe(47003);
    const r = await bizsend({
      template_id: LONG_TERM,
      data: { thing1: { value: 'a' }, enum2: { value: '办理中' } },
    });
    expect(String(r.errmsg).replace(RID, '')).toBe('argument invalid! data.enum2.value invalid');
  });
});
