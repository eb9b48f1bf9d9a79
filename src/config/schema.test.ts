// Tests of config parsing: defaults, env/flags, strictness, secret-free errors, and docs/config.md staying in sync.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../errors.js';
import { CONFIG_DOC, configFromEnv, parseConfig, renderConfigTable, serviceConfigSchema } from './schema.js';

function leafPaths(o: unknown, prefix = ''): string[] {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return [prefix];
  return Object.entries(o).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
}

describe('parseConfig', () => {
  it('fills the documented defaults', () => {
    const c = parseConfig({});
    expect(c.port).toBe(3000);
    expect(c.sqlitePath).toBe('./data/wxsub.db');
    expect(c.consent.ttlSeconds).toBe(600);
    expect(c.bodyLimitBytes).toBe(1_048_576);
    expect(c.delivery).toEqual({
      concurrency: 16,
      batchSize: 100,
      leaseMs: 30_000,
      ratePerSecond: 500,
      maxAttempts: 8,
      backoffBaseMs: 500,
      backoffMaxMs: 60_000,
      minuteLimit: 'pause',
    });
  });

  it('rejects unknown keys and bad values with a readable list and without echoing secrets', () => {
    const secret = 'super-secret-value-that-is-too-short';
    try {
      parseConfig({
        port: 'x',
        nope: 1,
        wechat: { appSecret: 5, extra: true },
        consent: { secret: 'short-secret-xyz' },
      });
      expect.unreachable();
    } catch (e) {
      expect(isAppError(e, 'CONFIG_INVALID')).toBe(true);
      const problems = (e as { details: { problems: string[] } }).details.problems;
      expect(problems.some((p) => p.startsWith('port:'))).toBe(true);
      expect(problems.some((p) => p.includes('nope'))).toBe(true);
      expect(problems.some((p) => p.startsWith('wechat') && p.includes('extra'))).toBe(true);
      expect(problems.some((p) => p.startsWith('consent.secret:'))).toBe(true);
      expect(String((e as Error).message)).not.toContain('short-secret-xyz');
      expect(JSON.stringify(problems)).not.toContain(secret);
    }
  });

  it('checks cross-field rules', () => {
    expect(() => parseConfig({ delivery: { backoffBaseMs: 70_000 } })).toThrow(/backoffBaseMs/);
    // The path of publicBaseUrl scopes the consent cookies: `;` would cut their Path attribute short.
    expect(() => parseConfig({ publicBaseUrl: 'https://svc.example.com/a;b' })).toThrow(/publicBaseUrl/);
    expect(parseConfig({ publicBaseUrl: 'https://svc.example.com/wxsub/' }).publicBaseUrl).toBe(
      'https://svc.example.com/wxsub/',
    );
  });
});

describe('configFromEnv', () => {
  it('reads WXSUB_* and unprefixed DATABASE_URL/REDIS_URL, coerces types, and lets flags win', () => {
    const c = configFromEnv(
      {
        WXSUB_PORT: '8080',
        DATABASE_URL: 'postgres://u@h/db',
        REDIS_URL: 'redis://127.0.0.1:6379',
        WXSUB_CONSENT_NEXT_ALLOWLIST: 'https://a.example, https://b.example/x/',
        WXSUB_DELIVERY_CONCURRENCY: '4',
        WXSUB_WECHAT_APP_ID: 'wx1',
        WXSUB_HOST: '',
      },
      { port: 9090, wechat: { baseUrl: 'http://127.0.0.1:4000' } },
    );
    expect(c.port).toBe(9090);
    expect(c.host).toBe('127.0.0.1');
    expect(c.databaseUrl).toBe('postgres://u@h/db');
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.consent.nextAllowlist).toEqual(['https://a.example', 'https://b.example/x/']);
    expect(c.delivery.concurrency).toBe(4);
    expect(c.wechat).toMatchObject({ appId: 'wx1', baseUrl: 'http://127.0.0.1:4000' });
  });

  it('names the env-derived field in errors', () => {
    expect(() => configFromEnv({ WXSUB_PORT: 'eighty' })).toThrow(/port/);
  });

  it('reads the 45011 policy and refuses values it does not know', () => {
    expect(configFromEnv({ WXSUB_DELIVERY_MINUTE_LIMIT: 'backoff' }).delivery.minuteLimit).toBe('backoff');
    expect(() => configFromEnv({ WXSUB_DELIVERY_MINUTE_LIMIT: 'wait' })).toThrow(/delivery\.minuteLimit/);
  });
});

describe('CONFIG_DOC', () => {
  it('documents every setting of the schema exactly once', () => {
    const leaves = leafPaths(serviceConfigSchema.parse({})).sort();
    expect(CONFIG_DOC.map((r) => r.path).sort()).toEqual(leaves);
    for (const r of CONFIG_DOC) expect(r.env).toMatch(/^(WXSUB_[A-Z0-9_]+|DATABASE_URL|REDIS_URL)$/);
  });

  it('is rendered verbatim in docs/config.md and the README', () => {
    const doc = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');
    expect(doc).toContain(renderConfigTable());
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(renderConfigTable());
  });
});
