// The one table of WeChat errcodes the SDK knows, each with its name, meaning and the action a caller should take.

/**
 * What to do about an errcode:
 * - `refresh-token-and-retry`: the access token was rejected (40001/40014/42001). The request was NOT
 *   executed; the SDK invalidates the token (only if it is still the one that failed), refreshes and
 *   retries once by itself. A caller only sees this action when the retry failed too.
 * - `retry-later`: a transient platform condition (system busy, rate limit, daily quota). The request
 *   was not executed (for -1 on a send the outcome is unknown — see {@link ErrcodeInfo.outcomeUnknown});
 *   try again later with backoff.
 * - `consent-missing`: the user has no (remaining) consent for this template/scene (43101). The send
 *   did not happen; the grant should be treated as used up/revoked. Never retry without a new consent.
 * - `fail`: a permanent error for this request (bad argument, no permission, wrong template…). Do not retry
 *   the same request.
 */
export type ErrcodeAction = 'refresh-token-and-retry' | 'retry-later' | 'consent-missing' | 'fail';

/** One row of {@link ERRCODES}. */
export type ErrcodeInfo = {
  /** Short snake_case name, stable across releases. */
  readonly name: string;
  /** What the code means (from the spec). */
  readonly meaning: string;
  /** What to do about it. */
  readonly action: ErrcodeAction;
  /**
   * True when, for a send, the message may nevertheless have been delivered (only -1 "system error").
   * Delivery code must record such outcomes as `unknown` instead of retrying.
   */
  readonly outcomeUnknown?: boolean;
};

const e = (name: string, meaning: string, action: ErrcodeAction, outcomeUnknown?: boolean): ErrcodeInfo =>
  outcomeUnknown ? { name, meaning, action, outcomeUnknown } : { name, meaning, action };

/**
 * Every errcode in the spec (§1.5, §2.4, §2.6, §3.1–3.5, §5) mapped to {name, meaning, action}.
 * Codes not listed get {@link UNKNOWN_ERRCODE} via {@link errcodeInfo}.
 */
export const ERRCODES: Readonly<Record<number, ErrcodeInfo>> = Object.freeze({
  [-1]: e(
    'system_error',
    'System busy; try again later. On a send the outcome is unknown.',
    'retry-later',
    true,
  ),
  // tokens (§3.1–3.3)
  40001: e(
    'invalid_credential',
    'AppSecret wrong (token call) or access token invalid / not latest',
    'refresh-token-and-retry',
  ),
  40014: e('invalid_access_token', 'Access token malformed or expired', 'refresh-token-and-retry'),
  42001: e('access_token_expired', 'Access token expired', 'refresh-token-and-retry'),
  41001: e('access_token_missing', 'No access_token parameter', 'fail'),
  40002: e('invalid_grant_type', 'Bad grant_type', 'fail'),
  40013: e('invalid_appid', 'Bad AppID', 'fail'),
  40125: e('invalid_appsecret', 'Invalid AppSecret', 'fail'),
  40164: e('ip_not_whitelisted', 'Caller IP is not in the API IP whitelist (legacy code)', 'fail'),
  61004: e('clientip_not_registered', 'Caller IP is not in the API IP whitelist (newer code)', 'fail'),
  40243: e('appsecret_frozen', 'AppSecret is frozen', 'fail'),
  41002: e('appid_missing', 'appid parameter missing', 'fail'),
  41004: e('appsecret_missing', 'secret parameter missing', 'fail'),
  89501: e('ip_pending_admin_confirmation', 'Risky IP: waiting for the admin to confirm', 'retry-later'),
  89503: e('risky_ip', 'Risky IP: admin confirmation required', 'retry-later'),
  89506: e('ip_rejected_twice', 'Admin rejected this IP twice within 24 h', 'fail'),
  89507: e('ip_rejected_once', 'Admin rejected this IP; blocked for 1 h', 'retry-later'),
  // sends (§1.5, §2.4)
  40003: e('invalid_openid', 'touser is empty, malformed or belongs to another account', 'fail'),
  40035: e('invalid_parameter', 'Invalid parameter', 'fail'),
  40036: e('invalid_template_id_size', 'template_id has a wrong length', 'fail'),
  40037: e('invalid_template_id', 'template_id is empty, wrong, or of another kind', 'fail'),
  40048: e('invalid_url_domain', 'url domain is not allowed', 'fail'),
  41030: e('invalid_page', 'page path is wrong (mini-program jump)', 'fail'),
  43101: e(
    'user_refuse_to_accept',
    'User refused or has no remaining subscription quota for this template/scene',
    'consent-missing',
  ),
  44002: e('empty_post_data', 'Empty POST body', 'fail'),
  45002: e('content_size_out_of_limit', 'Message content too long', 'fail'),
  45003: e('title_size_out_of_limit', 'Title too long', 'fail'),
  47001: e('data_format_error', 'JSON/XML could not be parsed', 'fail'),
  47003: e('argument_invalid', 'Template data invalid; errmsg names the field', 'fail'),
  48001: e('api_unauthorized', 'The account has no permission for this API', 'fail'),
  48004: e('api_forbidden', 'API banned for irregularities', 'fail'),
  50001: e('user_unauthorized', 'User has not authorized this API', 'fail'),
  50002: e('user_limited', 'Account is restricted', 'fail'),
  // transport-ish / quotas (§3.5, §6)
  43001: e('require_get', 'GET required', 'fail'),
  43002: e('require_post', 'POST required', 'fail'),
  43003: e('require_https', 'HTTPS required', 'fail'),
  45009: e('daily_quota_reached', 'Daily API quota exhausted', 'retry-later'),
  45011: e('minute_quota_reached', 'Per-minute frequency limit reached; slow down', 'retry-later'),
  48006: e('clear_quota_limit', 'clear_quota monthly limit reached', 'fail'),
  // OAuth (§5)
  40029: e('invalid_code', 'OAuth code is invalid or expired', 'fail'),
  40163: e('code_been_used', 'OAuth code already used', 'fail'),
  41008: e('missing_code', 'OAuth code missing', 'fail'),
  42003: e('code_expired', 'OAuth code expired', 'fail'),
  // template management (§2.6)
  20001: e('template_system_error', 'deltemplate: system error (incl. template not found)', 'fail'),
  20002: e('template_bad_parameter', 'deltemplate: bad parameter', 'fail'),
  200011: e('account_banned', 'addtemplate: account banned', 'fail'),
  200012: e('template_limit_reached', 'addtemplate: private template limit reached', 'fail'),
  200013: e('template_banned', 'addtemplate: template banned', 'fail'),
  200014: e('invalid_tid', 'addtemplate: tid missing or wrong', 'fail'),
  200016: e('invalid_start', 'getpubtemplatetitles: bad start', 'fail'),
  200017: e('invalid_limit', 'getpubtemplatetitles: bad limit', 'fail'),
  200018: e('category_ids_missing', 'getpubtemplatetitles: ids missing', 'fail'),
  200019: e('invalid_category_ids', 'getpubtemplatetitles: ids invalid', 'fail'),
  200020: e('invalid_kid_list', 'addtemplate: kidList invalid', 'fail'),
  200021: e('invalid_scene_desc', 'addtemplate: sceneDesc invalid', 'fail'),
});

/** Info for codes that are not in the table: a permanent failure that keeps the raw body. */
export const UNKNOWN_ERRCODE: ErrcodeInfo = Object.freeze({
  name: 'unknown',
  meaning: 'Errcode not in the SDK table',
  action: 'fail' as const,
});

/** The error codes that mean "the access token was rejected; refresh and retry once". */
export const TOKEN_INVALID_ERRCODES: ReadonlySet<number> = new Set([40001, 40014, 42001]);

/**
 * Looks up an errcode (numbers or numeric strings, e.g. `"200014"`, are accepted).
 * @example errcodeInfo(43101).action // 'consent-missing'
 */
export function errcodeInfo(code: number | string): ErrcodeInfo {
  const n = typeof code === 'number' ? code : Number(code);
  return (Number.isInteger(n) ? ERRCODES[n] : undefined) ?? UNKNOWN_ERRCODE;
}

/**
 * Coerces a raw `errcode` (number, numeric string, missing) to an integer; returns undefined when it is
 * present but not an integer.
 */
export function coerceErrcode(raw: unknown): number | undefined {
  if (raw === undefined || raw === null) return 0;
  if (typeof raw === 'number') return Number.isInteger(raw) ? raw : undefined;
  if (typeof raw === 'string' && /^\s*-?\d{1,12}\s*$/.test(raw)) return Number(raw);
  return undefined;
}
