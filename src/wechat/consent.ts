// One-time subscription consent: the confirm-page URL builder and the redirect-callback parser (pure functions, spec §1.2–1.3).
import { timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.js';
import { WeChatInvalidArgumentError } from './errors.js';
import { WECHAT_HOSTS } from './http.js';
import { checkScene } from './validate.js';

/** `reserved` / `state`: letters and digits only, at most 128 bytes. */
export const RESERVED_RE = /^[A-Za-z0-9]{0,128}$/;

/** Input of {@link buildOneTimeConsentUrl}. */
export type OneTimeConsentUrlInput = {
  appId: string;
  /** The account's one-time template id. */
  templateId: string;
  /** Integer 0–10000; echoed back. */
  scene: number;
  /** Absolute http(s) URL on the registered business domain; WeChat appends the result query to it. */
  redirectUrl: string;
  /** CSRF/state token echoed unchanged: a-zA-Z0-9, ≤ 128. `''` is sent as `reserved=`. */
  reserved?: string;
  /** When given, `redirectUrl`'s host must equal it (WeChat rejects other hosts). A non-string is refused. */
  businessDomain?: string;
  /** Base of the mp host (the emulator's URL in tests). @default 'https://mp.weixin.qq.com' */
  baseUrl?: string;
};

/**
 * Builds the one-time consent URL:
 * `…/mp/subscribemsg?action=get_confirm&appid=…&scene=…&template_id=…&redirect_url=…&reserved=…#wechat_redirect`.
 * @throws WeChatInvalidArgumentError for a bad scene, reserved, template id or redirect URL
 * @example buildOneTimeConsentUrl({ appId: 'wx…', templateId: 'T', scene: 1000, redirectUrl: 'https://a.example/cb', reserved: 'abc' })
 */
export function buildOneTimeConsentUrl(input: OneTimeConsentUrlInput): string {
  if (input === null || typeof input !== 'object')
    throw new WeChatInvalidArgumentError('input', 'must be an object');
  if (typeof input.appId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(input.appId))
    throw new WeChatInvalidArgumentError('appId', 'must be an app id');
  if (typeof input.templateId !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(input.templateId))
    throw new WeChatInvalidArgumentError('templateId', 'must be a template id (letters, digits, - and _)');
  checkScene(input.scene);
  if (
    input.reserved !== undefined &&
    (typeof input.reserved !== 'string' || !RESERVED_RE.test(input.reserved))
  ) {
    throw new WeChatInvalidArgumentError('reserved', 'must be letters and digits only, at most 128');
  }
  let redirect: URL;
  try {
    redirect = new URL(input.redirectUrl);
  } catch {
    throw new WeChatInvalidArgumentError('redirectUrl', 'must be an absolute http(s) URL');
  }
  if (redirect.protocol !== 'http:' && redirect.protocol !== 'https:')
    throw new WeChatInvalidArgumentError('redirectUrl', 'must be an absolute http(s) URL');
  // Like every other optional input, only undefined means absent: a null from an unset config value is a mistake.
  if (
    input.businessDomain !== undefined &&
    (typeof input.businessDomain !== 'string' || input.businessDomain === '')
  )
    throw new WeChatInvalidArgumentError('businessDomain', 'must be a host name');
  if (input.baseUrl !== undefined && typeof input.baseUrl !== 'string')
    throw new WeChatInvalidArgumentError('baseUrl', 'must be an absolute http(s) URL');
  if (
    input.businessDomain !== undefined &&
    redirect.hostname.toLowerCase() !== input.businessDomain.toLowerCase()
  ) {
    throw new WeChatInvalidArgumentError(
      'redirectUrl',
      `host must be the business domain ${input.businessDomain}`,
    );
  }
  const base = (input.baseUrl ?? WECHAT_HOSTS.mp).replace(/\/+$/, '');
  const q = new URLSearchParams();
  q.set('action', 'get_confirm');
  q.set('appid', input.appId);
  q.set('scene', String(input.scene));
  q.set('template_id', input.templateId);
  q.set('redirect_url', input.redirectUrl);
  if (input.reserved !== undefined) q.set('reserved', input.reserved);
  return `${base}/mp/subscribemsg?${q.toString()}#wechat_redirect`;
}

/** The parsed one-time consent callback. `openid` is present only when the user confirmed. */
export type OneTimeConsentCallback =
  | { action: 'confirm'; openid: string; templateId: string; scene: number; reserved: string | undefined }
  | { action: 'cancel'; openid: undefined; templateId: string; scene: number; reserved: string | undefined };

/**
 * Expectations the callback must meet (what the page sent the user away with). `reserved: ''` matches a callback
 * with an empty or no `reserved`, as WeChat echoes the `reserved=` the builder sends for `''`.
 */
export type OneTimeConsentExpect = { templateId?: string; scene?: number; reserved?: string };

/** A callback query in any common shape: a full URL, a query string, URLSearchParams or a parsed query object. */
export type CallbackQuery = string | URLSearchParams | Record<string, string | string[] | undefined>;

function invalid(field: string, problem: string): AppError {
  return new AppError('WX_CALLBACK_INVALID', {
    message: `Invalid consent callback: ${field} ${problem}`,
    details: { field, problem },
  });
}

function toParams(query: CallbackQuery): URLSearchParams {
  if (query instanceof URLSearchParams) return query;
  if (typeof query === 'string') {
    // WeChat inserts its query before the page's #fragment and re-encodes the fragment; ignore anything after '#'.
    let s = query.split('#', 1)[0] as string;
    const qi = s.indexOf('?');
    if (qi >= 0) s = s.slice(qi + 1);
    return new URLSearchParams(s);
  }
  if (query === null || typeof query !== 'object') throw invalid('query', 'is missing');
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) p.append(k, text(k, x));
    else p.append(k, text(k, v));
  }
  return p;
}

const CALLBACK_FIELDS = new Set(['openid', 'template_id', 'action', 'scene', 'reserved']);

/**
 * A query value as text. Parsers such as `qs` turn `?action[toString]=x` into nested objects, which String()
 * cannot convert (it throws a TypeError): anything but a primitive is refused like any other bad field.
 */
function text(name: string, v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  throw invalid(CALLBACK_FIELDS.has(name) ? name : 'query', 'must be text');
}

function single(p: URLSearchParams, name: string): string | undefined {
  const all = p.getAll(name);
  if (all.length > 1) throw invalid(name, 'is repeated');
  return all[0];
}

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Parses and checks the query WeChat appends to the redirect URL after confirm/cancel:
 * `openid` (confirm only), `template_id`, `action` (`confirm`|`cancel`), `scene` (0–10000), `reserved` (a-zA-Z0-9, ≤128).
 * With `expect`, template id, scene and reserved must equal what was sent (reserved compared in constant time).
 * @throws AppError `WX_CALLBACK_INVALID` with `details.field` for any violation; never anything else
 */
export function parseOneTimeConsentCallback(
  query: CallbackQuery,
  expect: OneTimeConsentExpect = {},
): OneTimeConsentCallback {
  const p = toParams(query);
  const action = single(p, 'action');
  if (action !== 'confirm' && action !== 'cancel') throw invalid('action', 'must be confirm or cancel');
  const templateId = single(p, 'template_id');
  if (templateId === undefined || !/^[A-Za-z0-9_-]{1,128}$/.test(templateId))
    throw invalid('template_id', 'is missing or malformed');
  const sceneRaw = single(p, 'scene');
  if (sceneRaw === undefined || !/^\d{1,5}$/.test(sceneRaw) || Number(sceneRaw) > 10_000)
    throw invalid('scene', 'must be an integer from 0 to 10000');
  const scene = Number(sceneRaw);
  const reservedRaw = single(p, 'reserved');
  const reserved = reservedRaw === undefined || reservedRaw === '' ? undefined : reservedRaw;
  if (reserved !== undefined && !RESERVED_RE.test(reserved))
    throw invalid('reserved', 'must be letters and digits only, at most 128');
  const openid = single(p, 'openid');
  if (expect.templateId !== undefined && templateId !== expect.templateId)
    throw invalid('template_id', 'does not match the request');
  if (expect.scene !== undefined && scene !== expect.scene)
    throw invalid('scene', 'does not match the request');
  if (expect.reserved !== undefined) {
    // An empty reserved comes back as `reserved=`, which reads as absent: '' and absent are the same value.
    const wanted = expect.reserved === '' ? undefined : expect.reserved;
    const same =
      wanted === undefined ? reserved === undefined : reserved !== undefined && sameString(reserved, wanted);
    if (!same) throw invalid('reserved', 'does not match the request');
  }
  if (action === 'confirm') {
    if (openid === undefined || !/^[A-Za-z0-9_-]{1,128}$/.test(openid))
      throw invalid('openid', 'is missing or malformed');
    return { action, openid, templateId, scene, reserved };
  }
  return { action, openid: undefined, templateId, scene, reserved };
}
