// The one registry of wxsub error codes and the base error class every area extends.

/** One entry of the registry: what the code means and which HTTP status the service answers with. */
export type ErrorSpec = {
  /** Human-readable default message; never includes secrets. */
  readonly message: string;
  /** HTTP status the service maps this code to. */
  readonly status: number;
  /** Whether repeating the same call later may succeed. */
  readonly retryable?: boolean;
};

/**
 * Every error code wxsub raises, SCREAMING_SNAKE with an area prefix.
 * Retired codes are never reused; `docs/errors.md` is generated from this table (`npm run docs:errors`)
 * and a test keeps both in sync. Add entries in the area's block, keep blocks sorted by prefix.
 */
export const ERROR_CODES = {
  // CLI_: the command line's own failures (a command's arguments, the service it talks to)
  CLI_USAGE: { message: 'A command argument is missing or invalid', status: 400 },
  CLI_SERVICE_UNREACHABLE: {
    message: 'The service could not be reached or did not answer in time',
    status: 503,
    retryable: true,
  },

  // CONFIG_: configuration
  CONFIG_INVALID: { message: 'Configuration is invalid', status: 500 },

  // HTTP_: request shape problems caught before any area sees them
  HTTP_BAD_REQUEST: { message: 'The request is malformed', status: 400 },
  HTTP_BODY_TOO_LARGE: { message: 'The request body is too large', status: 413 },
  HTTP_NOT_FOUND: { message: 'No such route', status: 404 },
  HTTP_UNSUPPORTED_MEDIA_TYPE: { message: 'Unsupported content type', status: 415 },
  HTTP_INTERNAL: { message: 'Internal error', status: 500 },
  HTTP_INVALID_JSON: { message: 'The request body is not valid JSON', status: 400 },
  HTTP_URI_TOO_LONG: { message: 'The request URL or headers are too large', status: 414 },
  HTTP_VALIDATION_FAILED: { message: 'The request does not match the expected shape', status: 400 },

  // AUTH_: API keys and admin access
  AUTH_MISSING_KEY: { message: 'An API key is required (Authorization: Bearer <key>)', status: 401 },
  AUTH_INVALID_KEY: { message: 'The API key is not valid', status: 401 },
  AUTH_KEY_NOT_FOUND: { message: 'No API key with that id (wxsub apikey revoke)', status: 404 },

  // CAMPAIGN_: campaigns over the REST API
  CAMPAIGN_NOT_FOUND: { message: 'No such campaign', status: 404 },
  CAMPAIGN_NOT_CANCELLABLE: { message: 'The campaign is already finished or cancelled', status: 409 },

  // CONSENT_: consent links and callbacks (the `reserved` token, cookie binding, redirect allowlist)
  CONSENT_RESERVED_MALFORMED: {
    message: 'The reserved token is missing, longer than 128 bytes or not [A-Za-z0-9]',
    status: 400,
  },
  CONSENT_RESERVED_FORGED: { message: 'The reserved token was not issued by this service', status: 400 },
  CONSENT_RESERVED_EXPIRED: { message: 'The consent link has expired; start again', status: 400 },
  CONSENT_RESERVED_REPLAYED: { message: 'The consent link was already used', status: 409 },
  CONSENT_COOKIE_MISSING: {
    message: 'The consent cookie is missing: the link was opened in another browser or forwarded',
    status: 403,
  },
  CONSENT_COOKIE_MISMATCH: {
    message: 'The consent cookie does not belong to this link: it was forwarded or replayed',
    status: 403,
  },
  CONSENT_BINDING_MISMATCH: {
    message: 'The callback is for another app or template than the link',
    status: 400,
  },
  CONSENT_SCENE_MISMATCH: { message: 'The callback scene differs from the scene of the link', status: 400 },
  CONSENT_SCENE_OUT_OF_RANGE: { message: 'scene must be an integer from 0 to 10000 (or auto)', status: 400 },
  CONSENT_SCENE_EXHAUSTED: { message: 'No free scene is left for this user and template', status: 409 },
  CONSENT_OPENID_MISSING: { message: 'A confirm callback must carry an openid', status: 400 },
  CONSENT_ACTION_INVALID: { message: 'action must be confirm or cancel', status: 400 },
  CONSENT_QUERY_INVALID: { message: 'The consent query is invalid', status: 400 },
  CONSENT_QUERY_TOO_LARGE: { message: 'The consent query is too large', status: 414 },
  CONSENT_NEXT_NOT_ALLOWED: { message: 'next is not in the configured redirect allowlist', status: 400 },
  CONSENT_TEMPLATE_UNKNOWN: { message: 'The template is not a configured one-time template', status: 404 },

  // DELIVERY_: outcomes the dispatcher records on outbox messages (errorCode of a message)
  DELIVERY_CONSENT_REVOKED: {
    message: 'WeChat refused the message (43101): the user holds no consent; the grant was revoked',
    status: 409,
  },
  DELIVERY_CONFIRMED_BY_43101: {
    message:
      'A retry got 43101 after an earlier attempt may have reached WeChat: the earlier attempt was delivered',
    status: 200,
  },
  DELIVERY_MAY_HAVE_LEFT: {
    message:
      'An earlier attempt may have reached WeChat; retrying (a one-time message cannot be delivered twice)',
    status: 502,
    retryable: true,
  },
  DELIVERY_WECHAT_BUSY: {
    message: 'WeChat was busy or rate limited (-1/45011); retrying',
    status: 502,
    retryable: true,
  },
  DELIVERY_TRANSPORT: { message: 'WeChat could not be reached; retrying', status: 502, retryable: true },
  DELIVERY_TOKEN_INVALID: {
    message: 'The access token was rejected even after a refresh; retrying',
    status: 502,
    retryable: true,
  },
  DELIVERY_APP_PAUSED: {
    message:
      'The app reached its daily quota (45009) or per-minute limit (45011); sending is paused until the limit resets',
    status: 429,
    retryable: true,
  },
  DELIVERY_MINUTE_LIMIT: {
    message:
      'WeChat refused the send at its per-minute limit (45011); the app waits for the next minute, the attempt not counted',
    status: 429,
    retryable: true,
  },
  DELIVERY_REJECTED: {
    message: 'WeChat rejected the message for good (e.g. 47003, 40003, 40037)',
    status: 502,
  },
  DELIVERY_RETRIES_EXHAUSTED: {
    message: 'The message failed after the maximum number of attempts',
    status: 502,
  },
  DELIVERY_OUTCOME_UNKNOWN: {
    message: 'The request may have reached WeChat but no answer came; not resent (its quota could stack)',
    status: 504,
  },
  DELIVERY_RELEASED: {
    message: 'Released unsent by a stopping dispatcher; will be sent later',
    status: 503,
    retryable: true,
  },
  DELIVERY_RATE_LIMITER_UNAVAILABLE: {
    message: 'The shared rate limiter (Redis) could not be reached; put back unsent, will be sent later',
    status: 503,
    retryable: true,
  },
  DELIVERY_TOKEN_UNAVAILABLE: {
    message:
      'No access token could be had (token endpoint or token store failing); put back unsent, will be sent later',
    status: 503,
    retryable: true,
  },

  // GRANT_: the grant ledger as seen through the REST API
  GRANT_NOT_AVAILABLE: {
    message: 'The user holds no grant for this template (and scene); see details for what is held',
    status: 409,
  },

  // MESSAGE_: the send API
  MESSAGE_INVALID: { message: 'The message does not satisfy WeChat rules', status: 422 },
  MESSAGE_TEMPLATE_UNKNOWN: {
    message: 'The template is not registered (PUT /v1/templates/:id)',
    status: 422,
  },
  MESSAGE_KIND_MISMATCH: { message: 'The message kind does not match the template kind', status: 422 },
  MESSAGE_IDEMPOTENCY_CONFLICT: {
    message: 'The Idempotency-Key was already used with another request body',
    status: 409,
  },
  MESSAGE_NOT_FOUND: { message: 'No such message', status: 404 },

  // WX_: talking to WeChat (SDK)
  WX_API_ERROR: { message: 'WeChat answered with an error', status: 502 },
  WX_TRANSPORT: { message: 'Could not reach WeChat', status: 502, retryable: true },
  WX_TIMEOUT: { message: 'WeChat did not answer in time', status: 504, retryable: true },
  WX_BAD_RESPONSE: { message: 'WeChat answered with something that is not a valid reply', status: 502 },
  WX_INVALID_ARGUMENT: {
    message: 'The call to WeChat was rejected locally: an argument is invalid',
    status: 400,
  },
  WX_FORCE_REFRESH_BUDGET: {
    message: 'Force-refresh of the access token was refused: daily budget used or last one under 30 s ago',
    status: 429,
    retryable: true,
  },
  WX_TOKEN_UNAVAILABLE: {
    message: 'No access token could be had, so the call was not sent (see cause)',
    status: 503,
    retryable: true,
  },
  WX_TOKEN_LEASE_TIMEOUT: {
    message: 'Timed out waiting for another process to refresh the access token',
    status: 503,
    retryable: true,
  },
  WX_CALLBACK_INVALID: { message: 'The consent callback query is invalid', status: 400 },
  WX_SIGNATURE_INVALID: { message: 'The signature does not match', status: 401 },
  WX_DECRYPT_FAILED: { message: 'The encrypted message could not be decrypted', status: 400 },

  // STORE_: storage adapters
  STORE_UNAVAILABLE: { message: 'The store is unavailable', status: 503, retryable: true },
  STORE_MIGRATION_FAILED: { message: 'A migration failed', status: 500 },
  STORE_INVALID_CURSOR: { message: 'The page cursor is not valid', status: 400 },
  STORE_NOT_FOUND: { message: 'No such record', status: 404 },
} as const satisfies Record<string, ErrorSpec>;

/** A registered error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Options accepted by {@link AppError}. */
export type AppErrorOptions = {
  /** Overrides the registry's default message. Must not contain secrets. */
  message?: string;
  /** Structured, secret-free details (returned to API clients). */
  details?: Record<string, unknown>;
  /** The underlying error. */
  cause?: unknown;
  /** Overrides the registry's retryable flag. */
  retryable?: boolean;
};

/**
 * Base class of every error wxsub raises on purpose.
 * @example throw new AppError('CONSENT_EXPIRED', { details: { age: 901 } })
 */
export class AppError extends Error {
  /** Stable machine-readable code from {@link ERROR_CODES}. */
  readonly code: ErrorCode;
  /** HTTP status the service answers with. */
  readonly status: number;
  /** Whether repeating the call later may succeed. */
  readonly retryable: boolean;
  /** Secret-free structured details. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, options: AppErrorOptions = {}) {
    const spec: ErrorSpec = ERROR_CODES[code];
    super(
      options.message ?? spec.message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'AppError';
    this.code = code;
    this.status = spec.status;
    this.retryable = options.retryable ?? spec.retryable ?? false;
    this.details = options.details;
  }
}

/** True when `err` is an {@link AppError} (optionally with the given code). */
export function isAppError(err: unknown, code?: ErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}
