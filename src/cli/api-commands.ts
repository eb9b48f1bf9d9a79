// Commands that talk to a running service over its REST API: send, campaign create|status|cancel, and the consent link builder.
import { AppError } from '../errors.js';

/** How long an API command waits for the service's answer, in ms. */
export const API_CALL_TIMEOUT_MS = 15_000;
/** What an API key looks like to the CLI: printable ASCII without spaces (what an HTTP header can carry). */
const API_KEY_RE = /^[\x21-\x7e]{1,512}$/;

/** An absolute http(s) URL without whitespace (what `--url` and `--public-base-url` take). */
export function isHttpUrl(v: string): boolean {
  return /^https?:\/\/\S+$/i.test(v) && URL.canParse(v);
}

/** A usage error of a command: `CLI_USAGE` and what is wrong. */
const usage = (message: string) => new AppError('CLI_USAGE', { message });

/** Options every API command takes (from flags or WXSUB_URL / WXSUB_API_KEY). */
type ApiOpts = { url: string; apiKey: string };

function apiOpts(env: NodeJS.ProcessEnv, opts: Record<string, unknown>): ApiOpts {
  const apiKey = (typeof opts.apiKey === 'string' ? opts.apiKey : undefined) ?? env.WXSUB_API_KEY;
  if (apiKey === undefined || apiKey === '') {
    throw usage(
      'an API key is required: set WXSUB_API_KEY or pass --api-key (create one with `wxsub apikey create NAME`)',
    );
  }
  // Checked here, not by fetch: fetch's own error for a bad header value would quote the key.
  if (!API_KEY_RE.test(apiKey))
    throw usage(
      'the API key is not valid: printable characters without spaces, as `wxsub apikey create` prints it',
    );
  const url = String(opts.url).replace(/\/+$/, '');
  if (!isHttpUrl(url))
    throw usage("--url (WXSUB_URL) must be the service's http(s) URL, e.g. http://127.0.0.1:3000");
  return { url, apiKey };
}

/** Error thrown when the service answers with a non-2xx status; the CLI prints it and exits 1. */
export class ApiCallError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    super(
      err?.code
        ? `HTTP ${status} ${err.code}: ${err.message ?? ''}`
        : `HTTP ${status}: ${typeof body === 'string' ? body : JSON.stringify(body)}`,
    );
    this.name = 'ApiCallError';
  }
}

/**
 * Calls the service and returns the parsed JSON body.
 * @throws ApiCallError on a non-2xx answer; Error when the service cannot be reached.
 */
export async function apiCall(
  api: ApiOpts,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  fetchFn: typeof fetch = globalThis.fetch,
): Promise<unknown> {
  let res: Response;
  let text: string;
  try {
    res = await fetchFn(`${api.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${api.apiKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(API_CALL_TIMEOUT_MS),
    });
    text = await res.text();
  } catch (err) {
    // fetch hides why ("fetch failed"): its cause says it (ECONNREFUSED …), or the timeout.
    const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
    const why = err instanceof Error && err.cause instanceof Error ? err.cause : err;
    throw new AppError('CLI_SERVICE_UNREACHABLE', {
      message: timedOut
        ? `the service at ${api.url} did not answer within ${API_CALL_TIMEOUT_MS / 1000} s`
        : `cannot reach the service at ${api.url}`,
      cause: why,
    });
  }
  let parsed: unknown = text;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    // keep text
  }
  if (!res.ok) throw new ApiCallError(res.status, parsed);
  return parsed;
}

function parseData(raw: unknown): Record<string, { value: string }> {
  if (typeof raw !== 'string')
    throw usage('--data is required for notifications, e.g. --data \'{"thing1":{"value":"hi"}}\'');
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw usage('--data must be JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw usage('--data must be a JSON object');
  return v as Record<string, { value: string }>;
}

/** Builds the message payload from flags (one-time: title/content; notification: data). */
export function payloadFromFlags(opts: Record<string, unknown>): Record<string, unknown> {
  const page = typeof opts.page === 'string' ? opts.page : undefined;
  if (opts.kind === 'notification') {
    return { data: parseData(opts.data), ...(page === undefined ? {} : { page }) };
  }
  if (typeof opts.title !== 'string' || typeof opts.content !== 'string') {
    throw usage('one-time messages need --title and --content');
  }
  return { title: opts.title, content: opts.content, ...(page === undefined ? {} : { url: page }) };
}

/** `wxsub send`: POST /v1/messages; prints the service's answer as JSON. */
export async function runSend(env: NodeJS.ProcessEnv, opts: Record<string, unknown>): Promise<void> {
  const api = apiOpts(env, opts);
  const kind = opts.kind === 'notification' ? 'notification' : 'one-time';
  const body: Record<string, unknown> = {
    kind,
    openid: opts.openid,
    template: opts.template,
    ...(kind === 'one-time' ? { scene: opts.scene ?? 'any' } : {}),
    ...payloadFromFlags(opts),
  };
  const headers: Record<string, string> =
    typeof opts.idempotencyKey === 'string' ? { 'idempotency-key': opts.idempotencyKey } : {};
  const res = await apiCall(api, 'POST', '/v1/messages', body, headers);
  console.log(JSON.stringify(res, null, 2));
}

/** `wxsub campaign create`: POST /v1/campaigns. */
export async function runCampaignCreate(
  env: NodeJS.ProcessEnv,
  opts: Record<string, unknown>,
): Promise<void> {
  const api = apiOpts(env, opts);
  const body = {
    name: typeof opts.name === 'string' ? opts.name : `cli ${new Date().toISOString()}`,
    template: opts.template,
    payload: payloadFromFlags(opts),
  };
  console.log(JSON.stringify(await apiCall(api, 'POST', '/v1/campaigns', body), null, 2));
}

/** `wxsub campaign status <id>`: GET /v1/campaigns/:id. */
export async function runCampaignStatus(
  env: NodeJS.ProcessEnv,
  id: string,
  opts: Record<string, unknown>,
): Promise<void> {
  const api = apiOpts(env, opts);
  console.log(JSON.stringify(await apiCall(api, 'GET', `/v1/campaigns/${encodeURIComponent(id)}`), null, 2));
}

/** `wxsub campaign cancel <id>`: POST /v1/campaigns/:id/cancel. */
export async function runCampaignCancel(
  env: NodeJS.ProcessEnv,
  id: string,
  opts: Record<string, unknown>,
): Promise<void> {
  const api = apiOpts(env, opts);
  console.log(
    JSON.stringify(await apiCall(api, 'POST', `/v1/campaigns/${encodeURIComponent(id)}/cancel`), null, 2),
  );
}

/**
 * The URL that starts a one-time consent on the service (`/consent/one-time?template&scene&next`).
 * @example consentLink('https://sub.example.com', { template: 'TPL', scene: 'auto', next: 'https://app.example.com/' })
 */
export function consentLink(
  serviceUrl: string,
  q: { template: string; scene?: number | 'auto'; next?: string },
): string {
  const base = serviceUrl.replace(/\/+$/, '');
  if (!/^https?:\/\//i.test(base) || !URL.canParse(base))
    throw usage("--url must be the service's public http(s) URL, e.g. https://sub.example.com");
  const u = new URL(`${base}/consent/one-time`);
  u.searchParams.set('template', q.template);
  u.searchParams.set('scene', String(q.scene ?? 'auto'));
  if (q.next !== undefined) u.searchParams.set('next', q.next);
  return u.toString();
}
