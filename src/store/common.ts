// Engine-neutral pieces shared by the SQLite and PostgreSQL stores: ids, cursors, outcome effects, row mapping.
import { randomFillSync } from 'node:crypto';
import { AppError } from '../errors.js';
import type {
  AttemptOutcome,
  Campaign,
  CampaignStats,
  Grant,
  GrantState,
  MessageKind,
  MessageStatus,
  NotificationCredit,
  OutboxMessage,
} from './store.js';

/** How long a new PostgreSQL connection may take before it fails as `STORE_UNAVAILABLE`, in ms. */
export const PG_CONNECT_TIMEOUT_MS = 10_000;

/**
 * A generator of unique, time-sortable ids. Ids must match {@link ID_RE}: they travel in URL paths
 * (`GET /v1/messages/:id`) and page cursors.
 */
export type IdGenerator = () => string;

/**
 * What a row id may look like: 1–128 characters `[A-Za-z0-9_-]`, the rule the HTTP API applies to every id.
 * {@link createIdGenerator}'s Crockford base32 ids are a subset; an injected generator must stay within it.
 */
export const ID_RE = /^[A-Za-z0-9_-]{1,128}$/;

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * Creates a ULID-like id generator: 10 chars of millisecond time + 16 random chars (Crockford base32,
 * 26 chars). Ids from one generator are strictly increasing, also within one millisecond, so they order
 * rows by creation and serve as cursors.
 * @param now clock in ms (default `Date.now`)
 * @example const ids = createIdGenerator(); ids() // '01JH5X9Q2M7T4K3N8P6R2S1V0W'
 */
export function createIdGenerator(now: () => number = Date.now): IdGenerator {
  let lastTime = -1;
  let timePart = '';
  const rand = new Uint8Array(16);
  // Hot path (one id per written row): typed array and a cached time prefix, no per-call arrays.
  return () => {
    const t = Math.max(now(), lastTime);
    if (t === lastTime) {
      // Same millisecond: increment the previous random part so ids stay strictly increasing.
      for (let i = rand.length - 1; i >= 0; i--) {
        const v = (rand[i] as number) + 1;
        if (v < 32) {
          rand[i] = v;
          break;
        }
        rand[i] = 0;
      }
    } else {
      randomFillSync(rand);
      for (let i = 0; i < rand.length; i++) rand[i] = (rand[i] as number) & 31;
      // Leave headroom so increments within one millisecond never overflow.
      rand[0] = (rand[0] as number) & 15;
      lastTime = t;
      let time = '';
      let rest = t;
      for (let i = 0; i < 10; i++) {
        time = CROCKFORD[rest % 32] + time;
        rest = Math.floor(rest / 32);
      }
      timePart = time;
    }
    let id = timePart;
    for (let i = 0; i < rand.length; i++) id += CROCKFORD[rand[i] as number];
    return id;
  };
}

/** Longest cursor {@link decodeCursor} reads. */
const MAX_CURSOR_LENGTH = 512;

/** Encodes a listing position as an opaque cursor. */
export function encodeCursor(kind: string, key: string): string {
  return Buffer.from(`${kind}:${key}`, 'utf8').toString('base64url');
}

/**
 * Decodes a cursor made by {@link encodeCursor}; throws STORE_INVALID_CURSOR on anything else. The key must be an
 * id ({@link ID_RE}): a forged one never reaches SQL, where engines differ (PostgreSQL refuses NUL in text).
 */
export function decodeCursor(kind: string, cursor: string | undefined): string | null {
  if (cursor === undefined || cursor === '') return null;
  // Longer than any cursor encodeCursor makes (a kind and a 128-character id): not decoded at all.
  const raw =
    cursor.length <= MAX_CURSOR_LENGTH && /^[A-Za-z0-9_-]+$/.test(cursor)
      ? Buffer.from(cursor, 'base64url').toString('utf8')
      : '';
  const key = raw.slice(kind.length + 1);
  if (!raw.startsWith(`${kind}:`) || !ID_RE.test(key)) {
    throw new AppError('STORE_INVALID_CURSOR', { details: { cursor: cursor.slice(0, 64) } });
  }
  return key;
}

/** Clamps a page size. @default 50, at most 1000 */
export function pageLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return 50;
  return Math.min(1000, Math.max(1, Math.floor(limit)));
}

/** What an attempt outcome does to the message's grant (one-time) or credit (notification). */
export type GrantEffect = 'consume' | 'release' | 'revoke' | 'none';

/**
 * Maps an outcome to the grant effect. `sent` consumes. `failed/release` gives the send right back,
 * `failed/revoke` revokes it. `failed/keep` and `unknown` also consume: WeChat may have used the right,
 * and a new confirm re-opens the grant anyway, so a stuck `reserved` row would only block that scene.
 * `retry` keeps the reservation.
 */
export function grantEffect(outcome: AttemptOutcome): GrantEffect {
  switch (outcome.status) {
    case 'sent':
    case 'unknown':
      return 'consume';
    case 'failed':
      return outcome.grant === 'release' ? 'release' : outcome.grant === 'revoke' ? 'revoke' : 'consume';
    case 'retry':
      return 'none';
  }
}

/** The error code of a retry after an attempt that may have reached WeChat (see delivery/outcome.ts). */
export const MAY_HAVE_LEFT_CODE = 'DELIVERY_MAY_HAVE_LEFT';
/** The error code of a message whose outcome cannot be known and which is never resent. */
export const OUTCOME_UNKNOWN_CODE = 'DELIVERY_OUTCOME_UNKNOWN';
/** SQL (both engines): the `messages` row belongs to a campaign that was cancelled. False for a lone message. */
export const IN_CANCELLED_CAMPAIGN =
  "EXISTS (SELECT 1 FROM campaigns c WHERE c.id = messages.campaign_id AND c.status = 'cancelled')";

/**
 * SQL (both engines): a live (`queued` or `sending`) message holds the `grants` row, as one revoked while its
 * message waited still is.
 */
export const HELD_BY_LIVE_MESSAGE =
  "EXISTS (SELECT 1 FROM messages m WHERE m.grant_id = grants.id AND m.status IN ('queued', 'sending'))";

/**
 * The grant effect of a recorded outcome, given the status the row ended in. A retry (no effect of its own) of a
 * message whose campaign was cancelled meanwhile ends the message: `cancelled` gives the grant or credit back,
 * `unknown` (an earlier attempt may have reached WeChat) spends it.
 */
export function settledEffect(effect: GrantEffect, endedIn: string): GrantEffect {
  if (effect !== 'none') return effect;
  return endedIn === 'cancelled' ? 'release' : endedIn === 'unknown' ? 'consume' : 'none';
}

/** 1 when a retry outcome gives back the attempt its claim counted (the attempt never started), else 0. */
export function attemptsGivenBack(outcome: AttemptOutcome): number {
  return outcome.status === 'retry' && outcome.unsent === true ? 1 : 0;
}

/** Column values a completed attempt writes to the message row. */
export type CompletionColumns = {
  status: MessageStatus;
  nextAttemptAt: number | null;
  lastErrcode: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  msgid: string | null;
  sentAt: number | null;
};

/** The message columns an outcome sets. */
export function completionColumns(outcome: AttemptOutcome, now: number): CompletionColumns {
  switch (outcome.status) {
    case 'sent':
      return {
        status: 'sent',
        nextAttemptAt: null,
        lastErrcode: outcome.lastErrcode ?? null,
        errorCode: outcome.errorCode ?? null,
        errorMessage: null,
        msgid: outcome.msgid ?? null,
        sentAt: now,
      };
    case 'failed':
    case 'unknown':
      return {
        status: outcome.status,
        nextAttemptAt: null,
        lastErrcode: outcome.lastErrcode ?? null,
        errorCode: outcome.errorCode,
        errorMessage: outcome.errorMessage,
        msgid: null,
        sentAt: null,
      };
    case 'retry':
      return {
        status: 'queued',
        nextAttemptAt: outcome.nextAttemptAt,
        lastErrcode: outcome.lastErrcode ?? null,
        errorCode: outcome.errorCode,
        errorMessage: outcome.errorMessage,
        msgid: null,
        sentAt: null,
      };
  }
}

/**
 * A completed attempt as one row of a grouped completion statement, in a fixed column order:
 * [id, status, next_attempt_at, last_errcode, error_code, error_message, msgid, sent_at].
 */
export function completionRow(id: string, outcome: AttemptOutcome, now: number): unknown[] {
  const c = completionColumns(outcome, now);
  return [id, c.status, c.nextAttemptAt, c.lastErrcode, c.errorCode, c.errorMessage, c.msgid, c.sentAt];
}

/** Normalised scene filter of a campaign. */
export type SceneFilter = Campaign['sceneFilter'];

/** True when `scene` passes a campaign's scene filter. */
export function sceneMatches(filter: SceneFilter, scene: number): boolean {
  if (filter === null) return true;
  if (filter.min !== undefined && scene < filter.min) return false;
  if (filter.max !== undefined && scene > filter.max) return false;
  if (filter.scenes !== undefined && !filter.scenes.includes(scene)) return false;
  return true;
}

/** Default error text of a message whose lease expired while sending. */
export const LEASE_EXPIRED_MESSAGE =
  'The sender lost its lease while sending; the request may have reached WeChat';

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const json = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));

/** A raw row as both drivers return it (snake_case columns; PG bigints arrive as strings). */
export type Row = Record<string, unknown>;

/** Maps a grants row. */
export function toGrant(r: Row): Grant {
  return {
    id: String(r.id),
    appId: String(r.app_id),
    openid: String(r.openid),
    templateId: String(r.template_id),
    scene: num(r.scene),
    state: r.state as GrantState,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    confirmedAt: num(r.confirmed_at),
    closedAt: numOrNull(r.closed_at),
  };
}

/** Maps a notification_credits row. */
export function toCredit(r: Row): NotificationCredit {
  return {
    appId: String(r.app_id),
    openid: String(r.openid),
    templateId: String(r.template_id),
    available: num(r.available),
    reserved: num(r.reserved),
    longTerm: r.long_term === true || r.long_term === 1,
    updatedAt: num(r.updated_at),
  };
}

/** Maps a messages row. */
export function toMessage(r: Row): OutboxMessage {
  return {
    id: String(r.id),
    appId: String(r.app_id),
    kind: r.kind as MessageKind,
    openid: String(r.openid),
    templateId: String(r.template_id),
    scene: numOrNull(r.scene),
    grantId: strOrNull(r.grant_id),
    payload: json(r.payload),
    status: r.status as MessageStatus,
    attempts: num(r.attempts),
    nextAttemptAt: num(r.next_attempt_at),
    leaseOwner: strOrNull(r.lease_owner),
    leaseUntil: numOrNull(r.lease_until),
    attemptStartedAt: numOrNull(r.attempt_started_at),
    lastErrcode: numOrNull(r.last_errcode),
    errorCode: strOrNull(r.error_code),
    errorMessage: strOrNull(r.error_message),
    msgid: strOrNull(r.msgid),
    campaignId: strOrNull(r.campaign_id),
    idempotencyKey: strOrNull(r.idempotency_key),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    sentAt: numOrNull(r.sent_at),
  };
}

/** Maps a campaigns row. */
export function toCampaign(r: Row): Campaign {
  return {
    id: String(r.id),
    appId: String(r.app_id),
    name: String(r.name),
    kind: r.kind as MessageKind,
    templateId: String(r.template_id),
    sceneFilter: r.scene_filter === null || r.scene_filter === undefined ? null : json(r.scene_filter),
    payload: json(r.payload),
    status: r.status as Campaign['status'],
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

/** Empty campaign counters. */
export function emptyStats(): {
  total: number;
  queued: number;
  sending: number;
  sent: number;
  failed: number;
  unknown: number;
  cancelled: number;
} {
  return { total: 0, queued: 0, sending: 0, sent: 0, failed: 0, unknown: 0, cancelled: 0 };
}

/** Counters from `(status, n)` rows, as both engines read them from their kept message counts. */
export function statsFromCounts(rows: Row[]): CampaignStats {
  const stats = emptyStats();
  for (const r of rows) {
    const n = Number(r.n);
    stats[r.status as MessageStatus] += n;
    stats.total += n;
  }
  return stats;
}
