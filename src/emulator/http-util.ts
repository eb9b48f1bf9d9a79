// Small request helpers shared by the emulator routes: query access, body decoding, API-route wrapper.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { EmuApp, EmulatorState } from './state.js';
import { wxError } from './wx-errors.js';

/** First string value of a query parameter (Fastify turns repeated keys into arrays). */
export function queryParam(req: FastifyRequest, name: string): string | undefined {
  const v = (req.query as Record<string, unknown> | undefined)?.[name];
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  return undefined;
}

/** The raw request body as a string ('' when absent). */
export function bodyText(req: FastifyRequest): string {
  const b = req.body;
  if (b === undefined || b === null) return '';
  if (Buffer.isBuffer(b)) return b.toString('utf8');
  return typeof b === 'string' ? b : '';
}

/** Result of decoding a WeChat JSON body: the value, or the errcode (44002 empty, 47001 malformed). */
export type JsonBody = { ok: true; value: Record<string, unknown> } | { ok: false; errcode: 44002 | 47001 };

/** Decodes a JSON object body the way WeChat judges it (spec §3.5: 44002 empty post data, 47001 data format error). */
export function jsonBody(req: FastifyRequest): JsonBody {
  const text = bodyText(req);
  if (text.trim() === '') return { ok: false, errcode: 44002 };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, errcode: 47001 };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, errcode: 47001 };
  return { ok: true, value: v as Record<string, unknown> };
}

/** Decodes an `application/x-www-form-urlencoded` body into a multi-map. */
export function formBody(req: FastifyRequest): URLSearchParams {
  return new URLSearchParams(bodyText(req));
}

/** True when the request came through `app.inject` (no real socket to destroy). */
export function isInjected(req: FastifyRequest): boolean {
  return req.raw.socket?.constructor?.name === 'MockSocket' || req.headers['x-wxemu-inject'] === '1';
}

/** Context handed to an API route handler. */
export type ApiContext = {
  req: FastifyRequest;
  reply: FastifyReply;
  /** The caller's app (from access_token) — set when the route authenticates. */
  app: EmuApp;
  now: number;
};

type ApiHandler = (ctx: ApiContext) => unknown;
type PublicHandler = (ctx: Omit<ApiContext, 'app'>) => unknown;

const ALL_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'] as const;

function wrongMethod(expected: 'GET' | 'POST', now: number) {
  return wxError(expected === 'GET' ? 43001 : 43002, now);
}

/**
 * Registers a WeChat API route: a wrong method answers 43001/43002, and (unless `auth: false`) the
 * access_token is checked (41001/40014/40001/42001) and the app's quota for this path consumed
 * (45009/45011) before the handler runs.
 */
export function apiRoute(
  fastify: FastifyInstance,
  state: EmulatorState,
  method: 'GET' | 'POST',
  path: string,
  handler: ApiHandler,
): void {
  fastify.route({
    method: [...ALL_METHODS],
    url: path,
    handler: async (req, reply) => {
      const now = state.now();
      if (req.method !== method && !(method === 'GET' && req.method === 'HEAD'))
        return wrongMethod(method, now);
      const app = state.checkToken(queryParam(req, 'access_token'));
      if (typeof app === 'number') return wxError(app, now);
      const q = state.consumeQuota(app, path);
      if (q !== 0) return wxError(q, now);
      return handler({ req, reply, app, now });
    },
  });
}

/** Registers an API route that authenticates by itself (token endpoints, OAuth). */
export function publicApiRoute(
  fastify: FastifyInstance,
  state: EmulatorState,
  method: 'GET' | 'POST',
  path: string,
  handler: PublicHandler,
): void {
  fastify.route({
    method: [...ALL_METHODS],
    url: path,
    handler: async (req, reply) => {
      const now = state.now();
      if (req.method !== method && !(method === 'GET' && req.method === 'HEAD'))
        return wrongMethod(method, now);
      return handler({ req, reply, now });
    },
  });
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** Serialises a value for embedding inside an inline `<script>` (no `</script>` break-out). */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}
