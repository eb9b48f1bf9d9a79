// `wxsub emulator --port 0 --seed FILE` as a child process: prints its URL, serves tokens to the seeded app, stops on SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = process.cwd();
let child: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await new Promise((r) => child?.once('exit', r));
  }
  child = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function run(args: string[]): { p: ChildProcess; output: () => string; exit: Promise<number | null> } {
  const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  return { p, output: () => out, exit };
}

async function waitFor(
  re: RegExp,
  output: () => string,
  exit: Promise<unknown>,
  ms: number,
): Promise<RegExpExecArray> {
  let exited = false;
  void exit.then(() => (exited = true));
  const deadline = Date.now() + ms;
  for (;;) {
    const m = re.exec(output());
    if (m) return m;
    if (exited || Date.now() > deadline) throw new Error(`no ${re} in output:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('wxsub emulator (child process)', () => {
  it('prints its URL and serves access tokens to the seeded app only', async () => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-emu-'));
    const seedPath = join(dir, 'seed.json');
    writeFileSync(
      seedPath,
      JSON.stringify({
        apps: [
          {
            appid: 'wxclitest000000001',
            secret: 'c11e5700000000000000000000000c11',
            users: [{ openid: 'oCliUser1', nickname: '测试' }],
            templates: [{ templateId: 'CliTpl1', kind: 'one-time', title: '提醒' }],
          },
        ],
      }),
    );
    const r = run(['emulator', '--port', '0', '--seed', seedPath]);
    child = r.p;
    const m = await waitFor(/wxsub emulator listening on (http:\/\/\S+)/, r.output, r.exit, 30_000);
    const url = m[1] as string;
    // The banner's app lines follow the URL line; wait for them rather than racing the pipe.
    await waitFor(/app wxclitest000000001/, r.output, r.exit, 30_000);
    expect(r.output()).toContain('wxclitest000000001');
    expect(r.output()).not.toContain('c11e5700000000000000000000000c11');

    const ok = await fetch(
      `${url}/cgi-bin/token?grant_type=client_credential&appid=wxclitest000000001&secret=c11e5700000000000000000000000c11`,
    );
    const okBody = (await ok.json()) as { access_token?: string; expires_in?: number };
    expect(typeof okBody.access_token).toBe('string');
    expect(okBody.expires_in).toBe(7200);

    const bad = await fetch(
      `${url}/cgi-bin/token?grant_type=client_credential&appid=wxclitest000000001&secret=wrong`,
    );
    const badBody = (await bad.json()) as { errcode?: number };
    expect(badBody.errcode).toBe(40125);

    child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  }, 60_000);

  it('fails with a clear message for a bad seed file', async () => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-emu-'));
    const seedPath = join(dir, 'bad.json');
    writeFileSync(seedPath, '{"apps": [{"appid": "wx1"}]}');
    const r = run(['emulator', '--port', '0', '--seed', seedPath]);
    child = r.p;
    expect(await r.exit).toBe(1);
    expect(r.output()).toContain(seedPath);
    expect(r.output()).toContain('secret');
  }, 60_000);
});
