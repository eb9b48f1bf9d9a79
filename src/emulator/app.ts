// Builds the emulator's single Fastify app: body handling, fault injection, error mapping and all routes.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { isInjected } from './http-util.js';
import { registerConsentRoutes } from './routes/consent.js';
import { isStateError, registerControlRoutes } from './routes/control.js';
import { registerOAuthRoutes } from './routes/oauth.js';
import { registerSendRoutes } from './routes/send.js';
import { registerTemplateRoutes } from './routes/templates.js';
import { registerTokenRoutes } from './routes/token.js';
import type { EmulatorState } from './state.js';
import { wxError } from './wx-errors.js';

/** Status and header the app uses to tell the in-memory fetch "this connection was dropped". */
export const DROPPED_STATUS = 599;
/** Header marking a dropped in-memory response. */
export const DROPPED_HEADER = 'x-emulator-dropped';

/** Largest accepted request body; bigger ones get HTTP 413 with a WeChat-shaped body. */
const BODY_LIMIT = 4 * 1024 * 1024;

function pathOf(url: string): string {
  const i = url.indexOf('?');
  return i < 0 ? url : url.slice(0, i);
}

function isControl(path: string): boolean {
  return path === '/__emulator' || path.startsWith('/__emulator/');
}

function drop(req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (isInjected(req)) return reply.code(DROPPED_STATUS).header(DROPPED_HEADER, '1').send('');
  reply.hijack();
  req.raw.socket.destroy();
  return reply;
}

/** Options of {@link buildEmulatorApp}. */
export type BuildAppOptions = { logger?: boolean };

/** Creates the Fastify app over a state (routes registered, not listening). */
export function buildEmulatorApp(state: EmulatorState, options: BuildAppOptions = {}): FastifyInstance {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: BODY_LIMIT,
    return503OnClosing: false,
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 200 },
  });

  // Every body is kept raw: routes judge JSON themselves so malformed/empty bodies get 47001/44002
  // instead of Fastify's 400s, and form bodies (addtemplate, consent form) work the same way.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const dropAfter = new WeakSet<FastifyRequest>();

  app.addHook('onRequest', async (req, reply) => {
    if (!state.hasFaults) return;
    const path = pathOf(req.url);
    if (isControl(path)) return;
    const d = state.decideFault(path);
    if (d.latencyMs > 0) await new Promise((r) => setTimeout(r, d.latencyMs));
    switch (d.kind) {
      case 'none':
        return;
      case 'errcode':
        return reply.code(200).send(wxError(d.errcode, state.now()));
      case 'http5xx':
        return reply
          .code(503)
          .header('content-type', 'text/html')
          .send('<html><body>503 Service Unavailable</body></html>');
      case 'drop':
        if (d.afterProcessing) {
          dropAfter.add(req);
          return;
        }
        return drop(req, reply);
    }
  });

  app.addHook('onSend', async (req, reply, payload) => {
    if (!dropAfter.has(req)) return payload;
    if (isInjected(req)) {
      reply.code(DROPPED_STATUS).header(DROPPED_HEADER, '1');
      return '';
    }
    req.raw.socket.destroy();
    return payload;
  });

  app.setNotFoundHandler((req, reply) => {
    const path = pathOf(req.url);
    if (isControl(path)) {
      return reply
        .code(404)
        .send({ error: { code: 'EMU_NOT_FOUND', message: `No route ${req.method} ${path}` } });
    }
    return reply.code(404).send(wxError(40066, state.now(), 'invalid url'));
  });

  app.setErrorHandler((err, req, reply) => {
    const path = pathOf(req.url);
    if (isStateError(err))
      return reply.code(err.status).send({ error: { code: err.code, message: err.message } });
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    if (isControl(path)) {
      const code = status === 413 ? 'EMU_BODY_TOO_LARGE' : status < 500 ? 'EMU_BAD_REQUEST' : 'EMU_INTERNAL';
      return reply
        .code(status)
        .send({ error: { code, message: err instanceof Error ? err.message : String(err) } });
    }
    if (status === 413) return reply.code(413).send(wxError(47001, state.now(), 'data format error'));
    if (status >= 400 && status < 500)
      return reply.code(200).send(wxError(47001, state.now(), 'data format error'));
    req.log.error({ err }, 'emulator internal error');
    return reply.code(500).send(wxError(-1, state.now()));
  });

  registerTokenRoutes(app, state);
  registerSendRoutes(app, state);
  registerTemplateRoutes(app, state);
  registerConsentRoutes(app, state);
  registerOAuthRoutes(app, state);
  registerControlRoutes(app, state);
  return app;
}
