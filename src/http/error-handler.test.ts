// Tests of the one error mapping: AppError, zod, Fastify and unknown errors → status, stable code, no leaked internals.
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { errorBody, installErrorHandling, toAppError } from './error-handler.js';

describe('toAppError', () => {
  it('keeps AppErrors and maps zod errors to 400 with field paths', () => {
    const e = new AppError('GRANT_NOT_AVAILABLE', { details: { heldScenes: [1] } });
    expect(toAppError(e)).toBe(e);
    const zerr = z.object({ a: z.object({ b: z.number() }) }).safeParse({ a: { b: 'x' } })
      .error as z.ZodError;
    const mapped = toAppError(zerr);
    expect([mapped.status, mapped.code]).toEqual([400, 'HTTP_VALIDATION_FAILED']);
    expect(mapped.details).toMatchObject({ issues: [{ path: 'a.b' }] });
  });

  it('maps Fastify parser errors and hides unknown errors behind HTTP_INTERNAL', () => {
    const fe = (code: string, statusCode: number) => Object.assign(new Error('x'), { code, statusCode });
    expect(toAppError(fe('FST_ERR_CTP_BODY_TOO_LARGE', 413)).code).toBe('HTTP_BODY_TOO_LARGE');
    expect(toAppError(fe('FST_ERR_CTP_INVALID_MEDIA_TYPE', 415)).code).toBe('HTTP_UNSUPPORTED_MEDIA_TYPE');
    expect(toAppError(fe('FST_ERR_WHATEVER', 400)).code).toBe('HTTP_BAD_REQUEST');
    const internal = toAppError(new Error('db password is hunter2'));
    expect([internal.status, internal.code]).toEqual([500, 'HTTP_INTERNAL']);
    expect(JSON.stringify(errorBody(internal))).not.toContain('hunter2');
  });

  it('redacts secrets that slipped into a message', () => {
    const body = errorBody(
      new AppError('WX_API_ERROR', { message: 'failed GET /cgi-bin/x?access_token=SECRETTOKEN' }),
    );
    expect(body.error.message).not.toContain('SECRETTOKEN');
  });
});

describe('installErrorHandling', () => {
  it('gives thrown errors and unknown routes the one JSON shape', async () => {
    const app = Fastify();
    installErrorHandling(app);
    app.get('/boom', async () => {
      throw new Error('internal detail');
    });
    app.get('/app', async () => {
      throw new AppError('MESSAGE_NOT_FOUND', { details: { id: 'm1' } });
    });
    try {
      const boom = await app.inject('/boom');
      expect([boom.statusCode, boom.json()]).toEqual([
        500,
        { error: { code: 'HTTP_INTERNAL', message: 'Internal error' } },
      ]);
      const a = await app.inject('/app');
      expect([a.statusCode, a.json()]).toEqual([
        404,
        { error: { code: 'MESSAGE_NOT_FOUND', message: 'No such message', details: { id: 'm1' } } },
      ]);
      const nf = await app.inject('/nowhere');
      expect([nf.statusCode, nf.json().error.code]).toEqual([404, 'HTTP_NOT_FOUND']);
    } finally {
      await app.close();
    }
  });
});
