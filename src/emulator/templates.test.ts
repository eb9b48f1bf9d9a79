// Tests of the emulated /wxaapi/newtmpl/* template management (wechat-spec.md §2.6).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { APPID, U1, testEmulator, type TestEmulator } from './test-support.js';

let emu: TestEmulator;
let t: string;
beforeEach(async () => {
  emu = await testEmulator();
  t = await emu.token();
});
afterEach(async () => {
  await emu.close();
});

describe('template management', () => {
  it('lists categories, titles and keywords of the public library', async () => {
    const cats = await emu.call(`/wxaapi/newtmpl/getcategory?access_token=${t}`);
    expect(cats.data).toContainEqual({ id: 307, name: '快递、物流' });
    const titles = await emu.call(
      `/wxaapi/newtmpl/getpubtemplatetitles?access_token=${t}&ids=307,411&start=0&limit=2`,
    );
    expect(titles.count).toBe(3);
    expect(titles.data).toHaveLength(2);
    expect((titles.data as Array<Record<string, unknown>>)[0]).toMatchObject({
      tid: 2001,
      type: 2,
      categoryId: '307',
    });
    const kws = await emu.call(`/wxaapi/newtmpl/getpubtemplatekeywords?access_token=${t}&tid=2001`);
    expect((kws.data as Array<Record<string, unknown>>)[0]).toEqual({
      kid: 1,
      name: '物品名称',
      example: '书籍',
      rule: 'thing',
    });
  });

  it.each([
    ['', 200018],
    ['&ids=a,b', 200019],
    ['&ids=307&start=-1', 200016],
    ['&ids=307&limit=31', 200017],
    ['&ids=307&limit=0', 200017],
  ])('getpubtemplatetitles %s → %i', async (q, code) => {
    expect((await emu.call(`/wxaapi/newtmpl/getpubtemplatetitles?access_token=${t}${q}`)).errcode).toBe(code);
  });

  it('adds (JSON and form), lists, sends with and deletes a private template', async () => {
    const added = await emu.call(`/wxaapi/newtmpl/addtemplate?access_token=${t}`, {
      tid: '2001',
      kidList: [3, 1],
      sceneDesc: '发货提醒',
    });
    expect(added.errcode).toBe(0);
    const id = String(added.priTmplId);
    const form = await emu.fetch(`/wxaapi/newtmpl/addtemplate?access_token=${t}`, {
      method: 'POST',
      body: new URLSearchParams([
        ['tid', '3001'],
        ['kidList', '1'],
        ['kidList', '2'],
        ['sceneDesc', '进度'],
      ]),
    });
    const formBody = (await form.json()) as Record<string, unknown>;
    expect(formBody.errcode).toBe(0);
    const list = await emu.call(`/wxaapi/newtmpl/gettemplate?access_token=${t}`);
    const mine = (list.data as Array<Record<string, unknown>>).find((x) => x.priTmplId === id);
    expect(mine).toMatchObject({
      title: '物流状态通知',
      type: 2,
      content: '物流状态:{{phrase3.DATA}}\n物品名称:{{thing1.DATA}}\n',
    });
    const enumTpl = (list.data as Array<Record<string, unknown>>).find(
      (x) => x.priTmplId === formBody.priTmplId,
    );
    expect(enumTpl?.keywordEnumValueList).toEqual([
      { keywordCode: 'enum2.DATA', enumValueList: ['已受理', '办理中', '已办结'] },
    ]);

    emu.state.grantNotification(APPID, U1, id);
    const sent = await emu.call(`/cgi-bin/message/subscribe/bizsend?access_token=${t}`, {
      touser: U1,
      template_id: id,
      data: { phrase3: { value: '配送中' }, thing1: { value: '书' } },
    });
    expect(sent.errcode).toBe(0);

    expect((await emu.call(`/wxaapi/newtmpl/deltemplate?access_token=${t}`, { priTmplId: id })).errcode).toBe(
      0,
    );
    expect((await emu.call(`/wxaapi/newtmpl/deltemplate?access_token=${t}`, { priTmplId: id })).errcode).toBe(
      20001,
    );
    expect((await emu.call(`/wxaapi/newtmpl/deltemplate?access_token=${t}`, {})).errcode).toBe(20002);
  });

  it.each([
    [{ kidList: [1, 2], sceneDesc: 'x' }, 200014],
    [{ tid: '99999', kidList: [1, 2], sceneDesc: 'x' }, 200014],
    [{ tid: '2001', kidList: [1], sceneDesc: 'x' }, 200020],
    [{ tid: '2001', kidList: [1, 1], sceneDesc: 'x' }, 200020],
    [{ tid: '2001', kidList: [1, 99], sceneDesc: 'x' }, 200020],
    [{ tid: '2001', kidList: [1, 2, 3, 4, 5, 6], sceneDesc: 'x' }, 200020],
    [{ tid: '2001', kidList: [1, 2] }, 200021],
    [{ tid: '2001', kidList: [1, 2], sceneDesc: 'x'.repeat(16) }, 200021],
  ])('addtemplate %o → %i', async (body, code) => {
    expect((await emu.call(`/wxaapi/newtmpl/addtemplate?access_token=${t}`, body)).errcode).toBe(code);
  });

  it('caps private templates (200012)', async () => {
    emu.state.behavior.maxPrivateTemplates = 2;
    expect(
      (
        await emu.call(`/wxaapi/newtmpl/addtemplate?access_token=${t}`, {
          tid: 2001,
          kidList: [1, 2],
          sceneDesc: 'x',
        })
      ).errcode,
    ).toBe(200012);
  });
});
