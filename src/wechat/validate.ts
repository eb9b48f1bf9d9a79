// Local validation of send payloads: one-time send (title ≤ 15, content ≤ 200, scene 0–10000) and notification data (keyword types and lengths of spec §2.5).
import { WeChatInvalidArgumentError } from './errors.js';

/** Length in characters (code points), which is how WeChat counts. */
export function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Keyword types of subscription-notification templates (the placeholder prefix, e.g. `thing` in `thing1`). */
export const KEYWORD_TYPES = [
  'thing',
  'number',
  'letter',
  'symbol',
  'character_string',
  'time',
  'date',
  'amount',
  'phone_number',
  'car_number',
  'name',
  'phrase',
  'enum',
] as const;
/** One keyword type. */
export type KeywordType = (typeof KEYWORD_TYPES)[number];

/** What the SDK knows about one keyword of a template. */
export type KeywordSpec = {
  /** The data key, e.g. `thing1`. */
  key: string;
  /** Type; derived from the key's prefix when omitted. */
  type?: KeywordType;
  /** Allowed values for `enum` keywords (gettemplate `keywordEnumValueList`). */
  enumValues?: readonly string[];
};

const CJK = /\p{Script=Han}/u;
const CONTROL = /\p{Cc}/u;
// Dates and times of spec §2.5. Months 1–12 and days 1–31 (no calendar check: WeChat's own is not documented).
const M = '(?:0?[1-9]|1[0-2])';
const D = '(?:0?[1-9]|[12]\\d|3[01])';
const HHMM = String.raw`(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?`;
const YMD = `(?:\\d{4}年${M}月${D}日|\\d{4}年${M}月|${M}月${D}日|\\d{4}-${M}-${D}|\\d{4}/${M}/${D}|\\d{4}\\.${M}\\.${D}|\\d{4}[-/.]${M}|${M}[-/.]${D})`;
const DATE = `${YMD}(?:\\s*${HHMM})?`;
const TIME = `(?:${YMD}\\s*)?${HHMM}`;
// A date range may end in a bare time (`2019年10月1日 15:01~16:00`); a time range joins two times.
const DATE_RE = new RegExp(`^${DATE}(?:\\s*~\\s*(?:${DATE}|${HHMM}))?$`, 'u');
const TIME_RE = new RegExp(`^${TIME}(?:\\s*~\\s*${TIME})?$`, 'u');

/** The keyword type encoded in a data key (`thing1` → `thing`, `character_string2` → `character_string`). */
export function keywordTypeOf(key: string): KeywordType | undefined {
  const prefix = /^([a-z_]+?)\d+$/.exec(key)?.[1];
  return (KEYWORD_TYPES as readonly string[]).includes(prefix ?? '') ? (prefix as KeywordType) : undefined;
}

/**
 * Checks one keyword value against the rules of spec §2.5. Returns a problem description or undefined when valid.
 * @example checkKeywordValue('phrase', '配送中') // undefined
 */
export function checkKeywordValue(
  type: KeywordType,
  value: string,
  enumValues?: readonly string[],
): string | undefined {
  const len = charLength(value);
  if (value.trim() === '') return 'is empty';
  if (CONTROL.test(value)) return 'contains control characters or line breaks';
  switch (type) {
    case 'thing':
      return len <= 20 ? undefined : 'thing allows at most 20 characters';
    case 'number':
      return /^\d+(?:\.\d+)?$/.test(value) && value.replace('.', '').length <= 32
        ? undefined
        : 'number allows at most 32 digits with an optional decimal point';
    case 'letter':
      return /^[A-Za-z]{1,32}$/.test(value) ? undefined : 'letter allows at most 32 letters';
    case 'symbol':
      return len <= 5 && !/[\p{L}\p{N}\s]/u.test(value)
        ? undefined
        : 'symbol allows at most 5 symbols (no letters, digits, CJK or spaces)';
    case 'character_string':
      return /^[\x21-\x7e]{1,32}$/.test(value)
        ? undefined
        : 'character_string allows at most 32 ASCII digits, letters and symbols (no spaces)';
    case 'time':
      return TIME_RE.test(value)
        ? undefined
        : 'time must be a 24-hour time (HH:MM or HH:MM:SS), optionally after a date; ranges with ~';
    case 'date':
      return DATE_RE.test(value)
        ? undefined
        : 'date must be like 2019年10月1日, 2018-01-01, 2018/01/01, 2018.01.01, optionally with a 24-hour time; ranges with ~';
    case 'amount':
      // "1 currency symbol + ≤10 digits, decimals ok, may end with 元": the 10 digits include the decimals; a
      // trailing 元 stands in for the symbol.
      return /^(?:[¥￥$€£]\d+(?:\.\d+)?元?|\d+(?:\.\d+)?元)$/u.test(value) &&
        value.replace(/\D/g, '').length <= 10
        ? undefined
        : 'amount must be a currency symbol (or a trailing 元) and at most 10 digits, decimals included';
    case 'phone_number':
      return len <= 17 && /^[\d+\-() #*.]+$/.test(value) && /\d/.test(value)
        ? undefined
        : 'phone_number allows at most 17 digits and the symbols + - ( ) # * . and space';
    case 'car_number':
      return len <= 8 && /^\p{Script=Han}?[A-Za-z0-9]+\p{Script=Han}?$/u.test(value)
        ? undefined
        : 'car_number allows at most 8 characters; only the first and last may be CJK';
    case 'name':
      if (/\p{N}/u.test(value)) return 'name allows no digits';
      if (CJK.test(value)) return len <= 10 ? undefined : 'name allows at most 10 characters when it has CJK';
      return len <= 20 ? undefined : 'name allows at most 20 letters or symbols';
    case 'phrase':
      return /^\p{Script=Han}{1,5}$/u.test(value) ? undefined : 'phrase allows at most 5 CJK characters';
    case 'enum':
      return enumValues === undefined || enumValues.includes(value)
        ? undefined
        : `enum value must be one of: ${enumValues.join(', ')}`;
  }
}

/** Input of a one-time subscription send (`POST /cgi-bin/message/template/subscribe`). */
export type OneTimeSendInput = {
  /** The openid from the consent callback. */
  touser: string;
  /** The account's one-time template id. */
  template_id: string;
  /** The scene the user confirmed, 0–10000. */
  scene: number;
  /** At most 15 characters. */
  title: string;
  /** Exactly one field: `content` (≤ 200 characters, optional `#RRGGBB` colour). */
  data: { content: { value: string; color?: string } };
  /** Click-through link (ICP-filed). */
  url?: string;
  /** Mini-program jump (preferred over `url` when both are given). */
  miniprogram?: { appid: string; pagepath: string };
};

/** Input of a subscription-notification send (`POST /cgi-bin/message/subscribe/bizsend`). */
export type NotificationSendInput = {
  touser: string;
  /** The private template id (`priTmplId`). */
  template_id: string;
  /** `{ thing1: { value: '…' }, time2: { value: '10:00' } }`; values must be strings; no colours. */
  data: Record<string, { value: string }>;
  /** Web page URL to open. */
  page?: string;
  miniprogram?: { appid: string; pagepath: string };
  /**
   * Sent only when given. The current bizsend doc lists it (copied from the mini-program send API, spec §2.4);
   * the legacy doc and every SDK omit it. @example 'formal'
   */
  miniprogram_state?: MiniprogramState;
  /** Sent only when given; see `miniprogram_state`. @example 'zh_CN' */
  lang?: NotificationLang;
};

/** `miniprogram_state` values of the mini-program send API: developer, trial or formal version. */
export const MINIPROGRAM_STATES = ['developer', 'trial', 'formal'] as const;
/** One `miniprogram_state`. */
export type MiniprogramState = (typeof MINIPROGRAM_STATES)[number];
/** `lang` values of the mini-program send API. */
export const NOTIFICATION_LANGS = ['zh_CN', 'en_US', 'zh_HK', 'zh_TW'] as const;
/** One `lang`. */
export type NotificationLang = (typeof NOTIFICATION_LANGS)[number];

const bad = (field: string, problem: string) => new WeChatInvalidArgumentError(field, problem);

/** Longest `url` / `page` the SDK and the service accept, in characters (code points); WeChat publishes none. */
export const MAX_URL_CHARS = 2048;
/** Longest `miniprogram.appid`, in characters (code points). */
export const MAX_MINIPROGRAM_APPID_CHARS = 64;
/** Longest `miniprogram.pagepath`, in characters (code points). */
export const MAX_MINIPROGRAM_PAGEPATH_CHARS = 1024;

/** A string that is not blank, of at most `max` characters counted as code points, like every other limit here. */
function requireString(v: unknown, field: string, max = 512): string {
  if (typeof v !== 'string' || v.trim() === '') throw bad(field, 'must be a non-empty string');
  if (charLength(v) > max) throw bad(field, `must be at most ${max} characters`);
  return v;
}

function checkUrl(v: unknown, field: string): void {
  if (v === undefined) return;
  const s = requireString(v, field, MAX_URL_CHARS);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw bad(field, 'must be an absolute http(s) URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad(field, 'must be an absolute http(s) URL');
}

function checkMiniprogram(v: unknown): void {
  if (v === undefined) return;
  if (v === null || typeof v !== 'object') throw bad('miniprogram', 'must be { appid, pagepath }');
  const m = v as Record<string, unknown>;
  requireString(m.appid, 'miniprogram.appid', MAX_MINIPROGRAM_APPID_CHARS);
  requireString(m.pagepath, 'miniprogram.pagepath', MAX_MINIPROGRAM_PAGEPATH_CHARS);
}

function checkOneOf(v: unknown, field: string, allowed: readonly string[]): void {
  if (v !== undefined && (typeof v !== 'string' || !allowed.includes(v)))
    throw bad(field, `must be one of ${allowed.join(', ')}`);
}

/** Validates a scene value: an integer 0–10000. */
export function checkScene(scene: unknown, field = 'scene'): number {
  if (typeof scene !== 'number' || !Number.isInteger(scene) || scene < 0 || scene > 10_000)
    throw bad(field, 'must be an integer from 0 to 10000');
  return scene;
}

/** The JSON type a one-time send's `scene` is posted as; see `WeChatClientOptions.oneTimeScene`. */
export type OneTimeSceneType = 'string' | 'number';
/** Every {@link OneTimeSceneType}. */
export const ONE_TIME_SCENE_TYPES: readonly OneTimeSceneType[] = ['string', 'number'];

/**
 * Validates a one-time send locally and returns the exact JSON body to post, `scene` as a string (the new doc's
 * table and example) or, with `sceneAs: 'number'`, as the integer the consent URL carries (spec §1.4).
 * @throws WeChatInvalidArgumentError naming the field
 */
export function oneTimeSendBody(
  input: OneTimeSendInput,
  sceneAs: OneTimeSceneType = 'string',
): Record<string, unknown> {
  if (input === null || typeof input !== 'object') throw bad('input', 'must be an object');
  requireString(input.touser, 'touser', 128);
  requireString(input.template_id, 'template_id', 128);
  checkScene(input.scene);
  if (typeof input.title !== 'string' || input.title === '') throw bad('title', 'must be a non-empty string');
  if (charLength(input.title) > 15) throw bad('title', 'must be at most 15 characters');
  const content = (input.data as { content?: unknown } | undefined)?.content as
    { value?: unknown; color?: unknown } | undefined;
  if (content === null || typeof content !== 'object') throw bad('data.content', 'must be { value, color? }');
  if (typeof content.value !== 'string' || content.value === '')
    throw bad('data.content.value', 'must be a non-empty string');
  if (charLength(content.value) > 200) throw bad('data.content.value', 'must be at most 200 characters');
  if (
    content.color !== undefined &&
    (typeof content.color !== 'string' || !/^#[0-9A-Fa-f]{6}$/.test(content.color))
  ) {
    throw bad('data.content.color', 'must be a colour like #FF0000');
  }
  if (Object.keys(input.data).length !== 1) throw bad('data', 'must contain only content');
  checkUrl(input.url, 'url');
  checkMiniprogram(input.miniprogram);
  const body: Record<string, unknown> = {
    touser: input.touser,
    template_id: input.template_id,
    scene: sceneAs === 'number' ? input.scene : String(input.scene),
    title: input.title,
    data: {
      content:
        content.color === undefined
          ? { value: content.value }
          : { value: content.value, color: content.color },
    },
  };
  if (input.url !== undefined) body.url = input.url;
  if (input.miniprogram !== undefined)
    body.miniprogram = { appid: input.miniprogram.appid, pagepath: input.miniprogram.pagepath };
  return body;
}

/**
 * Validates a notification send locally and returns the JSON body to post. With `keywords` (the template's
 * keywords, e.g. from {@link keywordsFromTemplate}) the data keys must match exactly and each value obeys its type.
 * Without them, keys must look like `<type><n>` with a type of spec §2.5 (`thin1` is refused) and each value is
 * checked against that type.
 * @throws WeChatInvalidArgumentError naming the field (e.g. `data.thing1.value`)
 */
export function notificationSendBody(
  input: NotificationSendInput,
  keywords?: readonly KeywordSpec[],
): Record<string, unknown> {
  if (input === null || typeof input !== 'object') throw bad('input', 'must be an object');
  requireString(input.touser, 'touser', 128);
  requireString(input.template_id, 'template_id', 128);
  if (input.data === null || typeof input.data !== 'object' || Array.isArray(input.data))
    throw bad('data', 'must be an object of { value } entries');
  const keys = Object.keys(input.data);
  if (keys.length === 0) throw bad('data', 'must not be empty');
  const known = keywords ? new Map(keywords.map((k) => [k.key, k])) : undefined;
  if (known) {
    for (const k of known.keys())
      if (!(k in input.data)) throw bad(`data.${k}`, 'is required by the template');
  }
  const data: Record<string, { value: string }> = {};
  for (const key of keys) {
    const entry = input.data[key] as unknown;
    if (!/^[a-z_]+\d+$/.test(key))
      throw bad(`data.${key}`, 'key must look like thing1 (type prefix + number)');
    const spec = known?.get(key);
    if (known && !spec) throw bad(`data.${key}`, 'is not a keyword of the template');
    if (entry === null || typeof entry !== 'object') throw bad(`data.${key}`, 'must be { value }');
    const value = (entry as { value?: unknown }).value;
    if (typeof value !== 'string') throw bad(`data.${key}.value`, 'must be a string');
    const type = spec?.type ?? keywordTypeOf(key);
    if (type !== undefined) {
      const problem = checkKeywordValue(type, value, spec?.enumValues);
      if (problem) throw bad(`data.${key}.value`, problem);
    } else if (!spec) {
      // Every placeholder starts with a type from the fixed table (spec §2.5): `thin1` can only be a typo.
      throw bad(`data.${key}`, `key must start with a keyword type (${KEYWORD_TYPES.join(', ')})`);
    } else if (value === '') {
      throw bad(`data.${key}.value`, 'is empty');
    }
    data[key] = { value };
  }
  checkUrl(input.page, 'page');
  checkMiniprogram(input.miniprogram);
  checkOneOf(input.miniprogram_state, 'miniprogram_state', MINIPROGRAM_STATES);
  checkOneOf(input.lang, 'lang', NOTIFICATION_LANGS);
  const body: Record<string, unknown> = { touser: input.touser, template_id: input.template_id, data };
  if (input.page !== undefined) body.page = input.page;
  if (input.miniprogram !== undefined)
    body.miniprogram = { appid: input.miniprogram.appid, pagepath: input.miniprogram.pagepath };
  if (input.miniprogram_state !== undefined) body.miniprogram_state = input.miniprogram_state;
  if (input.lang !== undefined) body.lang = input.lang;
  return body;
}

/**
 * Derives keyword specs from a gettemplate entry: placeholders `{{thing1.DATA}}` in `content` and
 * enum values from `keywordEnumValueList`.
 */
export function keywordsFromTemplate(template: {
  content: string;
  keywordEnumValueList?: readonly { keywordCode: string; enumValueList: readonly string[] }[] | undefined;
}): KeywordSpec[] {
  const enums = new Map<string, readonly string[]>();
  for (const e of template.keywordEnumValueList ?? [])
    enums.set(e.keywordCode.replace(/\.DATA$/, ''), e.enumValueList);
  const out: KeywordSpec[] = [];
  for (const m of template.content.matchAll(/\{\{\s*([a-z_]+\d+)\.DATA\s*\}\}/g)) {
    const key = m[1] as string;
    if (out.some((k) => k.key === key)) continue;
    const type = keywordTypeOf(key);
    const spec: KeywordSpec = { key };
    if (type) spec.type = type;
    const ev = enums.get(key);
    if (ev) spec.enumValues = ev;
    out.push(spec);
  }
  return out;
}
