// Signed consent cookies: the per-link cookie (binds a `reserved` token to the browser and keeps `next`) and the openid hint.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { hmacWith } from './hmac-sha256.js';
import type { ConsentKeys } from './reserved-token.js';

/**
 * Path the consent cookies are scoped to: the path of the service's public base URL (trailing slashes removed)
 * followed by `/consent`, so that behind a path-prefix proxy the browser sends them to the callback URL given to
 * WeChat (`<publicBaseUrl>/consent/one-time/callback`). `''` (no public base URL) gives `/consent`.
 * @example consentCookiePath('https://svc.example.com/wxsub/') // '/wxsub/consent'
 */
export function consentCookiePath(publicBaseUrl: string): string {
  const prefix = publicBaseUrl === '' ? '' : new URL(publicBaseUrl).pathname.replace(/\/+$/, '');
  return `${prefix}/consent`;
}
/**
 * Link cookies a browser keeps when it starts one more flow: a start that brings more clears the oldest, so the
 * consent cookies of one browser stay a few KiB however many links it abandons (each is up to ~1.5 KiB, see
 * allowlist.ts MAX_NEXT_LENGTH), and the newest links stay valid.
 */
export const MAX_KEPT_LINK_COOKIES = 3;
/** Name of the cookie remembering which openid confirmed in this browser (for `scene=auto`). */
export const OPENID_COOKIE = 'wxsub_oid';
const LINK_PREFIX = 'wxsub_c_';
/** Bytes of a cookie's MAC (HMAC-SHA256 truncated). */
export const COOKIE_MAC_LEN = 16;
const MAX_COOKIE_LENGTH = 8192;

/** Name of the link cookie of one consent flow (one per flow, so parallel tabs do not clobber each other). */
export function linkCookieName(nonce: string): string {
  return `${LINK_PREFIX}${nonce.slice(0, 12)}`;
}

/** The content of a link cookie. */
export type LinkCookie = {
  cookieSecret: string;
  next: string;
  /** When the link was started, ms since the epoch (absent in cookies set before it was recorded). */
  issuedAt?: number;
};

/** A link cookie read by {@link openLinkCookie}: its content and the MAC it carried (already verified). */
export type OpenedLinkCookie = LinkCookie & {
  /** HMAC(cookie key, "link" \0 payload), 16 bytes: equal to the MAC the cookie carried. */
  mac: Buffer;
};

function macOf(keys: ConsentKeys, purpose: string, payload: string): Buffer {
  return hmacWith(keys.cookie, Buffer.from(`${purpose}\0${payload}`)).subarray(0, COOKIE_MAC_LEN);
}

const payloadOf = (data: unknown): string => Buffer.from(JSON.stringify(data)).toString('base64url');

/** Opens `payload.mac`: undefined when absent, null when malformed or the MAC is wrong. */
function open(
  keys: ConsentKeys,
  purpose: string,
  value: string | undefined,
): { data: unknown; mac: Buffer } | null | undefined {
  if (value === undefined) return undefined;
  const dot = value.indexOf('.');
  if (dot < 1 || value.length > MAX_COOKIE_LENGTH) return null;
  const payload = value.slice(0, dot);
  const given = Buffer.from(value.slice(dot + 1), 'base64url');
  const want = macOf(keys, purpose, payload);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return null;
  try {
    return { data: JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown, mac: want };
  } catch {
    return null;
  }
}

/** A fresh random cookie secret (22 base64url characters). */
export function newCookieSecret(): string {
  return randomBytes(16).toString('base64url');
}

/** The signed part of a link cookie: base64url of its JSON content (a fixed encoding of its fields). */
export function linkCookiePayload(c: LinkCookie): string {
  return payloadOf(
    c.issuedAt === undefined
      ? { s: c.cookieSecret, n: c.next }
      : { s: c.cookieSecret, n: c.next, t: c.issuedAt },
  );
}

/**
 * The MAC of a link cookie with this content (16 bytes). The `reserved` token's cookie binding is its first
 * bytes, so a callback that verified the cookie's MAC already holds the binding (reserved-token.ts).
 */
export function linkCookieMac(keys: ConsentKeys, c: LinkCookie): Buffer {
  return macOf(keys, 'link', linkCookiePayload(c));
}

/** Serializes a signed link cookie value. */
export function sealLinkCookie(keys: ConsentKeys, c: LinkCookie): string {
  const payload = linkCookiePayload(c);
  return `${payload}.${macOf(keys, 'link', payload).toString('base64url')}`;
}

/**
 * Reads a link cookie: `undefined` when absent, `null` when present but tampered, else its content and MAC.
 */
export function openLinkCookie(
  keys: ConsentKeys,
  value: string | undefined,
): OpenedLinkCookie | null | undefined {
  const d = open(keys, 'link', value);
  if (d === undefined || d === null) return d;
  const o = d.data as { s?: unknown; n?: unknown; t?: unknown } | null;
  if (o === null || typeof o.s !== 'string' || typeof o.n !== 'string') return null;
  if (o.t === undefined) return { cookieSecret: o.s, next: o.n, mac: d.mac };
  if (!Number.isSafeInteger(o.t)) return null;
  return { cookieSecret: o.s, next: o.n, issuedAt: o.t as number, mac: d.mac };
}

/**
 * The link cookies in a `Cookie` request header to clear so that at most `keep` remain: the oldest by issue time
 * first. Cookies without one (set before it was recorded) and tampered ones count as oldest; ties go in header
 * order, which browsers keep oldest first (RFC 6265 §5.4). Checks MACs only when there is a surplus.
 * @example surplusLinkCookies(keys, request.headers.cookie, MAX_KEPT_LINK_COOKIES) // ['wxsub_c_…', …]
 */
export function surplusLinkCookies(keys: ConsentKeys, header: string | undefined, keep: number): string[] {
  const names = linkCookieNames(header);
  if (names.length <= keep) return [];
  const dated = names.map((name, order) => ({
    name,
    order,
    issuedAt: openLinkCookie(keys, readCookie(header, name))?.issuedAt ?? -1,
  }));
  dated.sort((a, b) => a.issuedAt - b.issuedAt || a.order - b.order);
  return dated.slice(0, names.length - keep).map((c) => c.name);
}

/** Names of the link cookies in a `Cookie` header, each once, in header order. */
function linkCookieNames(header: string | undefined): string[] {
  if (header === undefined || !header.includes(LINK_PREFIX)) return [];
  const names = new Set<string>();
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq === -1) continue;
    const name = trimmed(pair, 0, eq);
    if (name.startsWith(LINK_PREFIX)) names.add(name);
  }
  return [...names];
}

/** Serializes the signed openid hint for an app. */
export function sealOpenidCookie(keys: ConsentKeys, appId: string, openid: string): string {
  const payload = payloadOf({ a: appId, o: openid });
  return `${payload}.${macOf(keys, 'openid', payload).toString('base64url')}`;
}

/** Reads the openid hint; null unless present, untampered and for `appId`. */
export function openOpenidCookie(keys: ConsentKeys, appId: string, value: string | undefined): string | null {
  const d = open(keys, 'openid', value);
  if (d === undefined || d === null) return null;
  const o = d.data as { a?: unknown; o?: unknown } | null;
  if (o === null || o.a !== appId || typeof o.o !== 'string') return null;
  return o.o;
}

/**
 * The value of cookie `name` in a `Cookie` request header, exactly as @fastify/cookie (cookie@2 `parseCookie`)
 * would give it — first pair with that name wins, spaces/tabs around names and values trimmed, `%`-escapes
 * decoded when valid — without building an object of every cookie. `undefined` when absent.
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined || header.length < 2) return undefined;
  const len = header.length;
  let index = 0;
  do {
    let eq = header.indexOf('=', index);
    if (eq === -1) eq = len;
    if (eq === len) return undefined;
    let end = header.indexOf(';', index);
    if (end === -1) end = len;
    if (eq > end) {
      // The pair before `=` had no `=` of its own: back up to the last `;` before it (as the library does).
      index = header.lastIndexOf(';', eq - 1) + 1;
      continue;
    }
    if (trimmed(header, index, eq) === name) {
      const raw = trimmed(header, eq + 1, end);
      if (raw.indexOf('%') === -1) return raw;
      try {
        return decodeURIComponent(raw);
      } catch {
        return raw;
      }
    }
    index = end + 1;
  } while (index < len);
  return undefined;
}

function trimmed(s: string, min: number, max: number): string {
  let start = min;
  let end = max;
  while (start < end) {
    const c = s.charCodeAt(start);
    if (c !== 32 && c !== 9) break;
    start++;
  }
  while (end > start) {
    const c = s.charCodeAt(end - 1);
    if (c !== 32 && c !== 9) break;
    end--;
  }
  return s.slice(start, end);
}
