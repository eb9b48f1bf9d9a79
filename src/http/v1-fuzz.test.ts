// Property tests of the /v1 API (app.inject, real SQLite file): any body or query, valid ones with one field
// replaced by anything, gets an answer below 500, and a refused request changes nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/schema.js';
import { createSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Store } from '../store/store.js';
import { createApiKey } from './api-keys.js';
import { createServiceApp } from './app.js';

const APP_ID = 'wxfuzzapp';
let dir: string;
let store: Store;
let app: FastifyInstance;
let auth: Record<string, string>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wxsub-fuzz-'));
  store = createSqliteStore({ path: join(dir, 'db.sqlite') });
  await store.migrate();
  app = await createServiceApp(
    { store, wechat: { appId: APP_ID } },
    parseConfig({ wechat: { appId: APP_ID }, consent: { secret: 'f'.repeat(40) } }),
  );
  auth = { authorization: `Bearer ${(await createApiKey(store, 'fuzz')).key}` };
  const put = (id: string, payload: unknown) =>
    app.inject({ method: 'PUT', url: `/v1/templates/${id}`, headers: auth, payload: payload as object });
  expect((await put('TPL_ONCE', { kind: 'one-time', title: '到货' })).statusCode).toBe(200);
  const keywords = [{ key: 'thing1' }, { key: 'amount2' }, { key: 'enum3', enumValues: ['a', 'b'] }];
  expect((await put('TPL_NOTE', { kind: 'notification', title: '进度', keywords })).statusCode).toBe(200);
  for (let scene = 0; scene < 3; scene++)
    await store.grants.recordOneTime({
      appId: APP_ID,
      openid: 'oFuzz',
      templateId: 'TPL_ONCE',
      scene,
      now: 1,
    });
  await store.grants.addNotificationCredits({
    appId: APP_ID,
    openid: 'oFuzz',
    templateId: 'TPL_NOTE',
    count: 3,
    now: 1,
  });
});

afterAll(async () => {
  await app.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** What a refused request must leave alone: every row of the outbox, the ledger, campaigns and templates. */
function snapshot(): string {
  const db = new Database(join(dir, 'db.sqlite'), { readonly: true });
  try {
    const tables = ['messages', 'grants', 'notification_credits', 'campaigns', 'templates', 'refusals'];
    return JSON.stringify(tables.map((t) => db.prepare(`SELECT * FROM ${t} ORDER BY rowid`).all()));
  } finally {
    db.close();
  }
}

// Values that break types, limits and encodings: JSON of any shape, big and odd strings, numbers at the edges.
const anything = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.constantFrom(
    '',
    '\u0000',
    '\ud800',
    'x'.repeat(5000),
    '-1',
    '1e309',
    '10001',
    'any',
    '#GGGGGG',
    'javascript:x',
  ),
  fc.constantFrom(-1, 0.5, 10_001, 2 ** 53, -0, 1e308),
);
const oneTime = {
  kind: 'one-time',
  openid: 'oFuzz',
  template: 'TPL_ONCE',
  scene: 1,
  title: '到货提醒',
  content: '已到货',
  color: '#FF0000',
  url: 'https://a.example/x',
  miniprogram: { appid: 'wxmini', pagepath: 'pages/index' },
};
const notification = {
  kind: 'notification',
  openid: 'oFuzz',
  template: 'TPL_NOTE',
  data: { thing1: '耳机', amount2: '¥9.90', enum3: 'a' },
  page: 'https://a.example/p',
  miniprogram_state: 'formal',
  lang: 'zh_CN',
};
const campaign = {
  name: 'c',
  template: 'TPL_ONCE',
  scenes: { min: 0, max: 2 },
  payload: { title: 't', content: 'c' },
};
const template = { kind: 'notification', title: '通知', keywords: [{ key: 'thing1' }], type: 2 };

/** A valid body with one field (possibly nested) replaced by `value`, removed, or an unknown field added. */
function mutated(base: Record<string, unknown>): fc.Arbitrary<unknown> {
  const paths: string[][] = [];
  const walk = (o: Record<string, unknown>, at: string[]) => {
    for (const [k, v] of Object.entries(o)) {
      paths.push([...at, k]);
      if (v !== null && typeof v === 'object' && !Array.isArray(v))
        walk(v as Record<string, unknown>, [...at, k]);
    }
  };
  walk(base, []);
  return fc
    .tuple(fc.constantFrom(...paths), anything, fc.constantFrom('set', 'delete', 'add'))
    .map(([path, v, op]) => {
      const copy = structuredClone(base) as Record<string, unknown>;
      let o = copy;
      for (const k of path.slice(0, -1)) o = o[k] as Record<string, unknown>;
      const last = path[path.length - 1] as string;
      if (op === 'set') o[last] = v;
      else if (op === 'delete') delete o[last];
      else o[`${last}_extra`] = v;
      return copy;
    });
}

describe('/v1 under arbitrary input', () => {
  it('starts from bodies the API accepts', async () => {
    for (const [url, body, status] of [
      ['/v1/messages', oneTime, 202],
      ['/v1/messages', notification, 202],
      ['/v1/campaigns', campaign, 202],
    ] as const) {
      const r = await app.inject({ method: 'POST', url, headers: auth, payload: body });
      expect(r.statusCode, r.body).toBe(status);
    }
    const t = await app.inject({
      method: 'PUT',
      url: '/v1/templates/TPL_FUZZ',
      headers: auth,
      payload: template,
    });
    expect(t.statusCode, t.body).toBe(200);
  });

  const cases: [name: string, method: 'POST' | 'PUT', url: string, body: fc.Arbitrary<unknown>][] = [
    ['POST /v1/messages (one-time)', 'POST', '/v1/messages', fc.oneof(mutated(oneTime), anything)],
    ['POST /v1/messages (notification)', 'POST', '/v1/messages', fc.oneof(mutated(notification), anything)],
    ['POST /v1/campaigns', 'POST', '/v1/campaigns', fc.oneof(mutated(campaign), anything)],
    ['PUT /v1/templates/:id', 'PUT', '/v1/templates/TPL_FUZZ', fc.oneof(mutated(template), anything)],
  ];
  for (const [name, method, url, body] of cases) {
    it(`${name}: never a 5xx; a refused body changes nothing`, async () => {
      await fc.assert(
        fc.asyncProperty(body, async (payload) => {
          const before = snapshot();
          const r = await app.inject({
            method,
            url,
            headers: { ...auth, 'content-type': 'application/json' },
            payload: JSON.stringify(payload) ?? 'null',
          });
          expect(r.statusCode, r.body).toBeLessThan(500);
          const answer = r.json() as { error?: { code?: unknown } };
          if (r.statusCode >= 400) {
            expect(typeof answer.error?.code, r.body).toBe('string');
            expect(snapshot()).toBe(before);
          }
        }),
        { numRuns: 300 },
      );
    });
  }

  it('list queries: never a 5xx, a stable code when refused', async () => {
    const value = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.constantFrom('', '0', '501', '-1', 'abc', '%', 'x'.repeat(700), 'queued'),
    );
    const param = fc.constantFrom('status', 'template', 'openid', 'campaign', 'cursor', 'limit', 'other');
    const path = fc.constantFrom('/v1/messages', '/v1/grants', '/v1/users/oFuzz/grants', '/v1/templates');
    await fc.assert(
      fc.asyncProperty(path, fc.array(fc.tuple(param, value), { maxLength: 4 }), async (p, pairs) => {
        const r = await app.inject({
          method: 'GET',
          url: `${p}?${new URLSearchParams(pairs)}`,
          headers: auth,
        });
        expect(r.statusCode, r.body).toBeLessThan(500);
        if (r.statusCode >= 400)
          expect(typeof (r.json() as { error?: { code?: unknown } }).error?.code).toBe('string');
      }),
      { numRuns: 300 },
    );
  });
});
