// Property and example tests of the reserved token: shape, signature, expiry and bindings.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { openLinkCookie, sealLinkCookie } from './consent-cookie.js';
import {
  base62Decode,
  base62Encode,
  checkReserved,
  deriveConsentKeys,
  RESERVED_TOKEN_LENGTH,
  signReserved,
  verifyReserved,
} from './reserved-token.js';

const keys = deriveConsentKeys('k'.repeat(32));
const NOW = Date.UTC(2026, 0, 1);
const binding = {
  appId: 'wxapp',
  templateId: 'TPL_1',
  scene: 42,
  next: 'https://a.example/#/x',
  cookieSecret: 'cs',
};
const expected = (over: Partial<Parameters<typeof checkReserved>[2]> = {}) => ({
  appId: 'wxapp',
  templateId: 'TPL_1',
  scene: 42,
  cookie: { cookieSecret: 'cs', next: 'https://a.example/#/x' },
  now: NOW,
  ...over,
});
const ALPHA = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

describe('reserved token', () => {
  it('is [A-Za-z0-9], at most 128 characters and verifies for any binding', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 64 }),
        fc.string({ maxLength: 64 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.string({ maxLength: 300 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.integer({ min: 1000, max: 86_400_000 }),
        (appId, templateId, scene, next, nonce, ttlMs) => {
          const s = signReserved(
            keys,
            { appId, templateId, scene, next, cookieSecret: 'x' },
            { now: NOW, ttlMs, nonce },
          );
          expect(s.token).toMatch(/^[A-Za-z0-9]+$/);
          expect(s.token.length).toBeLessThanOrEqual(128);
          expect(s.token.length).toBe(RESERVED_TOKEN_LENGTH);
          const r = checkReserved(keys, s.token, {
            appId,
            templateId,
            scene,
            cookie: { cookieSecret: 'x', next },
            now: NOW,
          });
          expect(r.ok).toBe(true);
        },
      ),
    );
  });

  it('rejects a token with any one character changed', () => {
    const { token } = signReserved(keys, binding, { now: NOW, ttlMs: 600_000 });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: token.length - 1 }),
        fc.integer({ min: 1, max: 61 }),
        (i, shift) => {
          const c = ALPHA[(ALPHA.indexOf(token[i] as string) + shift) % 62] as string;
          const tampered = token.slice(0, i) + c + token.slice(i + 1);
          const r = checkReserved(keys, tampered, expected());
          expect(r.ok).toBe(false);
        },
      ),
    );
  });

  it('rejects tokens signed with another key as forged', () => {
    const { token } = signReserved(deriveConsentKeys('z'.repeat(32)), binding, { now: NOW, ttlMs: 600_000 });
    expect(verifyReserved(keys, token)).toEqual({ ok: false, code: 'CONSENT_RESERVED_FORGED' });
  });

  it('classifies malformed, expired and mismatched tokens with stable codes', () => {
    const { token } = signReserved(keys, binding, { now: NOW, ttlMs: 600_000 });
    const code = (t: unknown, e = expected()) => {
      const r = checkReserved(keys, t, e);
      return r.ok ? 'ok' : r.code;
    };
    expect(code(token)).toBe('ok');
    expect(code('a'.repeat(129))).toBe('CONSENT_RESERVED_MALFORMED');
    expect(code('abc-def')).toBe('CONSENT_RESERVED_MALFORMED');
    expect(code('')).toBe('CONSENT_RESERVED_MALFORMED');
    expect(code(42)).toBe('CONSENT_RESERVED_MALFORMED');
    expect(code('abc')).toBe('CONSENT_RESERVED_FORGED');
    expect(code(token, expected({ now: NOW + 600_000 }))).toBe('CONSENT_RESERVED_EXPIRED');
    expect(code(token, expected({ now: NOW + 599_000 }))).toBe('ok');
    expect(code(token, expected({ templateId: 'TPL_2' }))).toBe('CONSENT_BINDING_MISMATCH');
    expect(code(token, expected({ appId: 'wxother' }))).toBe('CONSENT_BINDING_MISMATCH');
    expect(code(token, expected({ scene: 43 }))).toBe('CONSENT_SCENE_MISMATCH');
    expect(code(token, expected({ cookie: null }))).toBe('CONSENT_COOKIE_MISSING');
    expect(code(token, expected({ cookie: { cookieSecret: 'other', next: binding.next } }))).toBe(
      'CONSENT_COOKIE_MISMATCH',
    );
    expect(code(token, expected({ cookie: { cookieSecret: 'cs', next: 'https://evil.example/' } }))).toBe(
      'CONSENT_COOKIE_MISMATCH',
    );
  });

  it('binds to the link cookie: a verified cookie MAC stands in for recomputing the binding', () => {
    const { token } = signReserved(keys, binding, { now: NOW, ttlMs: 600_000 });
    const code = (cookie: Parameters<typeof checkReserved>[2]['cookie']) => {
      const r = checkReserved(keys, token, expected({ cookie }));
      return r.ok ? 'ok' : r.code;
    };
    const own = openLinkCookie(keys, sealLinkCookie(keys, { cookieSecret: 'cs', next: binding.next }));
    const other = openLinkCookie(keys, sealLinkCookie(keys, { cookieSecret: 'cs2', next: binding.next }));
    expect(own?.mac).toHaveLength(16);
    expect(code(own ?? null)).toBe('ok');
    expect(code(other ?? null)).toBe('CONSENT_COOKIE_MISMATCH');
    // The MAC decides when given: the right content with a wrong or empty MAC does not pass.
    expect(code({ cookieSecret: 'cs', next: binding.next, mac: other?.mac as Buffer })).toBe(
      'CONSENT_COOKIE_MISMATCH',
    );
    expect(code({ cookieSecret: 'cs', next: binding.next, mac: Buffer.alloc(0) })).toBe(
      'CONSENT_COOKIE_MISMATCH',
    );
  });

  it('gives each token its own nonce', () => {
    const a = signReserved(keys, binding, { now: NOW, ttlMs: 1000 });
    const b = signReserved(keys, binding, { now: NOW, ttlMs: 1000 });
    expect(a.nonce).not.toBe(b.nonce);
    const va = verifyReserved(keys, a.token);
    expect(va.ok && va.claims.nonce).toBe(a.nonce);
  });

  it('round-trips base62 and refuses other spellings', () => {
    expect(base62Decode('zzzzzzz', 5)).toBeNull(); // 62^7 - 1 ≥ 2^40: not a value we encode
    expect(base62Decode('0000001', 4)).toBeNull(); // non-zero padding byte
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 49 }), (bytes) => {
        const text = base62Encode(bytes);
        expect(text).toMatch(/^[A-Za-z0-9]*$/);
        expect(Buffer.from(base62Decode(text, bytes.length) as Uint8Array)).toEqual(Buffer.from(bytes));
      }),
    );
  });
});
