// The SDK's error families: WeChat API errors (with errcode/action), transport and timeout errors, bad replies, local validation errors.
import { AppError, type AppErrorOptions } from '../errors.js';
import { errcodeInfo, type ErrcodeAction } from './errcodes.js';
import { redact, redactValue } from './redact.js';

const RID_RE = /\brid:\s*([0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8})/i;

/** Extracts the ` rid: xxxxxxxx-xxxxxxxx-xxxxxxxx` request id WeChat appends to modern errmsgs. */
export function parseRid(errmsg: string): string | undefined {
  return RID_RE.exec(errmsg)?.[1];
}

/** Where a call went, for error messages (path only: never the query, which carries the token). */
export type CallSite = { method: string; path: string };

/**
 * WeChat answered with a non-zero errcode. `action` says what to do (see `ErrcodeAction`).
 * `raw` is the parsed reply with secrets masked.
 */
export class WeChatApiError extends AppError {
  /** The errcode, coerced to a number. */
  readonly errcode: number;
  /** errmsg as returned (redacted). */
  readonly errmsg: string;
  /** WeChat's request id from the errmsg, when present; quote it to WeChat support. */
  readonly rid: string | undefined;
  /** The reply body (parsed JSON, secrets masked). */
  readonly raw: unknown;
  /** What to do about it, from the errcode table. */
  readonly action: ErrcodeAction;
  /** The errcode's name in the table (`unknown` when not listed). */
  readonly errcodeName: string;
  /** True only for -1 on a call that may have had an effect: the outcome is unknown. */
  readonly outcomeUnknown: boolean;

  constructor(
    input: { errcode: number; errmsg: string; raw: unknown; site: CallSite; action?: ErrcodeAction },
    options: AppErrorOptions = {},
  ) {
    const base = errcodeInfo(input.errcode);
    const info = input.action === undefined ? base : { ...base, action: input.action };
    const errmsg = redact(input.errmsg);
    super('WX_API_ERROR', {
      ...options,
      message: `WeChat ${input.site.method} ${input.site.path} failed: errcode ${input.errcode} (${info.name}): ${errmsg}`,
      details: {
        errcode: input.errcode,
        errmsg,
        errcodeName: info.name,
        action: info.action,
        path: input.site.path,
      },
      retryable: info.action === 'retry-later' || info.action === 'refresh-token-and-retry',
    });
    this.name = 'WeChatApiError';
    this.errcode = input.errcode;
    this.errmsg = errmsg;
    this.rid = parseRid(input.errmsg);
    this.raw = redactValue(input.raw);
    this.action = info.action;
    this.errcodeName = info.name;
    this.outcomeUnknown = info.outcomeUnknown === true;
  }
}

/**
 * The request could not be completed at the network level (refused, reset, DNS, TLS, HTTP 5xx from a gateway).
 * `requestMayHaveLeft` is false only when WeChat certainly never received the request (connection refused,
 * DNS failure, connect timeout); then a send may safely be repeated.
 */
export class WeChatTransportError extends AppError {
  /** Whether WeChat may have received (and acted on) the request. */
  readonly requestMayHaveLeft: boolean;
  /** HTTP status, when the failure was an HTTP 5xx/4xx reply without a WeChat envelope. */
  readonly httpStatus: number | undefined;
  constructor(
    input: { site: CallSite; requestMayHaveLeft: boolean; reason: string; httpStatus?: number },
    options: AppErrorOptions = {},
  ) {
    super('WX_TRANSPORT', {
      ...options,
      message: redact(`Could not reach WeChat (${input.site.method} ${input.site.path}): ${input.reason}`),
      details: {
        path: input.site.path,
        requestMayHaveLeft: input.requestMayHaveLeft,
        ...(input.httpStatus === undefined ? {} : { httpStatus: input.httpStatus }),
      },
    });
    this.name = 'WeChatTransportError';
    this.requestMayHaveLeft = input.requestMayHaveLeft;
    this.httpStatus = input.httpStatus;
  }
}

/** WeChat did not answer within the per-attempt or total timeout. The request may have left unless it never connected. */
export class WeChatTimeoutError extends AppError {
  /** Whether WeChat may have received (and acted on) the request. */
  readonly requestMayHaveLeft: boolean;
  /** Which limit fired. */
  readonly timeout: 'attempt' | 'total';
  constructor(
    input: { site: CallSite; requestMayHaveLeft: boolean; timeout: 'attempt' | 'total'; ms: number },
    options: AppErrorOptions = {},
  ) {
    super('WX_TIMEOUT', {
      ...options,
      message: `WeChat did not answer ${input.site.method} ${input.site.path} within ${input.ms} ms (${input.timeout} timeout)`,
      details: {
        path: input.site.path,
        requestMayHaveLeft: input.requestMayHaveLeft,
        timeout: input.timeout,
        ms: input.ms,
      },
    });
    this.name = 'WeChatTimeoutError';
    this.requestMayHaveLeft = input.requestMayHaveLeft;
    this.timeout = input.timeout;
  }
}

/**
 * WeChat answered HTTP 200 but the body is not a WeChat reply (not JSON, no errcode, a missing field).
 * The request reached WeChat, so for sends treat the outcome as unknown.
 */
export class WeChatBadResponseError extends AppError {
  /** Always true: the request reached the server. */
  readonly requestMayHaveLeft = true;
  constructor(input: { site: CallSite; reason: string; raw?: unknown }, options: AppErrorOptions = {}) {
    super('WX_BAD_RESPONSE', {
      ...options,
      message: redact(
        `WeChat ${input.site.method} ${input.site.path} answered with an invalid reply: ${input.reason}`,
      ),
      details: { path: input.site.path, reason: redact(input.reason) },
    });
    this.name = 'WeChatBadResponseError';
  }
}

/**
 * Getting the access token for a call failed (token endpoint unreachable or refusing, token store down, a lease
 * wait that timed out), so the call itself was never sent: `requestMayHaveLeft` is always false, and repeating it
 * is safe. `cause` is the original error; `details.errcode` is set when the token endpoint answered with one.
 */
export class WeChatTokenUnavailableError extends AppError {
  /** Always false: the call needing the token never left. */
  readonly requestMayHaveLeft = false;
  constructor(input: { site: CallSite; cause: unknown }) {
    const c = input.cause;
    const why = c instanceof Error ? c.message : String(c);
    const details: Record<string, unknown> = { path: input.site.path };
    if (c instanceof AppError) details.causeCode = c.code;
    if (c instanceof WeChatApiError) details.errcode = c.errcode;
    super('WX_TOKEN_UNAVAILABLE', {
      cause: c,
      message: redact(`No access token for ${input.site.method} ${input.site.path}; not sent: ${why}`),
      details,
    });
    this.name = 'WeChatTokenUnavailableError';
  }
}

/** A call was rejected locally before anything was sent (bad argument). `field` names what is wrong. */
export class WeChatInvalidArgumentError extends AppError {
  /** The offending field, e.g. `title` or `data.thing1.value`. */
  readonly field: string;
  constructor(field: string, problem: string) {
    super('WX_INVALID_ARGUMENT', {
      message: `Invalid argument ${field}: ${problem}`,
      details: { field, problem },
    });
    this.name = 'WeChatInvalidArgumentError';
    this.field = field;
  }
}

/** True for {@link WeChatApiError} (optionally with one of the given errcodes). */
export function isWeChatApiError(err: unknown, ...errcodes: number[]): err is WeChatApiError {
  return err instanceof WeChatApiError && (errcodes.length === 0 || errcodes.includes(err.errcode));
}
/** True for {@link WeChatTransportError}. */
export function isWeChatTransportError(err: unknown): err is WeChatTransportError {
  return err instanceof WeChatTransportError;
}
/** True for {@link WeChatTimeoutError}. */
export function isWeChatTimeoutError(err: unknown): err is WeChatTimeoutError {
  return err instanceof WeChatTimeoutError;
}
/** True for {@link WeChatBadResponseError}. */
export function isWeChatBadResponseError(err: unknown): err is WeChatBadResponseError {
  return err instanceof WeChatBadResponseError;
}
/** True for {@link WeChatTokenUnavailableError}. */
export function isWeChatTokenUnavailableError(err: unknown): err is WeChatTokenUnavailableError {
  return err instanceof WeChatTokenUnavailableError;
}
/** True for {@link WeChatInvalidArgumentError}. */
export function isWeChatInvalidArgumentError(err: unknown): err is WeChatInvalidArgumentError {
  return err instanceof WeChatInvalidArgumentError;
}

/**
 * True when, after `err`, WeChat may have acted on the request (delivery: record `unknown`, do not retry a send).
 * False for API errors other than -1, local validation errors and connection failures before the request left.
 */
export function requestMayHaveTakenEffect(err: unknown): boolean {
  if (err instanceof WeChatApiError) return err.outcomeUnknown;
  if (
    err instanceof WeChatTransportError ||
    err instanceof WeChatTimeoutError ||
    err instanceof WeChatBadResponseError
  )
    return err.requestMayHaveLeft;
  return false;
}
