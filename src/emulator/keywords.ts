// Subscription-notification keyword value rules (wechat-spec.md §2.5) and template content parsing.

/** Result of checking one keyword value: ok, empty (→ "is emtpy") or invalid (→ "invalid"). */
export type KeywordCheck = 'ok' | 'empty' | 'invalid';

/** One placeholder of a template's content, e.g. `{{thing1.DATA}}` → key `thing1`, type `thing`. */
export type Placeholder = { key: string; type: string };

const PLACEHOLDER = /\{\{\s*([A-Za-z_]+?)(\d+)\.DATA\s*\}\}/g;

/** Extracts the placeholders of a template content string, in order, without duplicates. */
export function parsePlaceholders(content: string): Placeholder[] {
  const seen = new Set<string>();
  const out: Placeholder[] = [];
  for (const m of content.matchAll(PLACEHOLDER)) {
    const type = m[1] ?? '';
    const key = `${type}${m[2] ?? ''}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push({ key, type });
    }
  }
  return out;
}

/** Renders a template content with the given keyword values (`{{thing1.DATA}}` → value). */
export function renderContent(content: string, values: Readonly<Record<string, string>>): string {
  return content.replace(PLACEHOLDER, (_all, type: string, n: string) => values[`${type}${n}`] ?? '');
}

const CONTROL = /\p{Cc}/u;
const HAN = /\p{Script=Han}/u;
const M = '(?:0?[1-9]|1[0-2])';
const D = '(?:0?[1-9]|[12]\\d|3[01])';
const HHMM = '(?:[01]?\\d|2[0-3]):[0-5]\\d(?::[0-5]\\d)?';
const DATE = `(?:\\d{4}年${M}月${D}日|\\d{4}年${M}月|${M}月${D}日|\\d{4}-${M}-${D}|\\d{4}/${M}/${D}|\\d{4}\\.${M}\\.${D}|\\d{4}[-/.]${M}|${M}[-/.]${D})`;
const TIME_ONE = `(?:${DATE}\\s*)?${HHMM}`;
const DATE_ONE = `${DATE}(?:\\s*${HHMM})?`;
const TIME_RE = new RegExp(`^${TIME_ONE}(?:\\s*~\\s*${TIME_ONE})?$`, 'u');
// A date range may end in a bare time: `2019年10月1日 15:01~16:00`.
const DATE_RE = new RegExp(`^${DATE_ONE}(?:\\s*~\\s*(?:${DATE_ONE}|${HHMM}))?$`, 'u');
const NUMBER_RE = /^\d+(?:\.\d+)?$/;
const LETTER_RE = /^[A-Za-z]{1,32}$/;
const SYMBOL_RE = /^[^\p{L}\p{N}\p{Cc}\s]{1,5}$/u;
const CHARSTR_RE = /^[\x21-\x7E]{1,32}$/;
// "1 currency symbol + ≤10 digits, decimals ok, may end with 元": the 10 digits include the decimals; a trailing 元
// stands in for the symbol.
const AMOUNT_RE = /^(?:[¥￥$€£]\d+(?:\.\d+)?元?|\d+(?:\.\d+)?元)$/u;
const PHONE_RE = /^[0-9+\-() #*.]{1,17}$/;
const CAR_RE = /^\p{Script=Han}?[A-Za-z0-9]+\p{Script=Han}?$/u;
const PHRASE_RE = /^\p{Script=Han}{1,5}$/u;

function cpLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * Checks one keyword value against the rule for its type (spec §2.5).
 * Non-string values are `invalid` (spec: values must be strings); `''` is `empty`.
 * @param enumValues the template's allowed values for an `enum` keyword.
 */
export function checkKeyword(type: string, value: unknown, enumValues?: readonly string[]): KeywordCheck {
  if (value === undefined || value === null || value === '') return 'empty';
  if (typeof value !== 'string') return 'invalid';
  if (value.trim() === '') return 'empty';
  if (CONTROL.test(value)) return 'invalid';
  const len = cpLength(value);
  switch (type) {
    case 'thing':
      return len <= 20 ? 'ok' : 'invalid';
    case 'number':
      return NUMBER_RE.test(value) && value.replace('.', '').length <= 32 ? 'ok' : 'invalid';
    case 'letter':
      return LETTER_RE.test(value) ? 'ok' : 'invalid';
    case 'symbol':
      return SYMBOL_RE.test(value) ? 'ok' : 'invalid';
    case 'character_string':
      return CHARSTR_RE.test(value) ? 'ok' : 'invalid';
    case 'time':
      return TIME_RE.test(value) ? 'ok' : 'invalid';
    case 'date':
      return DATE_RE.test(value) ? 'ok' : 'invalid';
    case 'amount':
      return AMOUNT_RE.test(value) && value.replace(/\D/g, '').length <= 10 ? 'ok' : 'invalid';
    case 'phone_number':
      return PHONE_RE.test(value) && /\d/.test(value) ? 'ok' : 'invalid';
    case 'car_number':
      return len <= 8 && CAR_RE.test(value) ? 'ok' : 'invalid';
    case 'name':
      if (/\p{N}/u.test(value)) return 'invalid';
      return HAN.test(value) ? (len <= 10 ? 'ok' : 'invalid') : len <= 20 ? 'ok' : 'invalid';
    case 'phrase':
      return PHRASE_RE.test(value) ? 'ok' : 'invalid';
    case 'enum':
      return enumValues?.includes(value) ? 'ok' : 'invalid';
    default:
      // Unknown keyword types: be lenient but keep the thing-like length cap.
      return len <= 20 ? 'ok' : 'invalid';
  }
}
