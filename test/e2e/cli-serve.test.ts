// `wxsub serve` as a child process against an emulator: env + flags config, migrate at start, prints its URL, SIGINT exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';

const ROOT = process.cwd();
const APP = { appid: 'wxservecli00000001', secret: '5e77e000000000000000000000000001' };

describe('wxsub serve (child process)', () => {
  let emulator: Emulator;
  let emulatorUrl: string;
  let dir: string;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-serve-'));
    emulator = await createEmulator({ seed: { apps: [{ ...APP, users: [{ openid: 'oServeUser1' }] }] } });
    emulatorUrl = await emulator.listen({ port: 0 });
  });
  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await emulator?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts on SQLite, answers /healthz and /v1 auth, and stops cleanly on SIGINT', async () => {
    const sqlitePath = join(dir, 'svc.db');
    child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--port', '0', '--sqlite-path', sqlitePath],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          WXSUB_WECHAT_APP_ID: APP.appid,
          WXSUB_WECHAT_APP_SECRET: APP.secret,
          WXSUB_WECHAT_BASE_URL: emulatorUrl,
          WXSUB_LOG_LEVEL: 'info',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child?.once('exit', (code) => r(code)));
    const deadline = Date.now() + 45_000;
    let url: string | undefined;
    while (url === undefined) {
      url = /wxsub service listening on (http:\/\/\S+)/.exec(out)?.[1];
      if (url === undefined && (child.exitCode !== null || Date.now() > deadline))
        throw new Error(`serve did not start:\n${out}\n${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(((await health.json()) as { engine: string }).engine).toBe('sqlite');
    expect((await fetch(`${url}/v1/messages`)).status).toBe(401);
    expect(existsSync(sqlitePath)).toBe(true);

    child.kill('SIGINT');
    expect(await exited).toBe(0);
    // Logs are JSON on stderr and never carry the app secret.
    expect(err).toContain('"msg"');
    expect(err).not.toContain(APP.secret);
  }, 60_000);
});
