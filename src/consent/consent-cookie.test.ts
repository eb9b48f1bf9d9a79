// Tests of the consent cookies: sealing/opening, the MAC a link cookie carries, and the hand-written Cookie reader.
import cookie from '@fastify/cookie';
import Fastify, { type FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  consentCookiePath,
  linkCookieMac,
  openLinkCookie,
  openOpenidCookie,
  readCookie,
  sealLinkCookie,
  sealOpenidCookie,
  surplusLinkCookies,
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

  it('keeps its issue time, and opens cookies sealed without one', () => {
    const dated = { cookieSecret: 'secret', next: 'https://a.example/', issuedAt: 1_700_000_000_123 };
    expect(openLinkCookie(keys, sealLinkCookie(keys, dated))).toEqual({
      ...dated,
      mac: linkCookieMac(keys, dated),
    });
    const { issuedAt: _, ...undated } = dated;
    const opened = openLinkCookie(keys, sealLinkCookie(keys, undated));
    expect(opened).toEqual({ ...undated, mac: linkCookieMac(keys, undated) });
    expect(opened).not.toHaveProperty('issuedAt');
    // The time is signed: a cookie of the same secret and next with another time carries another MAC.
    expect(linkCookieMac(keys, { ...dated, issuedAt: 1 })).not.toEqual(linkCookieMac(keys, dated));
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

describe('consentCookiePath', () => {
  it('is the public base URL path, without trailing slashes, followed by /consent', () => {
    expect(consentCookiePath('')).toBe('/consent');
    expect(consentCookiePath('https://svc.example.com')).toBe('/consent');
    expect(consentCookiePath('https://svc.example.com/')).toBe('/consent');
    expect(consentCookiePath('https://svc.example.com/wxsub')).toBe('/wxsub/consent');
    expect(consentCookiePath('https://svc.example.com/api/wxsub//')).toBe('/api/wxsub/consent');
  });
});

describe('surplusLinkCookies', () => {
  const link = (n: number, issuedAt?: number) =>
    `wxsub_c_${n}=${sealLinkCookie(keys, { cookieSecret: `s${n}`, next: '', ...(issuedAt === undefined ? {} : { issuedAt }) })}`;

  it('names nothing while the browser holds at most `keep` link cookies', () => {
    expect(surplusLinkCookies(keys, undefined, 3)).toEqual([]);
    expect(
      surplusLinkCookies(keys, `a=1; ${link(1, 10)}; ${link(2, 20)}; ${link(3, 30)}; wxsub_oid=x`, 3),
    ).toEqual([]);
  });

  it('names the oldest by issue time, whatever the header order; undated and tampered ones count as oldest', () => {
    const header = [
      link(5, 50),
      'a=1',
      link(2, 20),
      link(6, 60),
      `wxsub_c_9=${link(9, 90).split('=')[1] as string}x`, // tampered
      link(4, 40),
      'wxsub_oid=x',
      link(7), // set before cookies carried a time
      link(3, 30),
    ].join('; ');
    expect(surplusLinkCookies(keys, header, 3)).toEqual(['wxsub_c_9', 'wxsub_c_7', 'wxsub_c_2', 'wxsub_c_3']);
  });

  it('keeps header order (oldest first, RFC 6265) among cookies issued at the same time', () => {
    const header = `${link(8, 5)}; ${link(1, 5)}; ${link(4, 5)}; ${link(2, 5)}`;
    expect(surplusLinkCookies(keys, header, 3)).toEqual(['wxsub_c_8']);
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
