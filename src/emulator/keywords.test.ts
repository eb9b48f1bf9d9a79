// Tests of the §2.5 keyword value rules and template content parsing.
import { describe, expect, it } from 'vitest';
import { checkKeyword, parsePlaceholders, renderContent } from './keywords.js';

const cases: Array<[string, string[], string[]]> = [
  ['thing', ['书籍', 'a'.repeat(20), 'A-1 字'], ['a'.repeat(21), 'a\nb']],
  ['number', ['339208499', '3.14', '1'.repeat(32)], ['1'.repeat(33), '12a', '-1', '1.']],
  ['letter', ['abc', 'A'.repeat(32)], ['ab1', 'A'.repeat(33), '字']],
  ['symbol', ['★', '!@#$%'], ['!@#$%^', 'a', '1']],
  ['character_string', ['SF1234567890', 'A-1_b.2'], ['订单1', 'x'.repeat(33)]],
  [
    'time',
    ['15:01', '15:01:59', '2019年10月1日 15:01', '2019-10-01 15:01', '15:01~16:00'],
    ['25:00', '15:61', 'noon', '2019年10月1日'],
  ],
  [
    'date',
    [
      '2019年10月1日',
      '2019年10月',
      '10月1日',
      '2018-01-01',
      '2018/01/01',
      '2018.01.01',
      '2018-01',
      '01-01',
      '2019年10月1日 15:01',
      '2018-01-01 ~ 2018-02-01',
    ],
    ['2018-13-01', 'tomorrow', '15:01'],
  ],
  ['amount', ['¥99.00', '99元', '$5', '¥1234567890'], ['¥12345678901', '¥¥1', 'abc']],
  ['phone_number', ['+86-0766-66888866', '13800138000'], ['1'.repeat(18), 'call me', '+-']],
  ['car_number', ['粤A8Z888挂', '粤A12345'], ['粤A8Z888挂X', 'A 1234']],
  [
    'name',
    ['张三', 'John Smith', '张'.repeat(10), 'a'.repeat(20)],
    ['张'.repeat(11), 'a'.repeat(21), '张a'.repeat(6)],
  ],
  ['phrase', ['配送中', '已完成'], ['配送中了吗啊', 'ok', '配送1']],
];

describe('checkKeyword', () => {
  for (const [type, ok, bad] of cases) {
    it(`${type}: accepts ${ok.join(' | ')}`, () => {
      for (const v of ok) expect(checkKeyword(type, v), `${type} ${v}`).toBe('ok');
    });
    it(`${type}: rejects ${bad.join(' | ')}`, () => {
      for (const v of bad) expect(checkKeyword(type, v), `${type} ${v}`).toBe('invalid');
    });
  }

  it('treats missing and blank as empty and non-strings as invalid', () => {
    expect(checkKeyword('thing', undefined)).toBe('empty');
    expect(checkKeyword('thing', '')).toBe('empty');
    expect(checkKeyword('thing', '  ')).toBe('empty');
    expect(checkKeyword('number', 5)).toBe('invalid');
    expect(checkKeyword('thing', { value: 'x' })).toBe('invalid');
  });

  it('checks enum values against the template list', () => {
    expect(checkKeyword('enum', '已受理', ['已受理', '已办结'])).toBe('ok');
    expect(checkKeyword('enum', '办理中', ['已受理'])).toBe('invalid');
    expect(checkKeyword('enum', '已受理')).toBe('invalid');
  });
});

describe('placeholders', () => {
  it('parses typed keys in order and renders values', () => {
    const content = '物品:{{thing1.DATA}}\n单号:{{character_string2.DATA}}\n时间:{{time3.DATA}}';
    expect(parsePlaceholders(content)).toEqual([
      { key: 'thing1', type: 'thing' },
      { key: 'character_string2', type: 'character_string' },
      { key: 'time3', type: 'time' },
    ]);
    expect(renderContent(content, { thing1: '书', character_string2: 'A1', time3: '15:01' })).toBe(
      '物品:书\n单号:A1\n时间:15:01',
    );
  });
});
