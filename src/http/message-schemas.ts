// Request shapes (zod) of the send and campaign APIs, and WeChat's content rules (spec §1.4, §2.4, §2.5) applied locally.
import { z } from 'zod';
import { AppError } from '../errors.js';
import { ID_RE } from '../store/common.js';
import type { NotificationPayload, OneTimePayload, TemplateRecord } from '../store/store.js';
import {
  charLength,
  checkKeywordValue,
  KEYWORD_TYPES,
  MAX_MINIPROGRAM_APPID_CHARS,
  MAX_MINIPROGRAM_PAGEPATH_CHARS,
  MAX_URL_CHARS,
  MINIPROGRAM_STATES,
  NOTIFICATION_LANGS,
  type KeywordType,
} from '../wechat/validate.js';
import { validationError } from './error-handler.js';

const id = z.string().regex(ID_RE, 'must be 1–128 characters [A-Za-z0-9_-]');

// Refused in free text: U+0000 (PostgreSQL text and jsonb cannot hold it) and the other C0 controls but tab and line
// breaks (WeChat shows none; keyword values refuse every control character anyway, spec §2.5), written as "Cc
// that is not tab, LF, CR, DEL or C1"; and UTF-16 halves without their pair (no UTF-8 form). SQLite would store
// them all, so without this rule the engines would answer differently.
const C0_CONTROL = /[^\P{Cc}\t\n\r\u007F-\u009F]/u;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const TEXT_RULE = 'text';

/**
 * Free text (titles, contents, URLs, names…): a string without NUL, other C0 controls than tab, LF and CR, or lone
 * surrogates. Its issues carry `params.rule = 'text'`, which {@link requestError} reads.
 */
const text = z.string().refine((s) => !C0_CONTROL.test(s) && !LONE_SURROGATE.test(s), {
  message: 'must not contain NUL, control characters other than tab and line breaks, or unpaired surrogates',
  params: { rule: TEXT_RULE },
});

/**
 * The error for a request that failed its schema: 422 MESSAGE_INVALID when every issue is the {@link text} rule
 * broken in a message field (`inMessage(path)`), as WeChat's other content rules answer; else 400
 * HTTP_VALIDATION_FAILED.
 */
export function requestError(
  error: z.ZodError,
  inMessage: (path: readonly PropertyKey[]) => boolean = () => false,
): AppError {
  const textOnly = error.issues.every(
    (i) => i.code === 'custom' && i.params?.rule === TEXT_RULE && inMessage(i.path),
  );
  return validationError(error, textOnly ? 'MESSAGE_INVALID' : 'HTTP_VALIDATION_FAILED');
}

// Shape only here; WeChat's rules for it (both fields given, not blank, lengths as the SDK counts them) are checked
// with the payload's other rules (checkMiniprogram), so they answer 422 like a title that is too long.
const miniprogram = z.strictObject({ appid: text, pagepath: text });
const scene = z.number().int().min(0).max(10_000);

/** One-time payload fields (spec §1.4). */
export const oneTimePayloadSchema = z.strictObject({
  title: text,
  content: text,
  color: z.string().optional(),
  url: text.optional(),
  miniprogram: miniprogram.optional(),
});

/** Notification payload fields (spec §2.4): `data` values as `{ value }` or a plain string. */
export const notificationPayloadSchema = z.strictObject({
  data: z.record(z.string().max(64), z.union([z.strictObject({ value: text }), text])),
  page: text.optional(),
  miniprogram: miniprogram.optional(),
  // Listed by the current bizsend doc only (spec §2.4): sent to WeChat when given, never added.
  miniprogram_state: z.enum(MINIPROGRAM_STATES).optional(),
  lang: z.enum(NOTIFICATION_LANGS).optional(),
});

/** Body of POST /v1/messages. */
export const sendMessageSchema = z.discriminatedUnion('kind', [
  oneTimePayloadSchema.extend({
    kind: z.literal('one-time'),
    openid: id,
    template: id,
    /** A scene, or 'any' (default): the lowest scene the user holds. */
    scene: z.union([scene, z.literal('any')]).optional(),
  }),
  notificationPayloadSchema.extend({ kind: z.literal('notification'), openid: id, template: id }),
]);
/** A parsed send request. */
export type SendMessageRequest = z.output<typeof sendMessageSchema>;

/** Which scenes a campaign reaches: `min`–`max` (inclusive) and/or a `list`; refused when it can match no scene. */
const sceneFilterSchema = z
  .strictObject({
    min: scene.optional(),
    max: scene.optional(),
    list: z.array(scene).min(1).max(10_001).optional(),
  })
  .superRefine((s, ctx) => {
    const min = s.min ?? 0;
    const max = s.max ?? 10_000;
    if (min > max) ctx.addIssue({ code: 'custom', path: ['max'], message: 'must not be below min' });
    else if (s.list !== undefined && !s.list.some((n) => n >= min && n <= max))
      ctx.addIssue({ code: 'custom', path: ['list'], message: 'has no scene from min to max' });
  });

/** Body of POST /v1/campaigns. */
export const createCampaignSchema = z.strictObject({
  name: text.min(1).max(200),
  template: id,
  /** Which scenes count (one-time templates only); absent = all. */
  scenes: sceneFilterSchema.optional(),
  payload: z.union([oneTimePayloadSchema, notificationPayloadSchema]),
});

const KEYWORD_KEY_RE = /^([a-z_]+?)\d+$/;

/** The keyword type a data key names (`thing1` → `thing`): WeChat types every placeholder by its prefix (§2.5). */
export function keyTypePrefix(key: string): string | null {
  return KEYWORD_KEY_RE.exec(key)?.[1] ?? null;
}

/** Body of PUT /v1/templates/:id. A keyword's `type` defaults to its key's prefix and may not differ from it. */
export const putTemplateSchema = z.strictObject({
  kind: z.enum(['one-time', 'notification']),
  title: text.min(1).max(64),
  keywords: z
    .array(
      z
        .strictObject({
          key: z.string().regex(KEYWORD_KEY_RE, 'must look like thing1'),
          type: z
            .string()
            .regex(/^[a-z_]+$/)
            .optional(),
          enumValues: z.array(text.min(1)).max(100).optional(),
        })
        .refine((k) => k.type === undefined || k.type === keyTypePrefix(k.key), {
          message: "must be the key's type prefix (thing1 → thing): WeChat types a keyword by its key",
          path: ['type'],
        })
        // A key of no WeChat type would be stored, and every send to the template refused afterwards (422).
        .refine((k) => (KEYWORD_TYPES as readonly string[]).includes(keyTypePrefix(k.key) ?? ''), {
          message: `must start with a keyword type WeChat knows (${KEYWORD_TYPES.join(', ')})`,
          path: ['key'],
        })
        .refine((k) => k.enumValues === undefined || keyTypePrefix(k.key) === 'enum', {
          message: 'apply to enum keys (enum1) only',
          path: ['enumValues'],
        })
        // WeChat takes only the template's own values for an enum keyword (spec §2.5): without them no send could
        // be checked here, and each would fail at WeChat with 47003.
        .refine((k) => keyTypePrefix(k.key) !== 'enum' || (k.enumValues?.length ?? 0) > 0, {
          message: "are required for an enum key: the template's values (keywordEnumValueList)",
          path: ['enumValues'],
        }),
    )
    .max(20)
    .refine((ks) => new Set(ks.map((k) => k.key)).size === ks.length, { message: 'keys must be distinct' })
    .default([]),
  /** 2 = one-time notification, 3 = long-term (notification templates only). */
  type: z.union([z.literal(2), z.literal(3)]).optional(),
});

/** Query of GET /v1/messages. */
export const listMessagesQuery = z.strictObject({
  status: z.enum(['queued', 'sending', 'sent', 'failed', 'unknown', 'cancelled']).optional(),
  template: id.optional(),
  openid: id.optional(),
  campaign: id.optional(),
  cursor: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});

/** Query of GET /v1/grants. */
export const listGrantsQuery = z.strictObject({
  template: id.optional(),
  openid: id.optional(),
  cursor: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});

type Issue = { path: string; message: string };

const COLOR_RE = /^#[0-9A-Fa-f]{6}$/;

/** `miniprogram` as the SDK checks it (validate.ts), or a message accepted here would fail at the send. */
function checkMiniprogram(
  m: { appid: string; pagepath: string } | undefined,
  prefix: string,
  issues: Issue[],
): void {
  if (m === undefined) return;
  for (const [field, max] of [
    ['appid', MAX_MINIPROGRAM_APPID_CHARS],
    ['pagepath', MAX_MINIPROGRAM_PAGEPATH_CHARS],
  ] as const) {
    const v = m[field];
    if (v.trim() === '' || charLength(v) > max)
      issues.push({
        path: `${prefix}miniprogram.${field}`,
        message: `must be 1–${max} characters, not blank`,
      });
  }
}

function checkUrl(v: string | undefined, path: string, issues: Issue[]): void {
  if (v === undefined) return;
  let ok = charLength(v) <= MAX_URL_CHARS && /^https?:\/\//i.test(v);
  if (ok) {
    try {
      new URL(v);
    } catch {
      ok = false;
    }
  }
  if (!ok)
    issues.push({ path, message: `must be an absolute http(s) URL of at most ${MAX_URL_CHARS} characters` });
}

/** Keyword value rule of one type (spec §2.5, via the SDK's checker); returns a reason or null. */
export function keywordProblem(type: string, value: string, enumValues?: readonly string[]): string | null {
  // An enum value can only be checked against the template's values; without them WeChat would answer 47003.
  if (type === 'enum' && (enumValues === undefined || enumValues.length === 0))
    return "is an enum keyword whose values are not registered: PUT /v1/templates/:id with the template's enumValues";
  if ((KEYWORD_TYPES as readonly string[]).includes(type)) {
    return (
      checkKeywordValue(
        type as KeywordType,
        value,
        enumValues && enumValues.length > 0 ? enumValues : undefined,
      ) ?? null
    );
  }
  // A type outside spec §2.5's table: WeChat answers 47003, and the SDK refuses it before sending, so a message
  // accepted here could never go out.
  return `has no keyword type WeChat knows (${KEYWORD_TYPES.join(', ')})`;
}

/**
 * Applies WeChat's rules to a one-time payload (title ≤ 15 chars, content ≤ 200, #RRGGBB color, http(s) url).
 * @throws AppError MESSAGE_INVALID with `details.issues`
 */
export function checkOneTimePayload(p: z.output<typeof oneTimePayloadSchema>, prefix = ''): OneTimePayload {
  const issues: Issue[] = [];
  if (charLength(p.title) < 1 || charLength(p.title) > 15)
    issues.push({ path: `${prefix}title`, message: 'must be 1–15 characters' });
  if (charLength(p.content) < 1 || charLength(p.content) > 200)
    issues.push({ path: `${prefix}content`, message: 'must be 1–200 characters' });
  if (p.color !== undefined && !COLOR_RE.test(p.color))
    issues.push({ path: `${prefix}color`, message: 'must be #RRGGBB' });
  checkUrl(p.url, `${prefix}url`, issues);
  checkMiniprogram(p.miniprogram, prefix, issues);
  throwIssues(issues);
  const out: OneTimePayload = { title: p.title, content: p.content };
  if (p.color !== undefined) out.color = p.color;
  if (p.url !== undefined) out.url = p.url;
  if (p.miniprogram !== undefined) out.miniprogram = p.miniprogram;
  return out;
}

/**
 * Applies the template's keywords (exact key set) and each keyword type's rule to a notification payload.
 * @throws AppError MESSAGE_INVALID with `details.issues`
 */
export function checkNotificationPayload(
  p: z.output<typeof notificationPayloadSchema>,
  template: TemplateRecord,
  prefix = '',
): NotificationPayload {
  const issues: Issue[] = [];
  const data: Record<string, { value: string }> = {};
  for (const [k, v] of Object.entries(p.data)) data[k] = { value: typeof v === 'string' ? v : v.value };
  const keys = Object.keys(data);
  if (keys.length === 0) issues.push({ path: `${prefix}data`, message: 'must have at least one keyword' });
  if (template.keywords.length > 0) {
    const known = new Map(template.keywords.map((k) => [k.key, k]));
    for (const k of keys)
      if (!known.has(k))
        issues.push({ path: `${prefix}data.${k}`, message: 'is not a keyword of the template' });
    for (const kw of template.keywords) {
      const v = data[kw.key];
      if (v === undefined) {
        issues.push({ path: `${prefix}data.${kw.key}`, message: 'is missing' });
        continue;
      }
      // The key's prefix, as WeChat reads it, over a declared type (templates stored before types had to match).
      const problem = keywordProblem(keyTypePrefix(kw.key) ?? kw.type, v.value, kw.enumValues);
      if (problem) issues.push({ path: `${prefix}data.${kw.key}.value`, message: problem });
    }
  } else {
    for (const k of keys) {
      const type = keyTypePrefix(k);
      if (type === null) {
        issues.push({
          path: `${prefix}data.${k}`,
          message: 'key must look like thing1 (type prefix + number)',
        });
        continue;
      }
      const problem = keywordProblem(type, (data[k] as { value: string }).value);
      if (problem) issues.push({ path: `${prefix}data.${k}.value`, message: problem });
    }
  }
  checkUrl(p.page, `${prefix}page`, issues);
  checkMiniprogram(p.miniprogram, prefix, issues);
  throwIssues(issues);
  const out: NotificationPayload = { data };
  if (p.page !== undefined) out.page = p.page;
  if (p.miniprogram !== undefined) out.miniprogram = p.miniprogram;
  if (p.miniprogram_state !== undefined) out.miniprogram_state = p.miniprogram_state;
  if (p.lang !== undefined) out.lang = p.lang;
  return out;
}

function throwIssues(issues: Issue[]): void {
  if (issues.length === 0) return;
  const first = issues[0] as Issue;
  throw new AppError('MESSAGE_INVALID', { message: `${first.path} ${first.message}`, details: { issues } });
}
