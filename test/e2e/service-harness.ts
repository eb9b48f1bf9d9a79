// Shared setup of the service e2e tests: the service on a real port (SQLite or PostgreSQL store), the emulator, a cookie jar.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { parseConfig, type ServiceConfigInput } from '../../src/config/schema.js';
import { createApiKey } from '../../src/http/api-keys.js';
import { createServiceApp } from '../../src/http/app.js';
import { createStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/store.js';
import type { Clock } from '../../src/util/clock.js';
import { createTempDatabase, type TempDatabase } from '../support/services.js';

/** The demo account the emulator is seeded with. */
export const APP_ID = 'wxe2e0000000000001';
/** A one-time template of that account. */
export const ONE_TIME_TPL = 'E2eOneTimeTpl000000000000000000000000001';
/** A notification template of that account. */
export const NOTIFY_TPL = 'E2eNotifyTpl0000000000000000000000000001';
/** Emulated users. */
export const USERS = ['oE2eUser00000000000000000001', 'oE2eUser00000000000000000002'] as const;

/** Seed for the emulator: one app whose business domain is the loopback host. */
export const EMULATOR_SEED = {
  apps: [
    {
      appid: APP_ID,
      secret: '0123456789abcdef0123456789abcdef',
      name: 'e2e 服务号',
      originalId: 'gh_e2e000000001',
      businessDomains: ['127.0.0.1'],
      jsDomains: ['127.0.0.1'],
      oauthDomains: ['127.0.0.1'],
      users: USERS.map((openid, i) => ({ openid, nickname: `user${i}` })),
      templates: [
        { templateId: ONE_TIME_TPL, kind: 'one-time', title: '到货提醒' },
        {
          templateId: NOTIFY_TPL,
          kind: 'notification',
          title: '物流状态通知',
          tid: 2001,
          type: 2,
          content: '物品名称:{{thing1.DATA}}\n物流状态:{{phrase3.DATA}}',
        },
      ],
    },
  ],
};

/** A running service. */
export type RunningService = {
  app: FastifyInstance;
  store: Store;
  baseUrl: string;
  apiKey: string;
  close(): Promise<void>;
};

/** The engines a suite runs on. */
export type Engine = 'sqlite' | 'postgres';

/**
 * Starts the service on 127.0.0.1:0 over a fresh store of the given engine (migrated), with an API key.
 */
export async function startService(
  engine: Engine,
  config: ServiceConfigInput,
  clock?: Clock,
): Promise<RunningService> {
  let dir: string | null = null;
  let db: TempDatabase | null = null;
  let url: string;
  if (engine === 'sqlite') {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-e2e-'));
    url = join(dir, 'wxsub.db');
  } else {
    db = await createTempDatabase();
    url = db.url;
  }
  const store = createStore(url, { poolSize: 20 });
  await store.migrate();
  const app = await createServiceApp(
    { store, wechat: { appId: APP_ID }, ...(clock ? { clock } : {}) },
    parseConfig({ ...config, wechat: { appId: APP_ID, ...config.wechat } }),
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const { key } = await createApiKey(store, 'e2e');
  return {
    app,
    store,
    baseUrl: `http://127.0.0.1:${port}`,
    apiKey: key,
    async close() {
      await app.close();
      await store.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (db) await db.drop();
    },
  };
}

/** A minimal browser cookie jar (name → value), enough for one host. */
export class CookieJar {
  readonly cookies = new Map<string, string>();
  /** Applies the Set-Cookie headers of a response. */
  take(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = (pair ?? '').indexOf('=');
      const name = (pair ?? '').slice(0, eq).trim();
      const value = (pair ?? '').slice(eq + 1).trim();
      const expired = attrs.some(
        (a) => /^\s*max-age=0\s*$/i.test(a) || /^\s*expires=Thu, 01 Jan 1970/i.test(a),
      );
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  /** The Cookie header value. */
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

/** GET without following redirects, sending and keeping cookies. */
export async function get(url: string, jar?: CookieJar): Promise<Response> {
  const res = await fetch(url, {
    redirect: 'manual',
    headers: jar && jar.cookies.size ? { cookie: jar.header() } : {},
  });
  jar?.take(res);
  return res;
}

/**
 * Submits 允许 (`confirm`) or 取消 (`cancel`) on the emulator's consent page at `emuBase` as `openid`, for the consent
 * URL the service redirected to; returns the emulator's answer (302 to the service's callback when all is well).
 */
export function submitConsentDecision(
  emuBase: string,
  consentUrl: URL,
  action: 'confirm' | 'cancel',
  openid: string,
): Promise<Response> {
  const form = new URLSearchParams();
  for (const k of ['appid', 'template_id', 'scene', 'redirect_url', 'reserved'])
    form.set(k, consentUrl.searchParams.get(k) ?? '');
  form.set('openid', openid);
  form.set('action', action);
  return fetch(`${emuBase}/mp/subscribemsg/decide`, { method: 'POST', body: form, redirect: 'manual' });
}
