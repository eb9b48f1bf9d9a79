// JS-SDK signing against the spec's vector (§2.2), with the fragment rule.
import { expect, it } from 'vitest';
import { checkPageUrl, signJsSdk } from './jssdk.js';

const ticket = 'sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg';

it('matches the official vector', () => {
  expect(
    signJsSdk({
      ticket,
      nonceStr: 'Wm3WZYTPz0wzccnW',
      timestamp: 1414587457,
      url: 'http://mp.weixin.qq.com',
    }),
  ).toBe('f4d90daf4b3bca3078ab155816175ba34c443a7b');
});

it('signs the URL without its fragment', () => {
  expect(
    signJsSdk({
      ticket,
      nonceStr: 'Wm3WZYTPz0wzccnW',
      timestamp: '1414587457',
      url: 'http://mp.weixin.qq.com#/route?a=1',
    }),
  ).toBe('f4d90daf4b3bca3078ab155816175ba34c443a7b');
});

it('rejects non-http URLs with a typed error', () => {
  expect(() => checkPageUrl('ftp://x')).toThrow(expect.objectContaining({ code: 'WX_INVALID_ARGUMENT' }));
  expect(() => checkPageUrl(42)).toThrow(expect.objectContaining({ code: 'WX_INVALID_ARGUMENT' }));
  expect(checkPageUrl('https://a.example/p?x=1#frag')).toBe('https://a.example/p?x=1');
});
