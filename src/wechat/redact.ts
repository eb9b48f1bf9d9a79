// Strips secrets (tokens, app secrets, AES keys, signatures, tickets, OAuth codes) out of any text before it reaches a log line or an error message.

const SECRET_NAMES = [
  'access_token',
  'accessToken',
  'refresh_token',
  'refreshToken',
  'secret',
  'appsecret',
  'app_secret',
  'appSecret',
  'ticket',
  'jsapi_ticket',
  'signature',
  'msg_signature',
  'msgSignature',
  'MsgSignature',
  'EncodingAESKey',
  'encodingAesKey',
  'encoding_aes_key',
  'aesKey',
  'aes_key',
  'code',
  'token',
  'Encrypt',
  'echostr',
  // connection-string parameters libpq and pg read as credentials (`postgres://h/db?password=…`)
  'password',
  'sslpassword',
];

const names = SECRET_NAMES.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
// key=value in query strings and form bodies (stops at & whitespace quote #)
const QUERY_RE = new RegExp(`([?&;\\s"']|^)(${names})=([^&\\s"'#]*)`, 'g');
// "key": "value" in JSON
const JSON_RE = new RegExp(`("(?:${names})"\\s*:\\s*)"((?:[^"\\\\]|\\\\.)*)"`, 'g');
// <Encrypt><![CDATA[...]]></Encrypt>-style XML elements
const XML_RE = /<(Encrypt|MsgSignature)>(<!\[CDATA\[)?[^<\]]*(\]\]>)?<\/\1>/g;
// An Authorization header's credentials (`Bearer wxs_…`), however they reached a message
const BEARER_RE = /\b(Bearer|Basic)\s+[^\s"',;]+/gi;

/** The mask written in place of every secret. */
export const REDACTED = '[REDACTED]';

/**
 * Removes secrets from `text`: `access_token=`, `secret=`, `ticket=`, `signature=`, `msg_signature=`,
 * OAuth `code=`, `password=` (connection strings), their JSON forms (`"access_token":"…"`), `<Encrypt>` payloads
 * and `Bearer …` credentials.
 * (Bare values with no name are not guessed at: callers must not put secrets into free text.)
 * Apply to every log line and every error message built from outside input.
 * @example redact('GET /cgi-bin/ticket/getticket?access_token=abc&type=jsapi') // '…?access_token=[REDACTED]&type=jsapi'
 */
export function redact(text: string): string {
  return text
    .replace(QUERY_RE, (_m, pre: string, key: string) => `${pre}${key}=${REDACTED}`)
    .replace(JSON_RE, (_m, pre: string) => `${pre}"${REDACTED}"`)
    .replace(XML_RE, (_m, tag: string) => `<${tag}>${REDACTED}</${tag}>`)
    .replace(BEARER_RE, (_m, scheme: string) => `${scheme} ${REDACTED}`);
}

const SECRET_KEYS = new Set(SECRET_NAMES.map((n) => n.toLowerCase()));

/**
 * Deep-copies a parsed JSON value with every secret-named property masked and every string redacted.
 * Used for the `raw` body kept on errors.
 */
export function redactValue(value: unknown, depth = 0): unknown {
  if (depth > 8) return REDACTED;
  if (typeof value === 'string') return redact(value);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] =
        SECRET_KEYS.has(k.toLowerCase()) && v !== null && v !== undefined && v !== ''
          ? REDACTED
          : redactValue(v, depth + 1);
    }
    return out;
  }
  return value;
}

/** A pino-like logger; every SDK log line goes through {@link redactingLogger}. */
export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/** A logger that drops everything. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Wraps `logger` so that every message and every field is redacted before it is written. */
export function redactingLogger(logger: Logger): Logger {
  const wrap =
    (level: keyof Logger) =>
    (obj: object | string, msg?: string): void => {
      if (typeof obj === 'string') {
        logger[level](redact(obj));
        return;
      }
      const safe = redactValue(obj) as object;
      if (msg === undefined) logger[level](safe);
      else logger[level](safe, redact(msg));
    };
  return { debug: wrap('debug'), info: wrap('info'), warn: wrap('warn'), error: wrap('error') };
}
