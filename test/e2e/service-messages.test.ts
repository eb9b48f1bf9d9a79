// The send API over real sockets (SQLite and PostgreSQL): one grant under 100 concurrent senders, idempotency, bad input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipUnless } from '../support/services.js';
import {
  APP_ID,
  NOTIFY_TPL,
  ONE_TIME_TPL,
  startService,
  type Engine,
  type RunningService,
} from './service-harness.js';

for (const engine of ['sqlite', 'postgres'] as Engine[]) {
  describe(`POST /v1/messages over HTTP (${engine})`, async () => {
    const skip = engine === 'postgres' && (await skipUnless('postgres'));
    let svc: RunningService;

    beforeAll(async () => {
      if (skip) return;
      svc = await startService(engine, { wechat: { appId: APP_ID } });
      const put = (id: string, body: unknown) =>
        fetch(`${svc.baseUrl}/v1/templates/${id}`, {
          method: 'PUT',
          headers: headers(),
          body: JSON.stringify(body),
        });
      expect((await put(ONE_TIME_TPL, { kind: 'one-time', title: '到货提醒' })).status).toBe(200);
      expect(
        (
          await put(NOTIFY_TPL, {
            kind: 'notification',
            title: '物流',
            keywords: [
              { key: 'thing1', type: 'thing' },
              { key: 'phrase3', type: 'phrase' },
            ],
          })
        ).status,
      ).toBe(200);
    });
    afterAll(async () => {
      if (skip) return;
      await svc?.close();
    });

    const headers = (extra: Record<string, string> = {}) => ({
      authorization: `Bearer ${svc.apiKey}`,
      'content-type': 'application/json',
      ...extra,
    });
    const send = (body: unknown, extra: Record<string, string> = {}) =>
      fetch(`${svc.baseUrl}/v1/messages`, {
        method: 'POST',
        headers: headers(extra),
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
    const one = (openid: string, over: Record<string, unknown> = {}) => ({
      kind: 'one-time',
      openid,
      template: ONE_TIME_TPL,
      title: '到货提醒',
      content: '您关注的商品已到货',
      ...over,
    });
    const code = async (r: Response) => ((await r.json()) as { error: { code: string } }).error.code;
    const grant = (openid: string, scene: number) =>
      svc.store.grants.recordOneTime({
        appId: APP_ID,
        openid,
        templateId: ONE_TIME_TPL,
        scene,
        now: Date.now(),
      });
    const count = async (openid: string) =>
      (await svc.store.outbox.listMessages({ appId: APP_ID, openid })).items.length;

    it.skipIf(skip)(
      '100 concurrent sends for one grant: exactly one 202, 99 × 409 GRANT_NOT_AVAILABLE',
      async () => {
        await grant('oRace', 1);
        const res = await Promise.all(Array.from({ length: 100 }, () => send(one('oRace'))));
        const statuses = res.map((r) => r.status);
        expect(statuses.filter((s) => s === 202)).toHaveLength(1);
        expect(statuses.filter((s) => s === 409)).toHaveLength(99);
        const codes = new Set(await Promise.all(res.filter((r) => r.status === 409).map(code)));
        expect([...codes]).toEqual(['GRANT_NOT_AVAILABLE']);
        expect(await count('oRace')).toBe(1);
        expect(
          await svc.store.grants.availableScenes({
            appId: APP_ID,
            openid: 'oRace',
            templateId: ONE_TIME_TPL,
          }),
        ).toEqual([]);
      },
    );

    it.skipIf(skip)('the 409 says what the user still holds', async () => {
      await grant('oHold', 5);
      const r = await send(one('oHold', { scene: 6 }));
      expect(r.status).toBe(409);
      const body = (await r.json()) as { error: { code: string; details: { heldScenes: number[] } } };
      expect(body.error).toMatchObject({ code: 'GRANT_NOT_AVAILABLE', details: { heldScenes: [5] } });
    });

    it.skipIf(skip)(
      'Idempotency-Key: concurrent retries of one body give one message; another body is a 409',
      async () => {
        await grant('oIdem', 1);
        await grant('oIdem', 2);
        const res = await Promise.all(
          Array.from({ length: 20 }, () => send(one('oIdem'), { 'idempotency-key': 'order-42' })),
        );
        const ids = new Set<string>();
        for (const r of res) {
          expect(r.status).toBe(202);
          ids.add(((await r.json()) as { id: string }).id);
        }
        expect(ids.size).toBe(1);
        const other = await send(one('oIdem', { content: '另一条' }), { 'idempotency-key': 'order-42' });
        expect([other.status, await code(other)]).toEqual([409, 'MESSAGE_IDEMPOTENCY_CONFLICT']);
        expect(await count('oIdem')).toBe(1);
        expect(
          await svc.store.grants.availableScenes({
            appId: APP_ID,
            openid: 'oIdem',
            templateId: ONE_TIME_TPL,
          }),
        ).toEqual([2]);
        const [id] = [...ids];
        const got = await fetch(`${svc.baseUrl}/v1/messages/${id}`, { headers: headers() });
        expect(await got.json()).toMatchObject({ id, status: 'queued', openid: 'oIdem' });
      },
    );

    it.skipIf(skip)('bad input gets a 4xx with a stable code and enqueues nothing', async () => {
      await grant('oBad', 1);
      const cases: [string, () => Promise<Response>, number, string][] = [
        [
          'no key',
          () =>
            fetch(`${svc.baseUrl}/v1/messages`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify(one('oBad')),
            }),
          401,
          'AUTH_MISSING_KEY',
        ],
        [
          'wrong key',
          () => send(one('oBad'), { authorization: `Bearer wxs_${'x'.repeat(32)}` }),
          401,
          'AUTH_INVALID_KEY',
        ],
        ['bad json', () => send('{"kind":"one-time",'), 400, 'HTTP_INVALID_JSON'],
        [
          '1 MB body',
          () => send(one('oBad', { content: 'x'.repeat(1_100_000) })),
          413,
          'HTTP_BODY_TOO_LARGE',
        ],
        ['wrong kind', () => send(one('oBad', { kind: 'template' })), 400, 'HTTP_VALIDATION_FAILED'],
        ['unknown field', () => send(one('oBad', { touser: 'x' })), 400, 'HTTP_VALIDATION_FAILED'],
        [
          'title > 15',
          () => send(one('oBad', { title: '一二三四五六七八九十一二三四五六' })),
          422,
          'MESSAGE_INVALID',
        ],
        ['content > 200', () => send(one('oBad', { content: '字'.repeat(201) })), 422, 'MESSAGE_INVALID'],
        ['bad color', () => send(one('oBad', { color: '#GGGGGG' })), 422, 'MESSAGE_INVALID'],
        ['scene 10001', () => send(one('oBad', { scene: 10_001 })), 400, 'HTTP_VALIDATION_FAILED'],
        [
          'unknown template',
          () => send(one('oBad', { template: 'NoSuchTemplate' })),
          422,
          'MESSAGE_TEMPLATE_UNKNOWN',
        ],
        ['kind mismatch', () => send(one('oBad', { template: NOTIFY_TPL })), 422, 'MESSAGE_KIND_MISMATCH'],
        [
          'thing > 20',
          () =>
            send({
              kind: 'notification',
              openid: 'oBad',
              template: NOTIFY_TPL,
              data: { thing1: { value: '字'.repeat(21) }, phrase3: { value: '配送中' } },
            }),
          422,
          'MESSAGE_INVALID',
        ],
        [
          'text/plain',
          () => send('hello', { 'content-type': 'text/plain' }),
          415,
          'HTTP_UNSUPPORTED_MEDIA_TYPE',
        ],
      ];
      for (const [name, run, status, want] of cases) {
        const r = await run();
        expect([r.status, await code(r)], name).toEqual([status, want]);
      }
      expect(await count('oBad')).toBe(0);
      expect(
        await svc.store.grants.availableScenes({ appId: APP_ID, openid: 'oBad', templateId: ONE_TIME_TPL }),
      ).toEqual([1]);
    });

    it.skipIf(skip)('notification sends spend credits and list by status', async () => {
      await svc.store.grants.addNotificationCredits({
        appId: APP_ID,
        openid: 'oNote',
        templateId: NOTIFY_TPL,
        count: 1,
        now: Date.now(),
      });
      const body = {
        kind: 'notification',
        openid: 'oNote',
        template: NOTIFY_TPL,
        data: { thing1: { value: '耳机' }, phrase3: { value: '配送中' } },
      };
      const a = await send(body);
      expect(a.status).toBe(202);
      const b = await send(body);
      expect([b.status, await code(b)]).toEqual([409, 'GRANT_NOT_AVAILABLE']);
      const list = await fetch(`${svc.baseUrl}/v1/messages?status=queued&openid=oNote`, {
        headers: headers(),
      });
      expect(((await list.json()) as { items: unknown[] }).items).toHaveLength(1);
    });
    it.skipIf(skip)('lists with cursors: bad ones refused alike, `?cursor=` is the first page', async () => {
      for (let s = 0; s < 3; s++) await grant('oPages', s);
      await svc.store.grants.addNotificationCredits({
        appId: APP_ID,
        openid: 'oPages',
        templateId: NOTIFY_TPL,
        count: 2,
        now: Date.now(),
      });
      const get = async (path: string) => {
        const r = await fetch(`${svc.baseUrl}${path}`, { headers: headers() });
        return {
          status: r.status,
          body: (await r.json()) as Record<string, unknown> & { error?: { code: string } },
        };
      };
      // Longer than any cursor a listing issues, or of another listing: the same code as any other bad cursor.
      for (const path of [
        `/v1/messages?cursor=${'A'.repeat(600)}`,
        `/v1/grants?cursor=${'A'.repeat(600)}`,
        `/v1/grants?cursor=${Buffer.from('m:01ABC').toString('base64url')}`,
      ]) {
        const r = await get(path);
        expect([r.status, r.body.error?.code], path).toEqual([400, 'STORE_INVALID_CURSOR']);
      }
      // The documented "credits on the first page" holds for an empty cursor too.
      const plain = await get('/v1/grants?openid=oPages&limit=2');
      const empty = await get('/v1/grants?openid=oPages&limit=2&cursor=');
      expect(plain.body.notificationCredits).toEqual([
        { template: NOTIFY_TPL, available: 2, reserved: 0, longTerm: false },
      ]);
      expect(empty.body).toEqual(plain.body);
      const next = await get(`/v1/grants?openid=oPages&limit=2&cursor=${String(plain.body.nextCursor)}`);
      expect(next.body.notificationCredits).toEqual([]);
      expect(next.body.oneTime).toHaveLength(1);
    });
  });
}
