// Parses the query WeChat appends to our one-time consent callback (spec §1.3) into checked fields or a CONSENT_* code.
import type { ErrorCode } from '../errors.js';
import { MAX_SCENE, RESERVED_MAX_LENGTH } from './reserved-token.js';

/** The callback's fields after checking. `openid` is present on confirm only. */
export type OneTimeCallback = {
  action: 'confirm' | 'cancel';
  openid: string | null;
  templateId: string;
  scene: number;
  reserved: string;
};

/** Result of {@link parseOneTimeCallback}. */
export type CallbackParse =
  { ok: true; value: OneTimeCallback } | { ok: false; code: ErrorCode; field?: string };

const SCENE_RE = /^(0|[1-9][0-9]{0,4})$/;
const ID_RE = /^[A-Za-z0-9_-]{1,128}$/;

/** A scene as WeChat sends it: decimal integer 0..10000 without sign, spaces or leading zeros; else null. */
export function parseScene(raw: unknown): number | null {
  if (typeof raw !== 'string' || !SCENE_RE.test(raw)) return null;
  const n = Number(raw);
  return n <= MAX_SCENE ? n : null;
}

function single(query: Record<string, unknown>, key: string): string | undefined | null {
  const v = query[key];
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : null; // arrays (repeated keys) and objects are never valid
}

/**
 * Checks the callback query. Never throws; unknown extra parameters are ignored (WeChat may add some).
 * @example parseOneTimeCallback({ openid: 'o1', template_id: 'T', action: 'confirm', scene: '7', reserved: 'abc' })
 */
export function parseOneTimeCallback(query: unknown): CallbackParse {
  if (query === null || typeof query !== 'object') return { ok: false, code: 'CONSENT_QUERY_INVALID' };
  const q = query as Record<string, unknown>;
  const reserved = single(q, 'reserved');
  if (
    reserved === undefined ||
    reserved === null ||
    reserved.length === 0 ||
    reserved.length > RESERVED_MAX_LENGTH ||
    !/^[A-Za-z0-9]+$/.test(reserved)
  ) {
    return { ok: false, code: 'CONSENT_RESERVED_MALFORMED', field: 'reserved' };
  }
  const action = single(q, 'action');
  if (action !== 'confirm' && action !== 'cancel')
    return { ok: false, code: 'CONSENT_ACTION_INVALID', field: 'action' };
  const templateId = single(q, 'template_id');
  if (typeof templateId !== 'string' || !ID_RE.test(templateId)) {
    return { ok: false, code: 'CONSENT_QUERY_INVALID', field: 'template_id' };
  }
  const scene = parseScene(single(q, 'scene'));
  if (scene === null) return { ok: false, code: 'CONSENT_SCENE_OUT_OF_RANGE', field: 'scene' };
  const openidRaw = single(q, 'openid');
  if (openidRaw === null) return { ok: false, code: 'CONSENT_QUERY_INVALID', field: 'openid' };
  let openid: string | null = null;
  if (action === 'confirm') {
    if (openidRaw === undefined || openidRaw === '')
      return { ok: false, code: 'CONSENT_OPENID_MISSING', field: 'openid' };
    if (!ID_RE.test(openidRaw)) return { ok: false, code: 'CONSENT_QUERY_INVALID', field: 'openid' };
    openid = openidRaw;
  } else if (openidRaw !== undefined && openidRaw !== '' && ID_RE.test(openidRaw)) {
    openid = openidRaw;
  }
  return { ok: true, value: { action, openid, templateId, scene, reserved } };
}
