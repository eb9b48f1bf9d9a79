// The HTTP seam with in-test fetch fakes: reply parsing (string errcodes, rid, bad bodies), retries only where safe, timeouts, redaction.
import { describe, expect, it } from 'vitest';
import { ERRCODES, errcodeInfo } from './errcodes.js';
import {
  WeChatApiError,
  WeChatBadResponseError,
  WeChatTimeoutError,
  WeChatTransportError,
} from './errors.js';
import { createHttp, fetchTransport, resolveHosts } from './http.js';
import { silentLogger } from './redact.js';

type Fake = (url: string, init: RequestInit) => Promise<Response> | Response;
function http(fake: Fake, options: Parameters<typeof createHttp>[1] = {}) {
  const calls: string[] = [];
  const f = (async (url: string, init: RequestInit) => {
    calls.push(url);
    return fake(url, init);
  }) as unknown as typeof fetch;
  const h = createHttp(
    { transport: fetchTransport(f), logger: silentLogger, random: () => 0.5, sleep: async () => {} },
    { baseUrl: 'http://wx.test', ...options },
  );
  return { h, calls };
}
const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const connErr = (code: string) =>
  Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error(code), { code }) });

describe('reply parsing', () => {
  it('coerces a string errcode and keeps errmsg, rid, action and the redacted raw body', async () => {
    const { h } = http(() =>
      json({
        errcode: '200014',
        errmsg: 'tid does not exist rid: 64229bc2-48d0e8b1-2008ed9b',
        access_token: 'LEAK',
      }),
    );
    const err = await h
      .call({ method: 'POST', path: '/wxaapi/newtmpl/addtemplate', body: {}, idempotent: false })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeChatApiError);
    expect(err).toMatchObject({
      code: 'WX_API_ERROR',
      errcode: 200014,
      errcodeName: 'invalid_tid',
      action: 'fail',
      rid: '64229bc2-48d0e8b1-2008ed9b',
    });
    expect(JSON.stringify((err as WeChatApiError).raw)).not.toContain('LEAK');
  });
  it('treats a missing errcode as success and returns the body', async () => {
    const { h } = http(() => json({ access_token: 'A', expires_in: 7200 }));
    expect(await h.call({ method: 'GET', path: '/cgi-bin/token', idempotent: true })).toEqual({
      access_token: 'A',
      expires_in: 7200,
    });
  });
  it('returns an int64 field as its exact digits, not a same-named field elsewhere in the reply', async () => {
    const text =
      '{"errmsg":"\\"msgid\\":7","extra":{"msgid":1700827132819554305},"errcode":0,"msgid":1700827132819554304}';
    const { h } = http(() => new Response(text));
    const r = await h.call({
      method: 'POST',
      path: '/x',
      body: {},
      idempotent: false,
      int64Fields: ['msgid'],
    });
    expect(r.msgid).toBe('1700827132819554304');
  });
  it('rejects a non-JSON 200 and a non-integer errcode as bad responses (not retried)', async () => {
    const a = http(() => new Response('<html>oops</html>'));
    await expect(a.h.call({ method: 'GET', path: '/x', idempotent: true })).rejects.toBeInstanceOf(
      WeChatBadResponseError,
    );
    expect(a.calls).toHaveLength(1);
    const b = http(() => json({ errcode: 'abc' }));
    await expect(b.h.call({ method: 'GET', path: '/x', idempotent: true })).rejects.toMatchObject({
      code: 'WX_BAD_RESPONSE',
    });
  });
  it('never puts the access token into an error message', async () => {
    const { h } = http(() => {
      throw connErr('ECONNRESET');
    });
    const err = (await h
      .call({
        method: 'GET',
        path: '/cgi-bin/ticket/getticket',
        query: { access_token: 'SECRET_TOKEN' },
        idempotent: false,
      })
      .catch((e: unknown) => e)) as Error;
    expect(err.message).not.toContain('SECRET_TOKEN');
    expect(JSON.stringify(err)).not.toContain('SECRET_TOKEN');
  });
});

describe('retries', () => {
  it('retries -1 and 5xx on idempotent calls, then succeeds', async () => {
    let n = 0;
    const { h, calls } = http(() =>
      ++n === 1
        ? json({ errcode: -1, errmsg: 'system error' })
        : n === 2
          ? new Response('bad gateway', { status: 502 })
          : json({ errcode: 0, ok: 1 }),
    );
    expect(await h.call({ method: 'GET', path: '/x', idempotent: true })).toMatchObject({ ok: 1 });
    expect(calls).toHaveLength(3);
  });
  it('gives up after the retry budget', async () => {
    const { h, calls } = http(() => json({ errcode: -1, errmsg: 'system error' }), { retries: { max: 3 } });
    await expect(h.call({ method: 'GET', path: '/x', idempotent: true })).rejects.toMatchObject({
      errcode: -1,
      action: 'retry-later',
      outcomeUnknown: true,
    });
    expect(calls).toHaveLength(4);
  });
  it('never repeats a send after -1, 5xx, a reset or a timeout', async () => {
    for (const fake of [
      () => json({ errcode: -1, errmsg: 'system error' }),
      () => new Response('x', { status: 503 }),
      () => Promise.reject(connErr('ECONNRESET')),
    ] as Fake[]) {
      const { h, calls } = http(fake);
      await expect(
        h.call({ method: 'POST', path: '/cgi-bin/message/template/subscribe', body: {}, idempotent: false }),
      ).rejects.toBeTruthy();
      expect(calls).toHaveLength(1);
    }
  });
  it('repeats a send when the connection was refused (the request never left)', async () => {
    let n = 0;
    const { h, calls } = http(() =>
      ++n === 1 ? Promise.reject(connErr('ECONNREFUSED')) : json({ errcode: 0 }),
    );
    await h.call({
      method: 'POST',
      path: '/cgi-bin/message/template/subscribe',
      body: {},
      idempotent: false,
    });
    expect(calls).toHaveLength(2);
  });
  it('classifies transport errors by whether the request may have left', async () => {
    const refused = await http(() => Promise.reject(connErr('ENOTFOUND')), { retries: { max: 0 } })
      .h.call({ method: 'GET', path: '/x', idempotent: true })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(WeChatTransportError);
    expect((refused as WeChatTransportError).requestMayHaveLeft).toBe(false);
    const reset = await http(() => Promise.reject(connErr('ECONNRESET')), { retries: { max: 0 } })
      .h.call({ method: 'GET', path: '/x', idempotent: true })
      .catch((e: unknown) => e);
    expect((reset as WeChatTransportError).requestMayHaveLeft).toBe(true);
  });
});

describe('timeouts', () => {
  const hang: Fake = (_url, init) =>
    new Promise((_resolve, reject) => {
      init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
    });
  it('fails an attempt after attemptTimeoutMs with a timeout error (send: not retried)', async () => {
    const { h, calls } = http(hang, { attemptTimeoutMs: 30 });
    const err = await h
      .call({ method: 'POST', path: '/cgi-bin/message/subscribe/bizsend', body: {}, idempotent: false })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeChatTimeoutError);
    expect(err).toMatchObject({ requestMayHaveLeft: true, timeout: 'attempt' });
    expect(calls).toHaveLength(1);
  });
  it('bounds retries by totalTimeoutMs', async () => {
    const { h } = http(hang, { attemptTimeoutMs: 40, totalTimeoutMs: 100, retries: { max: 10 } });
    const started = performance.now();
    await expect(h.call({ method: 'GET', path: '/x', idempotent: true })).rejects.toBeInstanceOf(
      WeChatTimeoutError,
    );
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('hosts and errcodes', () => {
  it('points api, mp and open at one base URL', () => {
    expect(resolveHosts('http://127.0.0.1:4000/wx/')).toEqual({
      api: 'http://127.0.0.1:4000/wx',
      mp: 'http://127.0.0.1:4000/wx',
      open: 'http://127.0.0.1:4000/wx',
    });
    expect(resolveHosts(undefined).api).toBe('https://api.weixin.qq.com');
    expect(() => resolveHosts('ftp://x')).toThrow();
  });
  it('maps every spec errcode family to one action', () => {
    expect(errcodeInfo(40001).action).toBe('refresh-token-and-retry');
    expect(errcodeInfo(42001).action).toBe('refresh-token-and-retry');
    expect(errcodeInfo(40014).action).toBe('refresh-token-and-retry');
    expect(errcodeInfo(43101).action).toBe('consent-missing');
    expect(errcodeInfo(45009).action).toBe('retry-later');
    expect(errcodeInfo(-1).action).toBe('retry-later');
    expect(errcodeInfo('200014').name).toBe('invalid_tid');
    expect(errcodeInfo(123456)).toMatchObject({ name: 'unknown', action: 'fail' });
    for (const code of [
      40164, 61004, 40037, 40003, 47003, 48001, 41030, 40029, 40163, 200011, 200012, 200013, 200016, 200017,
      200018, 200019, 200020, 200021, 20001, 20002, 89503, 40243, 45011, 45002, 45003,
    ]) {
      expect(ERRCODES[code], String(code)).toBeDefined();
    }
  });
});
