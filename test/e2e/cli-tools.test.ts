// The operator and API commands as child processes: migrate, apikey create|list|revoke, link, token, send, campaign.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { startDevStack, type DevStack } from '../../src/cli/dev.js';

const ROOT = process.cwd();

type Run = { code: number; stdout: string; stderr: string };

/** Runs the CLI in this process (same program as the binary; process start-up is covered by cli-dev/cli-emulator). */
async function wxsub(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi
    .spyOn(console, 'log')
    .mockImplementation((...a: unknown[]) => void out.push(a.map(String).join(' ')));
  const error = vi
    .spyOn(console, 'error')
    .mockImplementation((...a: unknown[]) => void err.push(a.map(String).join(' ')));
  let code = 0;
  try {
    const program = buildProgram({ WXSUB_LOG_LEVEL: 'silent', ...env });
    program.configureOutput({ writeErr: (s) => void err.push(s), writeOut: (s) => void out.push(s) });
    await program.parseAsync(['node', 'wxsub', ...args]);
  } catch (e) {
    code = 1;
    err.push(e instanceof Error ? e.message : String(e));
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

/** Runs the real binary entry (`node --import tsx src/cli/main.ts …`) as a child process. */
function spawnWxsub(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { cwd: ROOT, timeout: 30_000 },
      (e, stdout, stderr) => {
        const code = e
          ? typeof (e as { code?: unknown }).code === 'number'
            ? (e as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('database commands', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('migrates, then creates, lists and revokes an API key without ever listing the key', async () => {
    const env = { WXSUB_SQLITE_PATH: join(dir, 'cli.db') };
    const m1 = await wxsub(['migrate'], env);
    expect(m1.code).toBe(0);
    expect(m1.stdout).toMatch(/SQLite .*cli\.db: [1-9]\d* migration\(s\) applied/);
    const m2 = await wxsub(['migrate'], env);
    expect(m2.stdout).toMatch(/: 0 migration\(s\) applied/);

    const created = await wxsub(['apikey', 'create', 'ci-bot'], env);
    expect(created.code).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^wxs_[A-Za-z0-9]{32}$/);
    const id = /created API key (\S+)/.exec(created.stderr)?.[1];
    expect(id).toBeTruthy();

    const listed = await wxsub(['apikey', 'list'], env);
    expect(listed.stdout).toContain(id as string);
    expect(listed.stdout).toContain('ci-bot');
    expect(listed.stdout).toContain('active');
    expect(listed.stdout).not.toContain(key);

    expect((await wxsub(['apikey', 'revoke', id as string], env)).code).toBe(0);
    expect((await wxsub(['apikey', 'list'], env)).stdout).toContain('revoked');
    const missing = await wxsub(['apikey', 'revoke', 'key_nope'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no API key with id key_nope');
  }, 60_000);

  it('prints a consent link (child process) and fails with exit 1 on a bad argument', async () => {
    const r = await spawnWxsub([
      'link',
      '--url',
      'https://sub.example.com',
      '--template',
      'TPL',
      '--next',
      'https://app.example.com/x',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(
      'https://sub.example.com/consent/one-time?template=TPL&scene=auto&next=https%3A%2F%2Fapp.example.com%2Fx',
    );
    const bad = await spawnWxsub(['link', '--template', 'TPL', '--scene', 'x']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("must be 0–10000, 'auto' or 'any'");
  }, 60_000);
});

describe('commands against a running dev stack', () => {
  let stack: DevStack;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-cli-stack-'));
    stack = await startDevStack({
      servicePort: 0,
      emulatorPort: 0,
      demoPort: 0,
      dataDir: dir,
      logLevel: 'silent',
    });
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('token: prints a redacted summary, and the full token only with --reveal', async () => {
    const env = {
      WXSUB_WECHAT_APP_ID: stack.appId,
      WXSUB_WECHAT_APP_SECRET: 'dead0000beef0000dead0000beef0001',
      WXSUB_WECHAT_BASE_URL: stack.emulatorUrl,
      WXSUB_SQLITE_PATH: join(dir, 'tok.db'),
    };
    const r = await wxsub(['token'], env);
    expect(r.code).toBe(0);
    const m = /access_token (\S+)… \((\d+) chars\), expires in (\d+) s/.exec(r.stdout);
    expect(m).not.toBeNull();
    const revealed = await wxsub(['token', '--reveal'], env);
    const full = revealed.stdout.trim();
    expect(full.length).toBe(Number(m?.[2]));
    expect(full.startsWith(m?.[1] as string)).toBe(true);
    expect(r.stdout + r.stderr).not.toContain(full);
    const bad = await wxsub(['token'], {
      ...env,
      WXSUB_WECHAT_APP_SECRET: 'ffff0000ffff0000ffff0000ffff0000',
      WXSUB_SQLITE_PATH: join(dir, 'tok2.db'),
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).not.toContain('ffff0000ffff0000ffff0000ffff0000');
  }, 60_000);

  it('send: 409 without a grant (exit 1), 202 with one; campaign create/status', async () => {
    const user = stack.users[0]!;
    const env = { WXSUB_URL: stack.serviceUrl, WXSUB_API_KEY: stack.apiKey };
    const args = [
      'send',
      '--openid',
      user.openid,
      '--template',
      stack.oneTimeTemplateId,
      '--title',
      '到货提醒',
      '--content',
      '已到货',
    ];
    const refused = await wxsub(args, env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/HTTP 409/);

    await stack.store.grants.recordOneTime({
      appId: stack.appId,
      openid: user.openid,
      templateId: stack.oneTimeTemplateId,
      scene: 7,
      now: Date.now(),
    });
    stack.emulator.state.grantOneTime(stack.appId, user.openid, stack.oneTimeTemplateId, 7);
    const ok = await wxsub(args, env);
    expect(ok.code).toBe(0);
    const body = JSON.parse(ok.stdout) as { id: string; status: string };
    expect(body.id).toBeTruthy();

    const noKey = await wxsub(args, { WXSUB_URL: stack.serviceUrl, WXSUB_API_KEY: '' });
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toContain('API key is required');

    const camp = await wxsub(
      [
        'campaign',
        'create',
        '--template',
        stack.oneTimeTemplateId,
        '--name',
        'cli',
        '--title',
        '活动',
        '--content',
        '开始啦',
      ],
      env,
    );
    expect(camp.code).toBe(0);
    const c = JSON.parse(camp.stdout) as { id: string };
    const status = await wxsub(['campaign', 'status', c.id], env);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(c.id);
  }, 90_000);
});
