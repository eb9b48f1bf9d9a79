// Shared setup of the delivery e2e tests: an emulator on a real port with one app and many consenting users, the
// matching grants in a wxsub store (SQLite file or throwaway PostgreSQL database), and inbox counting.
import { afterEach } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEmulator, type Emulator } from '../../../src/emulator/index.js';
import { createPostgresStore } from '../../../src/store/postgres/postgres-store.js';
import { createSqliteStore } from '../../../src/store/sqlite/sqlite-store.js';
import type { Engine, MessageKind, Store } from '../../../src/store/store.js';
import { createTempDatabase, type TempDatabase } from '../../support/services.js';

export const APP_ID = 'wxdeliverye2e0001';
export const APP_SECRET = '0123456789abcdef0123456789abcdef';
export const ONE_TIME_TPL = 'E2eOneTimeTpl00000000000000000000000000001';
export const NOTIFY_TPL = 'E2eNotifyTpl000000000000000000000000000001';
export const SCENE = 42;

/** A store target for one engine, with cleanup. */
export type StoreTarget = {
  engine: Engine;
  /** SQLite file path or PostgreSQL URL (what `wxsub serve` takes). */
  target: string;
  open(): Store;
  cleanup(): Promise<void>;
};

/** Creates an empty SQLite file or PostgreSQL database. */
export async function makeStoreTarget(engine: Engine): Promise<StoreTarget> {
  if (engine === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'wxsub-delivery-e2e-'));
    const path = join(dir, 'wxsub.db');
    return {
      engine,
      target: path,
      open: () => createSqliteStore({ path }),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const db: TempDatabase = await createTempDatabase('wxsub_dlv');
  return {
    engine,
    target: db.url,
    open: () => createPostgresStore({ url: db.url }),
    cleanup: () => db.drop(),
  };
}

/** Opens and migrates a store for `t`. */
export async function openStore(t: StoreTarget): Promise<Store> {
  const s = t.open();
  await s.migrate();
  return s;
}

/** Starts the emulator on a real port with the test app and two templates. */
export async function startEmulator(): Promise<{ emu: Emulator; baseUrl: string }> {
  const emu = await createEmulator({ randomSeed: 7 });
  emu.state.createApp({
    appid: APP_ID,
    secret: APP_SECRET,
    templates: [
      { templateId: ONE_TIME_TPL, kind: 'one-time', title: '活动提醒' },
      {
        templateId: NOTIFY_TPL,
        kind: 'notification',
        title: '进度通知',
        type: 2,
        content: '事项:{{thing1.DATA}}',
      },
    ],
  });
  const baseUrl = await emu.listen({ port: 0 });
  return { emu, baseUrl };
}

/** The openid of the i-th test user (sortable). */
export const openidOf = (i: number): string => `oE2eUser${String(i).padStart(19, '0')}`;

/**
 * Creates `n` users who consented: in the emulator (the platform's truth) and in the wxsub ledger.
 * For notifications the emulator gets `emulatorCredits` credits per user (more than the ledger's one), so a
 * duplicate send by wxsub would really reach the user twice and show in the inbox.
 */
export async function seedConsents(
  store: Store,
  emu: Emulator,
  n: number,
  kind: MessageKind,
  emulatorCredits = 2,
): Promise<void> {
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    const openid = openidOf(i);
    emu.state.createUser(APP_ID, { openid });
    if (kind === 'one-time') emu.state.grantOneTime(APP_ID, openid, ONE_TIME_TPL, SCENE);
    else emu.state.grantNotification(APP_ID, openid, NOTIFY_TPL, emulatorCredits);
  }
  const chunk = store.engine === 'postgres' ? 16 : 1;
  for (let i = 0; i < n; i += chunk) {
    await Promise.all(
      Array.from({ length: Math.min(chunk, n - i) }, (_, k) => {
        const openid = openidOf(i + k);
        return kind === 'one-time'
          ? store.grants.recordOneTime({ appId: APP_ID, openid, templateId: ONE_TIME_TPL, scene: SCENE, now })
          : store.grants.addNotificationCredits({
              appId: APP_ID,
              openid,
              templateId: NOTIFY_TPL,
              count: 1,
              now,
            });
      }),
    );
  }
}

/** Creates a campaign of `kind` over every holder. */
export async function createCampaign(store: Store, kind: MessageKind): Promise<string> {
  const c = await store.outbox.createCampaign({
    appId: APP_ID,
    name: `e2e-${kind}`,
    kind,
    templateId: kind === 'one-time' ? ONE_TIME_TPL : NOTIFY_TPL,
    sceneFilter: null,
    payload:
      kind === 'one-time'
        ? { title: '上新提醒', content: '新品已上架' }
        : { data: { thing1: { value: '已发货' } } },
    now: Date.now(),
  });
  return c.id;
}

/** Inbox sizes: how many users received 0, 1, 2… messages, and the largest inbox. */
export function inboxHistogram(
  emu: Emulator,
  n: number,
): { received: number; max: number; twice: number; none: number } {
  let received = 0;
  let max = 0;
  let twice = 0;
  let none = 0;
  for (let i = 0; i < n; i++) {
    const k = emu.state.inbox(APP_ID, openidOf(i)).length;
    received += k;
    max = Math.max(max, k);
    if (k > 1) twice++;
    if (k === 0) none++;
  }
  return { received, max, twice, none };
}

/** Total messages delivered by the emulator so far. */
export function deliveredCount(emu: Emulator): number {
  const s = emu.state.counters(APP_ID).sends;
  return Object.values(s).reduce((a, b) => a + b, 0);
}

/** Polls `fn` until it returns true or `timeoutMs` passes. */
export async function waitFor(
  fn: () => Promise<boolean> | boolean,
  timeoutMs: number,
  intervalMs = 100,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Delivery settings for fast tests. */
export const FAST_DELIVERY = {
  concurrency: 32,
  batchSize: 200,
  leaseMs: 3000,
  maxAttempts: 12,
  backoffBaseMs: 20,
  backoffMaxMs: 400,
  ratePerSecond: 1_000_000,
} as const;

/** A `wxsub serve` child process. */
export type ServeProcess = {
  child: ChildProcess;
  url: Promise<string>;
  exited: Promise<number | null>;
  output: () => string;
};

/**
 * Starts the real CLI (`wxsub serve`) against `target` and the emulator at `baseUrl`.
 * Dies with the test process' cleanup (call `kill`).
 */
export function spawnServe(
  target: StoreTarget,
  baseUrl: string,
  extraEnv: Record<string, string> = {},
): ServeProcess {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    WXSUB_PORT: '0',
    WXSUB_LOG_LEVEL: 'warn',
    WXSUB_WECHAT_APP_ID: APP_ID,
    WXSUB_WECHAT_APP_SECRET: APP_SECRET,
    WXSUB_WECHAT_BASE_URL: baseUrl,
    WXSUB_DELIVERY_CONCURRENCY: String(FAST_DELIVERY.concurrency),
    WXSUB_DELIVERY_BATCH_SIZE: String(FAST_DELIVERY.batchSize),
    WXSUB_DELIVERY_LEASE_MS: String(FAST_DELIVERY.leaseMs),
    WXSUB_DELIVERY_MAX_ATTEMPTS: String(FAST_DELIVERY.maxAttempts),
    WXSUB_DELIVERY_BACKOFF_BASE_MS: String(FAST_DELIVERY.backoffBaseMs),
    WXSUB_DELIVERY_BACKOFF_MAX_MS: String(FAST_DELIVERY.backoffMaxMs),
    WXSUB_DELIVERY_RATE_PER_SECOND: String(FAST_DELIVERY.ratePerSecond),
    ...(target.engine === 'postgres'
      ? { DATABASE_URL: target.target }
      : { WXSUB_SQLITE_PATH: target.target }),
    ...extraEnv,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let resolveUrl!: (u: string) => void;
  let rejectUrl!: (e: Error) => void;
  const url = new Promise<string>((res, rej) => {
    resolveUrl = res;
    rejectUrl = rej;
  });
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
    const m = /listening on (http:\/\/\S+)/.exec(out);
    if (m?.[1]) resolveUrl(m[1]);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((res) =>
    child.on('exit', (code) => {
      rejectUrl(new Error(`wxsub serve exited (${code}) before listening:\n${out.slice(-4000)}`));
      res(code);
    }),
  );
  return { child, url, exited, output: () => out };
}

/** SIGKILLs a child (if alive) and waits for it to be gone. */
export async function killHard(p: ServeProcess): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await p.exited;
}

/** Asks a child to shut down cleanly (SIGTERM), SIGKILL after `ms`. */
export async function stopGracefully(p: ServeProcess, ms = 15_000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), ms);
  await p.exited;
  clearTimeout(t);
}

/** What a multi-process delivery test holds and must tear down: store target, store, emulator, serve processes. */
export type ServeContext = { target?: StoreTarget; store?: Store; emu?: Emulator; procs: ServeProcess[] };

/**
 * A context whose contents are torn down after each test (processes killed, emulator and store closed,
 * throwaway database dropped), then emptied for the next test.
 */
export function useServeContext(): ServeContext {
  const ctx: ServeContext = { procs: [] };
  afterEach(async () => {
    for (const p of ctx.procs) await killHard(p);
    await ctx.emu?.close();
    await ctx.store?.close();
    await ctx.target?.cleanup();
    ctx.procs = [];
    delete ctx.target;
    delete ctx.store;
    delete ctx.emu;
  });
  return ctx;
}
