// Tests of the consent cookies: sealing/opening, the MAC a link cookie carries, and the hand-written Cookie reader.
import cookie from '@fastify/cookie';
import Fastify, { type FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  linkCookieMac,
  openLinkCookie,
  openOpenidCookie,
  readCookie,
  sealLinkCookie,
  sealOpenidCookie,
} from './consent-cookie.js';
import { deriveConsentKeys } from './reserved-token.js';

const keys = deriveConsentKeys('c'.repeat(32));

describe('link cookie', () => {
  it('opens what it sealed and hands back the MAC it verified', () => {
    const c = { cookieSecret: 'secret', next: 'https://a.example/#/x' };
    const value = sealLinkCookie(keys, c);
    expect(value).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const opened = openLinkCookie(keys, value);
    expect(opened).toEqual({ ...c, mac: linkCookieMac(keys, c) });
    expect(value.endsWith(`.${linkCookieMac(keys, c).toString('base64url')}`)).toBe(true);
  });

  it('tells absent (undefined) from tampered (null)', () => {
    const value = sealLinkCookie(keys, { cookieSecret: 's', next: '' });
    const [payload, mac] = value.split('.') as [string, string];
    expect(openLinkCookie(keys, undefined)).toBeUndefined();
    expect(openLinkCookie(keys, `x${value}`)).toBeNull();
    expect(openLinkCookie(keys, `${payload}.${mac.slice(1)}`)).toBeNull();
    expect(openLinkCookie(keys, payload)).toBeNull();
    expect(openLinkCookie(deriveConsentKeys('d'.repeat(32)), value)).toBeNull();
    // A correctly signed openid cookie is not a link cookie (purposes are separated).
    expect(openLinkCookie(keys, sealOpenidCookie(keys, 'wxapp', 'o1'))).toBeNull();
  });

  it('keeps the openid hint per app', () => {
    const v = sealOpenidCookie(keys, 'wxapp', 'oUser');
    expect(openOpenidCookie(keys, 'wxapp', v)).toBe('oUser');
    expect(openOpenidCookie(keys, 'wxother', v)).toBeNull();
    expect(openOpenidCookie(keys, 'wxapp', `${v}x`)).toBeNull();
  });
});

describe('readCookie', () => {
  let ref: FastifyInstance;
  beforeAll(async () => {
    ref = Fastify({ logger: false });
    await ref.register(cookie);
    await ref.ready();
  });
  afterAll(async () => {
    await ref.close();
  });

  it('reads single cookies like @fastify/cookie', () => {
    const h = 'a=1; wxsub_c_abc=v.1; b="q"; wxsub_c_abc=second';
    expect(readCookie(h, 'wxsub_c_abc')).toBe('v.1');
    expect(readCookie(h, 'b')).toBe('"q"');
    expect(readCookie(h, 'missing')).toBeUndefined();
    expect(readCookie(undefined, 'a')).toBeUndefined();
    expect(readCookie(' \tx = %41%zz ;', 'x')).toBe(ref.parseCookie(' \tx = %41%zz ;').x);
  });

  it('agrees with @fastify/cookie on any header, for names present or not', () => {
    const piece = fc.constantFrom(
      'wxsub_c_n1',
      'wxsub_oid',
      'a',
      ' ',
      '\t',
      '=',
      ';',
      '%',
      '%41',
      '%E4%B8%AD',
      '"',
      'v.1',
      'x',
    );
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 24 }),
        fc.constantFrom('wxsub_c_n1', 'wxsub_oid', 'a', 'x'),
        (parts, name) => {
          const header = parts.join('');
          expect(readCookie(header, name)).toBe(ref.parseCookie(header)[name]);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
