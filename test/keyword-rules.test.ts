// The SDK's local keyword checks (src/wechat/validate.ts) and the emulator's (src/emulator/keywords.ts) are two
// separate readings of spec §2.5 (the emulator imports no SDK logic). They must agree: a value the SDK lets through
// and the emulator then refuses is a message the service accepts (202) and WeChat fails at delivery (47003).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkKeyword } from '../src/emulator/keywords.js';
import { checkKeywordValue, KEYWORD_TYPES, type KeywordType } from '../src/wechat/validate.js';

const TYPES = KEYWORD_TYPES.filter((t) => t !== 'enum');
const sdkAccepts = (type: KeywordType, v: string) => checkKeywordValue(type, v) === undefined;
const emulatorAccepts = (type: KeywordType, v: string) => checkKeyword(type, v) === 'ok';

// Characters every rule cares about: digits, ASCII and accented letters, CJK, spaces and line breaks, date and
// time separators, currency signs, phone symbols, an emoji.
const ALPHABET = [...'0123456789aZé字粤年月日元 \n\t.-/:~¥$+()#*_,!'].concat(['😀', '\u3000']);
const value = fc
  .array(fc.constantFrom(...ALPHABET), { minLength: 0, maxLength: 36 })
  .map((cs) => cs.join(''));

/** Values on the edges of each rule, each with the verdict both sides must give. */
const edges: Array<[KeywordType, string, boolean]> = [
  ['thing', 'a'.repeat(20), true],
  ['thing', 'a\nb', false],
  ['thing', '   ', false],
  ['number', '1'.repeat(32), true],
  ['number', `${'1'.repeat(31)}.5`, true],
  ['number', `${'1'.repeat(32)}.5`, false],
  ['symbol', '!@#$%', true],
  ['symbol', '! !', false],
  ['character_string', 'SF-1234_x.y', true],
  ['character_string', 'a b', false],
  ['character_string', 'é', false],
  ['date', '2019年10月1日 15:01~16:00', true],
  ['date', '2018-01-01 ~ 2018-02-01', true],
  ['date', '2019-13-01', false],
  ['date', '01-32', false],
  ['date', '2018-01/01', false],
  ['time', '2019年10月1日 15:01', true],
  ['time', '2019-13-01 15:01', false],
  ['amount', '¥99.00', true],
  ['amount', '99元', true],
  ['amount', '99', false],
  ['amount', '¥99.123', true],
  ['amount', '¥0.005', true],
  ['amount', '¥1234567.125', true],
  ['amount', '¥12345678.125', false],
  ['amount', '1234567890.5元', false],
  ['phone_number', '400.800.1234', true],
  ['phone_number', '123#4', true],
  ['phone_number', '+-', false],
  ['car_number', '粤A8Z888挂', true],
  ['car_number', '粤', false],
  ['name', 'John Smith', true],
  ['name', 'R2D2', false],
  ['name', '张'.repeat(10), true],
  ['name', '张'.repeat(11), false],
  ['phrase', '配送中', true],
  ['phrase', '配送1', false],
];

describe('keyword rules: the SDK and the emulator agree (spec §2.5)', () => {
  it.each(edges)('%s %j → %s on both sides', (type, v, ok) => {
    expect(sdkAccepts(type, v)).toBe(ok);
    expect(emulatorAccepts(type, v)).toBe(ok);
  });

  it.each(TYPES)('%s: every generated value gets the same verdict', (type) => {
    fc.assert(
      fc.property(value, (v) => {
        expect(sdkAccepts(type, v), JSON.stringify(v)).toBe(emulatorAccepts(type, v));
      }),
      { numRuns: 3000 },
    );
  });

  it('enum: both check the template list', () => {
    for (const [v, ok] of [
      ['已受理', true],
      ['办理中', false],
    ] as const) {
      expect(checkKeywordValue('enum', v, ['已受理', '已办结']) === undefined).toBe(ok);
      expect(checkKeyword('enum', v, ['已受理', '已办结']) === 'ok').toBe(ok);
    }
  });
});
