// Unit tests of the CLI's pure parts: config flags, argument parsing, payloads, consent links, token summaries, ports, dev seed.
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { configFromEnv } from '../config/schema.js';
import { consentLink, payloadFromFlags } from './api-commands.js';
import { summarizeToken } from './admin.js';
import { configFlagsFrom } from './config-flags.js';
import { DEV_TEMPLATES, DEV_USERS, devSeed, keywordsOf } from './dev.js';
import { buildProgram } from './main.js';
import { findFreePort } from './ports.js';

describe('config flags', () => {
  it('turns parsed serve options into nested config flags that win over env', () => {
    const program = buildProgram({});
    const serve = program.commands.find((c) => c.name() === 'serve')!;
    serve.parseOptions([
      '--port',
      '8080',
      '--wechat-app-id',
      'wxflag',
      '--consent-next-allowlist',
      'https://a.example, https://b.example',
      '--delivery-concurrency',
      '4',
    ]);
    const flags = configFlagsFrom(serve.opts());
    expect(flags).toEqual({
      port: 8080,
      wechat: { appId: 'wxflag' },
      consent: { nextAllowlist: ['https://a.example', 'https://b.example'] },
      delivery: { concurrency: 4 },
    });
    const config = configFromEnv(
      { WXSUB_PORT: '9000', WXSUB_WECHAT_APP_ID: 'wxenv', WXSUB_LOG_LEVEL: 'debug' },
      flags,
    );
    expect(config.port).toBe(8080);
    expect(config.wechat.appId).toBe('wxflag');
    expect(config.logLevel).toBe('debug');
  });

  it('rejects a non-numeric numeric flag through the config schema', () => {
    const flags = configFlagsFrom({ port: 'abc' });
    expect(() => configFromEnv({}, flags)).toThrow(/port/);
  });
});

describe('argument parsing', () => {
  it('refuses an out-of-range port and scene', async () => {
    for (const args of [
      ['emulator', '--port', '70000'],
      ['link', '--template', 'T', '--scene', '10001'],
    ]) {
      const program = buildProgram({});
      program.configureOutput({ writeErr: () => {}, writeOut: () => {} });
      for (const c of program.commands)
        c.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
      await expect(program.parseAsync(['node', 'wxsub', ...args])).rejects.toMatchObject({
        code: 'commander.invalidArgument',
      });
    }
  });
});

describe('payloads and links', () => {
  it('builds one-time and notification payloads from flags', () => {
    expect(payloadFromFlags({ title: 'T', content: 'C', page: 'https://x.example/' })).toEqual({
      title: 'T',
      content: 'C',
      url: 'https://x.example/',
    });
    expect(payloadFromFlags({ kind: 'notification', data: '{"thing1":{"value":"v"}}' })).toEqual({
      data: { thing1: { value: 'v' } },
    });
    expect(() => payloadFromFlags({ title: 'T' })).toThrow(/--content/);
    expect(() => payloadFromFlags({ kind: 'notification', data: '[1]' })).toThrow(/object/);
  });

  it('builds the consent start URL', () => {
    const u = new URL(
      consentLink('https://sub.example.com/', {
        template: 'TPL',
        scene: 42,
        next: 'https://app.example.com/a?b=1#c',
      }),
    );
    expect(u.origin + u.pathname).toBe('https://sub.example.com/consent/one-time');
    expect(u.searchParams.get('template')).toBe('TPL');
    expect(u.searchParams.get('scene')).toBe('42');
    expect(u.searchParams.get('next')).toBe('https://app.example.com/a?b=1#c');
  });

  it('never shows a whole token in the summary', () => {
    const token = 'ABCDEF' + 'x'.repeat(130);
    const s = summarizeToken(token, 7_199_600);
    expect(s).toBe('ABCDEF… (136 chars), expires in 7200 s');
    expect(s).not.toContain('xxxxxxxx');
    expect(summarizeToken('short', null)).toBe('… (5 chars)');
  });
});

describe('ports', () => {
  it('returns the preferred port when free and another one when taken', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const taken = (srv.address() as { port: number }).port;
    try {
      const got = await findFreePort(taken, '127.0.0.1');
      expect(got).not.toBe(taken);
      expect(got).toBeGreaterThan(0);
    } finally {
      await new Promise((r) => srv.close(r));
    }
    const free = await findFreePort(0, '127.0.0.1');
    expect(await findFreePort(free, '127.0.0.1')).toBe(free);
  });
});

describe('dev seed', () => {
  it('seeds three users, one one-time and two notification templates, and the service host as business domain', () => {
    const seed = devSeed('127.0.0.1:4000', '127.0.0.1');
    const app = seed.apps[0]!;
    expect(app.users).toHaveLength(3);
    expect(DEV_USERS.map((u) => u.nickname)).toEqual(['张三', '李四', '王五']);
    expect(app.templates?.filter((t) => t.kind === 'one-time')).toHaveLength(1);
    expect(app.templates?.filter((t) => t.kind === 'notification')).toHaveLength(2);
    expect(app.businessDomains).toContain('127.0.0.1:4000');
  });

  it('derives notification keywords from template content', () => {
    expect(keywordsOf(DEV_TEMPLATES.shipping.content)).toEqual([
      { key: 'thing1', type: 'thing' },
      { key: 'character_string2', type: 'character_string' },
      { key: 'phrase3', type: 'phrase' },
    ]);
  });
});

describe('cli logger', () => {
  it('redacts secrets in messages and fields and keeps error messages', async () => {
    const { mkdtempSync, readFileSync, openSync, closeSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { createCliLogger } = await import('./logger.js');
    const dir = mkdtempSync(join(tmpdir(), 'wxsub-log-'));
    const fd = openSync(join(dir, 'log'), 'w');
    try {
      const log = createCliLogger({ level: 'info', fd });
      log.info(
        { url: 'https://api.weixin.qq.com/cgi-bin/token?secret=S3CR3T&appid=wx1', access_token: 'TOK123' },
        'GET ?access_token=TOK456',
      );
      log.error({ err: new Error('boom with secret=S3CR3T') }, 'failed');
      log.flush();
      const text = readFileSync(join(dir, 'log'), 'utf8');
      expect(text).not.toMatch(/S3CR3T|TOK123|TOK456/);
      expect(text).toContain('boom with secret=[REDACTED]');
      expect(text).toContain('appid=wx1');
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
