// Tests of the one-time consent callback's response: its Set-Cookie lines, and concurrent callbacks (group commit).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import cookie from '@fastify/cookie';
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/schema.js';
import { createSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Store } from '../store/store.js';
import { createServiceApp } from './app.js';

const APP_ID = 'wxtestapp';
const NEXT = 'https://app.example.com/page#/done';

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

async function service(publicBaseUrl: string): Promise<FastifyInstance> {
  const app = await createServiceApp(
    { store, wechat: { appId: APP_ID } },
    parseConfig({
      publicBaseUrl,
      wechat: { appId: APP_ID, baseUrl: 'http://emulator.test' },
      consent: {
        secret: 'k'.repeat(40),
        nextAllowlist: ['https://app.example.com'],
        oneTimeTemplates: ['TPL'],
      },
    }),
  );
  apps.push(app);
  return app;
}

/** What @fastify/cookie itself writes for the same calls, for comparison. */
async function referenceSetCookie(secure: boolean, openidValue: string, linkName: string): Promise<string[]> {
  const ref = Fastify({ logger: false });
  await ref.register(cookie);
  ref.get('/', async (_q, reply) =>
    reply
      .setCookie('wxsub_oid', openidValue, {
        path: '/consent',
        httpOnly: true,
        sameSite: 'lax',
        secure,
        maxAge: 365 * 24 * 3600,
      })
      .clearCookie(linkName, { path: '/consent' })
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

describe('one-time consent callback response', () => {
  for (const [base, secure] of [
    ['http://svc.example.com', false],
    ['https://svc.example.com', true],
  ] as const) {
    it(`sets the openid cookie and clears the link cookie exactly as @fastify/cookie would (secure=${secure})`, async () => {
      const app = await service(base);
      const cb = await flow(app, 'oA', 5);
      expect(cb.statusCode, cb.body).toBe(302);
      expect(cb.headers.location).toBe('https://app.example.com/page?wxsub_outcome=confirmed&scene=5#/done');
      const lines = setCookies(cb);
      const oid = cb.cookies.find((c) => c.name === 'wxsub_oid')?.value as string;
      const link = cb.cookies.find((c) => c.name.startsWith('wxsub_c_'))?.name as string;
      expect(oid).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
      expect(lines).toEqual(await referenceSetCookie(secure, oid, link));
    });

    it(`sets the link cookie at the start exactly as @fastify/cookie would (secure=${secure})`, async () => {
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
            path: '/consent',
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
