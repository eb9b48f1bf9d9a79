// Signed consent cookies: the per-link cookie (binds a `reserved` token to the browser and keeps `next`) and the openid hint.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ConsentKeys } from './reserved-token.js';

/** Path every consent cookie is scoped to. */
export const CONSENT_COOKIE_PATH = '/consent';
/** Name of the cookie remembering which openid confirmed in this browser (for `scene=auto`). */
export const OPENID_COOKIE = 'wxsub_oid';
const LINK_PREFIX = 'wxsub_c_';

/** Name of the link cookie of one consent flow (one per flow, so parallel tabs do not clobber each other). */
export function linkCookieName(nonce: string): string {
  return `${LINK_PREFIX}${nonce.slice(0, 12)}`;
}

/** The content of a link cookie. */
export type LinkCookie = { cookieSecret: string; next: string };

function sign(keys: ConsentKeys, purpose: string, payload: string): string {
  return createHmac('sha256', keys.cookie)
    .update(`${purpose}\0${payload}`)
    .digest()
    .subarray(0, 16)
    .toString('base64url');
}

function seal(keys: ConsentKeys, purpose: string, data: unknown): string {
  const payload = Buffer.from(JSON.stringify(data)).toString('base64url');
  return `${payload}.${sign(keys, purpose, payload)}`;
}

function open(keys: ConsentKeys, purpose: string, value: string | undefined): unknown {
  if (value === undefined) return undefined;
  const dot = value.indexOf('.');
  if (dot < 1 || value.length > 8192) return null;
  const payload = value.slice(0, dot);
  const given = Buffer.from(value.slice(dot + 1), 'base64url');
  const want = Buffer.from(sign(keys, purpose, payload), 'base64url');
  if (given.length !== want.length || !timingSafeEqual(given, want)) return null;
  try {
    return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown;
  } catch {
    return null;
  }
}

/** A fresh random cookie secret (22 base64url characters). */
export function newCookieSecret(): string {
  return randomBytes(16).toString('base64url');
}

/** Serializes a signed link cookie value. */
export function sealLinkCookie(keys: ConsentKeys, c: LinkCookie): string {
  return seal(keys, 'link', { s: c.cookieSecret, n: c.next });
}

/**
 * Reads a link cookie: `undefined` when absent, `null` when present but tampered, else its content.
 */
export function openLinkCookie(keys: ConsentKeys, value: string | undefined): LinkCookie | null | undefined {
  const d = open(keys, 'link', value);
  if (d === undefined || d === null) return d;
  const o = d as { s?: unknown; n?: unknown };
  if (typeof o.s !== 'string' || typeof o.n !== 'string') return null;
  return { cookieSecret: o.s, next: o.n };
}

/** Serializes the signed openid hint for an app. */
export function sealOpenidCookie(keys: ConsentKeys, appId: string, openid: string): string {
  return seal(keys, 'openid', { a: appId, o: openid });
}

/** Reads the openid hint; null unless present, untampered and for `appId`. */
export function openOpenidCookie(keys: ConsentKeys, appId: string, value: string | undefined): string | null {
  const d = open(keys, 'openid', value) as { a?: unknown; o?: unknown } | null | undefined;
  if (d === undefined || d === null || d.a !== appId || typeof d.o !== 'string') return null;
  return d.o;
}
