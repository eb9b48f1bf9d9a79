// GET /consent/one-time (mint a bound `reserved` token, set the link cookie, 302 to WeChat's consent page) and its callback.
import { randomInt } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { createAllowlist, withQueryBeforeFragment } from '../consent/allowlist.js';
import { parseOneTimeCallback, parseScene } from '../consent/callback-query.js';
import {
  MAX_KEPT_LINK_COOKIES,
  OPENID_COOKIE,
  consentCookiePath,
  linkCookieName,
  newCookieSecret,
  openLinkCookie,
  openOpenidCookie,
  readCookie,
  sealLinkCookie,
  sealOpenidCookie,
  surplusLinkCookies,
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

/** `publicBaseUrl` without trailing slashes (null when unset: then each request's own origin). */
function configuredPublicBase(publicBaseUrl: string): string | null {
  if (publicBaseUrl === '') return null;
  // Origin and path as consentCookiePath reads them, so the cookies' path is a prefix of the callback's.
  const u = new URL(publicBaseUrl);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
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
  const fixedPublicBase = configuredPublicBase(d.config.publicBaseUrl);
  const publicBase = (request: FastifyRequest) => fixedPublicBase ?? `${request.protocol}://${request.host}`;
  const cookiePath = consentCookiePath(d.config.publicBaseUrl);

  // Every Set-Cookie line here is a fixed shape over [A-Za-z0-9_.-] names and values: written directly, it is
  // byte-for-byte what @fastify/cookie's setCookie/clearCookie would serialize (consent-routes.test.ts compares),
  // and the service needs no cookie plugin, whose hooks would parse and serialize on every request of every route.
  const cookieAttrs = (maxAgeS: number, secure: boolean) =>
    `Max-Age=${maxAgeS}; Path=${cookiePath}; HttpOnly; ${secure ? 'Secure; ' : ''}SameSite=Lax`;
  // A cleared cookie, as @fastify/cookie's clearCookie writes it (same path, or the browser keeps the cookie).
  const clearedCookie = (name: string) =>
    `${name}=; Max-Age=0; Path=${cookiePath}; Expires=Thu, 01 Jan 1970 00:00:00 GMT; SameSite=Lax`;
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
    const nextParam = one(request.query, 'next') ?? '';
    // Stored and redirected to in its normalized (visible-ASCII) form: a raw `é` or `商` in a Location header
    // would make Node throw in the callback, after the nonce is spent.
    const next = nextParam === '' ? '' : allowlist.normalize(nextParam);
    if (next === null) throw new AppError('CONSENT_NEXT_NOT_ALLOWED', { details: { field: 'next' } });
    if (!oneTimeTemplates.has(templateId)) {
      const t = await d.store.templates.get(d.appId, templateId);
      if (t === null || t.kind !== 'one-time')
        throw new AppError('CONSENT_TEMPLATE_UNKNOWN', { details: { template: templateId } });
    }
    const openidHint = openOpenidCookie(d.keys, d.appId, readCookie(request.headers.cookie, OPENID_COOKIE));
    const scene = fixedScene ?? (await pickAutoScene(d, templateId, openidHint));
    const cookieSecret = newCookieSecret();
    const now = d.clock.now();
    const link = { cookieSecret, next, issuedAt: now };
    const signed = signReserved(d.keys, { appId: d.appId, templateId, scene, ...link }, { now, ttlMs });
    const location = d.consentUrl({
      appId: d.appId,
      templateId,
      scene,
      redirectUrl: `${publicBase(request)}${ONE_TIME_CALLBACK_PATH}`,
      reserved: signed.token,
    });
    const linkCookie = `${linkCookieName(signed.nonce)}=${sealLinkCookie(d.keys, link)}; ${
      isSecure(request) ? linkCookieAttrsSecure : linkCookieAttrs
    }`;
    // Links abandoned in this browser each left a cookie until their TTL: keep the newest few, or their sum
    // would outgrow the Cookie header limit and lock the browser out of every /consent request.
    const surplus = surplusLinkCookies(d.keys, request.headers.cookie, MAX_KEPT_LINK_COOKIES);
    return reply
      .header('set-cookie', surplus.length === 0 ? linkCookie : [linkCookie, ...surplus.map(clearedCookie)])
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
    // Normalized again (a memo lookup): cookies set before `next` was normalized at the start may hold a raw one.
    const target = next === '' ? '' : allowlist.normalize(next);
    if (target === null) throw new AppError('CONSENT_NEXT_NOT_ALLOWED');
    const outcome = cb.action === 'confirm' ? 'confirmed' : 'cancelled';
    // Built before the nonce is spent, from visible ASCII only: nothing after the redeem can fail.
    const location =
      target === ''
        ? null
        : withQueryBeforeFragment(target, { wxsub_outcome: outcome, scene: String(cb.scene) });
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

    const cleared = clearedCookie(cookieName);
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
    if (location === null) return reply.send({ outcome, scene: cb.scene, template: cb.templateId, created });
    return reply.redirect(location, 302);
  });
}
