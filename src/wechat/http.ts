// The SDK's one HTTP seam: an injectable fetch or a default undici keep-alive pool, base-URL routing, per-attempt and total timeouts, bounded jittered retries, and reply parsing into typed errors.
import { Pool } from 'undici';
import { coerceErrcode } from './errcodes.js';
import {
  WeChatApiError,
  WeChatBadResponseError,
  WeChatTimeoutError,
  WeChatTransportError,
  type CallSite,
} from './errors.js';
import { redact, type Logger } from './redact.js';

/** One HTTP request as the SDK issues it. */
export type HttpRequest = {
  method: 'GET' | 'POST';
  /** `http(s)://host[:port]` */
  origin: string;
  /** Path and query, starting with `/`. */
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** The transport must give up after this long and throw {@link HttpAttemptTimeout}. */
  timeoutMs: number;
};
/** The part of an HTTP response the SDK reads. */
export type HttpResponse = { status: number; text: string };
/** The transport the SDK talks through. */
export type HttpTransport = {
  send(req: HttpRequest): Promise<HttpResponse>;
  /** Releases pooled connections (only for the default pool). */
  close(): Promise<void>;
};

/** Thrown by a transport when `timeoutMs` passed without a complete response. */
export class HttpAttemptTimeout extends Error {
  constructor() {
    super('attempt timed out');
    this.name = 'HttpAttemptTimeout';
  }
}

/** Wraps a fetch-compatible function (the emulator's in-memory `fetch`, `globalThis.fetch`, a test fake). */
export function fetchTransport(fetchFn: typeof fetch): HttpTransport {
  return {
    async send(req) {
      const ac = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        ac.abort();
      }, req.timeoutMs);
      try {
        const init: RequestInit = { method: req.method, headers: req.headers, signal: ac.signal };
        if (req.body !== undefined) init.body = req.body;
        const res = await fetchFn(req.origin + req.path, init);
        return { status: res.status, text: await res.text() };
      } catch (err) {
        if (timedOut) throw new HttpAttemptTimeout();
        throw err;
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {},
  };
}

/** Options of the default undici pool. */
export type UndiciTransportOptions = {
  /** Max sockets per origin. @default 128 */
  connections?: number;
  /** Idle keep-alive time of a socket in ms. @default 30000 */
  keepAliveTimeoutMs?: number;
  /** Connect timeout in ms (the request has certainly not left when it fires). @default 10000 */
  connectTimeoutMs?: number;
};

/**
 * The default transport: one undici keep-alive `Pool` per origin. The attempt timeout is enforced with
 * undici's own headers/body timeouts (no AbortController per request on the hot path).
 */
export function undiciTransport(options: UndiciTransportOptions = {}): HttpTransport {
  const pools = new Map<string, Pool>();
  const poolOf = (origin: string): Pool => {
    let p = pools.get(origin);
    if (!p) {
      p = new Pool(origin, {
        connections: options.connections ?? 128,
        keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
        pipelining: 1,
        connect: { timeout: options.connectTimeoutMs ?? 10_000 },
      });
      pools.set(origin, p);
    }
    return p;
  };
  return {
    async send(req) {
      try {
        const res = await poolOf(req.origin).request({
          method: req.method,
          path: req.path,
          headers: req.headers,
          body: req.body ?? null,
          headersTimeout: req.timeoutMs,
          bodyTimeout: req.timeoutMs,
        });
        const text = await res.body.text();
        return { status: res.statusCode, text };
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT')
          throw new HttpAttemptTimeout();
        throw err;
      }
    },
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.close()));
    },
  };
}

/** Hosts the SDK talks to. */
export type Host = 'api' | 'mp' | 'open';

/** The real WeChat hosts. */
export const WECHAT_HOSTS: Readonly<Record<Host, string>> = Object.freeze({
  api: 'https://api.weixin.qq.com',
  mp: 'https://mp.weixin.qq.com',
  open: 'https://open.weixin.qq.com',
});

/** Resolves the base of each host; one `baseUrl` replaces all three (e.g. the emulator's URL). */
export function resolveHosts(baseUrl: string | undefined): Record<Host, string> {
  if (baseUrl === undefined) return { ...WECHAT_HOSTS };
  let u: URL;
  try {
    u = new URL(baseUrl);
  } catch {
    throw new TypeError('baseUrl must be an absolute http(s) URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new TypeError('baseUrl must be an absolute http(s) URL');
  const base = `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
  return { api: base, mp: base, open: base };
}

/** Retry policy for calls that are safe to repeat. */
export type RetryOptions = {
  /** Extra attempts after the first. @default 2 */
  max?: number;
  /** First backoff in ms (doubles each attempt, full jitter 50–150 %). @default 200 */
  baseDelayMs?: number;
  /** Cap of one backoff in ms. @default 5000 */
  maxDelayMs?: number;
};

/** Options of {@link createHttp}. */
export type HttpOptions = {
  baseUrl?: string | undefined;
  /** Per-attempt timeout in ms. @default 10000 */
  attemptTimeoutMs?: number | undefined;
  /** Total time for a call including retries and backoff, in ms. @default 30000 */
  totalTimeoutMs?: number | undefined;
  retries?: RetryOptions | undefined;
};

/** Dependencies of {@link createHttp}. */
export type HttpDeps = {
  transport: HttpTransport;
  logger: Logger;
  random: () => number;
  /** Waits `ms` (tests may fake it). @default setTimeout */
  sleep?: (ms: number) => Promise<void>;
};

/** A call to one WeChat endpoint. */
export type CallSpec = {
  method: 'GET' | 'POST';
  host?: Host;
  path: string;
  /** Query parameters (the access token goes here; it is never logged). */
  query?: Record<string, string>;
  /** JSON body (POST). */
  body?: unknown;
  /**
   * `application/x-www-form-urlencoded` body (POST) instead of `body`; repeated keys stay repeated
   * (`kidList=1&kidList=2`), as the mini-program addtemplate doc shows.
   */
  form?: URLSearchParams;
  /**
   * True when a success must carry `errcode` (every call but the token endpoints, spec §0). A 200 without it
   * is then a {@link WeChatBadResponseError}: nothing in it says WeChat executed the call, nor that it did not.
   * @default false
   */
  requireErrcode?: boolean;
  /**
   * Top-level reply fields holding int64 values (e.g. bizsend `msgid`). A JSON number there is returned as its
   * exact decimal string, read from the reply text, because `JSON.parse` rounds integers above 2^53.
   */
  int64Fields?: readonly string[];
  /**
   * True when repeating the call cannot cause a second effect (reads, non-forced token fetches).
   * Non-idempotent calls (sends, addtemplate, code exchange) are only repeated when the request
   * certainly never left (connection refused).
   */
  idempotent: boolean;
  /** Appended as `access_token=` (kept apart from `query` so the encoded form can be cached). */
  accessToken?: string;
};

/** The SDK's HTTP layer. */
export type Http = {
  readonly hosts: Record<Host, string>;
  /** The longest one call may take, retries and backoff included, in ms (the token lease must outlive it). */
  readonly totalTimeoutMs: number;
  /** Performs the call; resolves with the parsed reply (errcode 0) or throws a typed error. */
  call(spec: CallSpec): Promise<Record<string, unknown>>;
  close(): Promise<void>;
};

const NEVER_LEFT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_NONAME',
  'UND_ERR_CONNECT_TIMEOUT',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ERR_INVALID_URL',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
]);

function errorCode(err: unknown): string | undefined {
  let cur: unknown = err;
  for (let i = 0; i < 5 && cur !== null && typeof cur === 'object'; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

function errorReason(err: unknown): string {
  const code = errorCode(err);
  const msg = err instanceof Error ? err.message : String(err);
  const causeMsg = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${code ? `${code} ` : ''}${msg}${causeMsg}`.slice(0, 300);
}

/**
 * Replaces the JSON number `obj[field]` with its decimal digits as written in `text` (the reply `obj` was parsed
 * from). Only the top-level member counts: a scan that skips strings and nested values finds it, so a same-named
 * field inside another object or inside a string cannot be taken for it.
 */
function exactInteger(obj: Record<string, unknown>, field: string, text: string): void {
  const parsed = obj[field];
  if (typeof parsed !== 'number' || !Number.isInteger(parsed)) return;
  obj[field] = topLevelInteger(text, field) ?? String(parsed);
}

function topLevelInteger(text: string, field: string): string | undefined {
  let found: string | undefined;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const name = text.slice(i + 1, j);
      i = j;
      if (depth !== 1 || name !== field) continue;
      const m = /^\s*:\s*(-?\d+)(?![\d.eE])/.exec(text.slice(j + 1, j + 64));
      // JSON.parse keeps the last of duplicate members; so does this.
      if (m) found = m[1];
    }
  }
  return found;
}

class AttemptFailure {
  constructor(
    readonly error: Error,
    readonly retryable: boolean,
  ) {}
}

/** Builds the HTTP layer over a transport. */
export function createHttp(deps: HttpDeps, options: HttpOptions = {}): Http {
  const hosts = resolveHosts(options.baseUrl);
  const attemptTimeoutMs = options.attemptTimeoutMs ?? 10_000;
  const totalTimeoutMs = options.totalTimeoutMs ?? 30_000;
  const maxRetries = options.retries?.max ?? 2;
  const baseDelayMs = options.retries?.baseDelayMs ?? 200;
  const maxDelayMs = options.retries?.maxDelayMs ?? 5_000;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const jsonHeaders = { 'content-type': 'application/json; charset=utf-8', accept: 'application/json' };
  const formHeaders = {
    'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
    accept: 'application/json',
  };
  const getHeaders = { accept: 'application/json' };

  const split = {} as Record<Host, { origin: string; prefix: string }>;
  for (const h of Object.keys(hosts) as Host[]) {
    const u = new URL(hosts[h]);
    split[h] = { origin: u.origin, prefix: u.pathname.replace(/\/+$/, '') };
  }

  let tokenCache = { raw: '', encoded: '' };
  function buildPath(prefix: string, spec: CallSpec): string {
    let path = prefix + spec.path;
    let sep = '?';
    if (spec.query) {
      for (const k in spec.query) {
        path += `${sep}${encodeURIComponent(k)}=${encodeURIComponent(spec.query[k] as string)}`;
        sep = '&';
      }
    }
    if (spec.accessToken !== undefined) {
      if (tokenCache.raw !== spec.accessToken)
        tokenCache = { raw: spec.accessToken, encoded: encodeURIComponent(spec.accessToken) };
      path += `${sep}access_token=${tokenCache.encoded}`;
    }
    return path;
  }

  function parse(
    site: CallSite,
    res: HttpResponse,
    spec: CallSpec,
  ): Record<string, unknown> | AttemptFailure {
    const idempotent = spec.idempotent;
    let body: unknown;
    try {
      body = JSON.parse(res.text);
    } catch {
      if (res.status >= 500 || res.status === 429) {
        return new AttemptFailure(
          new WeChatTransportError({
            site,
            requestMayHaveLeft: true,
            reason: `HTTP ${res.status}`,
            httpStatus: res.status,
          }),
          idempotent,
        );
      }
      return new AttemptFailure(
        new WeChatBadResponseError({ site, reason: `HTTP ${res.status}, body is not JSON` }),
        false,
      );
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return new AttemptFailure(
        new WeChatBadResponseError({ site, reason: `HTTP ${res.status}, body is not a JSON object` }),
        false,
      );
    }
    const obj = body as Record<string, unknown>;
    const errcode = coerceErrcode(obj.errcode);
    if (errcode === undefined)
      return new AttemptFailure(
        new WeChatBadResponseError({ site, reason: 'errcode is not an integer', raw: obj }),
        false,
      );
    if (errcode !== 0) {
      const errmsg = typeof obj.errmsg === 'string' ? obj.errmsg : '';
      return new AttemptFailure(
        new WeChatApiError({ errcode, errmsg, raw: obj, site }),
        errcode === -1 && idempotent,
      );
    }
    if (res.status >= 400 && !('errcode' in obj)) {
      return new AttemptFailure(
        new WeChatTransportError({
          site,
          requestMayHaveLeft: true,
          reason: `HTTP ${res.status}`,
          httpStatus: res.status,
        }),
        idempotent && res.status >= 500,
      );
    }
    if (spec.requireErrcode && (obj.errcode === undefined || obj.errcode === null)) {
      return new AttemptFailure(
        new WeChatBadResponseError({ site, reason: 'errcode is missing', raw: obj }),
        false,
      );
    }
    if (spec.int64Fields) for (const f of spec.int64Fields) exactInteger(obj, f, res.text);
    return obj;
  }

  async function call(spec: CallSpec): Promise<Record<string, unknown>> {
    const site: CallSite = { method: spec.method, path: spec.path };
    const target = split[spec.host ?? 'api'];
    const path = buildPath(target.prefix, spec);
    const body =
      spec.form !== undefined
        ? spec.form.toString()
        : spec.body === undefined
          ? undefined
          : JSON.stringify(spec.body);
    const headers = spec.form !== undefined ? formHeaders : body === undefined ? getHeaders : jsonHeaders;
    const deadline = performance.now() + totalTimeoutMs;
    let lastMayHaveLeft = false;
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - performance.now();
      if (remaining <= 0)
        throw new WeChatTimeoutError({
          site,
          requestMayHaveLeft: lastMayHaveLeft,
          timeout: 'total',
          ms: totalTimeoutMs,
        });
      const limit = Math.min(attemptTimeoutMs, remaining);
      const whichTimeout: 'attempt' | 'total' = limit < attemptTimeoutMs ? 'total' : 'attempt';
      let outcome: Record<string, unknown> | AttemptFailure;
      try {
        const req: HttpRequest = {
          method: spec.method,
          origin: target.origin,
          path,
          headers,
          timeoutMs: limit,
        };
        if (body !== undefined) req.body = body;
        const res = await deps.transport.send(req);
        outcome = parse(site, res, spec);
      } catch (err) {
        if (err instanceof HttpAttemptTimeout) {
          // We cannot tell whether the request was written before the timer fired: assume it was.
          outcome = new AttemptFailure(
            new WeChatTimeoutError({
              site,
              requestMayHaveLeft: true,
              timeout: whichTimeout,
              ms: whichTimeout === 'total' ? totalTimeoutMs : attemptTimeoutMs,
            }),
            spec.idempotent,
          );
        } else {
          const code = errorCode(err);
          const mayHaveLeft = code === undefined || !NEVER_LEFT_CODES.has(code);
          outcome = new AttemptFailure(
            new WeChatTransportError({ site, requestMayHaveLeft: mayHaveLeft, reason: errorReason(err) }),
            spec.idempotent || !mayHaveLeft,
          );
        }
      }
      if (!(outcome instanceof AttemptFailure)) return outcome;
      const failure = outcome;
      lastMayHaveLeft =
        lastMayHaveLeft ||
        ('requestMayHaveLeft' in failure.error &&
          (failure.error as { requestMayHaveLeft: boolean }).requestMayHaveLeft);
      if (!failure.retryable || attempt >= maxRetries) throw failure.error;
      const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** attempt) * (0.5 + deps.random());
      if (performance.now() + backoff >= deadline) throw failure.error;
      deps.logger.warn(
        {
          path: spec.path,
          attempt: attempt + 1,
          backoffMs: Math.round(backoff),
          err: redact(failure.error.message),
        },
        'wechat call failed; retrying',
      );
      await sleep(backoff);
    }
  }

  return { hosts, totalTimeoutMs, call, close: () => deps.transport.close() };
}
