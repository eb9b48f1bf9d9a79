// Local payload validation: one-time send limits and notification keyword rules (spec §1.4, §2.5).
import { describe, expect, it } from 'vitest';
import {
  checkKeywordValue,
  keywordsFromTemplate,
  notificationSendBody,
  oneTimeSendBody,
  type KeywordType,
} from './validate.js';

const oneTime = {
  touser: 'o1',
  template_id: 'T',
  scene: 1000,
  title: '到货提醒',
  data: { content: { value: '您关注的商品已到货' } },
};

describe('oneTimeSendBody', () => {
  it('builds the body with scene as a string', () => {
    expect(oneTimeSendBody({ ...oneTime, url: 'https://a.example/x' })).toEqual({
      touser: 'o1',
      template_id: 'T',
      scene: '1000',
      title: '到货提醒',
      data: { content: { value: '您关注的商品已到货' } },
      url: 'https://a.example/x',
    });
  });
  it('allows title of 15 and content of 200 characters (counting code points)', () => {
    expect(() =>
      oneTimeSendBody({ ...oneTime, title: '标'.repeat(15), data: { content: { value: '😀'.repeat(200) } } }),
    ).not.toThrow();
  });
  it.each([
    [{ title: '标'.repeat(16) }, 'title'],
    [{ title: '' }, 'title'],
    [{ data: { content: { value: 'x'.repeat(201) } } }, 'data.content.value'],
    [{ data: { content: { value: 'x', color: 'red' } } }, 'data.content.color'],
    [{ scene: 10001 }, 'scene'],
    [{ scene: '1' }, 'scene'],
    [{ touser: '' }, 'touser'],
    [{ url: 'nope' }, 'url'],
    [{ miniprogram: { appid: 'wx' } }, 'miniprogram.pagepath'],
  ])('rejects %o', (over, field) => {
    expect(() => oneTimeSendBody({ ...oneTime, ...over } as never)).toThrow(
      expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field }),
    );
  });
});

describe('keyword rules', () => {
  const ok: [KeywordType, string][] = [
    ['thing', '一'.repeat(20)],
    ['number', '339208499'],
    ['number', '3.14'],
    ['letter', 'abcXYZ'],
    ['symbol', '%$#'],
    ['character_string', 'ORDER-123_x'],
    ['time', '15:01'],
    ['time', '2019年10月1日 15:01'],
    ['time', '15:01 ~ 16:00'],
    ['date', '2019年10月1日 15:01'],
    ['date', '2018-01-01'],
    ['date', '2018/01/01'],
    ['date', '01-01'],
    ['amount', '¥99.00'],
    ['amount', '99元'],
    ['amount', '¥7.125'],
    ['amount', '$1.2345'],
    ['amount', '¥12345678.9元'],
    ['phone_number', '+86-0766-66888866'],
    ['car_number', '粤A8Z888挂'],
    ['name', '张三'],
    ['name', 'John Smith'],
    ['phrase', '配送中'],
  ];
  it.each(ok)('%s accepts %s', (type, value) => expect(checkKeywordValue(type, value)).toBeUndefined());
  const bad: [KeywordType, string][] = [
    ['thing', '一'.repeat(21)],
    ['number', '12a'],
    ['letter', 'abc1'],
    ['symbol', '%%%%%%'],
    ['character_string', '中文'],
    ['time', '25:00'],
    ['date', 'tomorrow'],
    ['amount', '99'],
    ['amount', '¥123456789.12'],
    ['amount', '¥7.'],
    ['phone_number', '1'.repeat(18)],
    ['car_number', '粤A8Z888挂XX'],
    ['name', '张'.repeat(11)],
    ['phrase', '配送中配送中'],
    ['phrase', 'abc'],
    ['thing', ''],
  ];
  it.each(bad)('%s rejects %s', (type, value) => expect(checkKeywordValue(type, value)).toBeTypeOf('string'));
  it('enforces enum values when known', () => {
    expect(checkKeywordValue('enum', 'A', ['A', 'B'])).toBeUndefined();
    expect(checkKeywordValue('enum', 'C', ['A', 'B'])).toBeTypeOf('string');
  });
});

describe('notificationSendBody', () => {
  const tpl = {
    content: '会议时间:{{date2.DATA}}\n会议地点:{{thing1.DATA}}\n状态:{{enum3.DATA}}',
    keywordEnumValueList: [{ keywordCode: 'enum3.DATA', enumValueList: ['进行中', '已结束'] }],
  };
  const keywords = keywordsFromTemplate(tpl);
  it('derives keywords from a template', () => {
    expect(keywords).toEqual([
      { key: 'date2', type: 'date' },
      { key: 'thing1', type: 'thing' },
      { key: 'enum3', type: 'enum', enumValues: ['进行中', '已结束'] },
    ]);
  });
  it('accepts matching data and builds the body', () => {
    const body = notificationSendBody(
      {
        touser: 'o',
        template_id: 'P',
        data: { date2: { value: '2026-01-01' }, thing1: { value: '会议室' }, enum3: { value: '进行中' } },
        page: 'https://a.example/',
      },
      keywords,
    );
    expect(body).toMatchObject({ touser: 'o', template_id: 'P', page: 'https://a.example/' });
  });
  it.each([
    [{ date2: { value: '2026-01-01' }, thing1: { value: '会议室' } }, 'data.enum3'],
    [
      {
        date2: { value: '2026-01-01' },
        thing1: { value: '会议室' },
        enum3: { value: '进行中' },
        thing9: { value: 'x' },
      },
      'data.thing9',
    ],
    [
      { date2: { value: 'soon' }, thing1: { value: '会议室' }, enum3: { value: '进行中' } },
      'data.date2.value',
    ],
    [
      { date2: { value: '2026-01-01' }, thing1: { value: 5 }, enum3: { value: '进行中' } },
      'data.thing1.value',
    ],
  ])('rejects %o with field %s', (data, field) => {
    expect(() =>
      notificationSendBody({ touser: 'o', template_id: 'P', data: data as never }, keywords),
    ).toThrow(expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field }));
  });
  it('checks by key prefix when the template is unknown', () => {
    expect(() =>
      notificationSendBody({ touser: 'o', template_id: 'P', data: { 'thing1.DATA': { value: 'x' } } }),
    ).toThrow(expect.objectContaining({ field: 'data.thing1.DATA' }));
    expect(() =>
      notificationSendBody({ touser: 'o', template_id: 'P', data: { phrase1: { value: '太长的短语啊啊' } } }),
    ).toThrow(expect.objectContaining({ field: 'data.phrase1.value' }));
  });
  it.each(['thin1', 'foo1', 'date_time2'])(
    'refuses the key %s, whose prefix is no keyword type, when the template is unknown',
    (key) => {
      expect(() =>
        notificationSendBody({ touser: 'o', template_id: 'P', data: { [key]: { value: 'x' } } }),
      ).toThrow(expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field: `data.${key}` }));
    },
  );
  it('sends miniprogram_state and lang only when given, and only known values', () => {
    const input = { touser: 'o', template_id: 'P', data: { thing1: { value: '会议室' } } };
    const plain = notificationSendBody(input);
    expect(plain).not.toHaveProperty('miniprogram_state');
    expect(plain).not.toHaveProperty('lang');
    expect(notificationSendBody({ ...input, miniprogram_state: 'trial', lang: 'en_US' })).toMatchObject({
      miniprogram_state: 'trial',
      lang: 'en_US',
    });
    expect(() => notificationSendBody({ ...input, miniprogram_state: 'release' as never })).toThrow(
      expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field: 'miniprogram_state' }),
    );
    expect(() => notificationSendBody({ ...input, lang: 'zh-CN' as never })).toThrow(
      expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field: 'lang' }),
    );
  });
});
