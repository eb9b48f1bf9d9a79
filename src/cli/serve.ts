// `wxsub serve` and the service composition root: config → store (migrated) → token store → SDK client → HTTP app + in-process dispatcher.
import { dirname } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { Logger as PinoLogger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { configFromEnv, type ConfigFlags, type ServiceConfig } from '../config/schema.js';
import { AppError, isAppError } from '../errors.js';
import { PG_CONNECT_TIMEOUT_MS } from '../store/common.js';
import type { DispatcherStatus } from '../delivery/dispatcher.js';
import type { Store } from '../store/store.js';
import { systemClock, type Clock } from '../util/clock.js';
import { closeServer } from '../util/close-server.js';
import type { TokenStore } from '../wechat/token-store.js';
import { errcodeInfo } from '../wechat/errcodes.js';
import { createCliLogger } from './logger.js';
import { runUntilSignal } from './shutdown.js';

/** Dependencies of {@link startService}. */
export type StartServiceDeps = {
  /** pino logger (already redacting). @default createCliLogger({ level: config.logLevel }) */
  logger?: PinoLogger;
  /** @default systemClock */
  clock?: Clock;
  /** fetch the SDK uses to reach WeChat. @default the SDK's undici pool */
  fetch?: typeof fetch;
};

/** A running service. */
export type RunningService = {
  /** Base URL it listens on, e.g. `http://127.0.0.1:3000`. */
  url: string;
  app: FastifyInstance;
  store: Store;
  config: ServiceConfig;
  /** Stops the dispatcher, the HTTP server, the SDK and the stores, in that order. */
  close(): Promise<void>;
};

/** Where the service keeps data: PostgreSQL when `databaseUrl` is set, else the SQLite file. */
export function databaseTarget(config: ServiceConfig): string {
  return config.databaseUrl !== '' ? config.databaseUrl : config.sqlitePath;
}

/** Opens the store for `config` (creating the SQLite folder) without migrating. */
export async function openStore(config: ServiceConfig, clock?: Clock): Promise<Store> {
  const { createStore } = await import('../store/index.js');
  return createStore(databaseTarget(config), {
    defaultSqlitePath: config.sqlitePath,
    ...(clock === undefined ? {} : { clock }),
  });
}

/** A token store's failure as the service reports store failures: `STORE_UNAVAILABLE`, with why as its cause. */
function unavailable<T>(p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    throw isAppError(err)
      ? err
      : new AppError('STORE_UNAVAILABLE', { message: 'The token store is unavailable', cause: err });
  });
}

/**
 * Wraps `store` so that `close()` also releases `extra` (a client the CLI opened for it), and a connection failure
 * (ECONNREFUSED, Redis's retry limit, a command timeout) is `STORE_UNAVAILABLE` with its cause.
 */
function owning(store: TokenStore, extra: () => Promise<void>): TokenStore {
  return {
    get: (key) => unavailable(store.get(key)),
    tryAcquireLease: (key, owner, ttlMs, now) => unavailable(store.tryAcquireLease(key, owner, ttlMs, now)),
    releaseLease: (key, owner) => unavailable(store.releaseLease(key, owner)),
    put: (key, token, ifGeneration) => unavailable(store.put(key, token, ifGeneration)),
    invalidate: (key, value) => unavailable(store.invalidate(key, value)),
    reserveForceRefresh: (key, now, budget) => unavailable(store.reserveForceRefresh(key, now, budget)),
    async close() {
      await store.close();
      await extra();
    },
  };
}

/**
 * Options of the service's Redis clients (token store, rate limiter). `commandTimeout`: a Redis that stops answering
 * without closing the connection (a network partition) fails each command after 2 s, so a token lookup or a rate
 * limit check turns into a message put back unsent instead of a send stuck in `sending` and a `stop()` that hangs.
 */
export const REDIS_CLIENT_OPTIONS = { maxRetriesPerRequest: 2, commandTimeout: 2000 } as const;

/**
 * A Redis client whose connection errors go to `onError` at most once per 10 s (it reconnects on its own). Without
 * a listener ioredis prints every failed reconnect to stderr as plain text, between the JSON log lines.
 */
async function openRedis(url: string, onError: (err: Error) => void) {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, REDIS_CLIENT_OPTIONS);
  let reportedAt = -Infinity;
  redis.on('error', (err: Error) => {
    const now = Date.now();
    if (now - reportedAt < REDIS_ERROR_EVERY_MS) return;
    reportedAt = now;
    onError(err);
  });
  return redis;
}
const REDIS_ERROR_EVERY_MS = 10_000;

/** Opens the token store: Redis when `redisUrl` is set, else PostgreSQL with `databaseUrl`, else a table in the SQLite file. */
export async function openTokenStore(
  config: ServiceConfig,
  onPoolError: (err: Error) => void = () => {},
): Promise<TokenStore> {
  if (config.redisUrl !== '') {
    const redis = await openRedis(config.redisUrl, onPoolError);
    const { createRedisTokenStore } = await import('../wechat/token-stores/redis.js');
    return owning(createRedisTokenStore(redis), async () => {
      redis.disconnect();
    });
  }
  if (config.databaseUrl !== '') {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({
      connectionString: config.databaseUrl,
      max: 4,
      connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    });
    // An idle client's error (server restart, terminated backend) is emitted on the pool; unheard, it kills the process.
    pool.on('error', onPoolError);
    const { createPostgresTokenStore } = await import('../wechat/token-stores/postgres.js');
    return owning(createPostgresTokenStore(pool), () => pool.end());
  }
  const { createSqliteTokenStore } = await import('../wechat/token-stores/sqlite.js');
  mkdirSync(dirname(config.sqlitePath), { recursive: true });
  return createSqliteTokenStore(config.sqlitePath);
}

/** Builds the SDK client for the configured account. */
export async function openWeChatClient(
  config: ServiceConfig,
  deps: { tokenStore: TokenStore; logger: PinoLogger; clock?: Clock; fetch?: typeof fetch },
) {
  const { createWeChatClient } = await import('../wechat/index.js');
  return createWeChatClient(
    {
      tokenStore: deps.tokenStore,
      logger: deps.logger.child({ component: 'wechat' }),
      ...(deps.clock === undefined ? {} : { clock: deps.clock }),
      ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }),
    },
    {
      appId: config.wechat.appId,
      secret: config.wechat.appSecret,
      tokenMode: config.wechat.tokenMode,
      oneTimeScene: config.wechat.oneTimeScene,
      ...(config.wechat.baseUrl === '' ? {} : { baseUrl: config.wechat.baseUrl }),
    },
  );
}

/**
 * Composes and starts the whole service in this process: opens and migrates the store, builds the token
 * store and SDK client, the Fastify app and the dispatcher, listens on `config.host:config.port`.
 * @example const svc = await startService(parseConfig({ port: 0, wechat: { appId, appSecret, baseUrl } })); await svc.close();
 */
export async function startService(
  config: ServiceConfig,
  deps: StartServiceDeps = {},
): Promise<RunningService> {
  const logger = deps.logger ?? createCliLogger({ level: config.logLevel });
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        logger.error({ err }, 'error while shutting down');
      }
    }
  };
  try {
    const store = await openStore(config, deps.clock);
    closers.push(() => store.close());
    const applied = await store.migrate();
    if (applied > 0) logger.info({ applied }, 'migrations applied');

    const tokenStore = await openTokenStore(config, (err) =>
      logger.warn({ err: err.message }, 'token store connection failed; reconnecting'),
    );
    closers.push(() => tokenStore.close());
    const wechat = await openWeChatClient(config, { tokenStore, logger, ...pick(deps) });
    closers.push(() => wechat.close());

    const { createServiceApp } = await import('../http/app.js');
    const { createDispatcher, kickingStore } = await import('../delivery/dispatcher.js');
    // The app is built before the dispatcher; the status route reads it through this late binding.
    const late: { dispatcherStatus?: () => DispatcherStatus; kick?: () => void } = {};
    const app = await createServiceApp(
      {
        // New messages and campaigns wake the dispatcher at once instead of at its next poll.
        store: kickingStore(store, () => late.kick?.()),
        wechat,
        dispatcherStatus: () => late.dispatcherStatus?.() ?? null,
        logger: logger.child({ component: 'http' }),
        ...(deps.clock === undefined ? {} : { clock: deps.clock }),
      },
      config,
    );
    closers.push(() => closeServer(app));

    const rateLimiter = await openRateLimiter(config, closers, (err) =>
      logger.warn({ err: err.message }, 'rate limiter (Redis) connection failed; reconnecting'),
    );
    const dispatcher = createDispatcher(
      {
        store,
        wechat: () => wechat,
        logger: logger.child({ component: 'dispatcher' }),
        rateLimiter,
        errcodeAction: (c) => errcodeInfo(c).action,
        ...(deps.clock === undefined ? {} : { clock: deps.clock }),
      },
      config.delivery,
    );

    await app.listen({ port: config.port, host: config.host });
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : config.port;
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    late.dispatcherStatus = () => dispatcher.status();
    late.kick = () => dispatcher.kick();
    dispatcher.start();
    closers.push(() => Promise.resolve(dispatcher.stop()));
    if (config.consent.purgeIntervalSeconds > 0) {
      const { startNoncePurge } = await import('../consent/nonce-purge.js');
      const purge = startNoncePurge({
        store,
        clock: deps.clock ?? systemClock,
        intervalMs: config.consent.purgeIntervalSeconds * 1000,
        logger: logger.child({ component: 'consent' }),
      });
      closers.push(() => purge.stop());
    }
    logger.info({ url, engine: store.engine }, 'wxsub service listening');
    return { url, app, store, config, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function pick(deps: StartServiceDeps): { clock?: Clock; fetch?: typeof fetch } {
  return {
    ...(deps.clock === undefined ? {} : { clock: deps.clock }),
    ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }),
  };
}

/** The dispatcher's limiter: shared in Redis when `redisUrl` is set, else in memory. */
async function openRateLimiter(
  config: ServiceConfig,
  closers: (() => Promise<void>)[],
  onError: (err: Error) => void,
) {
  const opts = { ratePerSecond: config.delivery.ratePerSecond };
  if (config.redisUrl !== '') {
    const redis = await openRedis(config.redisUrl, onError);
    closers.push(async () => {
      redis.disconnect();
    });
    const { createRedisRateLimiter } = await import('../delivery/rate-limit/redis.js');
    return createRedisRateLimiter(redis, opts);
  }
  const { createMemoryRateLimiter } = await import('../delivery/rate-limit/memory.js');
  return createMemoryRateLimiter(opts);
}

/** `wxsub serve`: builds the config from env + flags, starts the service, prints its URL, runs until Ctrl-C. */
export async function runServe(env: NodeJS.ProcessEnv, flags: ConfigFlags): Promise<void> {
  const config = configFromEnv(env, flags);
  const logger = createCliLogger({ level: config.logLevel });
  // Every route and send is for one service account: without its appid there is nothing to serve, and without
  // its secret the dispatcher can get no access token (checked before the database is touched).
  const problems = [
    ...(config.wechat.appId === ''
      ? ['wechat.appId: required by wxsub serve (WXSUB_WECHAT_APP_ID or --wechat-app-id)']
      : []),
    ...(config.wechat.appSecret === ''
      ? ['wechat.appSecret: required by wxsub serve (WXSUB_WECHAT_APP_SECRET)']
      : []),
  ];
  if (problems.length > 0)
    throw new AppError('CONFIG_INVALID', {
      message: `Configuration is invalid:\n  - ${problems.join('\n  - ')}`,
      details: { problems },
    });
  const svc = await startService(config, { logger });
  console.log(`wxsub service listening on ${svc.url}`);
  await runUntilSignal(() => svc.close(), { onSignal: (s) => logger.info({ signal: s }, 'shutting down') });
}
