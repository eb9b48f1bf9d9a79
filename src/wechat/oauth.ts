// Web OAuth (spec §5): the authorize URL builder and parsing of the code-exchange reply.
import { WeChatBadResponseError, WeChatInvalidArgumentError } from './errors.js';
import { WECHAT_HOSTS } from './http.js';
import { RESERVED_RE } from './consent.js';

/** OAuth scopes of a service account web page. */
export type OAuthScope = 'snsapi_base' | 'snsapi_userinfo';

/** Input of {@link buildOAuthAuthorizeUrl}. */
export type OAuthAuthorizeInput = {
  appId: string;
  /** Absolute URL on the OAuth callback domain. */
  redirectUri: string;
  /** @default 'snsapi_base' */
  scope?: OAuthScope;
  /** a-zA-Z0-9, ≤ 128; echoed back. */
  state?: string;
  /** Base of the open host. @default 'https://open.weixin.qq.com' */
  baseUrl?: string;
};

/**
 * Builds `…/connect/oauth2/authorize?appid=…&redirect_uri=…&response_type=code&scope=…&state=…#wechat_redirect`.
 * @throws WeChatInvalidArgumentError for a bad redirect URI, scope or state
 */
export function buildOAuthAuthorizeUrl(input: OAuthAuthorizeInput): string {
  const scope = input.scope ?? 'snsapi_base';
  if (scope !== 'snsapi_base' && scope !== 'snsapi_userinfo')
    throw new WeChatInvalidArgumentError('scope', 'must be snsapi_base or snsapi_userinfo');
  if (input.state !== undefined && !RESERVED_RE.test(input.state))
    throw new WeChatInvalidArgumentError('state', 'must be letters and digits only, at most 128');
  try {
    const u = new URL(input.redirectUri);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
  } catch {
    throw new WeChatInvalidArgumentError('redirectUri', 'must be an absolute http(s) URL');
  }
  const q = new URLSearchParams({
    appid: input.appId,
    redirect_uri: input.redirectUri,
    response_type: 'code',
    scope,
  });
  if (input.state !== undefined) q.set('state', input.state);
  return `${(input.baseUrl ?? WECHAT_HOSTS.open).replace(/\/+$/, '')}/connect/oauth2/authorize?${q.toString()}#wechat_redirect`;
}

/** What a code exchange yields. `accessToken` is the user's web token (not the base access token). */
export type OAuthTokenResult = {
  openid: string;
  scope: string;
  accessToken: string;
  refreshToken: string;
  /** Seconds. */
  expiresIn: number;
  unionid: string | undefined;
  /** True for a snapshot-page virtual user (`is_snapshotuser: 1`). */
  isSnapshotUser: boolean;
};

/** Parses the reply of `/sns/oauth2/access_token`. */
export function readOAuthToken(reply: Record<string, unknown>): OAuthTokenResult {
  const str = (k: string) => (typeof reply[k] === 'string' ? (reply[k] as string) : undefined);
  const openid = str('openid');
  const accessToken = str('access_token');
  if (!openid || !accessToken)
    throw new WeChatBadResponseError({
      site: { method: 'GET', path: '/sns/oauth2/access_token' },
      reason: 'openid or access_token missing',
    });
  const expiresIn = Number(reply.expires_in ?? 7200);
  return {
    openid,
    scope: str('scope') ?? '',
    accessToken,
    refreshToken: str('refresh_token') ?? '',
    expiresIn: Number.isFinite(expiresIn) ? expiresIn : 7200,
    unionid: str('unionid'),
    isSnapshotUser: reply.is_snapshotuser === 1 || reply.is_snapshotuser === '1',
  };
}
