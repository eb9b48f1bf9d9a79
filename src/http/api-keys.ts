// API keys for /v1/*: generation (shown once), SHA-256 hashing, and the Bearer-token check.
import { createHash, randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import type { ApiKeyRecord, Store } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import { systemClock } from '../util/clock.js';

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** Prefix of every API key, so leaked keys are easy to recognise and scan for. */
export const API_KEY_PREFIX = 'wxs_';
const KEY_RE = /^wxs_[A-Za-z0-9]{32}$/;

/** `n` uniformly random base62 characters (rejection sampling, no modulo bias). */
export function randomBase62(n: number): string {
  let out = '';
  while (out.length < n) {
    for (const b of randomBytes(n * 2)) {
      if (b < 248 && out.length < n) out += B62[b % 62];
    }
  }
  return out;
}

/** SHA-256 hex of a key: what the store keeps. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/**
 * Creates an API key and stores its hash. The returned `key` is shown once and cannot be recovered.
 * @example const { id, key } = await createApiKey(store, 'ci') // key = 'wxs_' + 32 base62 chars
 */
export async function createApiKey(
  store: Store,
  name: string,
  opts: { clock?: Clock } = {},
): Promise<{ id: string; key: string; record: ApiKeyRecord }> {
  const key = `${API_KEY_PREFIX}${randomBase62(32)}`;
  const id = `key_${randomBase62(12)}`;
  const record = await store.apiKeys.create({
    id,
    name,
    keyHash: hashApiKey(key),
    now: (opts.clock ?? systemClock).now(),
  });
  return { id, key, record };
}

/**
 * Checks `Authorization: Bearer <key>` against the store.
 * @throws AppError AUTH_MISSING_KEY / AUTH_INVALID_KEY
 */
export async function authenticate(store: Store, request: FastifyRequest): Promise<ApiKeyRecord> {
  const header = request.headers.authorization;
  if (header === undefined || header.trim() === '') throw new AppError('AUTH_MISSING_KEY');
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new AppError('AUTH_MISSING_KEY', { message: 'Authorization must be "Bearer <key>"' });
  const key = m[1] as string;
  // Malformed keys never reach the store; they cannot match a stored hash anyway.
  if (!KEY_RE.test(key)) throw new AppError('AUTH_INVALID_KEY');
  const rec = await store.apiKeys.findByHash(hashApiKey(key));
  if (rec === null || rec.revokedAt !== null) throw new AppError('AUTH_INVALID_KEY');
  return rec;
}
