// Tests of the one-time consent routes' responses: Set-Cookie lines and their path, link-cookie eviction, `next` normalization, concurrent callbacks.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import cookie from '@fastify/cookie';
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/schema.js';
import {
  linkCookieName,
  newCookieSecret,
  openLinkCookie,
  sealLinkCookie,
} from '../consent/consent-cookie.js';
import { deriveConsentKeys, signReserved } from '../consent/reserved-token.js';
import { createSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Store } from '../store/store.js';
import { ManualClock, type Clock } from '../util/clock.js';
import { createServiceApp } from './app.js';

const APP_ID = 'wxtestapp';
const NEXT = 'https://app.example.com/page#/done';
const SECRET = 'k'.repeat(40);

let dir: string;
let store: Store;
const apps: FastifyInstance[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wxsub-consent-'));
  store = createSqliteStore({ path: join(dir, 'db.sqlite') });
  await store.migrate();
});

afterEach(async () => {
  for (const a of apps.splice(0)) await a.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function service(publicBaseUrl: string, clock?: Clock): Promise<FastifyInstance> {
  const app = await createServiceApp(
    { store, wechat: { appId: APP_ID }, ...(clock ? { clock } : {}) },
    parseConfig({
      publicBaseUrl,
      wechat: { appId: APP_ID, baseUrl: 'http://emulator.test' },
      consent: {
        secret: SECRET,
        nextAllowlist: ['https://app.example.com'],
        oneTimeTemplates: ['TPL'],
      },
    }),
  );
  apps.push(app);
  return app;
}

/** What @fastify/cookie itself writes for the same calls, for comparison. */
async function referenceSetCookie(
  secure: boolean,
  path: string,
  openidValue: string,
  linkName: string,
): Promise<string[]> {
  const ref = Fastify({ logger: false });
  await ref.register(cookie);
  ref.get('/', async (_q, reply) =>
    reply
      .setCookie('wxsub_oid', openidValue, {
        path,
        httpOnly: true,
        sameSite: 'lax',
        secure,
        maxAge: 365 * 24 * 3600,
      })
      .clearCookie(linkName, { path })
      .send('ok'),
  );
  const r = await ref.inject({ method: 'GET', url: '/' });
  await ref.close();
  return r.headers['set-cookie'] as string[];
}

async function flow(app: FastifyInstance, openid: string, scene: number) {
  const s = await app.inject({
    method: 'GET',
    url: `/consent/one-time?template=TPL&scene=${scene}&next=${encodeURIComponent(NEXT)}`,
  });
  expect(s.statusCode, s.body).toBe(302);
  const reserved = new URL(String(s.headers.location)).searchParams.get('reserved') as string;
  const cookies: Record<string, string> = {};
  for (const c of s.cookies) cookies[c.name] = c.value;
  return app.inject({
    method: 'GET',
    url: `/consent/one-time/callback?${new URLSearchParams({ openid, template_id: 'TPL', action: 'confirm', scene: String(scene), reserved })}`,
    cookies,
  });
}

const setCookies = (r: LightMyRequestResponse): string[] => {
  const h = r.headers['set-cookie'];
  return Array.isArray(h) ? h : [String(h)];
};

/** RFC 6265 §5.1.4 path-match: whether a browser sends a cookie of `cookiePath` to `requestPath`. */
function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

/** The Cookie header a browser sends to `requestPath`, from the Set-Cookie lines (name=value; …; Path=…) it got. */
function cookieHeaderFor(requestPath: string, lines: string[]): string {
  return lines
    .filter((l) => !/;\s*Max-Age=0(;|$)/i.test(l))
    .filter((l) => pathMatches(requestPath, /;\s*Path=([^;]*)/i.exec(l)?.[1] ?? '/'))
    .map((l) => l.split(';')[0] as string)
    .join('; ');
}

describe('one-time consent callback response', () => {
  for (const [base, secure, path] of [
    ['http://svc.example.com', false, '/consent'],
    ['https://svc.example.com', true, '/consent'],
    ['https://svc.example.com/wxsub/', true, '/wxsub/consent'],
  ] as const) {
    it(`sets the openid cookie and clears the link cookie exactly as @fastify/cookie would (${base})`, async () => {
      const app = await service(base);
      const cb = await flow(app, 'oA', 5);
      expect(cb.statusCode, cb.body).toBe(302);
      expect(cb.headers.location).toBe('https://app.example.com/page?wxsub_outcome=confirmed&scene=5#/done');
      const lines = setCookies(cb);
      const oid = cb.cookies.find((c) => c.name === 'wxsub_oid')?.value as string;
      const link = cb.cookies.find((c) => c.name.startsWith('wxsub_c_'))?.name as string;
      expect(oid).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
      expect(lines).toEqual(await referenceSetCookie(secure, path, oid, link));
    });

    it(`sets the link cookie at the start exactly as @fastify/cookie would (${base})`, async () => {
      const app = await service(base);
      const s = await app.inject({ method: 'GET', url: '/consent/one-time?template=TPL&scene=3' });
      expect(s.statusCode, s.body).toBe(302);
      const [c] = s.cookies;
      expect(c?.name).toMatch(/^wxsub_c_[A-Za-z0-9]{12}$/);
      const ref = Fastify({ logger: false });
      await ref.register(cookie);
      ref.get('/', async (_q, reply) =>
        reply
          .setCookie(c?.name as string, c?.value as string, {
            path,
            httpOnly: true,
            sameSite: 'lax',
            secure,
            maxAge: parseConfig({}).consent.ttlSeconds,
          })
          .send('ok'),
      );
      const r = await ref.inject({ method: 'GET', url: '/' });
      await ref.close();
      expect(setCookies(s)).toEqual([r.headers['set-cookie']]);
    });
  }

  it('behind a path-prefix proxy, scopes both cookies to the callback the browser returns to', async () => {
    // The proxy maps https://svc.example.com/wxsub/… to the service's /…; the browser only sees the public paths.
    const app = await service('https://svc.example.com/wxsub');
    const s = await app.inject({ method: 'GET', url: '/consent/one-time?template=TPL&scene=4' });
    expect(s.statusCode, s.body).toBe(302);
    const callback = new URL(new URL(String(s.headers.location)).searchParams.get('redirect_url') as string);
    expect(callback.pathname).toBe('/wxsub/consent/one-time/callback');
    const cookie = cookieHeaderFor(callback.pathname, setCookies(s));
    expect(cookie).toMatch(/^wxsub_c_[A-Za-z0-9]{12}=\S+$/);
    const reserved = new URL(String(s.headers.location)).searchParams.get('reserved') as string;
    const cb = await app.inject({
      method: 'GET',
      url: `/consent/one-time/callback?${new URLSearchParams({ openid: 'oProxied', template_id: 'TPL', action: 'confirm', scene: '4', reserved })}`,
      headers: { cookie },
    });
    expect(cb.statusCode, cb.body).toBe(200);
    expect(
      await store.grants.availableScenes({ appId: APP_ID, openid: 'oProxied', templateId: 'TPL' }),
    ).toEqual([4]);
    // The openid hint comes back on the next start (public path /wxsub/consent/one-time), for scene=auto.
    expect(cookieHeaderFor('/wxsub/consent/one-time', setCookies(cb))).toMatch(/^wxsub_oid=\S+$/);
  });

  it('clears link cookies beyond the newest three at a start, oldest first by start time', async () => {
    const clock = new ManualClock();
    const app = await service('https://svc.example.com', clock);
    const started: { name: string; value: string }[] = [];
    for (let i = 0; i < 5; i++) {
      clock.advance(1000);
      const s = await app.inject({ method: 'GET', url: `/consent/one-time?template=TPL&scene=${i}` });
      expect(s.statusCode, s.body).toBe(302);
      started.push(s.cookies[0] as { name: string; value: string });
    }
    // The browser brings them newest first, so the header order alone would pick the wrong ones.
    const header = started
      .map((c) => `${c.name}=${c.value}`)
      .reverse()
      .join('; ');
    clock.advance(1000);
    const s = await app.inject({
      method: 'GET',
      url: '/consent/one-time?template=TPL&scene=9',
      headers: { cookie: header },
    });
    expect(s.statusCode, s.body).toBe(302);
    const [fresh, ...cleared] = setCookies(s);
    expect(fresh).toMatch(/^wxsub_c_[A-Za-z0-9]{12}=[^;]+; Max-Age=600;/);
    const ref = Fastify({ logger: false });
    await ref.register(cookie);
    ref.get('/', async (_q, reply) => {
      for (const c of started.slice(0, 2)) void reply.clearCookie(c.name, { path: '/consent' });
      return reply.send('ok');
    });
    const r = await ref.inject({ method: 'GET', url: '/' });
    await ref.close();
    expect(cleared).toEqual(r.headers['set-cookie']);
  });

  it('keeps next in the link cookie in its normalized form, dated', async () => {
    const clock = new ManualClock();
    const app = await service('https://svc.example.com', clock);
    const s = await app.inject({
      method: 'GET',
      url: `/consent/one-time?template=TPL&scene=2&next=${encodeURIComponent('https://ａpp.example.com/商品?q=é#/详情')}`,
    });
    expect(s.statusCode, s.body).toBe(302);
    const opened = openLinkCookie(deriveConsentKeys(SECRET), s.cookies[0]?.value);
    expect({ next: opened?.next, issuedAt: opened?.issuedAt }).toEqual({
      next: 'https://app.example.com/%E5%95%86%E5%93%81?q=%C3%A9#/%E8%AF%A6%E6%83%85',
      issuedAt: clock.now(),
    });
  });

  it('completes a link whose cookie holds a raw non-ASCII next (set before next was normalized)', async () => {
    const app = await service('https://svc.example.com');
    const keys = deriveConsentKeys(SECRET);
    const raw = 'https://app.example.com/商品/7?q=é#/详情';
    const cookieSecret = newCookieSecret();
    const s = signReserved(
      keys,
      { appId: APP_ID, templateId: 'TPL', scene: 6, next: raw, cookieSecret },
      { now: Date.now(), ttlMs: 600_000 },
    );
    const cb = await app.inject({
      method: 'GET',
      url: `/consent/one-time/callback?${new URLSearchParams({ openid: 'oRaw', template_id: 'TPL', action: 'confirm', scene: '6', reserved: s.token })}`,
      headers: { cookie: `${linkCookieName(s.nonce)}=${sealLinkCookie(keys, { cookieSecret, next: raw })}` },
    });
    expect([cb.statusCode, cb.headers.location]).toEqual([
      302,
      'https://app.example.com/%E5%95%86%E5%93%81/7?q=%C3%A9&wxsub_outcome=confirmed&scene=6#/%E8%AF%A6%E6%83%85',
    ]);
    expect(await store.grants.availableScenes({ appId: APP_ID, openid: 'oRaw', templateId: 'TPL' })).toEqual([
      6,
    ]);
  });

  it('answers many concurrent callbacks, each with its own grant, and refuses their replays', async () => {
    const app = await service('https://svc.example.com');
    const n = 40;
    const starts = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const s = await app.inject({ method: 'GET', url: `/consent/one-time?template=TPL&scene=${i}` });
        const reserved = new URL(String(s.headers.location)).searchParams.get('reserved') as string;
        const cookies: Record<string, string> = {};
        for (const c of s.cookies) cookies[c.name] = c.value;
        return {
          url: `/consent/one-time/callback?${new URLSearchParams({ openid: `o${i}`, template_id: 'TPL', action: 'confirm', scene: String(i), reserved })}`,
          cookies,
        };
      }),
    );
    const first = await Promise.all(starts.map((s) => app.inject({ method: 'GET', ...s })));
    expect(first.map((r) => r.statusCode)).toEqual(Array(n).fill(200));
    expect(first.map((r) => (r.json() as { created: boolean }).created)).toEqual(Array(n).fill(true));
    const again = await Promise.all(starts.map((s) => app.inject({ method: 'GET', ...s })));
    expect(again.map((r) => r.statusCode)).toEqual(Array(n).fill(409));
    const held = await store.grants.listAvailable({ appId: APP_ID, limit: 1000 });
    expect(held.items.map((g) => `${g.openid}:${g.scene}`).sort()).toEqual(
      Array.from({ length: n }, (_, i) => `o${i}:${i}`).sort(),
    );
  });
});
