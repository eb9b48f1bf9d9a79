// HMAC-SHA256 of the consent tokens and cookies, straight from node:crypto (no hand-written crypto here).
import { createHmac } from 'node:crypto';

/**
 * HMAC-SHA256(key, msg) as a new 32-byte Buffer.
 * @example hmacWith(keys.token, Buffer.from('message'))
 */
export function hmacWith(key: Uint8Array, msg: Uint8Array): Buffer {
  return createHmac('sha256', key).update(msg).digest();
}
