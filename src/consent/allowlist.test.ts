// Tests of the next-URL allowlist and of the fragment-preserving outcome URL.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createAllowlist, withQueryBeforeFragment } from './allowlist.js';

describe('createAllowlist', () => {
  const list = createAllowlist([
    'https://app.example.com',
    'https://shop.example.com/store/',
    'http://localhost:5173/app',
  ]);

  it('allows URLs under an origin or a prefix', () => {
    expect(list.allows('https://app.example.com/')).toBe(true);
    expect(list.allows('https://app.example.com/a/b?x=1#/route?y=2')).toBe(true);
    expect(list.allows('https://shop.example.com/store/item/7')).toBe(true);
    expect(list.allows('http://localhost:5173/app')).toBe(true);
    expect(list.allows('http://localhost:5173/app/#/done')).toBe(true);
  });

  it('refuses everything else, including open-redirect tricks', () => {
    for (const bad of [
      'https://evil.example/',
      'https://app.example.com.evil.example/',
      'https://app.example.com@evil.example/',
      'https://user:pw@app.example.com/',
      'http://app.example.com/',
      'https://shop.example.com/storefront',
      'https://shop.example.com/store/../admin',
      'https://shop.example.com/store/%2e%2e/admin',
      'http://localhost:5173/application',
      '//evil.example/',
      '/relative',
      'javascript:alert(1)',
      'https://app.example.com\\@evil.example',
      ' https://app.example.com/',
      'https://app.example.com/\n',
      '',
    ]) {
      expect(list.allows(bad), bad).toBe(false);
    }
  });

  it('allows nothing when empty and rejects bad entries', () => {
    expect(createAllowlist([]).allows('https://app.example.com/')).toBe(false);
    expect(() => createAllowlist(['app.example.com'])).toThrow(TypeError);
  });
});

describe('withQueryBeforeFragment', () => {
  it('inserts the outcome before the fragment and keeps the fragment as it was', () => {
    expect(
      withQueryBeforeFragment('https://a.example/#/live/detail/28', {
        wxsub_outcome: 'confirmed',
        scene: '3',
      }),
    ).toBe('https://a.example/?wxsub_outcome=confirmed&scene=3#/live/detail/28');
    expect(withQueryBeforeFragment('https://a.example/p?x=1#/r?y=2', { wxsub_outcome: 'cancelled' })).toBe(
      'https://a.example/p?x=1&wxsub_outcome=cancelled#/r?y=2',
    );
    expect(withQueryBeforeFragment('https://a.example/p', { a: 'b' })).toBe('https://a.example/p?a=b');
    expect(withQueryBeforeFragment('https://a.example/p?', { a: 'b' })).toBe('https://a.example/p?a=b');
  });

  it('encodes parameters exactly like URLSearchParams, escaping what needs it', () => {
    expect(withQueryBeforeFragment('https://a.example/p', { 'a b': 'x&y=z', k: 'é/?' })).toBe(
      `https://a.example/p?${new URLSearchParams({ 'a b': 'x&y=z', k: 'é/?' })}`,
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.string()), (params) => {
        const added = new URLSearchParams(params).toString();
        const want = added === '' ? 'https://a.example/p#/x' : `https://a.example/p?${added}#/x`;
        expect(withQueryBeforeFragment('https://a.example/p#/x', params)).toBe(want);
      }),
    );
  });
});

describe('createAllowlist answers repeated checks the same way', () => {
  it('gives the same answer for the same next, also past its memo size', () => {
    const list = createAllowlist(['https://app.example.com/shop/']);
    for (let i = 0; i < 3000; i++) {
      expect(list.allows(`https://app.example.com/shop/${i}`)).toBe(true);
      expect(list.allows(`https://evil.example.com/shop/${i}`)).toBe(false);
    }
    expect(list.allows(`https://app.example.com/shop/${'x'.repeat(3000)}`)).toBe(false);
  });
});
