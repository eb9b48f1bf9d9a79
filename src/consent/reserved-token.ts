// The one-time consent `reserved` token: signed, expiring, single-use, [A-Za-z0-9] only, fixed 70 characters.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ErrorCode } from '../errors.js';
import { linkCookieMac, type LinkCookie } from './consent-cookie.js';
import { hmacWith } from './hmac-sha256.js';

/*
 * Layout (49 bytes before base62, 70 characters after):
 *   version (1) | nonce (12) | expiry, unix seconds (4, BE) | scene (2, BE) | appTemplate (6) | context (8) | mac (16)
 * appTemplate = SHA-256(appId \0 templateId)[0..6)  → tells a cross-template/app callback apart from a forgery
 * context     = HMAC(cookieKey, "link" \0 cookiePayload)[0..8) → ties the link to the cookie set on the browser
 * mac         = HMAC-SHA256(tokenKey, bytes[0..33))[0..16)
 *
 * Version 2: `context` is the first 8 bytes of the link cookie's own MAC (consent-cookie.ts: the cookie is
 * `payload.mac`, payload = base64url(JSON {s: cookieSecret, n: next[, t: issuedAt]}), mac = HMAC(cookieKey, "link" \0 payload)[0..16)).
 * Version 1 used a separate HMAC(cookieKey, "ctx" \0 cookieSecret \0 next). Why this is as strong:
 * - The predicate is unchanged: "the browser holds the cookie that was set together with this link". The payload
 *   is a fixed, injective encoding of (cookieSecret, next[, issuedAt]), so binding to its MAC binds them all.
 * - The callback accepts only a cookie whose 16-byte MAC verifies under the cookie key (nobody without the key can
 *   make one) AND whose MAC starts with the token's `context` (which the token key authenticates). A cookie of
 *   another flow carries an unrelated MAC (fresh 128-bit cookieSecret), so it matches with probability 2^-64, the
 *   same bound as the 8-byte v1 context; forging either MAC needs a key.
 * - Domain separation stays: token key ≠ cookie key (both derived from the secret with distinct labels), and the
 *   cookie MAC is prefixed with its purpose ("link" vs "openid"), so no other MAC we issue can stand in for it.
 * The gain: a callback that verified the cookie's MAC compares 8 bytes instead of computing a second HMAC.
 * Tokens of version 1 (links minted before the upgrade, alive for one TTL) are refused as forged.
 */
const VERSION = 2;
const NONCE_LEN = 12;
const APP_TPL_LEN = 6;
const CONTEXT_LEN = 8;
const MAC_LEN = 16;
const BODY_LEN = 1 + NONCE_LEN + 4 + 2 + APP_TPL_LEN + CONTEXT_LEN;
const RAW_LEN = BODY_LEN + MAC_LEN;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
// base62 in fixed chunks: 5 bytes (40 bits) ↔ 7 characters (62^7 > 2^40). Plain float arithmetic, no BigInt,
// and one spelling per value because every chunk must stay below 2^40.
const CHUNK_BYTES = 5;
const CHUNK_CHARS = 7;
const CHUNK_LIMIT = 2 ** 40;
/** Length of every token: 49 bytes padded to 50, in 7-character chunks. */
export const RESERVED_TOKEN_LENGTH = Math.ceil(RAW_LEN / CHUNK_BYTES) * CHUNK_CHARS;
/** WeChat's limit on `reserved` (and ours on any token we accept). */
export const RESERVED_MAX_LENGTH = 128;
/** Highest scene WeChat accepts. */
export const MAX_SCENE = 10_000;

const RESERVED_RE = /^[A-Za-z0-9]{1,128}$/;
const DIGIT = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DIGIT[ALPHABET.charCodeAt(i)] = i;

const ALPHABET_CODES = Array.from(ALPHABET, (c) => c.charCodeAt(0));
const TWO_32 = 2 ** 32;

/** Encodes bytes as base62, 7 characters per 5 bytes (the last chunk zero-padded). */
export function base62Encode(bytes: Uint8Array): string {
  const chunks = Math.ceil(bytes.length / CHUNK_BYTES);
  const codes = new Array<number>(chunks * CHUNK_CHARS);
  for (let c = 0; c < chunks; c++) {
    const i = c * CHUNK_BYTES;
    let n = 0;
    for (let j = 0; j < CHUNK_BYTES; j++) n = n * 256 + (bytes[i + j] ?? 0);
    for (let k = CHUNK_CHARS - 1; k >= 0; k--) {
      const q = Math.floor(n / 62);
      codes[c * CHUNK_CHARS + k] = ALPHABET_CODES[n - q * 62] as number;
      n = q;
    }
  }
  return String.fromCharCode(...codes);
}

/**
 * Decodes {@link base62Encode} output into `length` bytes; null for any other text (so one spelling per value).
 * The result is a fresh Buffer (it may come from Node's shared pool, like any small Buffer).
 */
export function base62Decode(text: string, length: number): Buffer | null {
  const chunks = Math.ceil(length / CHUNK_BYTES);
  if (text.length !== chunks * CHUNK_CHARS) return null;
  const out = Buffer.allocUnsafe(chunks * CHUNK_BYTES);
  for (let c = 0; c < chunks; c++) {
    let n = 0;
    for (let k = 0; k < CHUNK_CHARS; k++) {
      const code = text.charCodeAt(c * CHUNK_CHARS + k);
      const d = code < 128 ? (DIGIT[code] as number) : -1;
      if (d < 0) return null;
      n = n * 62 + d; // < 62^7 < 2^42: exact in a double
    }
    if (n >= CHUNK_LIMIT) return null;
    // 40 bits: the top byte above 2^32, the low four bytes with 32-bit integer ops.
    const hi = Math.floor(n / TWO_32);
    const lo = n - hi * TWO_32;
    const o = c * CHUNK_BYTES;
    out[o] = hi;
    out.writeUInt32BE(lo, o + 1);
  }
  for (let i = length; i < out.length; i++) if (out[i] !== 0) return null;
  return out.subarray(0, length);
}

/** The two keys derived from the configured consent secret (one per purpose). */
export type ConsentKeys = { token: Buffer; cookie: Buffer };

/** Derives the token and cookie keys from the service's consent secret. */
export function deriveConsentKeys(secret: string | Uint8Array): ConsentKeys {
  const h = (label: string) => createHmac('sha256', secret).update(label).digest();
  return { token: h('wxsub/reserved/v1'), cookie: h('wxsub/consent-cookie/v1') };
}

// A service has one appid and a handful of templates: memoize their hashes (bounded, as templateId comes from the query).
const APP_TPL_MEMO_MAX = 256;
const appTplMemo = new Map<string, Buffer>();
function appTemplateHash(appId: string, templateId: string): Buffer {
  const key = `${appId}\0${templateId}`;
  let h = appTplMemo.get(key);
  if (h === undefined) {
    h = createHash('sha256').update(key).digest().subarray(0, APP_TPL_LEN);
    if (appTplMemo.size >= APP_TPL_MEMO_MAX) appTplMemo.clear();
    appTplMemo.set(key, h);
  }
  return h;
}

function contextHash(keys: ConsentKeys, cookie: LinkCookie): Buffer {
  return linkCookieMac(keys, cookie).subarray(0, CONTEXT_LEN);
}

function mac(keys: ConsentKeys, body: Uint8Array): Buffer {
  return hmacWith(keys.token, body).subarray(0, MAC_LEN);
}

/** What a token binds. */
export type ReservedBinding = {
  appId: string;
  templateId: string;
  /** 0..10000 */
  scene: number;
  /** Where the browser goes after the callback ('' = nowhere). Kept server-side in the cookie, only hashed here. */
  next: string;
  /** Random value stored in the consent cookie of the browser that started the flow. */
  cookieSecret: string;
  /** The issue time the link cookie carries, if it carries one (consent-cookie.ts LinkCookie). */
  issuedAt?: number;
};

/** A signed token and its id. */
export type SignedReserved = {
  token: string;
  /** base62 nonce: the single-use id (store.nonces.redeemOneTime). */
  nonce: string;
  /** ms since the epoch */
  expiresAt: number;
};

/**
 * Signs a `reserved` token.
 * @param ttlMs lifetime; @param now ms since the epoch; @param nonce 12 random bytes (injectable for tests)
 * @example signReserved(keys, { appId, templateId, scene: 7, next, cookieSecret }, { now: clock.now(), ttlMs: 600_000 })
 */
export function signReserved(
  keys: ConsentKeys,
  binding: ReservedBinding,
  opts: { now: number; ttlMs: number; nonce?: Uint8Array },
): SignedReserved {
  if (!Number.isInteger(binding.scene) || binding.scene < 0 || binding.scene > MAX_SCENE) {
    throw new RangeError('scene must be an integer 0..10000');
  }
  const nonce = opts.nonce ?? randomBytes(NONCE_LEN);
  if (nonce.length !== NONCE_LEN) throw new RangeError(`nonce must be ${NONCE_LEN} bytes`);
  const expSeconds = Math.ceil((opts.now + opts.ttlMs) / 1000);
  const body = Buffer.alloc(BODY_LEN);
  let o = 0;
  body.writeUInt8(VERSION, o);
  o += 1;
  body.set(nonce, o);
  o += NONCE_LEN;
  body.writeUInt32BE(expSeconds, o);
  o += 4;
  body.writeUInt16BE(binding.scene, o);
  o += 2;
  body.set(appTemplateHash(binding.appId, binding.templateId), o);
  o += APP_TPL_LEN;
  body.set(contextHash(keys, binding), o);
  const raw = Buffer.concat([body, mac(keys, body)]);
  return {
    token: base62Encode(raw),
    nonce: base62Encode(nonce),
    expiresAt: expSeconds * 1000,
  };
}

/** The decoded, authenticated content of a token. */
export type ReservedClaims = {
  version: number;
  nonce: string;
  expiresAt: number;
  scene: number;
  appTemplate: Buffer;
  context: Buffer;
};

/** Result of {@link verifyReserved} / {@link checkReserved}. */
export type ReservedCheck =
  { ok: true; claims: ReservedClaims } | { ok: false; code: ErrorCode; claims?: ReservedClaims };

/**
 * Checks shape and signature only (no expiry, no binding). `CONSENT_RESERVED_MALFORMED` for anything that
 * is not 1..128 [A-Za-z0-9] characters of our fixed length, `CONSENT_RESERVED_FORGED` for a bad signature.
 */
export function verifyReserved(keys: ConsentKeys, token: unknown): ReservedCheck {
  if (typeof token !== 'string' || !RESERVED_RE.test(token))
    return { ok: false, code: 'CONSENT_RESERVED_MALFORMED' };
  if (token.length !== RESERVED_TOKEN_LENGTH) return { ok: false, code: 'CONSENT_RESERVED_FORGED' };
  const b = base62Decode(token, RAW_LEN);
  if (b === null) return { ok: false, code: 'CONSENT_RESERVED_FORGED' };
  if (!timingSafeEqual(mac(keys, b.subarray(0, BODY_LEN)), b.subarray(BODY_LEN))) {
    return { ok: false, code: 'CONSENT_RESERVED_FORGED' };
  }
  const version = b.readUInt8(0);
  if (version !== VERSION) return { ok: false, code: 'CONSENT_RESERVED_FORGED' };
  let o = 1;
  const nonce = base62Encode(b.subarray(o, o + NONCE_LEN));
  o += NONCE_LEN;
  const expiresAt = b.readUInt32BE(o) * 1000;
  o += 4;
  const scene = b.readUInt16BE(o);
  o += 2;
  const appTemplate = b.subarray(o, o + APP_TPL_LEN);
  o += APP_TPL_LEN;
  const context = b.subarray(o, o + CONTEXT_LEN);
  return { ok: true, claims: { version, nonce, expiresAt, scene, appTemplate, context } };
}

/**
 * The browser's consent cookie as a check expects it: its content, and optionally the MAC it carried. Pass `mac`
 * only as `openLinkCookie` (consent-cookie.ts) returned it (verified); then the binding is compared without another HMAC. An
 * empty `mac` stands for a cookie that was present but tampered: it matches no token.
 */
export type ExpectedCookie = LinkCookie & { mac?: Uint8Array };

/** What a callback must match: the service's app, the callback's template and scene, the browser's cookie, the time. */
export type ReservedExpectation = {
  appId: string;
  templateId: string;
  scene: number;
  cookie: ExpectedCookie | null;
  now: number;
};

/**
 * Full check of a token against the callback and the browser's cookie, in a fixed order:
 * malformed → forged → expired → app/template → scene → cookie. (Single use is the caller's last step:
 * `store.nonces.redeemOneTime`, so a rejected attempt never burns a valid link.)
 * @param expected.cookieSecret/next from the verified consent cookie, or null when the browser sent none
 */
export function checkReserved(
  keys: ConsentKeys,
  token: unknown,
  expected: ReservedExpectation,
): ReservedCheck {
  const v = verifyReserved(keys, token);
  if (!v.ok) return v;
  return checkReservedClaims(keys, v.claims, expected);
}

/**
 * The part of {@link checkReserved} after the signature: expired → app/template → scene → cookie, on claims
 * that {@link verifyReserved} returned (so a caller that already verified the token does not verify it twice).
 */
export function checkReservedClaims(
  keys: ConsentKeys,
  claims: ReservedClaims,
  expected: ReservedExpectation,
): ReservedCheck {
  if (expected.now >= claims.expiresAt) return { ok: false, code: 'CONSENT_RESERVED_EXPIRED', claims };
  if (!timingSafeEqual(claims.appTemplate, appTemplateHash(expected.appId, expected.templateId))) {
    return { ok: false, code: 'CONSENT_BINDING_MISMATCH', claims };
  }
  if (claims.scene !== expected.scene) return { ok: false, code: 'CONSENT_SCENE_MISMATCH', claims };
  const cookie = expected.cookie;
  if (cookie === null) return { ok: false, code: 'CONSENT_COOKIE_MISSING', claims };
  const context = cookie.mac === undefined ? contextHash(keys, cookie) : cookie.mac.subarray(0, CONTEXT_LEN);
  if (context.length !== CONTEXT_LEN || !timingSafeEqual(claims.context, context)) {
    return { ok: false, code: 'CONSENT_COOKIE_MISMATCH', claims };
  }
  return { ok: true, claims };
}
