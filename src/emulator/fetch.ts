// A fetch-compatible function that routes requests into the emulator's Fastify app via inject (no socket).
import type { FastifyInstance } from 'fastify';
import { DROPPED_HEADER, DROPPED_STATUS } from './app.js';

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

async function bodyBytes(body: unknown): Promise<string | Buffer | undefined> {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body)) return body;
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (body instanceof URLSearchParams) return body.toString();
  // Blob, FormData, ReadableStream…: let the platform serialise it.
  const r = new Request('http://emulator.invalid/', {
    method: 'POST',
    body: body as BodyInit,
    duplex: 'half',
  } as RequestInit);
  return Buffer.from(await r.arrayBuffer());
}

/**
 * Creates a `fetch` that serves every request from `app.inject`. The URL's origin is ignored; the
 * path, query, method, headers and body are used. Redirects are never followed (the 3xx response is
 * returned with its `location`). A dropped connection (fault `drop`) rejects with
 * `TypeError('fetch failed')` whose `cause` has code `UND_ERR_SOCKET`, like undici.
 */
export function createInjectFetch(app: FastifyInstance): typeof fetch {
  const injectFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    let url: URL;
    let method: string;
    const headers: Record<string, string> = {};
    let payload: string | Buffer | undefined;
    let signal: AbortSignal | null | undefined;
    if (input instanceof Request) {
      const req = init ? new Request(input, init) : input;
      url = new URL(req.url);
      method = req.method;
      req.headers.forEach((v, k) => (headers[k] = v));
      payload = req.body ? Buffer.from(await req.arrayBuffer()) : undefined;
      signal = req.signal;
    } else {
      url = new URL(String(input), 'http://emulator.invalid');
      method = (init?.method ?? 'GET').toUpperCase();
      new Headers(init?.headers).forEach((v, k) => (headers[k] = v));
      payload = await bodyBytes(init?.body);
      signal = init?.signal;
      if (typeof payload === 'string' && headers['content-type'] === undefined) {
        headers['content-type'] =
          init?.body instanceof URLSearchParams
            ? 'application/x-www-form-urlencoded;charset=UTF-8'
            : 'text/plain;charset=UTF-8';
      }
    }
    if (signal?.aborted) throw abortError(signal);
    headers['x-wxemu-inject'] = '1';
    const pending = app.inject({
      method: method as 'GET',
      url: url.pathname + url.search,
      headers,
      ...(payload !== undefined && method !== 'GET' && method !== 'HEAD' ? { payload } : {}),
    });
    let res: Awaited<typeof pending>;
    if (signal) {
      const s = signal;
      res = await new Promise((resolve, reject) => {
        const onAbort = () => reject(abortError(s));
        s.addEventListener('abort', onAbort, { once: true });
        pending.then(
          (r) => {
            s.removeEventListener('abort', onAbort);
            resolve(r);
          },
          (e: unknown) => {
            s.removeEventListener('abort', onAbort);
            reject(e instanceof Error ? e : new Error(String(e)));
          },
        );
      });
    } else {
      res = await pending;
    }
    if (res.statusCode === DROPPED_STATUS && res.headers[DROPPED_HEADER] === '1') {
      const cause = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
      throw new TypeError('fetch failed', { cause });
    }
    const out = new Headers();
    for (const [k, v] of Object.entries(res.headers)) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const one of v) out.append(k, one);
      else out.set(k, String(v));
    }
    const nullBody = method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
    return new Response(nullBody ? null : new Uint8Array(res.rawPayload), {
      status: res.statusCode,
      headers: out,
    });
  };
  return injectFetch as typeof fetch;
}
