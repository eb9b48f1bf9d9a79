// The service's one configuration schema (every setting, default and env variable), parsing and the doc table.
import { z } from 'zod';
import { isAllowlistEntry } from '../consent/allowlist.js';
import { AppError } from '../errors.js';

/** pino levels the service and `wxsub dev` accept. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const port = z.number().int().min(0).max(65535);
const positiveInt = z.number().int().positive();
/** An absolute http(s) URL, or '' for "not set". */
const optionalHttpUrl = z.union([z.literal(''), z.url({ protocol: /^https?$/ })]);

const wechatSchema = z.strictObject({
  /** Service-account appid. Env `WXSUB_WECHAT_APP_ID`. @default '' */
  appId: z.string().default(''),
  /** App secret (never logged). Env `WXSUB_WECHAT_APP_SECRET`. @default '' */
  appSecret: z.string().default(''),
  /** Base URL of the WeChat platform; '' = the real WeChat, else e.g. the emulator. Env `WXSUB_WECHAT_BASE_URL`. @default '' */
  baseUrl: optionalHttpUrl.default(''),
  /** How access tokens are fetched: `stable` (/cgi-bin/stable_token) or `classic` (/cgi-bin/token). Env `WXSUB_WECHAT_TOKEN_MODE`. @default 'stable' */
  tokenMode: z.enum(['stable', 'classic']).default('stable'),
  /** JSON type of a one-time send's `scene` (docs disagree, spec §1.4): `string` or `number`. Env `WXSUB_WECHAT_ONE_TIME_SCENE`. @default 'string' */
  oneTimeScene: z.enum(['string', 'number']).default('string'),
  /** Push (server config) Token for signature checks. Env `WXSUB_WECHAT_PUSH_TOKEN`. @default '' */
  pushToken: z.string().default(''),
  /** EncodingAESKey (43 chars) for safe/compatible push mode; '' = plaintext. Env `WXSUB_WECHAT_ENCODING_AES_KEY`. @default '' */
  encodingAesKey: z
    .union([z.literal(''), z.string().regex(/^[A-Za-z0-9]{43}$/, 'must be 43 characters [A-Za-z0-9]')])
    .default(''),
});

const consentSchema = z.strictObject({
  /** Key that signs `reserved` tokens and consent cookies (≥ 32 chars); '' = a random key per process (single instance only). Env `WXSUB_CONSENT_SECRET`. @default '' */
  secret: z.union([z.literal(''), z.string().min(32, 'must be at least 32 characters')]).default(''),
  /** Lifetime of a consent link (reserved token and cookie) in seconds. Env `WXSUB_CONSENT_TTL_SECONDS`. @default 600 */
  ttlSeconds: z.number().int().min(10).max(86_400).default(600),
  /** How often the service deletes spent nonces of links that expired over an hour ago, in seconds; 0 = never. Env `WXSUB_CONSENT_PURGE_INTERVAL_SECONDS`. @default 300 */
  purgeIntervalSeconds: z.number().int().min(0).max(86_400).default(300),
  /** Where `next` may point: origins (`https://app.example.com`) or URL prefixes (`https://app.example.com/shop/`); comma-separated in env. Env `WXSUB_CONSENT_NEXT_ALLOWLIST`. @default [] */
  nextAllowlist: z
    .array(
      z
        .string()
        .min(1)
        .refine(
          isAllowlistEntry,
          'must be an absolute http(s) URL (origin or prefix) without credentials or spaces',
        ),
    )
    .default([]),
  /** One-time template ids the consent endpoint accepts (besides one-time templates registered via the API); comma-separated in env. Env `WXSUB_CONSENT_ONE_TIME_TEMPLATES`. @default [] */
  oneTimeTemplates: z.array(z.string().min(1)).default([]),
});

const deliverySchema = z.strictObject({
  /** Sends in flight per instance. Env `WXSUB_DELIVERY_CONCURRENCY`. @default 16 */
  concurrency: positiveInt.max(1024).default(16),
  /** Messages claimed per batch. Env `WXSUB_DELIVERY_BATCH_SIZE`. @default 100 */
  batchSize: positiveInt.max(10_000).default(100),
  /** Lease of a claimed message in ms. Env `WXSUB_DELIVERY_LEASE_MS`. @default 30000 */
  leaseMs: z.number().int().min(1000).default(30_000),
  /** Sends per second per app. Env `WXSUB_DELIVERY_RATE_PER_SECOND`. @default 500 */
  ratePerSecond: z.number().positive().default(500),
  /** Attempts before a retryable failure becomes final. Env `WXSUB_DELIVERY_MAX_ATTEMPTS`. @default 8 */
  maxAttempts: positiveInt.max(100).default(8),
  /** First retry delay in ms (doubles each attempt). Env `WXSUB_DELIVERY_BACKOFF_BASE_MS`. @default 500 */
  backoffBaseMs: positiveInt.default(500),
  /** Longest retry delay in ms. Env `WXSUB_DELIVERY_BACKOFF_MAX_MS`. @default 60000 */
  backoffMaxMs: positiveInt.default(60_000),
  /**
   * What a 45011 (per-minute limit, "retry next minute") does: `pause` the app until the next minute, the message
   * keeping its attempt, or `backoff` (a counted retry with backoff, like -1). Env `WXSUB_DELIVERY_MINUTE_LIMIT`.
   * @default 'pause'
   */
  minuteLimit: z.enum(['pause', 'backoff']).default('pause'),
});

/**
 * Every setting of `wxsub serve`. Unknown keys are an error.
 * @example serviceConfigSchema.parse({ port: 8080, wechat: { appId: 'wx123' } })
 */
export const serviceConfigSchema = z
  .strictObject({
    /** Interface to listen on. Env `WXSUB_HOST`. @default '127.0.0.1' */
    host: z.string().min(1).default('127.0.0.1'),
    /** Port to listen on (0 = any free port). Env `WXSUB_PORT`. @default 3000 */
    port: port.default(3000),
    /** Public URL of the service as browsers reach it, with the path a path-prefix proxy adds (used for the consent callback; its path scopes the consent cookies); '' = derived from the request. Env `WXSUB_PUBLIC_BASE_URL`. @default '' @example 'https://svc.example.com/wxsub' */
    publicBaseUrl: optionalHttpUrl.default(''),
    /** Directory for local data. Env `WXSUB_DATA_DIR`. @default './data' */
    dataDir: z.string().min(1).default('./data'),
    /** SQLite file used when `databaseUrl` is empty; '' = `wxsub.db` in `dataDir`. Env `WXSUB_SQLITE_PATH`. @default '<dataDir>/wxsub.db' */
    sqlitePath: z.string().default(''),
    /** PostgreSQL URL; when set it replaces SQLite. Env `DATABASE_URL`. @default '' */
    databaseUrl: z
      .union([
        z.literal(''),
        z
          .string()
          .regex(/^postgres(ql)?:\/\//, 'must start with postgres://')
          // What pg parses it with (WHATWG URL): a port over 65535 or a stray character fails there, unnamed.
          .refine(
            (v) => URL.canParse(v),
            'must be a valid URL (host, port 0–65535, percent-encoded password)',
          ),
      ])
      .default(''),
    /** Redis URL for the token cache and shared rate limits; '' = none. Env `REDIS_URL`. @default '' */
    redisUrl: z
      .union([z.literal(''), z.string().regex(/^rediss?:\/\//, 'must start with redis://')])
      .default(''),
    /** Pino log level. Env `WXSUB_LOG_LEVEL`. @default 'info' */
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** Largest accepted request body in bytes. Env `WXSUB_BODY_LIMIT_BYTES`. @default 1048576 */
    bodyLimitBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1_048_576),
    /** WeChat account and platform. */
    wechat: wechatSchema.prefault({}),
    /** One-time consent links. */
    consent: consentSchema.prefault({}),
    /** The delivery dispatcher. */
    delivery: deliverySchema.prefault({}),
  })
  .superRefine((c, ctx) => {
    // Its path becomes the consent cookies' Path attribute, where `;` would end the attribute.
    if (c.publicBaseUrl !== '' && new URL(c.publicBaseUrl).pathname.includes(';')) {
      ctx.addIssue({ code: 'custom', path: ['publicBaseUrl'], message: "its path must not contain ';'" });
    }
    if (c.delivery.backoffBaseMs > c.delivery.backoffMaxMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['delivery', 'backoffBaseMs'],
        message: 'must not exceed backoffMaxMs',
      });
    }
  })
  // URL schemes are case-insensitive: `HTTPS://…` is an https base (its cookies are Secure), written one way.
  .transform((c) => ({
    ...c,
    publicBaseUrl:
      c.publicBaseUrl === '' ? '' : c.publicBaseUrl.replace(/^[A-Za-z]+:/, (s) => s.toLowerCase()),
    sqlitePath: c.sqlitePath === '' ? `${c.dataDir.replace(/\/+$/, '')}/wxsub.db` : c.sqlitePath,
  }));

/** The parsed configuration (all defaults filled in). */
export type ServiceConfig = z.output<typeof serviceConfigSchema>;
/** What may be given before defaults are applied. */
export type ServiceConfigInput = z.input<typeof serviceConfigSchema>;

/** Turns zod issues into "path: message" lines; never includes input values (they may be secrets). */
function problemsOf(error: z.ZodError): string[] {
  return error.issues.map((i) => {
    const path = i.path.length === 0 ? '(root)' : i.path.join('.');
    const keys = i.code === 'unrecognized_keys' ? `unknown key(s) ${i.keys.join(', ')}` : i.message;
    return `${path}: ${keys}`;
  });
}

/**
 * Validates a configuration object and fills in defaults.
 * @throws AppError CONFIG_INVALID with `details.problems` (one "path: message" line each; no values echoed)
 */
export function parseConfig(input: unknown): ServiceConfig {
  const r = serviceConfigSchema.safeParse(input ?? {});
  if (r.success) return r.data;
  const problems = problemsOf(r.error);
  throw new AppError('CONFIG_INVALID', {
    message: `Configuration is invalid:\n  - ${problems.join('\n  - ')}`,
    details: { problems },
  });
}

/** One row of the configuration table (README / docs/config.md). */
export type ConfigDocRow = {
  /** Dotted path in {@link ServiceConfig}, e.g. `delivery.concurrency`. */
  path: string;
  /** CLI flag, e.g. `--delivery-concurrency`. */
  flag: string;
  /** Environment variable. */
  env: string;
  /** Default, rendered as text. */
  default: string;
  /** What it does. */
  meaning: string;
  /** True for secrets (never printed). */
  secret: boolean;
};

type Row = { path: string; env: string; meaning: string; secret?: boolean };
const ROWS: Row[] = [
  { path: 'host', env: 'WXSUB_HOST', meaning: 'Interface to listen on' },
  { path: 'port', env: 'WXSUB_PORT', meaning: 'Port to listen on (0 = any free port)' },
  {
    path: 'publicBaseUrl',
    env: 'WXSUB_PUBLIC_BASE_URL',
    meaning:
      'Public URL of the service as browsers reach it, incl. a proxy path prefix (consent callback, consent cookie path); empty = from the request',
  },
  {
    path: 'dataDir',
    env: 'WXSUB_DATA_DIR',
    meaning: 'Directory for local data (the SQLite file unless WXSUB_SQLITE_PATH is set)',
  },
  {
    path: 'sqlitePath',
    env: 'WXSUB_SQLITE_PATH',
    meaning: 'SQLite file used when no DATABASE_URL is set; default: wxsub.db in the data directory',
  },
  {
    path: 'databaseUrl',
    env: 'DATABASE_URL',
    meaning: 'PostgreSQL URL; replaces SQLite when set',
    secret: true,
  },
  {
    path: 'redisUrl',
    env: 'REDIS_URL',
    meaning: 'Redis URL for token cache and shared rate limits',
    secret: true,
  },
  { path: 'logLevel', env: 'WXSUB_LOG_LEVEL', meaning: 'fatal, error, warn, info, debug, trace or silent' },
  { path: 'bodyLimitBytes', env: 'WXSUB_BODY_LIMIT_BYTES', meaning: 'Largest accepted request body (bytes)' },
  { path: 'wechat.appId', env: 'WXSUB_WECHAT_APP_ID', meaning: 'Service-account appid' },
  { path: 'wechat.appSecret', env: 'WXSUB_WECHAT_APP_SECRET', meaning: 'App secret', secret: true },
  {
    path: 'wechat.baseUrl',
    env: 'WXSUB_WECHAT_BASE_URL',
    meaning: 'WeChat platform base URL; empty = real WeChat, else e.g. the emulator',
  },
  {
    path: 'wechat.tokenMode',
    env: 'WXSUB_WECHAT_TOKEN_MODE',
    meaning: 'stable (stable_token) or classic (token)',
  },
  {
    path: 'wechat.oneTimeScene',
    env: 'WXSUB_WECHAT_ONE_TIME_SCENE',
    meaning: 'JSON type of scene in one-time sends, where the docs disagree: string (current doc) or number',
  },
  {
    path: 'wechat.pushToken',
    env: 'WXSUB_WECHAT_PUSH_TOKEN',
    meaning: 'Token of the push server config (for the push receiver, not built yet: nothing reads it today)',
    secret: true,
  },
  {
    path: 'wechat.encodingAesKey',
    env: 'WXSUB_WECHAT_ENCODING_AES_KEY',
    meaning:
      'EncodingAESKey (43 chars) for safe/compatible push; empty = plaintext (for the push receiver, not built yet)',
    secret: true,
  },
  {
    path: 'consent.secret',
    env: 'WXSUB_CONSENT_SECRET',
    meaning: 'Key signing reserved tokens and consent cookies (>= 32 chars); empty = random per process',
    secret: true,
  },
  { path: 'consent.ttlSeconds', env: 'WXSUB_CONSENT_TTL_SECONDS', meaning: 'Lifetime of a consent link (s)' },
  {
    path: 'consent.purgeIntervalSeconds',
    env: 'WXSUB_CONSENT_PURGE_INTERVAL_SECONDS',
    meaning: 'How often spent nonces of links expired over an hour ago are deleted (s); 0 = never',
  },
  {
    path: 'consent.nextAllowlist',
    env: 'WXSUB_CONSENT_NEXT_ALLOWLIST',
    meaning: 'Comma-separated origins or URL prefixes `next` may point to',
  },
  {
    path: 'consent.oneTimeTemplates',
    env: 'WXSUB_CONSENT_ONE_TIME_TEMPLATES',
    meaning: 'Comma-separated one-time template ids accepted by /consent/one-time',
  },
  {
    path: 'delivery.concurrency',
    env: 'WXSUB_DELIVERY_CONCURRENCY',
    meaning: 'Sends in flight per instance',
  },
  { path: 'delivery.batchSize', env: 'WXSUB_DELIVERY_BATCH_SIZE', meaning: 'Messages claimed per batch' },
  { path: 'delivery.leaseMs', env: 'WXSUB_DELIVERY_LEASE_MS', meaning: 'Lease of a claimed message (ms)' },
  {
    path: 'delivery.ratePerSecond',
    env: 'WXSUB_DELIVERY_RATE_PER_SECOND',
    meaning: 'Sends per second per app',
  },
  {
    path: 'delivery.maxAttempts',
    env: 'WXSUB_DELIVERY_MAX_ATTEMPTS',
    meaning: 'Attempts before a retryable failure is final',
  },
  {
    path: 'delivery.backoffBaseMs',
    env: 'WXSUB_DELIVERY_BACKOFF_BASE_MS',
    meaning: 'First retry delay (ms), doubling',
  },
  {
    path: 'delivery.backoffMaxMs',
    env: 'WXSUB_DELIVERY_BACKOFF_MAX_MS',
    meaning: 'Longest retry delay (ms)',
  },
  {
    path: 'delivery.minuteLimit',
    env: 'WXSUB_DELIVERY_MINUTE_LIMIT',
    meaning:
      'On 45011: pause (the app waits for the next minute, the message keeps its attempt) or backoff (a counted retry, like -1)',
  },
];

const DEFAULTS: ServiceConfig = serviceConfigSchema.parse({});

function getPath(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    o[k] ??= {};
    o = o[k] as Record<string, unknown>;
  }
  o[keys[keys.length - 1] as string] = value;
}

function renderDefault(v: unknown): string {
  if (Array.isArray(v)) return v.length === 0 ? '(none)' : v.join(',');
  if (v === '') return '(empty)';
  return String(v);
}

/** The configuration table: flag, env variable, default and meaning of every setting. */
export const CONFIG_DOC: readonly ConfigDocRow[] = ROWS.map((r) => ({
  path: r.path,
  flag: `--${r.path.replace(/\./g, '-').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
  env: r.env,
  default: renderDefault(getPath(DEFAULTS, r.path)),
  meaning: r.meaning,
  secret: r.secret ?? false,
}));

/** Renders {@link CONFIG_DOC} as a Markdown table. */
export function renderConfigTable(): string {
  const lines = ['| flag | env | default | meaning |', '|---|---|---|---|'];
  for (const r of CONFIG_DOC)
    lines.push(`| \`${r.flag}\` | \`${r.env}\` | \`${r.default}\` | ${r.meaning} |`);
  return lines.join('\n');
}

/** Deep partial of the config, as CLI flags give it. */
export type ConfigFlags = {
  [K in keyof ServiceConfigInput]?: ServiceConfigInput[K] extends infer V
    ? V extends readonly unknown[]
      ? V
      : V extends object
        ? { [P in keyof V]?: V[P] }
        : V
    : never;
};

function coerce(raw: string, like: unknown): unknown {
  if (typeof like === 'number') {
    // Decimal only: Number() would also read `0x50` as 80 and `1e3` as 1000, which nobody means in a setting.
    const t = raw.trim();
    return /^-?\d+(\.\d+)?$/.test(t) ? Number(t) : Number.NaN;
  }
  if (typeof like === 'boolean') return /^(1|true|yes|on)$/i.test(raw.trim());
  if (Array.isArray(like)) {
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
  }
  return raw;
}

function mergeDeep(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const b = out[k];
    out[k] =
      v !== null &&
      typeof v === 'object' &&
      !Array.isArray(v) &&
      b !== null &&
      typeof b === 'object' &&
      !Array.isArray(b)
        ? mergeDeep(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/**
 * A setting's value from its text (an env variable or a CLI flag), read as its default's type: decimal numbers only
 * (NaN otherwise, which the schema refuses), comma lists for arrays, the text itself for strings.
 * @example settingFromText('delivery.concurrency', '32') // 32
 */
export function settingFromText(path: string, raw: string): unknown {
  return coerce(raw, getPath(DEFAULTS, path));
}

/**
 * Builds the configuration from environment variables (see {@link CONFIG_DOC}) and CLI flags; flags win.
 * Empty variables count as unset. Only the CLI calls this with `process.env`.
 * @throws AppError CONFIG_INVALID
 * @example configFromEnv(process.env, { port: 8080 })
 */
export function configFromEnv(
  env: Record<string, string | undefined>,
  flags: ConfigFlags = {},
): ServiceConfig {
  const fromEnv: Record<string, unknown> = {};
  for (const r of ROWS) {
    const raw = env[r.env];
    if (raw === undefined || raw === '') continue;
    setPath(fromEnv, r.path, settingFromText(r.path, raw));
  }
  return parseConfig(mergeDeep(fromEnv, flags as Record<string, unknown>));
}
