// Public entry of the WeChat platform emulator: createEmulator, seed loading and the types around them.
import type { FastifyInstance } from 'fastify';
import { systemClock, type Clock } from '../util/clock.js';
import { closeServer } from '../util/close-server.js';
import { buildEmulatorApp } from './app.js';
import { createInjectFetch } from './fetch.js';
import type { EmulatorSeed } from './seed.js';
import { EmulatorState, type EmulatorBehavior } from './state.js';

export { loadSeedFile, parseSeed, emulatorSeedSchema } from './seed.js';
export type { EmulatorSeed, EmulatorSeedApp, EmulatorSeedTemplate } from './seed.js';
export { EmulatorState, EmulatorStateError, DEFAULT_BEHAVIOR, DEFAULT_QUOTAS } from './state.js';
export type {
  EmulatorBehavior,
  EmuApp,
  EmuCounters,
  EmuTemplate,
  EmuUser,
  FaultRule,
  InboxMessage,
  SentEvent,
  CreateAppInput,
} from './state.js';
export { WX_ERRMSG } from './wx-errors.js';
export { CONSENT_ERROR } from './routes/consent.js';
export { OAUTH_ERROR } from './routes/oauth.js';

/** Options of {@link createEmulator}. */
export type EmulatorOptions = {
  /** Time source; a ManualClock lets tests jump over token expiry. @default systemClock */
  clock?: Clock;
  /** Apps, users and templates to start with (also restored by `POST /__emulator/reset`). */
  seed?: EmulatorSeed;
  /** Fastify request logging. @default false */
  logger?: boolean;
  /** RNG seed for fault injection. @default random */
  randomSeed?: number;
  /** Base URL used in pages/redirects when not listening. @default 'http://127.0.0.1' */
  publicBaseUrl?: string;
  /** Where the spec is silent: see {@link EmulatorBehavior}. @default DEFAULT_BEHAVIOR */
  behavior?: Partial<EmulatorBehavior>;
};

/** A running (or in-memory) emulator. */
export type Emulator = {
  /** The Fastify app; usable in memory via `app.inject`. */
  app: FastifyInstance;
  /** A fetch that routes to `app.inject` (origin ignored) so SDK tests run without sockets. */
  fetch: typeof fetch;
  /** Listens on a port (default 0 = any) and host (default 127.0.0.1); returns the base URL. */
  listen(opts?: { port?: number; host?: string }): Promise<string>;
  /** Stops listening and releases everything. */
  close(): Promise<void>;
  /** Direct state access for tests (createApp, createUser, grantOneTime, inbox, advanceClock, setFaults…). */
  state: EmulatorState;
};

/**
 * Creates the emulated WeChat platform (api.weixin.qq.com + mp.weixin.qq.com + open.weixin.qq.com on
 * one base URL, plus the control API `/__emulator/*`).
 * @example
 * const emu = await createEmulator({ seed: await loadSeedFile('src/emulator/seed.example.json') });
 * const res = await emu.fetch('https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=…&secret=…');
 */
export async function createEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const state = new EmulatorState({
    clock: options.clock ?? systemClock,
    ...(options.seed ? { seed: options.seed } : {}),
    ...(options.randomSeed !== undefined ? { randomSeed: options.randomSeed } : {}),
    ...(options.behavior ? { behavior: options.behavior } : {}),
  });
  if (options.publicBaseUrl) state.publicBaseUrl = options.publicBaseUrl.replace(/\/+$/, '');
  const app = buildEmulatorApp(state, options.logger !== undefined ? { logger: options.logger } : {});
  await app.ready();
  const fetchFn = createInjectFetch(app);
  let closed = false;
  return {
    app,
    fetch: fetchFn,
    state,
    async listen(opts = {}) {
      const host = opts.host ?? '127.0.0.1';
      await app.listen({ port: opts.port ?? 0, host });
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 0);
      const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
      const base = `http://${shownHost}:${port}`;
      if (!options.publicBaseUrl) state.publicBaseUrl = base;
      return base;
    },
    async close() {
      if (closed) return;
      closed = true;
      await closeServer(app);
    },
  };
}
