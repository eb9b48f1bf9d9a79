// The `next` redirect allowlist (no open redirects) and the outcome URL that keeps a `#/route` fragment intact.

/**
 * Longest `next` accepted, in characters of its normalized form (see {@link Allowlist.normalize}). It travels in
 * a link cookie, and a browser may hold a few of those at once (consent-cookie.ts MAX_KEPT_LINK_COOKIES) within
 * the Cookie header limit of servers (Node: 16 KiB for all headers); a page URL needs far less.
 */
export const MAX_NEXT_LENGTH = 1024;

type Entry = { origin: string; path: string };

const ALLOWLIST_MEMO_MAX = 1024;

/** A compiled allowlist. */
export type Allowlist = {
  /**
   * The WHATWG serialization of `next` (`new URL(next).href`: punycode host, percent-encoded path, query and
   * fragment — visible ASCII only, so it can go into a `Location` header) when `next` is an absolute http(s) URL
   * under one of the entries and that serialization is at most {@link MAX_NEXT_LENGTH} characters; else null.
   * @example createAllowlist(['http://app.test']).normalize('http://ａpp.test/商品#/详情')
   *   // 'http://app.test/%E5%95%86%E5%93%81#/%E8%AF%A6%E6%83%85'
   */
  normalize(next: string): string | null;
  /** True when {@link Allowlist.normalize} accepts `next`. */
  allows(next: string): boolean;
};

/** A `Location` header value: visible ASCII (RFC 9110; Node refuses characters above U+00FF). */
const LOCATION_SAFE_RE = /^[\x21-\x7e]+$/;

/**
 * Whether `entry` can be a `next` allowlist entry: an absolute http(s) URL (an origin or a prefix) without
 * credentials, whitespace or backslashes. The config schema checks entries with it, so a bad one stops the service
 * at start with CONFIG_INVALID.
 */
export function isAllowlistEntry(entry: string): boolean {
  return parseAbsolute(entry) !== null;
}

function parseAbsolute(url: string): URL | null {
  // Reject what browsers "fix up" differently from WHATWG parsers: backslashes, whitespace, control chars.
  // Serializing never shortens a URL but for dot segments and default ports, so a longer input is not parsed.
  if (url.length === 0 || url.length > MAX_NEXT_LENGTH || /[\\\s\p{Cc}]/u.test(url)) return null;
  if (!/^https?:\/\//i.test(url)) return null;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username !== '' || u.password !== '')
    return null;
  return u;
}

/**
 * Compiles allowlist entries: an origin (`https://app.example.com`, matches any path on it) or a URL prefix
 * (`https://app.example.com/shop/`, matches that path and below; `/shop` also matches `/shop/…`).
 * @throws TypeError for an entry that is not an absolute http(s) URL
 * @example createAllowlist(['https://app.example.com']).allows('https://app.example.com/#/done') // true
 */
export function createAllowlist(entries: readonly string[]): Allowlist {
  const compiled: Entry[] = entries.map((e) => {
    const u = parseAbsolute(e);
    if (u === null) throw new TypeError(`allowlist entry is not an absolute http(s) URL: ${e}`);
    return { origin: u.origin, path: u.pathname };
  });
  // The answer for a given string never changes (the entries are fixed), and a service sees few distinct
  // `next` values: remember them (bounded, as `next` comes from requests) instead of parsing a URL each time.
  const memo = new Map<string, string | null>();
  const check = (next: string): string | null => {
    const u = parseAbsolute(next);
    if (u === null) return null;
    // Checked on the serialization, which is what is stored and redirected to. The URL standard makes it
    // visible ASCII; the test keeps a callback from ever failing on its Location after the nonce is spent.
    const href = u.href;
    if (href.length > MAX_NEXT_LENGTH || !LOCATION_SAFE_RE.test(href)) return null;
    const under = compiled.some((e) => {
      if (u.origin !== e.origin) return false;
      if (e.path === '/' || e.path === '') return true;
      if (e.path.endsWith('/')) return u.pathname.startsWith(e.path);
      return u.pathname === e.path || u.pathname.startsWith(`${e.path}/`);
    });
    return under ? href : null;
  };
  const normalize = (next: string): string | null => {
    if (next.length > MAX_NEXT_LENGTH) return null;
    let href = memo.get(next);
    if (href === undefined) {
      href = check(next);
      if (memo.size >= ALLOWLIST_MEMO_MAX) memo.clear();
      memo.set(next, href);
    }
    return href;
  };
  return { normalize, allows: (next) => normalize(next) !== null };
}

/**
 * Adds query parameters to `url` (a normalized `next`, see {@link Allowlist.normalize}) BEFORE its fragment,
 * leaving the fragment byte-for-byte as it was
 * (so hash-router routes like `#/orders/7?x=1` survive — unlike WeChat's own redirect, spec §1.3).
 * @example withQueryBeforeFragment('https://a.example/app?x=1#/done', { wxsub_outcome: 'confirmed' })
 *   // 'https://a.example/app?x=1&wxsub_outcome=confirmed#/done'
 */
export function withQueryBeforeFragment(url: string, params: Record<string, string>): string {
  const hashAt = url.indexOf('#');
  const base = hashAt === -1 ? url : url.slice(0, hashAt);
  const fragment = hashAt === -1 ? '' : url.slice(hashAt);
  const added = formEncode(params);
  if (added === '') return url;
  const sep = !base.includes('?') ? '?' : base.endsWith('?') || base.endsWith('&') ? '' : '&';
  return `${base}${sep}${added}${fragment}`;
}

const PLAIN_RE = /^[A-Za-z0-9_.*-]*$/;

/** `new URLSearchParams(params).toString()`, with a shortcut when nothing needs escaping (the usual case). */
function formEncode(params: Record<string, string>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (!PLAIN_RE.test(k) || !PLAIN_RE.test(v)) return new URLSearchParams(params).toString();
    parts.push(`${k}=${v}`);
  }
  return parts.join('&');
}
