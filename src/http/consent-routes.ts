// GET /consent/one-time (mint a bound `reserved` token, set the link cookie, 302 to WeChat's consent page) and its callback.
import { randomInt } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { createAllowlist, MAX_NEXT_LENGTH, withQueryBeforeFragment } from '../consent/allowlist.js';
import { parseOneTimeCallback, parseScene } from '../consent/callback-query.js';
import {
  CONSENT_COOKIE_PATH,
  OPENID_COOKIE,
  linkCookieName,
  newCookieSecret,
  openLinkCookie,
  openOpenidCookie,
  readCookie,
  sealLinkCookie,
  sealOpenidCookie,
} from '../consent/consent-cookie.js';
import {
  checkReservedClaims,
  MAX_SCENE,
  signReserved,
  verifyReserved,
  type ConsentKeys,
} from '../consent/reserved-token.js';
import type { Store } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import type { ServiceConfig } from '../config/schema.js';
import { buildOneTimeConsentUrl } from '../wechat/consent.js';

/** Longest query string the consent routes read (WeChat's own fields are far below this). */
export const MAX_CONSENT_QUERY_BYTES = 8192;
/** Path of the callback WeChat redirects back to. */
export const ONE_TIME_CALLBACK_PATH = '/consent/one-time/callback';
const OPENID_COOKIE_MAX_AGE_S = 365 * 24 * 3600;
/** Attributes of a cleared link cookie, as @fastify/cookie's clearCookie writes them. */
const CLEARED_COOKIE_ATTRS = `Max-Age=0; Path=${CONSENT_COOKIE_PATH}; Expires=Thu, 01 Jan 1970 00:00:00 GMT; SameSite=Lax`;
/** A cookie that was present but failed its MAC: an empty MAC, which matches no token (see ExpectedCookie). */
const TAMPERED_COOKIE = { cookieSecret: '', next: '', mac: Buffer.alloc(0) } as const;
const TEMPLATE_RE = /^[A-Za-z0-9_-]{1,128}$/;

/** Input of a consent URL builder. */
export type ConsentUrlInput = {
  appId: string;
  templateId: string;
  scene: number;
  redirectUrl: string;
  reserved: string;
};

/**
 * Builds `…/mp/subscribemsg?action=get_confirm&…#wechat_redirect` (spec §1.2) on `baseUrl`
 * ('' = https://mp.weixin.qq.com) with the SDK's builder. Used when the WeChat dependency brings no builder of its own.
 */
export function defaultOneTimeConsentUrl(baseUrl: string, i: ConsentUrlInput): string {
  return buildOneTimeConsentUrl({ ...i, ...(baseUrl === '' ? {} : { baseUrl }) });
}

/** What the consent routes need. */
export type ConsentRouteDeps = {
  store: Store;
  appId: string;
  keys: ConsentKeys;
  clock: Clock;
  config: ServiceConfig;
  consentUrl: (i: ConsentUrlInput) => string;
};

function rawQueryLength(request: FastifyRequest): number {
  const q = request.raw.url?.indexOf('?') ?? -1;
  return q === -1 ? 0 : (request.raw.url?.length ?? 0) - q - 1;
}

function one(query: unknown, key: string): string | undefined {
  const v = (query as Record<string, unknown> | null)?.[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new AppError('CONSENT_QUERY_INVALID', { details: { field: key } });
  return v;
}

function publicBase(config: ServiceConfig, request: FastifyRequest): string {
  if (config.publicBaseUrl !== '') return config.publicBaseUrl.replace(/\/+$/, '');
  return `${request.protocol}://${request.host}`;
}

/** Picks a scene for `scene=auto`: one this browser's user has never held, else a random one. */
async function pickAutoScene(
  d: ConsentRouteDeps,
  templateId: string,
  openid: string | null,
): Promise<number> {
  if (openid === null) return randomInt(0, MAX_SCENE + 1);
  const known = new Set(await d.store.grants.knownScenes({ appId: d.appId, openid, templateId }));
  if (known.size <= MAX_SCENE) {
    // Start at a random point so two tabs opened together rarely pick the same free scene.
    const start = randomInt(0, MAX_SCENE + 1);
    for (let k = 0; k <= MAX_SCENE; k++) {
      const s = (start + k) % (MAX_SCENE + 1);
      if (!known.has(s)) return s;
    }
  }
  // Every scene has a row: reuse one that is no longer available (consumed/revoked can be re-granted).
  const available = new Set(await d.store.grants.availableScenes({ appId: d.appId, openid, templateId }));
  for (const s of known) if (!available.has(s)) return s;
  throw new AppError('CONSENT_SCENE_EXHAUSTED');
}

/** Registers the one-time consent routes. */
export function registerConsentRoutes(app: FastifyInstance, d: ConsentRouteDeps): void {
  const allowlist = createAllowlist(d.config.consent.nextAllowlist);
  const ttlMs = d.config.consent.ttlSeconds * 1000;
  const secureCookies = d.config.publicBaseUrl.startsWith('https:');
  const oneTimeTemplates = new Set(d.config.consent.oneTimeTemplates);

  // Every Set-Cookie line here is a fixed shape over [A-Za-z0-9_.-] names and values: written directly, it is
  // byte-for-byte what @fastify/cookie's setCookie/clearCookie would serialize (consent-routes.test.ts compares),
  // and the service needs no cookie plugin, whose hooks would parse and serialize on every request of every route.
  const cookieAttrs = (maxAgeS: number, secure: boolean) =>
    `Max-Age=${maxAgeS}; Path=${CONSENT_COOKIE_PATH}; HttpOnly; ${secure ? 'Secure; ' : ''}SameSite=Lax`;
  const openidCookieAttrs = cookieAttrs(OPENID_COOKIE_MAX_AGE_S, false);
  const openidCookieAttrsSecure = cookieAttrs(OPENID_COOKIE_MAX_AGE_S, true);
  const linkCookieAttrs = cookieAttrs(d.config.consent.ttlSeconds, false);
  const linkCookieAttrsSecure = cookieAttrs(d.config.consent.ttlSeconds, true);
  const isSecure = (request: FastifyRequest) => secureCookies || request.protocol === 'https';

  app.get('/consent/one-time', async (request, reply: FastifyReply) => {
    if (rawQueryLength(request) > MAX_CONSENT_QUERY_BYTES) throw new AppError('CONSENT_QUERY_TOO_LARGE');
    const templateId = one(request.query, 'template');
    if (templateId === undefined || !TEMPLATE_RE.test(templateId)) {
      throw new AppError('CONSENT_QUERY_INVALID', {
        message: 'template is required ([A-Za-z0-9_-], ≤ 128)',
        details: { field: 'template' },
      });
    }
    const sceneRaw = one(request.query, 'scene') ?? 'auto';
    const fixedScene = sceneRaw === 'auto' ? null : parseScene(sceneRaw);
    if (sceneRaw !== 'auto' && fixedScene === null)
      throw new AppError('CONSENT_SCENE_OUT_OF_RANGE', { details: { field: 'scene' } });
    const next = one(request.query, 'next') ?? '';
    if (next !== '' && (next.length > MAX_NEXT_LENGTH || !allowlist.allows(next))) {
      throw new AppError('CONSENT_NEXT_NOT_ALLOWED', { details: { field: 'next' } });
    }
    if (!oneTimeTemplates.has(templateId)) {
      const t = await d.store.templates.get(d.appId, templateId);
      if (t === null || t.kind !== 'one-time')
        throw new AppError('CONSENT_TEMPLATE_UNKNOWN', { details: { template: templateId } });
    }
    const openidHint = openOpenidCookie(d.keys, d.appId, readCookie(request.headers.cookie, OPENID_COOKIE));
    const scene = fixedScene ?? (await pickAutoScene(d, templateId, openidHint));
    const cookieSecret = newCookieSecret();
    const now = d.clock.now();
    const signed = signReserved(
      d.keys,
      { appId: d.appId, templateId, scene, next, cookieSecret },
      { now, ttlMs },
    );
    const location = d.consentUrl({
      appId: d.appId,
      templateId,
      scene,
      redirectUrl: `${publicBase(d.config, request)}${ONE_TIME_CALLBACK_PATH}`,
      reserved: signed.token,
    });
    const linkCookie = `${linkCookieName(signed.nonce)}=${sealLinkCookie(d.keys, { cookieSecret, next })}`;
    return reply
      .header('set-cookie', `${linkCookie}; ${isSecure(request) ? linkCookieAttrsSecure : linkCookieAttrs}`)
      .header('cache-control', 'no-store')
      .redirect(location, 302);
  });

  app.get(ONE_TIME_CALLBACK_PATH, async (request, reply) => {
    if (rawQueryLength(request) > MAX_CONSENT_QUERY_BYTES) throw new AppError('CONSENT_QUERY_TOO_LARGE');
    const parsed = parseOneTimeCallback(request.query);
    if (!parsed.ok)
      throw new AppError(parsed.code, parsed.field === undefined ? {} : { details: { field: parsed.field } });
    const cb = parsed.value;
    const shape = verifyReserved(d.keys, cb.reserved);
    if (!shape.ok) throw new AppError(shape.code);
    const cookieName = linkCookieName(shape.claims.nonce);
    const opened = openLinkCookie(d.keys, readCookie(request.headers.cookie, cookieName));
    // A tampered cookie is checked in order like any other mismatch (its empty MAC matches no token). A good one
    // brings its verified MAC, which holds the token's cookie binding: no second HMAC (reserved-token.ts).
    const now = d.clock.now();
    const check = checkReservedClaims(d.keys, shape.claims, {
      appId: d.appId,
      templateId: cb.templateId,
      scene: cb.scene,
      cookie: opened === undefined ? null : (opened ?? TAMPERED_COOKIE),
      now,
    });
    if (!check.ok) throw new AppError(check.code);
    const next = (opened as { next: string }).next; // present: checkReservedClaims passed the cookie binding
    if (next !== '' && !allowlist.allows(next)) throw new AppError('CONSENT_NEXT_NOT_ALLOWED');
    // Single use last, so a rejected attempt never burns a link that is still good. The nonce and the grant
    // (or refusal) are one transaction: a replay writes nothing, and a crash never splits them.
    const common = {
      nonce: check.claims.nonce,
      expiresAt: check.claims.expiresAt,
      appId: d.appId,
      templateId: cb.templateId,
      scene: cb.scene,
      now,
    };
    const redeemed = await d.store.nonces.redeemOneTime(
      cb.action === 'confirm'
        ? { ...common, action: 'confirm', openid: cb.openid as string }
        : { ...common, action: 'cancel', ...(cb.openid === null ? {} : { openid: cb.openid }) },
    );
    if (!redeemed.fresh) throw new AppError('CONSENT_RESERVED_REPLAYED');

    const cleared = `${cookieName}=; ${CLEARED_COOKIE_ATTRS}`;
    let created = false;
    let setCookie: string | string[] = cleared;
    if (redeemed.action === 'confirm') {
      created = redeemed.created;
      const openidCookie = sealOpenidCookie(d.keys, d.appId, cb.openid as string);
      setCookie = [
        `${OPENID_COOKIE}=${openidCookie}; ${isSecure(request) ? openidCookieAttrsSecure : openidCookieAttrs}`,
        cleared,
      ];
    }
    void reply.header('set-cookie', setCookie).header('cache-control', 'no-store');
    const outcome = cb.action === 'confirm' ? 'confirmed' : 'cancelled';
    if (next === '') return reply.send({ outcome, scene: cb.scene, template: cb.templateId, created });
    return reply.redirect(
      withQueryBeforeFragment(next, { wxsub_outcome: outcome, scene: String(cb.scene) }),
      302,
    );
  });
}
