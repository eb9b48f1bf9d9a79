// Tests of the next-URL allowlist and of the fragment-preserving outcome URL.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createAllowlist, MAX_NEXT_LENGTH, withQueryBeforeFragment } from './allowlist.js';

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

  it('normalizes to the WHATWG serialization: punycode host, percent-encoded path, query and fragment', () => {
    const cases: [string, string][] = [
      [
        'http://localhost:5173/app/商品/7?q=é#/详情',
        'http://localhost:5173/app/%E5%95%86%E5%93%81/7?q=%C3%A9#/%E8%AF%A6%E6%83%85',
      ],
      ['https://app.example.com/é', 'https://app.example.com/%C3%A9'],
      ['https://ａpp.example.com/done', 'https://app.example.com/done'],
      ['https://APP.example.com:443/a/./b', 'https://app.example.com/a/b'],
      ['https://app.example.com', 'https://app.example.com/'],
      ['https://app.example.com/a/b?x=1#/route?y=2', 'https://app.example.com/a/b?x=1#/route?y=2'],
    ];
    for (const [next, want] of cases) {
      expect(list.normalize(next), next).toBe(want);
      expect(list.normalize(want), want).toBe(want);
    }
    // A host that only looks allowed once mapped is judged on the mapped form: still another origin.
    expect(list.normalize('https://ａpp.example.com.evil.example/')).toBeNull();
  });

  it(`limits next to ${MAX_NEXT_LENGTH} characters of its normalized form`, () => {
    const base = 'https://app.example.com/';
    expect(MAX_NEXT_LENGTH).toBe(1024);
    expect(list.normalize(`${base}${'x'.repeat(MAX_NEXT_LENGTH - base.length)}`)).not.toBeNull();
    expect(list.allows(`${base}${'x'.repeat(MAX_NEXT_LENGTH - base.length + 1)}`)).toBe(false);
    // 144 characters as given, 1104 once percent-encoded.
    expect(list.normalize(`${base}${'商'.repeat(120)}`)).toBeNull();
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

describe('normalized next + outcome URL (fuzz)', () => {
  it('every next the allowlist accepts becomes a visible-ASCII Location that keeps its fragment', () => {
    const allow = createAllowlist(['https://app.example.com']);
    const piece = fc.constantFrom('a', '/', '#', '?', '=', '&', '%41', 'é', '商', 'ａ', '\u200b', '"');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 6 }), (parts) => {
        const next = `https://app.example.com/${parts.join('')}`;
        const normalized = allow.normalize(next);
        if (normalized === null) return;
        expect(allow.normalize(normalized)).toBe(normalized);
        const loc = withQueryBeforeFragment(normalized, { wxsub_outcome: 'confirmed', scene: '5' });
        // RFC 3986/9110: a Location is visible ASCII. Node throws on chars > U+00FF; Latin-1 ones go out as raw bytes.
        expect(loc, JSON.stringify(next)).toMatch(/^[\x21-\x7e]*$/);
        expect(new URL(loc).hash, JSON.stringify(next)).toBe(new URL(next).hash);
      }),
      { numRuns: 2000, seed: 7 },
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
