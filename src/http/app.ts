// Composition root of the service's HTTP side: error mapping, consent routes, /v1 REST API, health and metrics.
import formbody from '@fastify/formbody';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { randomBytes } from 'node:crypto';
import type { ServiceConfig } from '../config/schema.js';
import type { DispatcherStatus } from '../delivery/dispatcher.js';
import { deriveConsentKeys } from '../consent/reserved-token.js';
import { AppError } from '../errors.js';
import type { Store } from '../store/store.js';
import { systemClock, type Clock } from '../util/clock.js';
import { redact } from '../wechat/redact.js';
import { defaultOneTimeConsentUrl, registerConsentRoutes, type ConsentUrlInput } from './consent-routes.js';
import { clientErrorHandler, frameworkErrorHandler, installErrorHandling } from './error-handler.js';
import { installMetrics } from './metrics.js';
import { registerV1Routes } from './v1-routes.js';

/**
 * The WeChat side the service needs: the appid, and optionally its own one-time consent URL builder
 * (else the URL is built on `config.wechat.baseUrl`). A full SDK client fits as long as it has `appId`.
 */
export type ServiceWeChat = {
  readonly appId: string;
  /** Builds the consent page URL (spec §1.2). */
  oneTimeConsentUrl?: (input: ConsentUrlInput) => string;
};

/** Dependencies of {@link createServiceApp}. */
export type ServiceDeps = {
  store: Store;
  wechat: ServiceWeChat;
  /** @default systemClock */
  clock?: Clock;
  /** Pino logger; request lines are logged at info with query strings removed. @default no logging */
  logger?: Logger;
  /** prom-client registry for /metrics. @default a fresh Registry */
  metrics?: Registry;
  /** Called after POST /v1/campaigns created a campaign (e.g. to kick the in-process dispatcher). */
  onCampaignCreated?: (id: string) => void;
  /** Live status of the in-process dispatcher, shown by GET /v1/status. @default none */
  dispatcherStatus?: () => DispatcherStatus | null;
};

/**
 * Builds the service's Fastify app (not listening). Drive it with `app.inject()` or `app.listen({ port: 0 })`.
 * @example const app = await createServiceApp({ store, wechat: { appId: 'wx123' } }, parseConfig({}))
 */
export async function createServiceApp(deps: ServiceDeps, config: ServiceConfig): Promise<FastifyInstance> {
  const appId = deps.wechat.appId || config.wechat.appId;
  if (!appId)
    throw new AppError('CONFIG_INVALID', {
      message: 'wechat.appId is required',
      details: { problems: ['wechat.appId: is required'] },
    });
  const clock = deps.clock ?? systemClock;
  const registry = deps.metrics ?? new Registry();
  const secret = config.consent.secret;
  if (secret === '') {
    deps.logger?.warn(
      'consent.secret is empty: using a random per-process key (consent links break on restart and across instances)',
    );
  }
  const keys = deriveConsentKeys(secret === '' ? randomBytes(32) : secret);

  const app = Fastify({
    bodyLimit: config.bodyLimitBytes,
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    // Fastify's own request lines would carry full URLs (consent tokens); ours below strip the query.
    logController: new LogController({ disableRequestLogging: true }),
    clientErrorHandler,
    frameworkErrors: frameworkErrorHandler,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 256, ignoreTrailingSlash: true },
  }) as unknown as FastifyInstance;

  installErrorHandling(app);
  // No cookie plugin: only the consent routes read or write cookies, and they do it by hand (one header, one
  // name), so no other route pays for parsing every Cookie header and a Set-Cookie onSend hook.
  await app.register(formbody, { bodyLimit: config.bodyLimitBytes });
  // An empty JSON body (e.g. POST …/cancel with a content type) is no body, not an error.
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body.toString();
    if (text.trim() === '') return done(null, undefined);
    defaultJson(request, text, done);
  });

  if (deps.logger) {
    const logger = deps.logger;
    app.addHook('onResponse', (request, reply, done) => {
      // Below info level the line would be dropped: do not build it (path split, redaction) at all.
      if (logger.isLevelEnabled('info')) {
        const url = request.raw.url ?? '';
        const q = url.indexOf('?');
        const path = redact(q === -1 ? url : url.slice(0, q));
        request.log.info(
          { method: request.method, path, status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
          'request',
        );
      }
      done();
    });
  }

  installMetrics(app, registry, deps.store, appId, deps.dispatcherStatus);
  app.get('/healthz', async () => ({ status: 'ok', engine: deps.store.engine }));

  const wx = deps.wechat;
  const consentUrl = wx.oneTimeConsentUrl
    ? (i: ConsentUrlInput) => (wx.oneTimeConsentUrl as (i: ConsentUrlInput) => string).call(wx, i)
    : (i: ConsentUrlInput) => defaultOneTimeConsentUrl(config.wechat.baseUrl, i);
  registerConsentRoutes(app, { store: deps.store, appId, keys, clock, config, consentUrl });
  registerV1Routes(app, {
    store: deps.store,
    appId,
    clock,
    ...(deps.onCampaignCreated ? { onCampaignCreated: deps.onCampaignCreated } : {}),
    ...(deps.dispatcherStatus ? { dispatcherStatus: deps.dispatcherStatus } : {}),
  });
  await app.ready();
  return app;
}
