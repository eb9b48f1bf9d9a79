// Unit tests of the retry policy: every row of the errcode table, for both message kinds.
import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.js';
import { WeChatApiError, WeChatTokenUnavailableError } from '../wechat/errors.js';
import { backoffDelay } from './backoff.js';
import {
  MAY_HAVE_LEFT,
  classifyAttempt,
  nextMinuteLimitReset,
  nextQuotaReset,
  priorAttemptMayHaveLeft,
  type ClassifyContext,
} from './outcome.js';

const NOW = Date.UTC(2026, 0, 1, 3, 0, 0);
const oneTime = { appId: 'wxapp', kind: 'one-time' as const };
const notification = { appId: 'wxapp', kind: 'notification' as const };

function ctx(over: Partial<ClassifyContext> = {}): ClassifyContext {
  return {
    now: NOW,
    attempt: 1,
    maxAttempts: 5,
    backoff: { baseMs: 1000, maxMs: 60_000 },
    random: () => 0.5,
    priorAttemptMayHaveLeft: false,
    ...over,
  };
}
const api = (errcode: number, errmsg = 'x rid: 1-2-3') => ({
  ok: false as const,
  error: Object.assign(new Error(errmsg), { name: 'WeChatApiError', errcode, errmsg }),
});
const timeout = (left: boolean) => ({
  ok: false as const,
  error: Object.assign(new Error('timed out'), { name: 'WeChatTimeoutError', requestMayHaveLeft: left }),
});
const transport = (left: boolean) => ({
  ok: false as const,
  error: Object.assign(new Error('ECONNREFUSED'), { name: 'WeChatTransportError', requestMayHaveLeft: left }),
});

describe('backoffDelay', () => {
  it('grows exponentially with full jitter and stays under the bound', () => {
    const p = { baseMs: 100, maxMs: 1000 };
    expect(backoffDelay(1, p, () => 0.999)).toBe(99);
    expect(backoffDelay(3, p, () => 0.5)).toBe(200);
    expect(backoffDelay(10, p, () => 0.999)).toBeLessThan(1000);
    expect(backoffDelay(1000, p, () => 0.999)).toBeLessThan(1000);
    expect(backoffDelay(4, p, () => 0)).toBe(0);
  });
});

describe('nextMinuteLimitReset', () => {
  it('is one second into the next minute, also from the first millisecond of one', () => {
    expect(nextMinuteLimitReset(Date.UTC(2026, 0, 1, 12, 0, 42, 500))).toBe(Date.UTC(2026, 0, 1, 12, 1, 1));
    expect(nextMinuteLimitReset(Date.UTC(2026, 0, 1, 12, 0, 0))).toBe(Date.UTC(2026, 0, 1, 12, 1, 1));
    expect(nextMinuteLimitReset(Date.UTC(2026, 0, 1, 23, 59, 59, 999))).toBe(Date.UTC(2026, 0, 2, 0, 0, 1));
  });
});

describe('nextQuotaReset', () => {
  it('is the next 00:00 in Asia/Shanghai', () => {
    expect(nextQuotaReset(Date.UTC(2026, 0, 1, 15, 59))).toBe(Date.UTC(2026, 0, 1, 16, 0));
    expect(nextQuotaReset(Date.UTC(2026, 0, 1, 16, 0))).toBe(Date.UTC(2026, 0, 2, 16, 0));
    expect(nextQuotaReset(Date.UTC(2026, 0, 1, 3, 0))).toBe(Date.UTC(2026, 0, 1, 16, 0));
  });
});

describe('priorAttemptMayHaveLeft', () => {
  it('reads the sticky marker and detects a sender that died without recording anything', () => {
    expect(priorAttemptMayHaveLeft({ errorCode: MAY_HAVE_LEFT, attempts: 2, lastErrcode: null })).toBe(true);
    expect(priorAttemptMayHaveLeft({ errorCode: null, attempts: 2, lastErrcode: null })).toBe(true);
    expect(priorAttemptMayHaveLeft({ errorCode: null, attempts: 1, lastErrcode: null })).toBe(false);
    expect(priorAttemptMayHaveLeft({ errorCode: 'DELIVERY_WECHAT_BUSY', attempts: 3, lastErrcode: -1 })).toBe(
      false,
    );
  });
});

describe('classifyAttempt', () => {
  it('0 → sent, keeping the msgid when WeChat returns one', () => {
    expect(
      classifyAttempt(notification, { ok: true, msgid: 1700827132819554304n.toString() }, ctx()).outcome,
    ).toEqual({ status: 'sent', msgid: '1700827132819554304' });
    expect(classifyAttempt(oneTime, { ok: true }, ctx()).outcome).toEqual({ status: 'sent' });
  });

  it('43101 → failed with a consent code and the grant revoked', () => {
    for (const m of [oneTime, notification]) {
      const { outcome } = classifyAttempt(m, api(43101), ctx({ attempt: 3 }));
      expect(outcome).toMatchObject({
        status: 'failed',
        grant: 'revoke',
        lastErrcode: 43101,
        errorCode: 'DELIVERY_CONSENT_REVOKED',
      });
    }
  });

  it('43101 after an attempt that may have left confirms the first attempt → sent', () => {
    const { outcome } = classifyAttempt(
      oneTime,
      api(43101),
      ctx({ attempt: 2, priorAttemptMayHaveLeft: true }),
    );
    expect(outcome).toEqual({ status: 'sent', lastErrcode: 43101, errorCode: 'DELIVERY_CONFIRMED_BY_43101' });
  });

  it.each([40001, 40014, 42001])('%i (token, after the SDK refreshed once) → retry with backoff', (code) => {
    const { outcome } = classifyAttempt(oneTime, api(code), ctx({ attempt: 2 }));
    expect(outcome).toMatchObject({
      status: 'retry',
      lastErrcode: code,
      errorCode: 'DELIVERY_TOKEN_INVALID',
      nextAttemptAt: NOW + 1000,
    });
  });

  it.each([
    [-1, {}],
    [45011, { minuteLimit: 'backoff' as const }],
  ])('%i → retry with jittered exponential backoff, for both kinds', (code, over) => {
    for (const m of [oneTime, notification]) {
      const { outcome } = classifyAttempt(m, api(code), ctx({ attempt: 3, random: () => 0.25, ...over }));
      expect(outcome).toMatchObject({
        status: 'retry',
        lastErrcode: code,
        errorCode: 'DELIVERY_WECHAT_BUSY',
        nextAttemptAt: NOW + 1000,
      });
    }
  });

  it('-1 is a plain retry even where the SDK calls its outcome unknown: a later 43101 fails, never "sent"', () => {
    const err = {
      ok: false as const,
      error: Object.assign(new Error('system error'), {
        errcode: -1,
        errmsg: 'system error',
        outcomeUnknown: true,
      }),
    };
    for (const m of [oneTime, notification]) {
      expect(classifyAttempt(m, err, ctx()).outcome).toMatchObject({
        status: 'retry',
        errorCode: 'DELIVERY_WECHAT_BUSY',
        lastErrcode: -1,
      });
    }
    // What the store remembers of that -1, read back for the next attempt: nothing may have left.
    const prior = priorAttemptMayHaveLeft({
      errorCode: 'DELIVERY_WECHAT_BUSY',
      attempts: 1,
      lastErrcode: -1,
    });
    expect(
      classifyAttempt(oneTime, api(43101), ctx({ attempt: 2, priorAttemptMayHaveLeft: prior })).outcome,
    ).toMatchObject({ status: 'failed', grant: 'revoke', errorCode: 'DELIVERY_CONSENT_REVOKED' });
  });

  it('retries are bounded: the last attempt fails and releases the grant', () => {
    const { outcome } = classifyAttempt(oneTime, api(-1), ctx({ attempt: 5, maxAttempts: 5 }));
    expect(outcome).toMatchObject({
      status: 'failed',
      grant: 'release',
      errorCode: 'DELIVERY_RETRIES_EXHAUSTED',
      lastErrcode: -1,
    });
  });

  it('retries exhausted after an attempt that may have left → unknown, not failed', () => {
    const { outcome } = classifyAttempt(
      oneTime,
      api(-1),
      ctx({ attempt: 5, maxAttempts: 5, priorAttemptMayHaveLeft: true }),
    );
    expect(outcome).toMatchObject({ status: 'unknown', errorCode: 'DELIVERY_OUTCOME_UNKNOWN' });
  });

  it('HTTP 5xx and connection refused before the request left → retry', () => {
    const http = {
      ok: false as const,
      error: Object.assign(new Error('bad gateway'), { httpStatus: 502, requestMayHaveLeft: true }),
    };
    for (const m of [oneTime, notification]) {
      expect(classifyAttempt(m, http, ctx()).outcome).toMatchObject({
        status: 'retry',
        errorCode: 'DELIVERY_TRANSPORT',
      });
      expect(classifyAttempt(m, transport(false), ctx()).outcome).toMatchObject({
        status: 'retry',
        errorCode: 'DELIVERY_TRANSPORT',
      });
      expect(classifyAttempt(m, timeout(false), ctx()).outcome).toMatchObject({
        status: 'retry',
        errorCode: 'DELIVERY_TRANSPORT',
      });
    }
  });

  it('45009 → retry at the next quota reset and pause the app until then', () => {
    const { outcome, effects } = classifyAttempt(oneTime, api(45009), ctx({ attempt: 5, maxAttempts: 5 }));
    const reset = Date.UTC(2026, 0, 1, 16, 0);
    expect(outcome).toMatchObject({
      status: 'retry',
      nextAttemptAt: reset,
      errorCode: 'DELIVERY_APP_PAUSED',
      lastErrcode: 45009,
      unsent: true, // not an attempt: the claim's count is given back
    });
    expect(effects).toEqual([
      {
        type: 'pause-app',
        appId: 'wxapp',
        until: reset,
        reason: expect.stringContaining('45009') as unknown,
      },
    ]);
  });

  it('45011 (default policy) → retry at the next minute, attempt given back, app paused until then', () => {
    for (const m of [oneTime, notification]) {
      // Even on the last attempt: WeChat did not process the send, so it cannot exhaust the message's retries.
      const { outcome, effects } = classifyAttempt(m, api(45011), ctx({ attempt: 5, maxAttempts: 5 }));
      const next = Date.UTC(2026, 0, 1, 3, 1, 1);
      expect(outcome).toMatchObject({
        status: 'retry',
        nextAttemptAt: next,
        errorCode: 'DELIVERY_MINUTE_LIMIT',
        lastErrcode: 45011,
        unsent: true,
      });
      expect(effects).toEqual([
        {
          type: 'pause-app',
          appId: 'wxapp',
          until: next,
          reason: expect.stringContaining('45011') as unknown,
        },
      ]);
    }
    // The may-have-left marker of an earlier attempt survives the pause.
    const prior = classifyAttempt(oneTime, api(45011), ctx({ attempt: 2, priorAttemptMayHaveLeft: true }));
    expect(prior.outcome).toMatchObject({ status: 'retry', errorCode: MAY_HAVE_LEFT, unsent: true });
  });

  it("45011 with minuteLimit 'backoff' counts: on the last attempt it is final", () => {
    const { outcome, effects } = classifyAttempt(
      oneTime,
      api(45011),
      ctx({ attempt: 5, maxAttempts: 5, minuteLimit: 'backoff' }),
    );
    expect(outcome).toMatchObject({
      status: 'failed',
      errorCode: 'DELIVERY_RETRIES_EXHAUSTED',
      lastErrcode: 45011,
    });
    expect(effects).toEqual([]);
  });

  it.each([47003, 40003, 40037, 48001])('%i → failed for good, grant released', (code) => {
    for (const m of [oneTime, notification]) {
      const { outcome, effects } = classifyAttempt(m, api(code), ctx());
      expect(outcome).toMatchObject({
        status: 'failed',
        grant: 'release',
        errorCode: 'DELIVERY_REJECTED',
        lastErrcode: code,
      });
      expect(effects).toEqual([]);
    }
  });

  it('a final rejection after an attempt that may have used the grant keeps it consumed', () => {
    const { outcome } = classifyAttempt(
      oneTime,
      api(47003),
      ctx({ attempt: 2, priorAttemptMayHaveLeft: true }),
    );
    expect(outcome).toMatchObject({ status: 'failed', grant: 'keep' });
  });

  it('a timeout after the request left: one-time → retry marked may-have-left; notification → unknown, never resent', () => {
    expect(classifyAttempt(oneTime, timeout(true), ctx()).outcome).toMatchObject({
      status: 'retry',
      errorCode: MAY_HAVE_LEFT,
    });
    expect(classifyAttempt(oneTime, transport(true), ctx()).outcome).toMatchObject({
      status: 'retry',
      errorCode: MAY_HAVE_LEFT,
    });
    expect(classifyAttempt(notification, timeout(true), ctx()).outcome).toMatchObject({
      status: 'unknown',
      errorCode: 'DELIVERY_OUTCOME_UNKNOWN',
    });
    expect(classifyAttempt(notification, transport(true), ctx({ attempt: 1 })).outcome.status).toBe(
      'unknown',
    );
  });

  it('the may-have-left marker is sticky across later retryable errors', () => {
    const { outcome } = classifyAttempt(oneTime, api(-1), ctx({ attempt: 2, priorAttemptMayHaveLeft: true }));
    expect(outcome).toMatchObject({ status: 'retry', errorCode: MAY_HAVE_LEFT, lastErrcode: -1 });
    const paused = classifyAttempt(oneTime, api(45009), ctx({ attempt: 2, priorAttemptMayHaveLeft: true }));
    expect(paused.outcome).toMatchObject({ status: 'retry', errorCode: MAY_HAVE_LEFT });
    expect(paused.effects).toHaveLength(1);
  });

  it('codes outside the table follow the SDK action, and fail when it has none', () => {
    const action = (code: number) =>
      code === 45047 ? ('retry-later' as const) : code === 41028 ? ('consent-missing' as const) : undefined;
    expect(classifyAttempt(oneTime, api(45047), ctx({ errcodeAction: action })).outcome.status).toBe('retry');
    expect(classifyAttempt(oneTime, api(41028), ctx({ errcodeAction: action })).outcome).toMatchObject({
      status: 'failed',
      grant: 'revoke',
    });
    expect(classifyAttempt(oneTime, api(99999), ctx({ errcodeAction: action })).outcome).toMatchObject({
      status: 'failed',
      grant: 'release',
    });
  });

  it('local validation errors fail without a send; token fetch errors retry; other errors are treated as maybe-sent', () => {
    expect(
      classifyAttempt(oneTime, { ok: false, error: new AppError('WX_INVALID_ARGUMENT') }, ctx()).outcome,
    ).toMatchObject({ status: 'failed', grant: 'release' });
    expect(
      classifyAttempt(notification, { ok: false, error: new AppError('WX_TOKEN_LEASE_TIMEOUT') }, ctx())
        .outcome.status,
    ).toBe('retry');
    // A token that could not be had (even a token endpoint's -1 or a store outage) means the send never left.
    const noToken = new WeChatTokenUnavailableError({
      site: { method: 'POST', path: '/cgi-bin/message/subscribe/bizsend' },
      cause: new WeChatApiError({
        errcode: -1,
        errmsg: 'system error',
        raw: {},
        site: { method: 'POST', path: '/cgi-bin/stable_token' },
      }),
    });
    expect(classifyAttempt(notification, { ok: false, error: noToken }, ctx()).outcome).toMatchObject({
      status: 'retry',
      errorCode: 'DELIVERY_TRANSPORT',
    });
    expect(classifyAttempt(oneTime, { ok: false, error: noToken }, ctx()).outcome).toMatchObject({
      status: 'retry',
      errorCode: 'DELIVERY_TRANSPORT',
    });
    expect(classifyAttempt(notification, { ok: false, error: new Error('boom') }, ctx()).outcome.status).toBe(
      'unknown',
    );
    expect(classifyAttempt(oneTime, { ok: false, error: new Error('boom') }, ctx()).outcome).toMatchObject({
      status: 'retry',
      errorCode: MAY_HAVE_LEFT,
    });
  });

  it('never leaks an access token from a transport error message', () => {
    const err = Object.assign(
      new Error('connect failed for /cgi-bin/message/subscribe/bizsend?access_token=SECRET123'),
      { requestMayHaveLeft: false },
    );
    const { outcome } = classifyAttempt(oneTime, { ok: false, error: err }, ctx());
    expect(JSON.stringify(outcome)).not.toContain('SECRET123');
  });
});
