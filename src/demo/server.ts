// The demo H5 server of `wxsub dev`: serves the page and relays its send form to the service with a server-side API key.
import Fastify, { type FastifyInstance } from 'fastify';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import { renderDemoPage, type DemoOutcome, type DemoSendResult, type DemoUser } from './page.js';

/** Dependencies of {@link createDemoServer}. */
export type DemoDeps = {
  /** Used to call the service. @default globalThis.fetch */
  fetch?: typeof fetch;
};

/** Options of {@link createDemoServer}. */
export type DemoOptions = {
  /** Base URL of the wxsub service, e.g. `http://127.0.0.1:4000`. */
  serviceUrl: string;
  /** API key the demo server sends as `Authorization: Bearer`; never rendered into the page. */
  apiKey: string;
  /** App the demo sends for (the service may host several). */
  appId: string;
  /** The one-time template the button subscribes to. */
  templateId: string;
  /** Emulator base URL, for inbox links. @default null (no inbox links) */
  emulatorUrl?: string | null;
  /** Users offered in the recipient picker when the service did not tell us who subscribed. @default [] */
  users?: DemoUser[];
  /**
   * The demo's own public URL, used as the consent `next` (must be on the service's allowlist).
   * @default the URL `listen()` returns, else the request's Host
   */
  publicUrl?: string;
};

/** A running-or-not demo server. */
export type DemoServer = {
  /** The Fastify app (drive it with `app.inject()` in tests). */
  app: FastifyInstance;
  /** Starts listening; resolves to the base URL. */
  listen(opts?: { port?: number; host?: string }): Promise<string>;
  /** Stops the server. */
  close(): Promise<void>;
};

const OPENID_COOKIE = 'wxsub_demo_openid';
const OPENID_RE = /^[A-Za-z0-9_-]{1,64}$/;

const DEFAULT_FORM = {
  title: '到货提醒',
  content: '您关注的商品已到货，快来看看吧！Your item is back in stock.',
};

/** Reads the consent outcome the service appended to `next`, whatever names it used. */
export function parseOutcome(q: Record<string, unknown>): {
  outcome: DemoOutcome | null;
  openid: string | null;
} {
  const s = (k: string): string | null => (typeof q[k] === 'string' ? (q[k] as string) : null);
  const raw = s('wxsub_outcome') ?? s('outcome') ?? s('action') ?? s('result') ?? s('status');
  const openidRaw = s('openid');
  const openid = openidRaw !== null && OPENID_RE.test(openidRaw) ? openidRaw : null;
  const scene = s('scene');
  if (raw === null) return { outcome: null, openid };
  const v = raw.toLowerCase();
  if (['confirm', 'confirmed', 'subscribed', 'granted', 'ok', 'success'].includes(v)) {
    return { outcome: { kind: 'subscribed', scene }, openid };
  }
  if (['cancel', 'cancelled', 'canceled', 'refused', 'rejected', 'reject'].includes(v)) {
    return { outcome: { kind: 'cancelled' }, openid };
  }
  const code = s('code') ?? s('error') ?? v.toUpperCase();
  return { outcome: { kind: 'error', code, message: s('message') ?? '' }, openid };
}

/**
 * Creates the demo page server: `GET /` (the page), `POST /send` (relays to `POST /v1/messages`),
 * `GET /healthz`. The API key stays on the server.
 * @example const demo = createDemoServer({}, { serviceUrl, apiKey, appId, templateId }); await demo.listen({ port: 4200 });
 */
export function createDemoServer(deps: DemoDeps, options: DemoOptions): DemoServer {
  const doFetch = deps.fetch ?? globalThis.fetch;
  const app = Fastify({ logger: false });
  void app.register(cookie);
  void app.register(formbody);
  const users = options.users ?? [];
  const emulatorUrl = options.emulatorUrl ?? null;
  let publicUrl = options.publicUrl ?? null;
  const service = options.serviceUrl.replace(/\/+$/, '');

  const selfUrl = (host: string | undefined, protocol: string): string =>
    publicUrl ?? `${protocol}://${host ?? '127.0.0.1'}`;
  const consentUrl = (self: string): string => {
    const u = new URL(`${service}/consent/one-time`);
    u.searchParams.set('template', options.templateId);
    u.searchParams.set('scene', 'auto');
    u.searchParams.set('next', `${self.replace(/\/+$/, '')}/`);
    return u.toString();
  };

  const page = (args: {
    self: string;
    outcome: DemoOutcome | null;
    openid: string | null;
    sendResult: DemoSendResult | null;
    form?: { title: string; content: string };
  }): string =>
    renderDemoPage({
      consentUrl: consentUrl(args.self),
      outcome: args.outcome,
      openid: args.openid,
      users,
      emulatorUrl,
      sendResult: args.sendResult,
      form: args.form ?? DEFAULT_FORM,
    });

  app.get('/healthz', async () => ({ ok: true }));

  app.get('/', async (req, reply) => {
    const { outcome, openid: returned } = parseOutcome(req.query as Record<string, unknown>);
    const remembered = req.cookies[OPENID_COOKIE];
    const openid = returned ?? (remembered !== undefined && OPENID_RE.test(remembered) ? remembered : null);
    if (returned !== null)
      reply.setCookie(OPENID_COOKIE, returned, { path: '/', httpOnly: true, sameSite: 'lax' });
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(page({ self: selfUrl(req.host, req.protocol), outcome, openid, sendResult: null }));
  });

  app.post('/send', async (req, reply) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const str = (k: string): string => (typeof body[k] === 'string' ? (body[k] as string).trim() : '');
    const openid = str('openid');
    const form = { title: str('title'), content: str('content') };
    let sendResult: DemoSendResult;
    if (!OPENID_RE.test(openid)) {
      sendResult = { status: 400, body: { error: { code: 'DEMO_BAD_OPENID', message: 'pick a recipient' } } };
    } else {
      try {
        const res = await doFetch(`${service}/v1/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${options.apiKey}` },
          body: JSON.stringify({
            kind: 'one-time',
            openid,
            template: options.templateId,
            scene: 'any',
            title: form.title,
            content: form.content,
          }),
        });
        const text = await res.text();
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // keep the raw text
        }
        sendResult = { status: res.status, body: parsed };
      } catch (err) {
        sendResult = {
          status: 502,
          body: {
            error: {
              code: 'DEMO_SERVICE_UNREACHABLE',
              message: err instanceof Error ? err.message : String(err),
            },
          },
        };
      }
    }
    const self = selfUrl(req.host, req.protocol);
    // Remember the recipient so the picker stays on them after the next consent round trip.
    if (OPENID_RE.test(openid))
      reply.setCookie(OPENID_COOKIE, openid, { path: '/', httpOnly: true, sameSite: 'lax' });
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(page({ self, outcome: null, openid: OPENID_RE.test(openid) ? openid : null, sendResult, form }));
  });

  return {
    app,
    async listen(opts = {}) {
      const host = opts.host ?? '127.0.0.1';
      await app.listen({ port: opts.port ?? 0, host });
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : (opts.port ?? 0);
      const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
      publicUrl ??= url;
      return url;
    },
    async close() {
      await app.close();
    },
  };
}
