// `wxsub dev`: one command that runs the emulator, the service (SQLite, seeded, dispatcher on) and the demo page together.
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger as PinoLogger } from 'pino';
import { parseConfig } from '../config/schema.js';
import type { Store, TemplateRecord } from '../store/store.js';
import { createDemoServer, type DemoServer } from '../demo/server.js';
import type { DemoUser } from '../demo/page.js';
import type { EmulatorSeed, EmulatorSeedTemplate } from '../emulator/seed.js';
import type { Emulator } from '../emulator/index.js';
import { createCliLogger } from './logger.js';
import { findFreePort, originOf } from './ports.js';
import { startService, type RunningService } from './serve.js';
import { runUntilSignal } from './shutdown.js';

/** The app `wxsub dev` seeds (emulator and service agree on it). */
export const DEV_APP = {
  appId: 'wxdev0000000000001',
  secret: 'dead0000beef0000dead0000beef0001',
  name: 'wxsub 开发服务号',
} as const;

/** Consent signing key of `wxsub dev` (public on purpose: dev only, never for a real account). */
export const DEV_CONSENT_SECRET = 'wxsub-dev-consent-secret-not-for-production-use';

/** The three users `wxsub dev` seeds. */
export const DEV_USERS: readonly Required<DemoUser>[] = [
  { openid: 'oDevZhangSan000000000000001', nickname: '张三' },
  { openid: 'oDevLiSi00000000000000000002', nickname: '李四' },
  { openid: 'oDevWangWu0000000000000000003', nickname: '王五' },
];

/** The templates `wxsub dev` seeds: one one-time template and two notification templates. */
export const DEV_TEMPLATES = {
  oneTime: { templateId: 'DevOneTimeTpl000000000000000000000000000001', kind: 'one-time', title: '到货提醒' },
  shipping: {
    templateId: 'DevNotifyTpl0000000000000000000000000000001',
    kind: 'notification',
    title: '物流状态通知',
    tid: 2001,
    type: 2,
    content: '物品名称:{{thing1.DATA}}\n运单号:{{character_string2.DATA}}\n物流状态:{{phrase3.DATA}}',
  },
  appointment: {
    templateId: 'DevNotifyTpl0000000000000000000000000000002',
    kind: 'notification',
    title: '预约成功通知',
    tid: 2002,
    type: 2,
    content: '预约项目:{{thing1.DATA}}\n预约时间:{{time2.DATA}}',
  },
} as const satisfies Record<string, EmulatorSeedTemplate & { templateId: string }>;

/** Options of {@link startDevStack}. */
export type DevStackOptions = {
  /** Interface of all three servers. @default '127.0.0.1' */
  host?: string;
  /** Preferred service port; a free one is used when it is taken (0 = any). @default 4000 */
  servicePort?: number;
  /** Preferred emulator port. @default 4100 */
  emulatorPort?: number;
  /** Preferred demo page port. @default 4200 */
  demoPort?: number;
  /** Directory of `dev.db`. @default './data' */
  dataDir?: string;
  /**
   * Keep `dev.db` from the last run. Off by default: the emulator keeps its state in memory, so grants
   * remembered by an old database would meet an emulator that never saw them.
   * @default false
   */
  keepData?: boolean;
  /** pino level of the service logs (stderr). @default 'warn' */
  logLevel?: string;
};

/** A running dev stack. */
export type DevStack = {
  serviceUrl: string;
  emulatorUrl: string;
  demoUrl: string;
  appId: string;
  /** API key the demo server uses (also printed, for curl). */
  apiKey: string;
  oneTimeTemplateId: string;
  users: readonly Required<DemoUser>[];
  /** Inbox page per user. */
  inboxUrl(openid: string): string;
  service: RunningService;
  store: Store;
  /** The in-process emulator (tests reach into `emulator.state`). */
  emulator: Emulator;
  close(): Promise<void>;
};

/** Keyword list of a notification template from its content (`{{thing1.DATA}}` → `{ key: 'thing1', type: 'thing' }`). */
export function keywordsOf(content: string): TemplateRecord['keywords'] {
  const out: TemplateRecord['keywords'] = [];
  for (const m of content.matchAll(/\{\{([a-z_]+?)(\d+)\.DATA\}\}/g)) {
    out.push({ key: `${m[1]}${m[2]}`, type: m[1] as string });
  }
  return out;
}

/** The emulator seed of the dev stack; `serviceHost` (host:port) is the business domain. */
export function devSeed(serviceHost: string, host: string): EmulatorSeed {
  const domains = [...new Set([serviceHost, host, 'localhost', '127.0.0.1'])];
  return {
    apps: [
      {
        appid: DEV_APP.appId,
        secret: DEV_APP.secret,
        name: DEV_APP.name,
        businessDomains: domains,
        jsDomains: domains,
        oauthDomains: domains,
        users: DEV_USERS.map((u) => ({ ...u })),
        templates: Object.values(DEV_TEMPLATES).map((t) => ({ ...t })),
      },
    ],
  };
}

/**
 * Starts emulator, service and demo page on `host`, seeded with {@link DEV_APP}, {@link DEV_USERS} and
 * {@link DEV_TEMPLATES}, on SQLite `dataDir/dev.db`. Ports fall back to free ones when taken.
 * @example const stack = await startDevStack({ servicePort: 0, emulatorPort: 0, demoPort: 0, dataDir: tmp }); await stack.close();
 */
export async function startDevStack(
  options: DevStackOptions = {},
  deps: { logger?: PinoLogger } = {},
): Promise<DevStack> {
  const host = options.host ?? '127.0.0.1';
  const logger = deps.logger ?? createCliLogger({ level: options.logLevel ?? 'warn' });
  const dataDir = resolve(options.dataDir ?? './data');
  const sqlitePath = join(dataDir, 'dev.db');
  if (options.keepData !== true) {
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${sqlitePath}${suffix}`, { force: true });
  }

  const servicePort = await findFreePort(options.servicePort ?? 4000, host);
  const emulatorPort = await findFreePort(options.emulatorPort ?? 4100, host);
  const demoPort = await findFreePort(options.demoPort ?? 4200, host);
  const serviceUrl = originOf(host, servicePort);
  const emulatorUrl = originOf(host, emulatorPort);
  const demoUrl = originOf(host, demoPort);

  const closers: (() => Promise<void>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        logger.error({ err }, 'error while stopping the dev stack');
      }
    }
  };

  try {
    const { createEmulator } = await import('../emulator/index.js');
    const emulator = await createEmulator({
      seed: devSeed(new URL(serviceUrl).host, host),
      publicBaseUrl: emulatorUrl,
    });
    const emulatorListenUrl = await emulator.listen({ port: emulatorPort, host });
    closers.push(() => emulator.close());
    if (emulatorListenUrl.replace(/\/+$/, '') !== emulatorUrl)
      logger.warn({ emulatorListenUrl, emulatorUrl }, 'emulator URL differs');

    const config = parseConfig({
      host,
      port: servicePort,
      publicBaseUrl: serviceUrl,
      dataDir,
      sqlitePath,
      logLevel: options.logLevel ?? 'warn',
      wechat: { appId: DEV_APP.appId, appSecret: DEV_APP.secret, baseUrl: emulatorUrl, tokenMode: 'stable' },
      // A fixed key: dev data is throwaway, and consent links then survive a restart.
      consent: {
        secret: DEV_CONSENT_SECRET,
        nextAllowlist: [demoUrl],
        oneTimeTemplates: [DEV_TEMPLATES.oneTime.templateId],
      },
      // Quick retries so a hiccup in dev shows its outcome within seconds.
      delivery: { backoffBaseMs: 200, backoffMaxMs: 5000 },
    });
    const service = await startService(config, { logger });
    closers.push(() => service.close());
    const store = service.store;

    for (const t of Object.values(DEV_TEMPLATES)) {
      await store.templates.upsert({
        appId: DEV_APP.appId,
        templateId: t.templateId,
        kind: t.kind,
        title: t.title,
        keywords: 'content' in t ? keywordsOf(t.content) : [],
        ...('type' in t ? { type: t.type } : {}),
      });
    }
    const { createApiKey } = await import('../http/api-keys.js');
    const { key: apiKey } = await createApiKey(store, 'wxsub dev demo');

    const demo: DemoServer = createDemoServer(
      {},
      {
        serviceUrl,
        apiKey,
        appId: DEV_APP.appId,
        templateId: DEV_TEMPLATES.oneTime.templateId,
        emulatorUrl,
        users: DEV_USERS.map((u) => ({ ...u })),
        publicUrl: demoUrl,
      },
    );
    await demo.listen({ port: demoPort, host });
    closers.push(() => demo.close());

    return {
      serviceUrl,
      emulatorUrl,
      demoUrl,
      appId: DEV_APP.appId,
      apiKey,
      oneTimeTemplateId: DEV_TEMPLATES.oneTime.templateId,
      users: DEV_USERS,
      inboxUrl: (openid) => `${emulatorUrl}/__emulator/inbox/${encodeURIComponent(openid)}`,
      service,
      store,
      emulator,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The banner `wxsub dev` prints (the three URLs first, one per line, easy to grep). */
export function devBanner(s: DevStack): string {
  const lines = [
    '',
    'wxsub dev is running — 本地开发环境已启动',
    '',
    `  Demo page     ${s.demoUrl}/`,
    // The two APIs have no page at `/`: say where to look, after the URL (the URL stays the line's first word).
    `  Service       ${s.serviceUrl}   API: /v1 with the key below; /healthz, /metrics`,
    `  Emulator      ${s.emulatorUrl}   WeChat's APIs; its control API under /__emulator/`,
    '',
    '  Inboxes (what each user sees in WeChat):',
    ...s.users.map((u) => `    ${u.nickname}  ${s.inboxUrl(u.openid)}`),
    '',
    `  App ${s.appId} · one-time template ${s.oneTimeTemplateId}`,
    `  API key (demo): ${s.apiKey}`,
    `  curl -H 'authorization: Bearer ${s.apiKey}' ${s.serviceUrl}/v1/users/${s.users[0]?.openid ?? 'OPENID'}/grants`,
    '',
    'Press Ctrl-C to stop.',
    '',
  ];
  return lines.join('\n');
}

/** `wxsub dev`: starts the stack, prints the URLs, runs until Ctrl-C. */
export async function runDev(
  _env: NodeJS.ProcessEnv,
  opts: {
    host: string;
    servicePort: number;
    emulatorPort: number;
    demoPort: number;
    dataDir: string;
    keepData: boolean;
    logLevel: string;
  },
): Promise<void> {
  const stack = await startDevStack(opts);
  console.log(devBanner(stack));
  await runUntilSignal(() => stack.close(), { onSignal: () => console.log('wxsub dev: stopping…') });
  console.log('wxsub dev: stopped');
}
