// `wxsub dev` as a child process: prints its URLs, serves the demo, service and inbox, exits cleanly on SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = process.cwd();
let child: ChildProcess | undefined;
let dataDir: string | undefined;

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await new Promise((r) => child?.once('exit', r));
  }
  child = undefined;
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  dataDir = undefined;
});

/** Resolves with stdout once `pattern` matches it; rejects when the process exits first or on timeout. */
function waitForOutput(p: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(
      () => reject(new Error(`timeout waiting for ${pattern}\nstdout:\n${out}\nstderr:\n${err}`)),
      timeoutMs,
    );
    p.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (pattern.test(out)) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    p.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    p.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before printing ${pattern}\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });
}

describe('wxsub dev (child process)', () => {
  it('prints the three URLs, serves them, and exits 0 on SIGTERM', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'wxsub-dev-'));
    child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'dev',
        '--service-port',
        '0',
        '--emulator-port',
        '0',
        '--demo-port',
        '0',
        '--data-dir',
        dataDir,
      ],
      { cwd: ROOT, env: { ...process.env, WXSUB_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const out = await waitForOutput(child, /Press Ctrl-C to stop/, 45_000);
    const demo = /Demo page\s+(http:\/\/\S+)/.exec(out)?.[1];
    const service = /Service\s+(http:\/\/\S+)/.exec(out)?.[1];
    const emulator = /Emulator\s+(http:\/\/\S+)/.exec(out)?.[1];
    const inbox = /(http:\/\/\S+\/__emulator\/inbox\/\S+)/.exec(out)?.[1];
    const apiKey = /API key \(demo\): (\S+)/.exec(out)?.[1];
    expect(demo && service && emulator && inbox && apiKey).toBeTruthy();

    const page = await fetch(demo as string);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('订阅一次提醒');
    expect(html).toContain(`${service}/consent/one-time`);
    expect(html).not.toContain(apiKey as string);

    const box = await fetch(inbox as string);
    expect(box.status).toBe(200);

    // The service knows the seeded template and the demo key works; nobody holds a grant yet.
    const send = await fetch(`${service}/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        kind: 'one-time',
        openid: 'oDevZhangSan000000000000001',
        template: 'DevOneTimeTpl000000000000000000000000000001',
        title: 'Hi',
        content: 'There',
      }),
    });
    expect(send.status).toBe(409);

    // The emulator hands out tokens to the seeded app.
    const tok = await fetch(`${emulator}/cgi-bin/stable_token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        grant_type: 'client_credential',
        appid: 'wxdev0000000000001',
        secret: 'dead0000beef0000dead0000beef0001',
      }),
    });
    expect(((await tok.json()) as { access_token?: string }).access_token).toBeTruthy();

    expect(existsSync(join(dataDir, 'dev.db'))).toBe(true);

    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      child?.once('exit', (code, signal) => r({ code, signal })),
    );
    child.kill('SIGTERM');
    const { code, signal } = await exited;
    expect(signal).toBeNull();
    expect(code).toBe(0);
    await expect(fetch(demo as string)).rejects.toThrow();
  }, 90_000);
});
