// Push crypto (spec §4): URL-verification signature, msg_signature, AES-256-CBC with PKCS#7 (K = 32) message encryption/decryption with the appid check, and the encrypted reply envelope.
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.js';
import { WeChatInvalidArgumentError } from './errors.js';

/** sha1 hex of the lexicographically sorted, concatenated parts. */
export function sortedSha1(parts: readonly string[]): string {
  return createHash('sha1')
    .update([...parts].sort().join(''), 'utf8')
    .digest('hex');
}

/** `signature` of a push or URL verification: sha1(sort([token, timestamp, nonce])). */
export function computeSignature(token: string, timestamp: string, nonce: string): string {
  return sortedSha1([token, timestamp, nonce]);
}

/** `msg_signature` of an encrypted push or reply: sha1(sort([token, timestamp, nonce, encrypt])). */
export function computeMsgSignature(
  token: string,
  timestamp: string,
  nonce: string,
  encrypt: string,
): string {
  return sortedSha1([token, timestamp, nonce, encrypt]);
}

function safeEqualHex(a: string, b: string): boolean {
  const x = Buffer.from(a.toLowerCase());
  const y = Buffer.from(b.toLowerCase());
  return x.length === y.length && timingSafeEqual(x, y);
}

/** True when `signature` matches (constant-time). Bad input (also a missing token) yields false, never a throw. */
export function verifySignature(input: {
  token: string;
  timestamp: unknown;
  nonce: unknown;
  signature: unknown;
}): boolean {
  if (input === null || typeof input !== 'object') return false;
  const { timestamp, nonce, signature } = input;
  // An unset token would make signatures anyone can compute (sha1 of "undefined" and public values).
  if (typeof input.token !== 'string' || input.token === '') return false;
  if (typeof timestamp !== 'string' || typeof nonce !== 'string' || typeof signature !== 'string')
    return false;
  return safeEqualHex(computeSignature(input.token, timestamp, nonce), signature);
}

/** True when `msgSignature` matches the encrypted payload (constant-time). Bad input (also a missing token) yields false. */
export function verifyMsgSignature(input: {
  token: string;
  timestamp: unknown;
  nonce: unknown;
  encrypt: unknown;
  msgSignature: unknown;
}): boolean {
  if (input === null || typeof input !== 'object') return false;
  const { timestamp, nonce, encrypt, msgSignature } = input;
  if (typeof input.token !== 'string' || input.token === '') return false;
  if (
    typeof timestamp !== 'string' ||
    typeof nonce !== 'string' ||
    typeof encrypt !== 'string' ||
    typeof msgSignature !== 'string'
  )
    return false;
  return safeEqualHex(computeMsgSignature(input.token, timestamp, nonce, encrypt), msgSignature);
}

/**
 * Answers WeChat's URL verification (`GET ?signature&timestamp&nonce&echostr`): returns `echostr` when the
 * signature matches.
 * @throws AppError `WX_SIGNATURE_INVALID` for anything else, a missing query included
 */
export function answerUrlVerification(
  token: string,
  query: { signature?: unknown; timestamp?: unknown; nonce?: unknown; echostr?: unknown },
): string {
  if (
    query === null ||
    typeof query !== 'object' ||
    typeof query.echostr !== 'string' ||
    !verifySignature({ token, timestamp: query.timestamp, nonce: query.nonce, signature: query.signature })
  ) {
    throw new AppError('WX_SIGNATURE_INVALID');
  }
  return query.echostr;
}

/**
 * Decodes an EncodingAESKey (43 chars of a-zA-Z0-9) into the 32-byte AES key.
 * @throws WeChatInvalidArgumentError when it is not 43 characters or does not decode to 32 bytes
 */
export function decodeAesKey(encodingAesKey: string): Buffer {
  if (typeof encodingAesKey !== 'string' || !/^[A-Za-z0-9]{43}$/.test(encodingAesKey)) {
    throw new WeChatInvalidArgumentError('encodingAesKey', 'must be 43 characters of a-zA-Z0-9');
  }
  const key = Buffer.from(`${encodingAesKey}=`, 'base64');
  if (key.length !== 32) throw new WeChatInvalidArgumentError('encodingAesKey', 'must decode to 32 bytes');
  return key;
}

const BLOCK = 32;

/** PKCS#7 with K = 32: append n = 32 − (len mod 32) bytes of value n (32 bytes of 0x20 when aligned). */
export function pkcs7Pad(buf: Buffer): Buffer {
  const n = BLOCK - (buf.length % BLOCK);
  return Buffer.concat([buf, Buffer.alloc(n, n)]);
}

/**
 * Encrypts a message for WeChat's safe mode: Base64(AES-256-CBC(random16 ‖ len32BE ‖ msg ‖ appid, PKCS#7/32)).
 * @throws WeChatInvalidArgumentError for a bad key, a non-string message or appId, or a random that is not 16 bytes
 */
export function encryptMessage(input: {
  encodingAesKey: string;
  appId: string;
  message: string;
  random?: Buffer;
}): string {
  if (input === null || typeof input !== 'object')
    throw new WeChatInvalidArgumentError('input', 'must be an object');
  const key = decodeAesKey(input.encodingAesKey);
  if (typeof input.message !== 'string') throw new WeChatInvalidArgumentError('message', 'must be a string');
  if (typeof input.appId !== 'string') throw new WeChatInvalidArgumentError('appId', 'must be a string');
  // UTF-8 cannot carry a lone surrogate: Buffer.from would turn it into U+FFFD, and the text decrypted would differ.
  if (LONE_SURROGATE.test(input.message))
    throw new WeChatInvalidArgumentError('message', 'must be well-formed Unicode (no lone surrogates)');
  if (LONE_SURROGATE.test(input.appId))
    throw new WeChatInvalidArgumentError('appId', 'must be well-formed Unicode (no lone surrogates)');
  const random = input.random ?? randomBytes(16);
  if (!Buffer.isBuffer(random) || random.length !== 16)
    throw new WeChatInvalidArgumentError('random', 'must be 16 bytes');
  const msg = Buffer.from(input.message, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msg.length, 0);
  const plain = pkcs7Pad(Buffer.concat([random, len, msg, Buffer.from(input.appId, 'utf8')]));
  const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(plain), cipher.final()]).toString('base64');
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function decryptFailed(reason: string): AppError {
  return new AppError('WX_DECRYPT_FAILED', {
    message: `The encrypted message could not be decrypted: ${reason}`,
    details: { reason },
  });
}

/**
 * Decrypts a safe-mode `Encrypt` value and checks the appid inside. `encodingAesKey` may list several keys
 * (current first, then previous, for rotation); `keyIndex` says which one worked.
 * @throws AppError `WX_DECRYPT_FAILED` for anything wrong (bad base64, length, padding, length field, appid)
 */
export function decryptMessage(input: {
  encodingAesKey: string | readonly string[];
  appId: string;
  encrypt: unknown;
}): { message: string; keyIndex: number } {
  if (input === null || typeof input !== 'object') throw decryptFailed('no input');
  // No key configured (plaintext mode) is a message we cannot read, like a wrong key: no TypeError.
  const given: unknown = input.encodingAesKey;
  const keys: unknown[] = typeof given === 'string' ? [given] : Array.isArray(given) ? given : [];
  if (typeof input.encrypt !== 'string' || input.encrypt.length === 0 || input.encrypt.length > 4_000_000)
    throw decryptFailed('Encrypt is missing');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(input.encrypt) || input.encrypt.length % 4 !== 0)
    throw decryptFailed('Encrypt is not base64');
  const data = Buffer.from(input.encrypt, 'base64');
  if (data.length === 0 || data.length % BLOCK !== 0)
    throw decryptFailed('ciphertext length is not a multiple of 32');
  let last: AppError = decryptFailed('no key');
  for (let i = 0; i < keys.length; i++) {
    try {
      const key = keys[i];
      if (typeof key !== 'string') throw decryptFailed('bad key');
      return { message: decryptWith(decodeAesKey(key), data, input.appId), keyIndex: i };
    } catch (err) {
      last = err instanceof AppError && err.code === 'WX_DECRYPT_FAILED' ? err : decryptFailed('bad key');
    }
  }
  throw last;
}

function decryptWith(key: Buffer, data: Buffer, appId: string): string {
  const decipher = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
  decipher.setAutoPadding(false);
  const plain = Buffer.concat([decipher.update(data), decipher.final()]);
  const pad = plain[plain.length - 1] as number;
  if (pad < 1 || pad > BLOCK || pad > plain.length) throw decryptFailed('bad padding');
  for (let i = plain.length - pad; i < plain.length; i++)
    if (plain[i] !== pad) throw decryptFailed('bad padding');
  const body = plain.subarray(0, plain.length - pad);
  if (body.length < 20) throw decryptFailed('too short');
  const len = body.readUInt32BE(16);
  if (20 + len > body.length) throw decryptFailed('bad length field');
  const from = body.subarray(20 + len).toString('utf8');
  if (from !== appId) throw decryptFailed('appid does not match');
  const msg = body.subarray(20, 20 + len);
  // ignoreBOM: the message's bytes come back as they were sent, a leading U+FEFF included.
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  try {
    return text.decode(msg);
  } catch {
    throw decryptFailed('message is not UTF-8');
  }
}

/** Input of {@link buildEncryptedReply}. */
export type EncryptedReplyInput = {
  token: string;
  encodingAesKey: string;
  appId: string;
  /** The plaintext reply XML. */
  message: string;
  /** Unix seconds as a string. */
  timestamp: string;
  nonce: string;
  random?: Buffer;
};

/**
 * Builds the safe-mode reply envelope:
 * `<xml><Encrypt>…</Encrypt><MsgSignature>…</MsgSignature><TimeStamp>…</TimeStamp><Nonce>…</Nonce></xml>`.
 * @throws WeChatInvalidArgumentError for any input of the wrong type or shape
 */
export function buildEncryptedReply(input: EncryptedReplyInput): string {
  if (input === null || typeof input !== 'object')
    throw new WeChatInvalidArgumentError('input', 'must be an object');
  if (typeof input.token !== 'string' || input.token === '')
    throw new WeChatInvalidArgumentError('token', 'must be a non-empty string');
  if (typeof input.timestamp !== 'string' || !/^\d{1,12}$/.test(input.timestamp))
    throw new WeChatInvalidArgumentError('timestamp', 'must be unix seconds');
  if (typeof input.nonce !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(input.nonce))
    throw new WeChatInvalidArgumentError('nonce', 'must be letters and digits');
  const encryptInput: { encodingAesKey: string; appId: string; message: string; random?: Buffer } = {
    encodingAesKey: input.encodingAesKey,
    appId: input.appId,
    message: input.message,
  };
  if (input.random) encryptInput.random = input.random;
  const encrypt = encryptMessage(encryptInput);
  const sig = computeMsgSignature(input.token, input.timestamp, input.nonce, encrypt);
  return `<xml><Encrypt><![CDATA[${encrypt}]]></Encrypt><MsgSignature><![CDATA[${sig}]]></MsgSignature><TimeStamp>${input.timestamp}</TimeStamp><Nonce><![CDATA[${input.nonce}]]></Nonce></xml>`;
}
