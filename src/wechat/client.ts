// createWeChatClient: the SDK's composition — HTTP seam, token broker, sends with local validation, templates, JS-SDK tickets and signing, OAuth, quota.
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { systemClock, type Clock } from '../util/clock.js';
import { TOKEN_INVALID_ERRCODES } from './errcodes.js';
import {
  WeChatApiError,
  WeChatBadResponseError,
  WeChatInvalidArgumentError,
  WeChatTokenUnavailableError,
} from './errors.js';
import { createHttp, fetchTransport, undiciTransport, type CallSpec, type RetryOptions } from './http.js';
import { checkPageUrl, signJsSdk, type JsSdkConfig } from './jssdk.js';
import { buildOAuthAuthorizeUrl, readOAuthToken, type OAuthScope, type OAuthTokenResult } from './oauth.js';
import { buildOneTimeConsentUrl, type OneTimeConsentUrlInput } from './consent.js';
import { redactingLogger, silentLogger, type Logger } from './redact.js';
import { createTokenBroker, type AccessToken, type TokenMode } from './token-broker.js';
import type { TokenStore } from './token-store.js';
import { createMemoryTokenStore } from './token-stores/memory.js';
import {
  notificationSendBody,
  ONE_TIME_SCENE_TYPES,
  oneTimeSendBody,
  type KeywordSpec,
  type NotificationSendInput,
  type OneTimeSceneType,
  type OneTimeSendInput,
} from './validate.js';

/** Injected dependencies of {@link createWeChatClient}. */
export type WeChatClientDeps = {
  /** Fetch-compatible function (e.g. the emulator's in-memory fetch). @default an undici keep-alive pool */
  fetch?: typeof fetch;
  /** @default systemClock */
  clock?: Clock;
  /** Shared token store; use SQLite/PostgreSQL/Redis when several processes serve one app. @default in-memory */
  tokenStore?: TokenStore;
  /** pino-like logger; every line is redacted. @default silent */
  logger?: Logger;
  /** Random source in [0, 1) for backoff jitter and nonces. @default Math.random */
  random?: () => number;
  /** Sleep used for backoff and lease polling (tests may fake it). @default setTimeout */
  sleep?: (ms: number) => Promise<void>;
};

/** Options of {@link createWeChatClient}. */
export type WeChatClientOptions = {
  appId: string;
  secret: string;
  /** One base URL for the api, mp and open hosts (e.g. the emulator). @default the real WeChat hosts */
  baseUrl?: string;
  /** @default 'stable' */
  tokenMode?: TokenMode;
  /** Per-attempt timeout in ms. @default 10000 */
  attemptTimeoutMs?: number;
  /** Total time per call including retries, in ms. @default 30000 */
  totalTimeoutMs?: number;
  /** Refresh tokens this long before expiry, in ms. @default 180000 */
  refreshAheadMs?: number;
  /** Retries of calls that are safe to repeat. @default { max: 2, baseDelayMs: 200, maxDelayMs: 5000 } */
  retries?: RetryOptions;
  /**
   * Token lease tuning. The lease must outlive a token fetch, so `ttlMs` defaults to `totalTimeoutMs` + 15000.
   * @default { ttlMs: 45000, waitMs: 20000, pollMs: 50 }
   */
  lease?: { ttlMs?: number; waitMs?: number; pollMs?: number };
  /** Force-refresh budget. @default { dailyLimit: 20, minIntervalMs: 30000 } */
  forceRefresh?: { dailyLimit?: number; minIntervalMs?: number };
  /**
   * Body format of `addtemplate`, whose docs disagree (spec §2.6): `'json'` as every SDK sends it, `'form'`
   * (`application/x-www-form-urlencoded`, `tid=401&kidList=1&kidList=2&sceneDesc=…`) as the mini-program doc
   * demands, or `'auto'`: JSON, repeated once as a form when WeChat answers 200014 (tid missing) or 47001 (body
   * not understood) — safe, since such a reply created nothing.
   * @default 'auto'
   * @example { addTemplateBody: 'form' }
   */
  addTemplateBody?: AddTemplateBody;
  /**
   * JSON type of a one-time send's `scene`, which the docs disagree on (spec §1.4): `'string'` as the current doc's
   * table and example show it (`"1000"`), or `'number'`, the integer of the consent URL, as some SDKs send it.
   * @default 'string'
   * @example { oneTimeScene: 'number' }
   */
  oneTimeScene?: OneTimeSceneType;
};

/** How `templates.addTemplate` encodes its body; see {@link WeChatClientOptions.addTemplateBody}. */
export type AddTemplateBody = 'auto' | 'json' | 'form';
const ADD_TEMPLATE_BODIES: readonly AddTemplateBody[] = ['auto', 'json', 'form'];
/** addtemplate errcodes that mean the body was not read as sent (spec §2.6: 200014 seen for a refused JSON body). */
const BODY_NOT_UNDERSTOOD = new Set([200014, 47001]);

/** A category of the public template library. */
export type TemplateCategory = { id: number; name: string };
/** A public template title. */
export type PubTemplateTitle = { tid: number; title: string; type: number; categoryId: string };
/** A keyword of a public template. */
export type PubTemplateKeyword = { kid: number; name: string; example: string; rule: string };
/** A private template of the account. */
export type PrivateTemplate = {
  priTmplId: string;
  title: string;
  content: string;
  example: string;
  type: number;
  keywordEnumValueList?: { keywordCode: string; enumValueList: string[] }[] | undefined;
};
/** `openapi/quota/get` result. */
export type ApiQuota = { dailyLimit: number; used: number; remain: number };

/** The SDK client of one WeChat service account. */
export type WeChatClient = {
  readonly appId: string;
  /** A valid access token (cached, refreshed ahead of expiry, shared through the token store). */
  getAccessToken(): Promise<string>;
  /** Tells the broker WeChat rejected `failedToken`; dropped only if it is still current. */
  invalidateToken(failedToken: string): Promise<void>;
  /** stable_token force_refresh (20 a day, 30 s apart; else AppError WX_FORCE_REFRESH_BUDGET). */
  forceRefreshToken(): Promise<string>;
  /**
   * One-time subscription send (`POST /cgi-bin/message/template/subscribe`). Validated locally first.
   * Never retried once the request may have left; retried once after a token-invalid reply. A reply without
   * `errcode` is a `WX_BAD_RESPONSE` (outcome unknown), never a success.
   * @see https://developers.weixin.qq.com/doc/service/api/notify/subscribe/api_templatesubscribe.html
   */
  sendOneTime(input: OneTimeSendInput): Promise<{ errcode: 0 }>;
  /**
   * Subscription-notification send (`POST /cgi-bin/message/subscribe/bizsend`). With `opts.keywords`
   * each value is checked against its keyword type. Same retry rules as {@link sendOneTime}. `msgid`, when
   * WeChat returns one, is its exact int64 as a decimal string (it matches `MsgID` of subscribe_msg_sent_event).
   * @see https://developers.weixin.qq.com/doc/service/api/notify/notify/api_sendnewsubscribemsg.html
   */
  sendNotification(
    input: NotificationSendInput,
    opts?: { keywords?: readonly KeywordSpec[] },
  ): Promise<{ msgid?: string }>;
  /**
   * Template management (`/wxaapi/newtmpl/*`): getcategory, getpubtemplatetitles, getpubtemplatekeywords,
   * addtemplate (body format per {@link WeChatClientOptions.addTemplateBody}; not retried once sent, except the
   * one form retry of `'auto'`), deltemplate, gettemplate.
   * @see https://developers.weixin.qq.com/doc/offiaccount/Subscription_Messages/api.html
   */
  templates: {
    getCategory(): Promise<TemplateCategory[]>;
    getPubTemplateTitles(input: {
      ids: number[];
      start?: number;
      limit?: number;
    }): Promise<{ count: number; data: PubTemplateTitle[] }>;
    getPubTemplateKeywords(tid: number | string): Promise<{ count: number; data: PubTemplateKeyword[] }>;
    addTemplate(input: {
      tid: number | string;
      kidList: number[];
      sceneDesc?: string;
    }): Promise<{ priTmplId: string }>;
    delTemplate(priTmplId: string): Promise<void>;
    getTemplates(): Promise<PrivateTemplate[]>;
  };
  /**
   * JS-SDK: jsapi_ticket broker (`GET /cgi-bin/ticket/getticket?type=jsapi`) and `wx.config` signing.
   * @see https://developers.weixin.qq.com/doc/offiaccount/OA_Web_Apps/JS-SDK.html
   */
  jssdk: {
    /** A valid jsapi_ticket fetched with the current access-token generation. */
    getTicket(): Promise<string>;
    /** Signs `wx.config` for `url` (fragment removed). */
    signConfig(input: { url: string; jsApiList?: string[]; openTagList?: string[] }): Promise<JsSdkConfig>;
  };
  /**
   * Web OAuth: authorize URL and `GET /sns/oauth2/access_token`.
   * @see https://developers.weixin.qq.com/doc/service/api/webdev/access/api_snsaccesstoken.html
   */
  oauth: {
    authorizeUrl(input: { redirectUri: string; scope?: OAuthScope; state?: string }): string;
    /** Exchanges a callback `code` (single use; not retried once the request may have left). */
    exchangeCode(code: string): Promise<OAuthTokenResult>;
  };
  /** One-time consent URL on the configured mp host. */
  oneTimeConsentUrl(input: Omit<OneTimeConsentUrlInput, 'appId' | 'baseUrl'>): string;
  /**
   * `POST /cgi-bin/openapi/quota/get` for one API path.
   * @see https://developers.weixin.qq.com/doc/channels/api/basic/api_getapiquota.html
   */
  getQuota(cgiPath: string): Promise<ApiQuota>;
  /** Closes the default HTTP pool (not an injected fetch or store). */
  close(): Promise<void>;
};

const zCategory = z.object({ data: z.array(z.object({ id: z.coerce.number(), name: z.string() })) });
const zTitles = z.object({
  count: z.coerce.number(),
  data: z.array(
    z.object({
      tid: z.coerce.number(),
      title: z.string(),
      type: z.coerce.number(),
      categoryId: z.coerce.string(),
    }),
  ),
});
const zKeywords = z.object({
  count: z.coerce.number(),
  data: z.array(
    z.object({ kid: z.coerce.number(), name: z.string(), example: z.string().default(''), rule: z.string() }),
  ),
});
const zTemplates = z.object({
  data: z.array(
    z.object({
      priTmplId: z.string(),
      title: z.string(),
      content: z.string(),
      example: z.string().default(''),
      type: z.coerce.number(),
      keywordEnumValueList: z
        .array(z.object({ keywordCode: z.string(), enumValueList: z.array(z.string()) }))
        .optional(),
    }),
  ),
});
const zQuota = z.object({
  quota: z.object({ daily_limit: z.coerce.number(), used: z.coerce.number(), remain: z.coerce.number() }),
});

function parseReply<T>(
  schema: z.ZodType<T>,
  reply: Record<string, unknown>,
  site: Pick<CallSpec, 'method' | 'path'>,
): T {
  const r = schema.safeParse(reply);
  if (!r.success)
    throw new WeChatBadResponseError({
      site: { method: site.method, path: site.path },
      reason: r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    });
  return r.data;
}

/**
 * Creates the SDK client of one service account.
 * @example
 * const wx = createWeChatClient({ fetch: emulator.fetch }, { appId: 'wx…', secret: '…', baseUrl: 'http://emulator' });
 * await wx.sendOneTime({ touser, template_id, scene: 1000, title: '到货提醒', data: { content: { value: '已到货' } } });
 */
export function createWeChatClient(deps: WeChatClientDeps, options: WeChatClientOptions): WeChatClient {
  if (typeof options?.appId !== 'string' || options.appId === '')
    throw new WeChatInvalidArgumentError('appId', 'is required');
  if (typeof options.secret !== 'string' || options.secret === '')
    throw new WeChatInvalidArgumentError('secret', 'is required');
  const addTemplateBody = options.addTemplateBody ?? 'auto';
  if (!ADD_TEMPLATE_BODIES.includes(addTemplateBody))
    throw new WeChatInvalidArgumentError(
      'addTemplateBody',
      `must be one of ${ADD_TEMPLATE_BODIES.join(', ')}`,
    );
  const oneTimeScene = options.oneTimeScene ?? 'string';
  if (!ONE_TIME_SCENE_TYPES.includes(oneTimeScene))
    throw new WeChatInvalidArgumentError('oneTimeScene', `must be one of ${ONE_TIME_SCENE_TYPES.join(', ')}`);
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const logger = redactingLogger(deps.logger ?? silentLogger);
  const store = deps.tokenStore ?? createMemoryTokenStore();
  const transport = deps.fetch ? fetchTransport(deps.fetch) : undiciTransport();
  const httpDeps: Parameters<typeof createHttp>[0] = { transport, logger, random };
  if (deps.sleep) httpDeps.sleep = deps.sleep;
  const http = createHttp(httpDeps, {
    baseUrl: options.baseUrl,
    attemptTimeoutMs: options.attemptTimeoutMs,
    totalTimeoutMs: options.totalTimeoutMs,
    retries: options.retries,
  });
  const ownerId = `${process.pid}-${randomBytes(6).toString('hex')}`;
  const brokerDeps: Parameters<typeof createTokenBroker>[0] = { http, clock, store, logger, ownerId };
  if (deps.sleep) brokerDeps.sleep = deps.sleep;
  const broker = createTokenBroker(brokerDeps, {
    appId: options.appId,
    secret: options.secret,
    mode: options.tokenMode,
    refreshAheadMs: options.refreshAheadMs,
    leaseTtlMs: options.lease?.ttlMs,
    leaseWaitMs: options.lease?.waitMs,
    pollIntervalMs: options.lease?.pollMs,
    forceRefresh: options.forceRefresh,
  });

  /** Calls with `?access_token=`; on 40001/40014/42001 invalidates that token (if still current), refreshes and retries once. */
  async function withToken(spec: CallSpec): Promise<{ reply: Record<string, unknown>; token: AccessToken }> {
    // Whatever fails while getting the token (even an errcode of the token endpoint, such as its own -1 or 45009)
    // says nothing about the call itself, which never left: report it as such, not as the call's own outcome.
    const token = async (get: () => Promise<AccessToken>): Promise<AccessToken> => {
      try {
        return await get();
      } catch (cause) {
        throw new WeChatTokenUnavailableError({ site: { method: spec.method, path: spec.path }, cause });
      }
    };
    const first = broker.peek() ?? (await token(() => broker.getToken()));
    spec.accessToken = first.value;
    try {
      return { reply: await http.call(spec), token: first };
    } catch (err) {
      if (!(err instanceof WeChatApiError) || !TOKEN_INVALID_ERRCODES.has(err.errcode)) throw err;
      // The reply proves the request was not executed, so repeating it (also a send) is safe.
      const second = await token(async () => {
        await broker.invalidateToken(first.value);
        return broker.getToken();
      });
      spec.accessToken = second.value;
      return { reply: await http.call(spec), token: second };
    }
  }
  const api = async (spec: CallSpec) => (await withToken(spec)).reply;

  // jsapi ticket broker: a ticket belongs to the token generation that fetched it.
  const ticketKey = `jsapi:${options.appId}:${options.tokenMode ?? 'stable'}`;
  let ticketLocal: { value: string; expiresAt: number; boundGeneration: number } | undefined;
  let ticketInflight: Promise<string> | undefined;
  const ticketFresh = (
    t: { expiresAt: number; boundGeneration?: number | undefined } | undefined,
    gen: number,
  ): boolean => t !== undefined && t.boundGeneration === gen && clock.now() < t.expiresAt - 60_000;

  async function refreshTicket(): Promise<string> {
    const token = await broker.getToken();
    const stored = await store.get(ticketKey);
    if (stored && ticketFresh(stored, token.generation)) {
      ticketLocal = { value: stored.value, expiresAt: stored.expiresAt, boundGeneration: token.generation };
      return stored.value;
    }
    const path = '/cgi-bin/ticket/getticket';
    const { reply, token: used } = await withToken({
      method: 'GET',
      path,
      query: { type: 'jsapi' },
      idempotent: true,
    });
    const ticket = reply.ticket;
    const expiresIn = Number(reply.expires_in ?? 7200);
    if (typeof ticket !== 'string' || ticket === '' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw new WeChatBadResponseError({
        site: { method: 'GET', path },
        reason: 'ticket or expires_in missing',
      });
    }
    const now = clock.now();
    const saved = await store.put(ticketKey, {
      value: ticket,
      expiresAt: now + expiresIn * 1000,
      fetchedAt: now,
      boundGeneration: used.generation,
    });
    ticketLocal = { value: saved.value, expiresAt: saved.expiresAt, boundGeneration: used.generation };
    return ticket;
  }

  async function getTicket(): Promise<string> {
    const token = await broker.getToken();
    if (ticketLocal && ticketFresh(ticketLocal, token.generation)) return ticketLocal.value;
    ticketInflight ??= refreshTicket().finally(() => {
      ticketInflight = undefined;
    });
    return ticketInflight;
  }

  const nonce = (): string => {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    const bytes = randomBytes(16);
    let s = '';
    for (const b of bytes) s += chars[b % chars.length];
    return s;
  };

  return {
    appId: options.appId,
    async getAccessToken() {
      return (await broker.getToken()).value;
    },
    invalidateToken: (t) => broker.invalidateToken(t),
    async forceRefreshToken() {
      return (await broker.forceRefreshToken()).value;
    },
    async sendOneTime(input) {
      const body = oneTimeSendBody(input, oneTimeScene);
      await api({
        method: 'POST',
        path: '/cgi-bin/message/template/subscribe',
        body,
        idempotent: false,
        requireErrcode: true,
      });
      return { errcode: 0 };
    },
    async sendNotification(input, opts) {
      const body = notificationSendBody(input, opts?.keywords);
      const reply = await api({
        method: 'POST',
        path: '/cgi-bin/message/subscribe/bizsend',
        body,
        idempotent: false,
        requireErrcode: true,
        int64Fields: ['msgid'],
      });
      const msgid = reply.msgid;
      return typeof msgid === 'string' || typeof msgid === 'number' ? { msgid: String(msgid) } : {};
    },
    templates: {
      async getCategory() {
        const spec: CallSpec = { method: 'GET', path: '/wxaapi/newtmpl/getcategory', idempotent: true };
        return parseReply(zCategory, await api(spec), spec).data;
      },
      async getPubTemplateTitles(input) {
        if (
          !Array.isArray(input?.ids) ||
          input.ids.length === 0 ||
          !input.ids.every((i) => Number.isInteger(i) && i >= 0)
        ) {
          throw new WeChatInvalidArgumentError('ids', 'must be a non-empty list of category ids');
        }
        const start = input.start ?? 0;
        const limit = input.limit ?? 30;
        if (!Number.isInteger(start) || start < 0)
          throw new WeChatInvalidArgumentError('start', 'must be an integer ≥ 0');
        if (!Number.isInteger(limit) || limit < 1 || limit > 30)
          throw new WeChatInvalidArgumentError('limit', 'must be an integer from 1 to 30');
        const spec: CallSpec = {
          method: 'GET',
          path: '/wxaapi/newtmpl/getpubtemplatetitles',
          query: { ids: input.ids.join(','), start: String(start), limit: String(limit) },
          idempotent: true,
        };
        return parseReply(zTitles, await api(spec), spec);
      },
      async getPubTemplateKeywords(tid) {
        if (!/^\d{1,12}$/.test(String(tid)))
          throw new WeChatInvalidArgumentError('tid', 'must be a numeric template id');
        const spec: CallSpec = {
          method: 'GET',
          path: '/wxaapi/newtmpl/getpubtemplatekeywords',
          query: { tid: String(tid) },
          idempotent: true,
        };
        return parseReply(zKeywords, await api(spec), spec);
      },
      async addTemplate(input) {
        if (!/^\d{1,12}$/.test(String(input?.tid)))
          throw new WeChatInvalidArgumentError('tid', 'must be a numeric template id');
        if (
          !Array.isArray(input.kidList) ||
          input.kidList.length < 2 ||
          input.kidList.length > 5 ||
          !input.kidList.every((k) => Number.isInteger(k) && k > 0)
        ) {
          throw new WeChatInvalidArgumentError('kidList', 'must list 2 to 5 keyword ids');
        }
        if (
          input.sceneDesc !== undefined &&
          (typeof input.sceneDesc !== 'string' || [...input.sceneDesc].length > 15)
        ) {
          throw new WeChatInvalidArgumentError('sceneDesc', 'must be at most 15 characters');
        }
        const site = { method: 'POST', path: '/wxaapi/newtmpl/addtemplate' } as const;
        const asJson = (): CallSpec => {
          const body: Record<string, unknown> = { tid: String(input.tid), kidList: input.kidList };
          if (input.sceneDesc !== undefined) body.sceneDesc = input.sceneDesc;
          return { ...site, body, idempotent: false, requireErrcode: true };
        };
        const asForm = (): CallSpec => {
          const form = new URLSearchParams({ tid: String(input.tid) });
          for (const k of input.kidList) form.append('kidList', String(k));
          if (input.sceneDesc !== undefined) form.set('sceneDesc', input.sceneDesc);
          return { ...site, form, idempotent: false, requireErrcode: true };
        };
        let reply: Record<string, unknown>;
        if (addTemplateBody === 'form') reply = await api(asForm());
        else {
          try {
            reply = await api(asJson());
          } catch (err) {
            if (
              addTemplateBody !== 'auto' ||
              !(err instanceof WeChatApiError) ||
              !BODY_NOT_UNDERSTOOD.has(err.errcode)
            )
              throw err;
            logger.warn(
              { path: site.path, errcode: err.errcode },
              'addtemplate refused the JSON body; retrying once as a form',
            );
            reply = await api(asForm());
          }
        }
        return parseReply(z.object({ priTmplId: z.string().min(1) }), reply, site);
      },
      async delTemplate(priTmplId) {
        if (typeof priTmplId !== 'string' || priTmplId === '')
          throw new WeChatInvalidArgumentError('priTmplId', 'is required');
        await api({
          method: 'POST',
          path: '/wxaapi/newtmpl/deltemplate',
          body: { priTmplId },
          idempotent: true,
          requireErrcode: true,
        });
      },
      async getTemplates() {
        const spec: CallSpec = { method: 'GET', path: '/wxaapi/newtmpl/gettemplate', idempotent: true };
        return parseReply(zTemplates, await api(spec), spec).data as PrivateTemplate[];
      },
    },
    jssdk: {
      getTicket,
      async signConfig(input) {
        const url = checkPageUrl(input?.url);
        const ticket = await getTicket();
        const timestamp = Math.floor(clock.now() / 1000);
        const nonceStr = nonce();
        return {
          appId: options.appId,
          timestamp,
          nonceStr,
          signature: signJsSdk({ ticket, nonceStr, timestamp, url }),
          jsApiList: input.jsApiList ?? [],
          openTagList: input.openTagList ?? ['wx-open-subscribe'],
        };
      },
    },
    oauth: {
      authorizeUrl(input) {
        return buildOAuthAuthorizeUrl({ ...input, appId: options.appId, baseUrl: http.hosts.open });
      },
      async exchangeCode(code) {
        if (typeof code !== 'string' || !/^[A-Za-z0-9_-]{1,256}$/.test(code))
          throw new WeChatInvalidArgumentError('code', 'must be the code from the OAuth callback');
        const path = '/sns/oauth2/access_token';
        let reply: Record<string, unknown>;
        try {
          reply = await http.call({
            method: 'GET',
            path,
            query: { appid: options.appId, secret: options.secret, code, grant_type: 'authorization_code' },
            idempotent: false,
          });
        } catch (err) {
          // No access token is sent here: a "token invalid" code means the AppSecret is wrong (spec §3.5), which
          // refreshing the token cannot fix.
          if (err instanceof WeChatApiError && TOKEN_INVALID_ERRCODES.has(err.errcode)) {
            throw new WeChatApiError({
              errcode: err.errcode,
              errmsg: err.errmsg,
              raw: err.raw,
              site: { method: 'GET', path },
              action: 'fail',
            });
          }
          throw err;
        }
        return readOAuthToken(reply);
      },
    },
    oneTimeConsentUrl(input) {
      return buildOneTimeConsentUrl({ ...input, appId: options.appId, baseUrl: http.hosts.mp });
    },
    async getQuota(cgiPath) {
      if (typeof cgiPath !== 'string' || !cgiPath.startsWith('/'))
        throw new WeChatInvalidArgumentError(
          'cgiPath',
          'must be an API path like /cgi-bin/message/subscribe/bizsend',
        );
      const spec: CallSpec = {
        method: 'POST',
        path: '/cgi-bin/openapi/quota/get',
        body: { cgi_path: cgiPath },
        idempotent: true,
      };
      const q = parseReply(zQuota, await api(spec), spec).quota;
      return { dailyLimit: q.daily_limit, used: q.used, remain: q.remain };
    },
    close: () => http.close(),
  };
}
