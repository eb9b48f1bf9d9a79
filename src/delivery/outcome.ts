// The retry policy: turns one send attempt's reply (or error) into the outbox outcome and the side effects to apply.
import { isAppError } from '../errors.js';
import type { AttemptOutcome, OutboxMessage } from '../store/store.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';

/** What the SDK call returned: a success (with WeChat's msgid when it sends one) or the thrown error. */
export type AttemptResult = { ok: true; msgid?: string | number | null } | { ok: false; error: unknown };

/** The SDK's action for an errcode (see `errcodeInfo(code).action` in the SDK). */
export type ErrcodeAction = 'refresh-token-and-retry' | 'retry-later' | 'consent-missing' | 'fail';

/** A side effect the dispatcher must apply besides recording the outcome. */
export type DeliveryEffect = {
  type: 'pause-app';
  appId: string;
  /** When sending may resume (ms since the epoch): the next daily quota reset (45009) or next minute (45011). */
  until: number;
  reason: string;
};

/**
 * What a 45011 ("api minute-quota reach limit, must slower, retry next minute") does:
 * - 'pause': the app stops sending until the next minute starts (all instances, shown in status) and the message
 *   waits for it with its attempt given back, as WeChat did not process it; a sustained per-minute limit then costs
 *   about one refused wave per minute and no message fails for it.
 * - 'backoff': a plain retry with the jittered backoff, counted as an attempt, like -1 (the issue's table read
 *   literally; for limits that are not per minute, or faults injected at random).
 */
export type MinuteLimitPolicy = 'pause' | 'backoff';

/** The verdict on one attempt. */
export type Classification = { outcome: AttemptOutcome; effects: DeliveryEffect[] };

/** Inputs of {@link classifyAttempt} besides the message and the result. */
export type ClassifyContext = {
  /** Current time in ms. */
  now: number;
  /** Attempts made including this one (the store increments on claim, so `message.attempts`). */
  attempt: number;
  /** Attempts after which a retryable failure becomes final. @default 8 */
  maxAttempts: number;
  /** Retry delays. */
  backoff: BackoffPolicy;
  /** Source of numbers in [0, 1) for jitter. */
  random: () => number;
  /**
   * Whether an earlier attempt of this message may have reached WeChat (see {@link priorAttemptMayHaveLeft}).
   * For a one-time message a later 43101 then confirms that earlier attempt was delivered.
   */
  priorAttemptMayHaveLeft: boolean;
  /** The SDK's action for errcodes this table does not name (e.g. `errcodeInfo(code).action`). */
  errcodeAction?: (errcode: number) => ErrcodeAction | undefined;
  /** What a 45011 does. @default 'pause' */
  minuteLimit?: MinuteLimitPolicy;
};

/** `errorCode` a retry outcome carries while an earlier attempt may have reached WeChat; sticky across retries. */
export const MAY_HAVE_LEFT = 'DELIVERY_MAY_HAVE_LEFT';

const TOKEN_CODES = new Set([40001, 40014, 42001]);
const BUSY_CODE = -1;
/** WeChat's "per-minute frequency limit reached" errcode. */
export const MINUTE_LIMIT_ERRCODE = 45011;
const REJECT_CODES = new Set([47003, 40003, 40037, 48001]);
/** WeChat's "daily quota reached" errcode, from a send or from the token endpoint. */
export const QUOTA_ERRCODE = 45009;
const CONSENT_CODE = 43101;
const SHANGHAI_OFFSET_MS = 8 * 3_600_000;
const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;
/** Margin after the minute turns, for our clock running a little ahead of WeChat's. */
export const MINUTE_LIMIT_MARGIN_MS = 1000;

/**
 * True when an earlier attempt of `message` may have reached WeChat: a retry recorded after a timeout (sticky
 * `errorCode` {@link MAY_HAVE_LEFT}, also set by the store when it re-claims a message whose lease expired), or a
 * message on its second or later attempt that never got any outcome recorded (its sender died mid-flight).
 */
export function priorAttemptMayHaveLeft(
  message: Pick<OutboxMessage, 'errorCode' | 'attempts' | 'lastErrcode'>,
): boolean {
  if (message.errorCode === MAY_HAVE_LEFT) return true;
  return message.attempts > 1 && message.errorCode === null && message.lastErrcode === null;
}

/**
 * The next reset of WeChat's daily API quotas after `now`: 00:00 Asia/Shanghai (UTC+8, no daylight saving).
 * @example nextQuotaReset(Date.UTC(2026, 0, 1, 15, 59)) === Date.UTC(2026, 0, 1, 16, 0)
 */
export function nextQuotaReset(now: number): number {
  const local = now + SHANGHAI_OFFSET_MS;
  return Math.floor(local / DAY_MS) * DAY_MS + DAY_MS - SHANGHAI_OFFSET_MS;
}

/**
 * When sending may resume after a 45011 at `now`: the start of the next minute plus {@link MINUTE_LIMIT_MARGIN_MS}
 * (minutes are whole in every time zone WeChat uses).
 * @example nextMinuteLimitReset(Date.UTC(2026, 0, 1, 12, 0, 42)) === Date.UTC(2026, 0, 1, 12, 1, 1)
 */
export function nextMinuteLimitReset(now: number): number {
  return Math.floor(now / MINUTE_MS) * MINUTE_MS + MINUTE_MS + MINUTE_LIMIT_MARGIN_MS;
}

type Inspected =
  | { kind: 'api'; errcode: number; errmsg: string }
  | { kind: 'not-left'; message: string }
  | { kind: 'may-have-left'; message: string }
  | { kind: 'invalid'; message: string };

const SECRET_PARAM = /(access_token|secret|signature|ticket)=[^&\s]*/gi;

function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(SECRET_PARAM, '$1=***').slice(0, 300);
}

function field(err: unknown, name: string): unknown {
  return typeof err === 'object' && err !== null ? (err as Record<string, unknown>)[name] : undefined;
}

/** Reads what matters from an SDK error by its wire facts (errcode, whether the request may have left, status). */
function inspect(err: unknown): Inspected {
  const errcode = field(err, 'errcode');
  if (typeof errcode === 'number') {
    const errmsg = field(err, 'errmsg');
    return { kind: 'api', errcode, errmsg: typeof errmsg === 'string' ? errmsg.slice(0, 300) : '' };
  }
  const status = field(err, 'httpStatus') ?? field(err, 'statusCode');
  // A 5xx is an answer: WeChat's gateway refused the request, so it was not processed.
  if (typeof status === 'number' && status >= 500 && status <= 599)
    return { kind: 'not-left', message: `HTTP ${status}` };
  const left = field(err, 'requestMayHaveLeft');
  if (typeof left === 'boolean') return { kind: left ? 'may-have-left' : 'not-left', message: describe(err) };
  if (isAppError(err, 'WX_INVALID_ARGUMENT')) return { kind: 'invalid', message: describe(err) };
  // Failing to get a token happens before the send request is written.
  if (isAppError(err, 'WX_TOKEN_LEASE_TIMEOUT') || isAppError(err, 'WX_FORCE_REFRESH_BUDGET')) {
    return { kind: 'not-left', message: describe(err) };
  }
  // Anything else (unparseable reply, a bug): assume the worst, the request may have been processed.
  return { kind: 'may-have-left', message: describe(err) };
}

/**
 * Decides what one attempt means for the message, by WeChat's errcode table:
 * - success → `sent` (keeps the msgid); 43101 → `failed` + grant revoked, except that on a retry after an attempt
 *   that may have reached WeChat it confirms that attempt → `sent`;
 * - 40001/40014/42001 (the SDK already invalidated and retried once), -1, HTTP 5xx, connection errors
 *   before the request left → `retry` with full-jitter backoff until `maxAttempts`, then `failed` (grant released)
 *   or `unknown` (an earlier attempt may have reached WeChat);
 * - 45011 → like 45009 for the rest of the minute (`minuteLimit` 'pause', the default), or like -1 ('backoff');
 * - 45009 → `retry` at the next quota reset plus a `pause-app` effect; 47003/40003/40037/48001 and other `fail`
 *   codes → `failed`, grant released (kept when an earlier attempt may have used it);
 * - a timeout or broken connection after the request left → one-time: `retry` (WeChat's one-send quota makes a
 *   duplicate impossible); notification: `unknown`, never resent by us (credits can stack).
 */
export function classifyAttempt(
  message: Pick<OutboxMessage, 'appId' | 'kind'>,
  result: AttemptResult,
  ctx: ClassifyContext,
): Classification {
  const none: DeliveryEffect[] = [];
  if (result.ok) {
    const outcome: AttemptOutcome = { status: 'sent' };
    if (result.msgid !== undefined && result.msgid !== null && String(result.msgid) !== '')
      outcome.msgid = String(result.msgid);
    return { outcome, effects: none };
  }
  const prior = ctx.priorAttemptMayHaveLeft;
  const info = inspect(result.error);

  const retry = (
    errorCode: string,
    errorMessage: string,
    lastErrcode: number | undefined,
    leftNow: boolean,
  ): Classification => {
    const mayHaveLeft = prior || leftNow;
    if (ctx.attempt >= ctx.maxAttempts) {
      const text = `${errorMessage} (after ${ctx.attempt} attempts)`;
      const outcome: AttemptOutcome = mayHaveLeft
        ? { status: 'unknown', errorCode: 'DELIVERY_OUTCOME_UNKNOWN', errorMessage: text }
        : { status: 'failed', grant: 'release', errorCode: 'DELIVERY_RETRIES_EXHAUSTED', errorMessage: text };
      if (lastErrcode !== undefined) outcome.lastErrcode = lastErrcode;
      return { outcome, effects: none };
    }
    const delay = backoffDelay(ctx.attempt, ctx.backoff, ctx.random);
    const outcome: AttemptOutcome = {
      status: 'retry',
      nextAttemptAt: ctx.now + delay,
      errorCode: mayHaveLeft ? MAY_HAVE_LEFT : errorCode,
      errorMessage,
    };
    if (lastErrcode !== undefined) outcome.lastErrcode = lastErrcode;
    return { outcome, effects: none };
  };

  const reject = (errorMessage: string, lastErrcode?: number): Classification => {
    const outcome: AttemptOutcome = {
      status: 'failed',
      grant: prior ? 'keep' : 'release',
      errorCode: 'DELIVERY_REJECTED',
      errorMessage,
    };
    if (lastErrcode !== undefined) outcome.lastErrcode = lastErrcode;
    return { outcome, effects: none };
  };

  switch (info.kind) {
    case 'invalid':
      return reject(info.message);
    case 'not-left':
      return retry('DELIVERY_TRANSPORT', info.message, undefined, false);
    case 'may-have-left':
      if (message.kind === 'notification') {
        return {
          outcome: { status: 'unknown', errorCode: 'DELIVERY_OUTCOME_UNKNOWN', errorMessage: info.message },
          effects: none,
        };
      }
      return retry(MAY_HAVE_LEFT, info.message, undefined, true);
    case 'api':
      break;
  }

  const { errcode, errmsg } = info;
  const text = `errcode ${errcode}${errmsg === '' ? '' : `: ${errmsg}`}`;
  // 45009 and (by default) 45011: WeChat refused the call without processing it, so it is not an attempt. The
  // message waits for the reset however many attempts were made, with the count the claim added given back, and
  // the app pauses until then, so its other messages do not spend their attempts on the same refusal.
  const pauseApp = (until: number, errorCode: string): Classification => ({
    outcome: {
      status: 'retry',
      nextAttemptAt: until,
      lastErrcode: errcode,
      errorCode: prior ? MAY_HAVE_LEFT : errorCode,
      errorMessage: text,
      unsent: true,
    },
    effects: [{ type: 'pause-app', appId: message.appId, until, reason: text }],
  });

  let action: ErrcodeAction | 'busy' | 'quota' | 'minute-limit';
  if (errcode === CONSENT_CODE) action = 'consent-missing';
  else if (TOKEN_CODES.has(errcode)) action = 'refresh-token-and-retry';
  else if (errcode === BUSY_CODE) action = 'busy';
  else if (errcode === MINUTE_LIMIT_ERRCODE) action = ctx.minuteLimit === 'backoff' ? 'busy' : 'minute-limit';
  else if (errcode === QUOTA_ERRCODE) action = 'quota';
  else if (REJECT_CODES.has(errcode)) action = 'fail';
  else action = ctx.errcodeAction?.(errcode) ?? 'fail';

  switch (action) {
    case 'consent-missing':
      if (prior) {
        return {
          outcome: { status: 'sent', lastErrcode: errcode, errorCode: 'DELIVERY_CONFIRMED_BY_43101' },
          effects: none,
        };
      }
      return {
        outcome: {
          status: 'failed',
          grant: 'revoke',
          lastErrcode: errcode,
          errorCode: 'DELIVERY_CONSENT_REVOKED',
          errorMessage: text,
        },
        effects: none,
      };
    case 'refresh-token-and-retry':
      return retry('DELIVERY_TOKEN_INVALID', text, errcode, false);
    case 'busy':
    case 'retry-later':
      // A plain retry, as the issue's table has it: WeChat's -1 is "system busy, try again". It is not taken as a
      // send that may have gone through (the SDK's cautious `outcomeUnknown`), because then a later 43101 would
      // record `sent` for a message no one received whenever WeChat no longer held the consent: a loss nobody
      // sees. A -1 that did deliver shows up instead as a visible `failed` on the 43101 of the retry.
      return retry('DELIVERY_WECHAT_BUSY', text, errcode, false);
    case 'quota':
      return pauseApp(nextQuotaReset(ctx.now), 'DELIVERY_APP_PAUSED');
    case 'minute-limit':
      return pauseApp(nextMinuteLimitReset(ctx.now), 'DELIVERY_MINUTE_LIMIT');
    case 'fail':
      return reject(text, errcode);
  }
}
