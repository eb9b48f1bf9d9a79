// Operator commands that work on the database and the token broker directly: migrate, token, apikey create|list|revoke.
import { existsSync } from 'node:fs';
import { configFromEnv, type ConfigFlags, type ServiceConfig } from '../config/schema.js';
import { AppError } from '../errors.js';
import type { Store } from '../store/store.js';
import { createCliLogger } from './logger.js';
import { openStore, openTokenStore, openWeChatClient } from './serve.js';

/** Opens the store, migrates it, runs `fn`, and always closes it. */
async function withStore<T>(config: ServiceConfig, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(config);
  try {
    await store.migrate();
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Where the data lives, for messages (a PostgreSQL URL loses its password). */
function describeTarget(config: ServiceConfig): string {
  if (config.databaseUrl === '') return `SQLite ${config.sqlitePath}`;
  try {
    const u = new URL(config.databaseUrl);
    u.password = '';
    u.search = ''; // parameters may carry credentials too (`?password=`, `sslpassword=`, `sslkey=`)
    return `PostgreSQL ${u.toString()}`;
  } catch {
    return 'PostgreSQL';
  }
}

/** `wxsub migrate`: applies pending migrations and prints how many ran. */
export async function runMigrate(env: NodeJS.ProcessEnv, flags: ConfigFlags): Promise<void> {
  const config = configFromEnv(env, flags);
  const store = await openStore(config);
  try {
    const applied = await store.migrate();
    console.log(`${describeTarget(config)}: ${applied} migration(s) applied`);
  } finally {
    await store.close();
  }
}

/**
 * A token shown safely: its first 6 characters, its length and when it expires.
 * @example summarizeToken('ACCESS_TOKEN_VALUE', 7_200_000) // 'ACCESS… (18 chars), expires in 7200 s'
 */
export function summarizeToken(value: string, expiresInMs: number | null): string {
  const head = value.length > 12 ? `${value.slice(0, 6)}…` : '…';
  const exp = expiresInMs === null ? '' : `, expires in ${Math.max(0, Math.round(expiresInMs / 1000))} s`;
  return `${head} (${value.length} chars)${exp}`;
}

/** Options of {@link runToken}. */
export type RunTokenOptions = { forceRefresh: boolean; reveal: boolean };

/**
 * `wxsub token`: gets the current access token through the SDK's broker (from the shared token store, or
 * fetched from WeChat) and prints a redacted summary; `--reveal` prints the full token alone on stdout.
 */
export async function runToken(
  env: NodeJS.ProcessEnv,
  flags: ConfigFlags,
  opts: RunTokenOptions,
): Promise<void> {
  const config = configFromEnv(env, flags);
  if (config.wechat.appId === '' || config.wechat.appSecret === '') {
    throw new AppError('CLI_USAGE', {
      message:
        'wxsub token needs WXSUB_WECHAT_APP_ID and WXSUB_WECHAT_APP_SECRET (or --wechat-app-id/--wechat-app-secret)',
    });
  }
  const logger = createCliLogger({ level: config.logLevel === 'info' ? 'warn' : config.logLevel });
  const tokenStore = await openTokenStore(config);
  const client = await openWeChatClient(config, { tokenStore, logger });
  try {
    const value = opts.forceRefresh ? await client.forceRefreshToken() : await client.getAccessToken();
    if (opts.reveal) {
      console.log(value);
      return;
    }
    const stored = await tokenStore.get(`token:${config.wechat.appId}:${config.wechat.tokenMode}`);
    const expiresIn = stored !== undefined && stored.value === value ? stored.expiresAt - Date.now() : null;
    console.log(
      `app ${config.wechat.appId} (${config.wechat.baseUrl || 'https://api.weixin.qq.com'}, ${config.wechat.tokenMode} mode)`,
    );
    console.log(
      `access_token ${summarizeToken(value, expiresIn)}${stored?.generation === undefined ? '' : `, generation ${stored.generation}`}`,
    );
  } finally {
    await client.close();
    await tokenStore.close();
  }
}

/** A SQLite target whose file does not exist yet: commands that only read or change keys leave it uncreated. */
function missingSqliteFile(config: ServiceConfig): boolean {
  return config.databaseUrl === '' && !existsSync(config.sqlitePath);
}

/** `wxsub apikey create <name>`: creates a key and prints it once (on stdout, alone on its line). */
export async function runApiKeyCreate(
  env: NodeJS.ProcessEnv,
  flags: ConfigFlags,
  name: string,
): Promise<void> {
  // One key per line in `apikey list`: a name may not break that line (or forge another).
  if (!/^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]{1,100}$/u.test(name) || name.trim() === '')
    throw new AppError('CLI_USAGE', {
      message: 'the key name must be 1–100 characters, not blank, without control characters or line breaks',
    });
  const config = configFromEnv(env, flags);
  const { createApiKey } = await import('../http/api-keys.js');
  await withStore(config, async (store) => {
    const { id, key } = await createApiKey(store, name);
    console.error(`created API key ${id} (${name}) in ${describeTarget(config)}; it is shown only once:`);
    console.log(key);
  });
}

/** `wxsub apikey list`: prints id, name, created and revoked times; never the keys. */
export async function runApiKeyList(env: NodeJS.ProcessEnv, flags: ConfigFlags): Promise<void> {
  const config = configFromEnv(env, flags);
  if (missingSqliteFile(config)) {
    console.log('(no API keys)');
    return;
  }
  await withStore(config, async (store) => {
    const keys = await store.apiKeys.list();
    if (keys.length === 0) {
      console.log('(no API keys)');
      return;
    }
    for (const k of keys) {
      const revoked = k.revokedAt === null ? 'active' : `revoked ${new Date(k.revokedAt).toISOString()}`;
      console.log(`${k.id}\t${k.name}\tcreated ${new Date(k.createdAt).toISOString()}\t${revoked}`);
    }
  });
}

/** `wxsub apikey revoke <id>`: revokes a key; fails when no such key exists. */
export async function runApiKeyRevoke(env: NodeJS.ProcessEnv, flags: ConfigFlags, id: string): Promise<void> {
  const config = configFromEnv(env, flags);
  if (missingSqliteFile(config))
    throw new AppError('AUTH_KEY_NOT_FOUND', {
      message: `no API key with id ${id} (no database at ${config.sqlitePath})`,
      details: { id },
    });
  await withStore(config, async (store) => {
    const keys = await store.apiKeys.list();
    if (!keys.some((k) => k.id === id))
      throw new AppError('AUTH_KEY_NOT_FOUND', { message: `no API key with id ${id}`, details: { id } });
    await store.apiKeys.revoke(id, Date.now());
    console.log(`revoked ${id}`);
  });
}
