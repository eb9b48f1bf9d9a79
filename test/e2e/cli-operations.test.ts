// What an operator meets: configuration errors with their stable code, WXSUB_DATA_DIR, why a store is unreachable,
// no secret in logs, errors or pages (trace level, WeChat faults, Redis down), SIGTERM, HTTPS:// base URLs.
// The real CLI in child processes, the real emulator, PostgreSQL and Redis on loopback.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromEnv, parseConfig } from '../../src/config/schema.js';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';
import { createStore } from '../../src/store/index.js';

const ROOT = process.cwd();
const MAIN_TS = join(ROOT, 'src/cli/main.ts');
// Absolute, so the CLI can run with another working directory.
const TSX = import.meta.resolve('tsx');

const APP = { appid: 'wxopsapp000000001', secret: 'a0d17e5ec2e7a0d17e5ec2e7a0d17e51' };
const USER = 'oOpsUser000000000000000001';
const TPL = 'OpsOneTimeTpl0000000000000000000000000001';
const SECRETS = {
  appSecret: APP.secret,
  consentSecret: 'C0nsentS3cretOps00C0nsentS3cretOps009876',
  pushToken: 'PushT0kenOps004242',
  aesKey: 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG',
};

type Child = {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
};

function runCli(args: string[], env: Record<string, string>, cwd = ROOT): Child {
  const proc = spawn(process.execPath, ['--import', TSX, MAIN_TS, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, err: () => err, exited };
}

async function waitForUrl(c: Child, timeoutMs = 45_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const url = /wxsub service listening on (http:\/\/\S+)/.exec(c.out())?.[1];
    if (url) return url;
    if (c.proc.exitCode !== null || Date.now() > deadline)
      throw new Error(`serve did not start:\n${c.out()}\n${c.err()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function kill(c: Child | undefined): void {
  if (c && c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
}

async function seededEmulator(): Promise<{ emulator: Emulator; url: string }> {
  const emulator = await createEmulator({
    seed: {
      apps: [
        {
          ...APP,
          businessDomains: ['127.0.0.1'],
          users: [{ openid: USER }],
          templates: [{ templateId: TPL, kind: 'one-time', title: '到货提醒' }],
        },
      ],
    },
  });
  return { emulator, url: await emulator.listen({ port: 0 }) };
}

/** The environment that points `wxsub serve` at the seeded app on the emulator at `emulatorUrl`. */
function appEnv(emulatorUrl: string): Record<string, string> {
  return {
    WXSUB_WECHAT_APP_ID: APP.appid,
    WXSUB_WECHAT_APP_SECRET: APP.secret,
    WXSUB_WECHAT_BASE_URL: emulatorUrl,
  };
}

/**
 * A seeded emulator and a scratch folder for one describe block, and the `wxsub serve` child it starts (killed
 * afterwards if still running): `fx.emulator`, `fx.emulatorUrl`, `fx.dir`, `fx.svc`.
 */
function serviceFixture(prefix: string): {
  emulator: Emulator;
  emulatorUrl: string;
  dir: string;
  svc: Child | undefined;
} {
  const fx = {
    emulator: undefined as unknown as Emulator,
    emulatorUrl: '',
    dir: '',
    svc: undefined as Child | undefined,
  };
  beforeAll(async () => {
    fx.dir = mkdtempSync(join(tmpdir(), prefix));
    ({ emulator: fx.emulator, url: fx.emulatorUrl } = await seededEmulator());
  });
  afterAll(async () => {
    kill(fx.svc);
    await fx.emulator?.close();
    rmSync(fx.dir, { recursive: true, force: true });
  });
  return fx;
}

// ───────────────────────────── 1. configuration ─────────────────────────────

describe('configuration', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-ops-cfg-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('an invalid consent.nextAllowlist entry is rejected by the config schema with CONFIG_INVALID naming the setting', () => {
    // docs/config.md: "a bad value stops the service with CONFIG_INVALID and a list of `path: problem` lines".
    // An entry that is not an absolute http(s) URL can never match; createAllowlist throws a bare TypeError later.
    let caught: unknown;
    try {
      configFromEnv({ WXSUB_CONSENT_NEXT_ALLOWLIST: 'app.example.com' });
    } catch (err) {
      caught = err;
    }
    expect((caught as { code?: string } | undefined)?.code).toBe('CONFIG_INVALID');
    expect(String((caught as Error | undefined)?.message)).toContain('consent.nextAllowlist');
  });

  it('wxsub serve with an invalid WXSUB_CONSENT_NEXT_ALLOWLIST fails with CONFIG_INVALID (not a bare TypeError)', async () => {
    const c = runCli(['serve', '--port', '0'], {
      WXSUB_SQLITE_PATH: join(dir, 'allow.db'),
      WXSUB_WECHAT_APP_ID: APP.appid,
      WXSUB_WECHAT_APP_SECRET: APP.secret,
      WXSUB_CONSENT_NEXT_ALLOWLIST: 'app.example.com',
      WXSUB_LOG_LEVEL: 'silent',
    });
    const code = await Promise.race([c.exited, sleep(30_000).then(() => 'timeout' as const)]);
    kill(c);
    expect(code).toBe(1);
    expect(c.err()).toMatch(/CONFIG_INVALID|consent\.nextAllowlist/);
  }, 40_000);

  it('a bad config value makes the CLI exit 1 and print the stable code CONFIG_INVALID', async () => {
    // docs/config.md: "a bad value stops the service with `CONFIG_INVALID`"; the brief: "a stable code".
    const c = runCli(['migrate'], {
      WXSUB_SQLITE_PATH: join(dir, 'bad.db'),
      WXSUB_DELIVERY_CONCURRENCY: '-3',
    });
    expect(await c.exited).toBe(1);
    expect(c.err()).toContain('delivery.concurrency');
    expect(c.err()).toContain('CONFIG_INVALID');
  }, 30_000);

  it('wxsub serve without an app id stops with CONFIG_INVALID naming WXSUB_WECHAT_APP_ID', async () => {
    const c = runCli(['serve', '--port', '0'], {
      WXSUB_SQLITE_PATH: join(dir, 'noapp.db'),
      WXSUB_WECHAT_APP_ID: '',
      WXSUB_LOG_LEVEL: 'silent',
    });
    expect(await c.exited).toBe(1);
    expect(c.err()).toContain('CONFIG_INVALID');
    expect(c.err()).toContain('WXSUB_WECHAT_APP_ID');
  }, 30_000);

  it('WXSUB_DATA_DIR ("Directory for local data") decides where the SQLite database goes', async () => {
    // README/docs/config.md document --data-dir / WXSUB_DATA_DIR (default ./data) as a `wxsub serve` setting.
    const cwd = mkdtempSync(join(dir, 'cwd-'));
    const dataDir = mkdtempSync(join(dir, 'data-'));
    const c = runCli(['migrate'], { WXSUB_DATA_DIR: dataDir }, cwd);
    expect(await c.exited).toBe(0);
    // The database must not land in ./data of whatever directory the operator started it from.
    expect(existsSync(join(cwd, 'data'))).toBe(false);
    expect(c.out()).toContain(dataDir);
  }, 30_000);

  it('a PostgreSQL that cannot be reached: the CLI says why (and never prints the password)', async () => {
    const c = runCli(['migrate'], {
      DATABASE_URL: 'postgres://postgres:Pg5ecretOps0077@127.0.0.1:1/wxsub',
      WXSUB_LOG_LEVEL: 'trace',
    });
    expect(await c.exited).toBe(1);
    const all = c.out() + c.err();
    expect(all).not.toContain('Pg5ecretOps0077');
    // "The store is unavailable" alone does not tell the operator what failed (connection refused, where, which code).
    expect(all).toMatch(/STORE_UNAVAILABLE|ECONNREFUSED|127\.0\.0\.1:1\b/);
  }, 30_000);
});

// ──────────────────── 2. secrets never reach logs, errors or pages ────────────────────

describe('secrets never reach logs, errors or pages (wxsub serve at trace level)', () => {
  const fx = serviceFixture('wxsub-ops-sec-');

  it('bad API keys, WeChat faults (40001, 5xx, 45009), /metrics, /v1/status: no secret anywhere', async () => {
    const sqlitePath = join(fx.dir, 'svc.db');
    const env = {
      WXSUB_SQLITE_PATH: sqlitePath,
      ...appEnv(fx.emulatorUrl),
      WXSUB_CONSENT_SECRET: SECRETS.consentSecret,
      WXSUB_WECHAT_PUSH_TOKEN: SECRETS.pushToken,
      WXSUB_WECHAT_ENCODING_AES_KEY: SECRETS.aesKey,
      WXSUB_CONSENT_ONE_TIME_TEMPLATES: TPL,
      WXSUB_WECHAT_TOKEN_MODE: 'classic',
      WXSUB_LOG_LEVEL: 'trace',
    };
    const mk = runCli(['apikey', 'create', 'ops'], env);
    expect(await mk.exited).toBe(0);
    const apiKey = mk.out().trim();
    fx.svc = runCli(['serve', '--port', '0'], env);
    const url = await waitForUrl(fx.svc);
    const bodies: string[] = [];
    const rec = async (r: Response) => bodies.push(`${r.status} ${await r.text()}`);
    const auth = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    await rec(await fetch(`${url}/v1/status`, { headers: { authorization: `Bearer ${apiKey}x` } }));
    await rec(await fetch(`${url}/v1/status`, { headers: { authorization: `Basic ${apiKey}` } }));
    await rec(
      await fetch(`${url}/v1/templates/${TPL}`, {
        method: 'PUT',
        headers: auth,
        body: JSON.stringify({ kind: 'one-time', title: '到货提醒' }),
      }),
    );
    const store = createStore(sqlitePath);
    for (let s = 1; s <= 4; s++)
      await store.grants.recordOneTime({
        appId: APP.appid,
        openid: USER,
        templateId: TPL,
        scene: s,
        now: Date.now(),
      });
    await store.close();
    fx.emulator.state.grantOneTime(APP.appid, USER, TPL, 1);
    const send = async (scene: number) =>
      rec(
        await fetch(`${url}/v1/messages`, {
          method: 'POST',
          headers: auth,
          body: JSON.stringify({
            kind: 'one-time',
            openid: USER,
            template: TPL,
            scene,
            title: 't',
            content: 'c',
          }),
        }),
      );
    await send(1);
    await sleep(1000);
    fx.emulator.state.setFaults({ path: '*', errcodes: { '40001': 1 } });
    await send(2);
    await sleep(1000);
    fx.emulator.state.setFaults({ path: '*', http5xx: 1 });
    await send(3);
    await sleep(1500);
    fx.emulator.state.setFaults({ path: '*', errcodes: { '45009': 1 } });
    await send(4);
    await sleep(1500);
    fx.emulator.state.setFaults([]);
    await rec(await fetch(`${url}/metrics`));
    await rec(await fetch(`${url}/v1/status`, { headers: auth }));
    await rec(await fetch(`${url}/v1/messages`, { headers: auth }));
    await rec(await fetch(`${url}/consent/one-time?template=${TPL}&scene=5`, { redirect: 'manual' }));
    fx.svc.proc.kill('SIGTERM');
    expect(await fx.svc.exited).toBe(0);
    const all = `${bodies.join('\n')}\n${fx.svc.out()}\n${fx.svc.err()}`;
    for (const v of [...Object.values(SECRETS), apiKey]) expect(all).not.toContain(v);
  }, 90_000);

  it('an unreachable REDIS_URL (with a password) leaves stderr as JSON log lines only, without the password', async () => {
    // docs/cli.md: "Logs are JSON lines (pino) on stderr, with tokens, secrets and signatures redacted".
    const c = runCli(['serve', '--port', '0'], {
      WXSUB_SQLITE_PATH: join(fx.dir, 'redis.db'),
      ...appEnv(fx.emulatorUrl),
      REDIS_URL: 'redis://default:R3disPwOps0055@127.0.0.1:1',
      WXSUB_LOG_LEVEL: 'info',
    });
    try {
      await waitForUrl(c).catch(() => undefined);
      await sleep(1500);
      c.proc.kill('SIGTERM');
      await Promise.race([c.exited, sleep(12_000)]);
    } finally {
      kill(c);
    }
    expect(c.err()).not.toContain('R3disPwOps0055');
    const notJson = c
      .err()
      .split('\n')
      .filter((l) => l.trim() !== '')
      .filter((l) => {
        try {
          JSON.parse(l);
          return false;
        } catch {
          return true;
        }
      });
    expect(notJson.slice(0, 3)).toEqual([]);
  }, 60_000);
});

// ───────────────────────────── 3. graceful shutdown ─────────────────────────────

describe('wxsub serve shuts down gracefully on SIGTERM', () => {
  const fx = serviceFixture('wxsub-ops-stop-');

  it('an HTTP request in flight at SIGTERM is answered, a send in flight gets its outcome, exit code 0', async () => {
    const sqlitePath = join(fx.dir, 'stop.db');
    const env = {
      WXSUB_SQLITE_PATH: sqlitePath,
      ...appEnv(fx.emulatorUrl),
      WXSUB_LOG_LEVEL: 'info',
    };
    const mk = runCli(['apikey', 'create', 'stop'], env);
    expect(await mk.exited).toBe(0);
    const apiKey = mk.out().trim();
    fx.svc = runCli(['serve', '--port', '0'], env);
    const url = await waitForUrl(fx.svc);
    const auth = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    expect(
      (
        await fetch(`${url}/v1/templates/${TPL}`, {
          method: 'PUT',
          headers: auth,
          body: JSON.stringify({ kind: 'one-time', title: '到货提醒' }),
        })
      ).status,
    ).toBe(200);
    const store = createStore(sqlitePath);
    for (const scene of [1, 2])
      await store.grants.recordOneTime({
        appId: APP.appid,
        openid: USER,
        templateId: TPL,
        scene,
        now: Date.now(),
      });
    fx.emulator.state.grantOneTime(APP.appid, USER, TPL, 1);
    // Token first (no latency), then the send takes 2 s at "WeChat".
    await fetch(`${fx.emulatorUrl}/__emulator`);
    fx.emulator.state.setFaults({ path: '/cgi-bin/message/template/subscribe', latencyMs: 2000 });
    const r1 = await fetch(`${url}/v1/messages`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({
        kind: 'one-time',
        openid: USER,
        template: TPL,
        scene: 1,
        title: 't',
        content: 'c',
      }),
    });
    expect(r1.status).toBe(202);
    const { id } = (await r1.json()) as { id: string };
    await sleep(500); // the dispatcher has the send on its way

    // A second request whose body is still arriving when SIGTERM comes.
    const body = JSON.stringify({
      kind: 'one-time',
      openid: USER,
      template: TPL,
      scene: 2,
      title: 't',
      content: 'c',
    });
    const u = new URL(url);
    const sock = connect(Number(u.port), u.hostname);
    let answer = '';
    sock.on('data', (d: Buffer) => (answer += d.toString()));
    const ended = new Promise<void>((r) => sock.on('close', () => r()));
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write(
      `POST /v1/messages HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body.slice(0, 10)}`,
    );
    await sleep(200);
    fx.svc.proc.kill('SIGTERM');
    await sleep(300);
    sock.write(body.slice(10));
    await Promise.race([ended, sleep(12_000)]);
    sock.destroy();
    const code = await Promise.race([fx.svc.exited, sleep(15_000).then(() => 'timeout' as const)]);
    fx.emulator.state.setFaults([]);

    expect(answer).toMatch(/^HTTP\/1\.1 202/);
    expect(code).toBe(0);
    // docs/cli.md: "messages already sent to WeChat get their outcome recorded".
    const m = await store.outbox.getMessage(id);
    await store.close();
    expect(m?.status).toBe('sent');
  }, 90_000);

  it('on PostgreSQL + Redis, SIGTERM exits 0 promptly', async () => {
    const { skipUnless, createTempDatabase, REDIS_URL } = await import('../support/services.js');
    if ((await skipUnless('postgres')) || (await skipUnless('redis'))) return;
    const db = await createTempDatabase('wxsub_ops');
    try {
      const c = runCli(['serve', '--port', '0'], {
        DATABASE_URL: db.url,
        REDIS_URL,
        ...appEnv(fx.emulatorUrl),
        WXSUB_LOG_LEVEL: 'warn',
      });
      fx.svc = c;
      const url = await waitForUrl(c);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      const t0 = Date.now();
      c.proc.kill('SIGTERM');
      const code = await Promise.race([c.exited, sleep(15_000).then(() => 'timeout' as const)]);
      kill(c);
      expect(code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      await db.drop();
    }
  }, 90_000);
});

// ───────────────────────────── 4. HTTP surface ─────────────────────────────

describe('HTTP surface', () => {
  async function inMemoryApp(config: Parameters<typeof parseConfig>[0]) {
    const { createServiceApp } = await import('../../src/http/app.js');
    const dir = mkdtempSync(join(tmpdir(), 'wxsub-ops-app-'));
    const store = createStore(join(dir, 'x.db'));
    await store.migrate();
    const app = await createServiceApp({ store, wechat: { appId: APP.appid } }, parseConfig(config));
    return {
      app,
      async close() {
        await app.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  it('an https base URL written HTTPS:// (accepted by the schema) still marks consent cookies Secure', async () => {
    // docs/config.md: "An `https:` base also marks consent cookies `Secure`." URL schemes are case-insensitive and
    // the schema accepts HTTPS://…; consent-routes.ts tests publicBaseUrl.startsWith('https:') on the raw string.
    const svc = await inMemoryApp({
      publicBaseUrl: 'HTTPS://svc.example.com/wxsub',
      consent: { oneTimeTemplates: [TPL] },
    });
    try {
      const r = await svc.app.inject({ method: 'GET', url: `/consent/one-time?template=${TPL}&scene=3` });
      expect(r.statusCode).toBe(302);
      const cookie = String(r.headers['set-cookie']);
      expect(cookie).toContain('Path=/wxsub/consent');
      expect(cookie).toMatch(/;\s*Secure/);
    } finally {
      await svc.close();
    }
  });

  it("a request whose headers exceed Node's limit gets 414 HTTP_URI_TOO_LONG in the JSON error shape", async () => {
    const { createServiceApp } = await import('../../src/http/app.js');
    const dir = mkdtempSync(join(tmpdir(), 'wxsub-ops-http-'));
    const store = createStore(join(dir, 'x.db'));
    await store.migrate();
    const app = await createServiceApp({ store, wechat: { appId: APP.appid } }, parseConfig({}));
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      const answer = await new Promise<string>((resolve) => {
        const s = connect(port, '127.0.0.1');
        let a = '';
        s.on('data', (d: Buffer) => (a += d.toString()));
        s.on('close', () => resolve(a));
        s.on('error', () => resolve(a));
        s.write(`GET /healthz?x=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 414/);
      expect(answer).toContain('"code":"HTTP_URI_TOO_LONG"');
    } finally {
      await app.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
