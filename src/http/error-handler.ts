// The service's one error mapping: AppError, zod and Fastify errors → status + `{ error: { code, message, details? } }`.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Socket } from 'node:net';
import { z } from 'zod';
import { AppError, ERROR_CODES, isAppError, type ErrorCode } from '../errors.js';
import { redact } from '../wechat/redact.js';

/** The JSON body of every error answer. */
export type ErrorBody = { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } };

/** Turns zod issues into secret-free `{ path, message }` pairs. */
export function zodIssues(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((i) => ({
    path: i.path.map(String).join('.') || '(root)',
    message: i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : i.message,
  }));
}

/** Wraps a zod error as an AppError with `details.issues` (field paths). */
export function validationError(error: z.ZodError, code: ErrorCode = 'HTTP_VALIDATION_FAILED'): AppError {
  const issues = zodIssues(error);
  const first = issues[0];
  return new AppError(code, {
    message: first
      ? `${ERROR_CODES[code].message}: ${first.path}: ${first.message}`
      : ERROR_CODES[code].message,
    details: { issues },
  });
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'HTTP_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'HTTP_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'HTTP_BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'HTTP_INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'HTTP_INVALID_JSON',
};

/** Maps anything thrown in a route to the AppError the client sees (unknown errors → HTTP_INTERNAL). */
export function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
  if (err instanceof z.ZodError) return validationError(err);
  const fe = err as Partial<FastifyError> & { statusCode?: number };
  // Router errors (see frameworkErrorHandler). Every path parameter is an id, so an overlong one breaks the same
  // rule as one of 129–256 characters, which the route itself refuses.
  if (fe.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return new AppError('HTTP_VALIDATION_FAILED', {
      message: 'A path parameter must be 1–128 characters [A-Za-z0-9_-]',
      details: { field: 'path' },
      cause: err,
    });
  }
  if (fe.code === 'FST_ERR_BAD_URL') {
    return new AppError('HTTP_BAD_REQUEST', {
      message: 'The request path is not valid percent-encoded UTF-8',
      cause: err,
    });
  }
  const mapped = typeof fe.code === 'string' ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return new AppError(mapped, { cause: err });
  if (err instanceof SyntaxError && fe.statusCode === 400)
    return new AppError('HTTP_INVALID_JSON', { cause: err });
  if (typeof fe.statusCode === 'number' && fe.statusCode === 413)
    return new AppError('HTTP_BODY_TOO_LARGE', { cause: err });
  if (typeof fe.statusCode === 'number' && fe.statusCode === 415) {
    return new AppError('HTTP_UNSUPPORTED_MEDIA_TYPE', { cause: err });
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new AppError('HTTP_BAD_REQUEST', { cause: err });
  }
  return new AppError('HTTP_INTERNAL', { cause: err });
}

/** The body for an AppError (messages are redacted once more, defensively). */
export function errorBody(e: AppError): ErrorBody {
  const body: ErrorBody = { error: { code: e.code, message: redact(e.message) } };
  if (e.details !== undefined) body.error.details = e.details;
  return body;
}

/** Answers any error in the one JSON shape (5xx logged with a redacted stack). */
function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const e = toAppError(err);
  if (e.status >= 500) {
    request.log.error({ code: e.code, err: redact(String((err as Error)?.stack ?? err)) }, 'request failed');
  }
  void reply.code(e.status).header('cache-control', 'no-store').send(errorBody(e));
}

/**
 * Fastify `frameworkErrors`: errors the router raises before any route runs (a malformed %-escape in the path, a
 * path parameter over `maxParamLength`), which the error handler never sees, answered in the same JSON shape.
 */
export function frameworkErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  sendError(err, request, reply);
}

/**
 * Installs the error handler, the 404 handler and (on a real socket) an answer for requests whose URL or
 * headers exceed Node's limit, so that every failure has the same JSON shape. Router errors need
 * {@link frameworkErrorHandler} as the `frameworkErrors` option when the app is built.
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler(sendError);
  app.setNotFoundHandler((request, reply) => {
    const e = new AppError('HTTP_NOT_FOUND', { details: { method: request.method } });
    void reply.code(404).send(errorBody(e));
  });
}

/** Fastify `clientErrorHandler`: header overflow → 414 JSON; other parse errors → 400 JSON. */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) return;
  const code: ErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'HTTP_URI_TOO_LONG' : 'HTTP_BAD_REQUEST';
  const e = new AppError(code);
  const body = JSON.stringify(errorBody(e));
  const reason = e.status === 414 ? 'URI Too Long' : 'Bad Request';
  socket.end(
    `HTTP/1.1 ${e.status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
