// The `next` redirect allowlist (no open redirects) and the outcome URL that keeps a `#/route` fragment intact.

/** Longest `next` accepted (it travels in a cookie). */
export const MAX_NEXT_LENGTH = 2048;

type Entry = { origin: string; path: string };

const ALLOWLIST_MEMO_MAX = 1024;

/** A compiled allowlist. */
export type Allowlist = {
  /** True when `next` is an absolute http(s) URL under one of the entries. */
  allows(next: string): boolean;
};

function parseAbsolute(url: string): URL | null {
  // Reject what browsers "fix up" differently from WHATWG parsers: backslashes, whitespace, control chars.
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
  const memo = new Map<string, boolean>();
  const check = (next: string): boolean => {
    const u = parseAbsolute(next);
    if (u === null) return false;
    return compiled.some((e) => {
      if (u.origin !== e.origin) return false;
      if (e.path === '/' || e.path === '') return true;
      if (e.path.endsWith('/')) return u.pathname.startsWith(e.path);
      return u.pathname === e.path || u.pathname.startsWith(`${e.path}/`);
    });
  };
  return {
    allows(next: string): boolean {
      if (next.length > MAX_NEXT_LENGTH) return false;
      let ok = memo.get(next);
      if (ok === undefined) {
        ok = check(next);
        if (memo.size >= ALLOWLIST_MEMO_MAX) memo.clear();
        memo.set(next, ok);
      }
      return ok;
    },
  };
}

/**
 * Adds query parameters to `url` BEFORE its fragment, leaving the fragment byte-for-byte as it was
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
