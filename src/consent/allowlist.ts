// The `next` redirect allowlist (no open redirects) and the outcome URL that keeps a `#/route` fragment intact.

/** Longest `next` accepted (it travels in a cookie). */
export const MAX_NEXT_LENGTH = 2048;

type Entry = { origin: string; path: string };

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
  return {
    allows(next: string): boolean {
      const u = parseAbsolute(next);
      if (u === null) return false;
      return compiled.some((e) => {
        if (u.origin !== e.origin) return false;
        if (e.path === '/' || e.path === '') return true;
        if (e.path.endsWith('/')) return u.pathname.startsWith(e.path);
        return u.pathname === e.path || u.pathname.startsWith(`${e.path}/`);
      });
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
  const added = new URLSearchParams(params).toString();
  if (added === '') return url;
  const sep = !base.includes('?') ? '?' : base.endsWith('?') || base.endsWith('&') ? '' : '&';
  return `${base}${sep}${added}${fragment}`;
}
