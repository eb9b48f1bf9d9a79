// The SQLite implementation of the service store (better-sqlite3): one file, WAL, cached statements, immediate transactions.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { AppError } from '../../errors.js';
import type { Clock } from '../../util/clock.js';
import { systemClock } from '../../util/clock.js';
import {
  LEASE_EXPIRED_MESSAGE,
  IN_CANCELLED_CAMPAIGN,
  HELD_BY_LIVE_MESSAGE,
  MAY_HAVE_LEFT_CODE,
  OUTCOME_UNKNOWN_CODE,
  attemptsGivenBack,
  completionRow,
  createIdGenerator,
  decodeCursor,
  statsFromCounts,
  encodeCursor,
  grantEffect,
  pageLimit,
  settledEffect,
  toCampaign,
  toCredit,
  toGrant,
  toMessage,
} from '../common.js';
import type { GrantEffect, IdGenerator, Row } from '../common.js';
import type {
  ApiKeyRecord,
  ApiKeyRepo,
  AttemptOutcome,
  CampaignStats,
  EnqueueInput,
  EnqueueResult,
  Grant,
  GrantRepo,
  MessageFilter,
  NonceRepo,
  OutboxMessage,
  OutboxRepo,
  RecordGrantResult,
  RedeemOneTimeInput,
  RedeemOneTimeResult,
  Store,
  TemplateRecord,
  TemplateRepo,
} from '../store.js';
import { startBackgroundCheckpoint, type BackgroundCheckpoint } from './background-checkpoint.js';
import { sqliteMigrations } from './migrations/index.js';

/** SQLite result codes that concern the whole database, not one statement's data: retrying the same work now is pointless. */
const STORE_WIDE_CODES = /^SQLITE_(BUSY|LOCKED|FULL|IOERR|READONLY|CORRUPT|NOTADB|CANTOPEN|NOMEM|PERM|AUTH)/;
function isStoreWideError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && STORE_WIDE_CODES.test(code);
}

/** Options of {@link createSqliteStore}. */
export type SqliteStoreOptions = {
  /** Database file; its folder is created. `':memory:'` works for single-connection tests. @example './data/wxsub.db' */
  path: string;
  /** Clock for migration timestamps. @default systemClock */
  clock?: Clock;
  /** Id generator for rows. @default createIdGenerator() */
  ids?: IdGenerator;
  /** How long a write waits for another process's lock, in ms. @default 5000 */
  busyTimeoutMs?: number;
  /**
   * Who checkpoints the WAL. 'background': a worker thread with its own connection, every
   * `checkpointIntervalMs`, so no commit on the event loop pays for copying pages and fsyncing (the writer
   * keeps a large auto-checkpoint as a safety net for sustained write bursts). 'auto': SQLite's default
   * (the committing connection checkpoints every 1000 pages). In-memory databases have no WAL.
   * @default 'background'
   */
  checkpoint?: 'background' | 'auto';
  /** Interval of the background checkpoint, in ms. @default 500 */
  checkpointIntervalMs?: number;
};

/** Auto-checkpoint threshold (pages) of the writing connection while a background checkpointer runs. */
const SAFETY_NET_CHECKPOINT_PAGES = 10_000;
const SQLITE_DEFAULT_CHECKPOINT_PAGES = 1000;

type Stmt = Database.Statement<unknown[], Row>;

/**
 * Opens (creating if needed) a SQLite store. Call `migrate()` before use.
 * @example const store = createSqliteStore({ path: './data/wxsub.db' }); await store.migrate();
 */
export function createSqliteStore(options: SqliteStoreOptions): Store {
  let db: Database.Database | undefined;
  // Its folder cannot be made (a file is in the way), the file is no database, or it cannot be written: the first
  // pragma finds out. Either way the store is unusable, and says so with the one code.
  try {
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    db = new Database(options.path);
    db.pragma('journal_mode = WAL');
  } catch (cause) {
    db?.close();
    throw new AppError('STORE_UNAVAILABLE', { message: 'Could not open the SQLite database', cause });
  }
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  let checkpointer: BackgroundCheckpoint | null = null;
  if (options.path !== ':memory:' && (options.checkpoint ?? 'background') === 'background') {
    db.pragma(`wal_autocheckpoint = ${SAFETY_NET_CHECKPOINT_PAGES}`);
    checkpointer = startBackgroundCheckpoint(options.path, {
      ...(options.checkpointIntervalMs === undefined ? {} : { intervalMs: options.checkpointIntervalMs }),
      // Without the worker, fall back to SQLite's own checkpoints on the writing connection.
      onError: () => {
        if (db.open) db.pragma(`wal_autocheckpoint = ${SQLITE_DEFAULT_CHECKPOINT_PAGES}`);
      },
    });
  }
  const clock = options.clock ?? systemClock;
  const ids = options.ids ?? createIdGenerator(() => clock.now());

  const cache = new Map<string, Stmt>();
  const q = (sql: string): Stmt => {
    let s = cache.get(sql);
    if (s === undefined) {
      s = db.prepare<unknown[], Row>(sql);
      cache.set(sql, s);
    }
    return s;
  };
  // Immediate transactions take the write lock up front, so two processes never deadlock upgrading a read lock.
  const tx = <A extends unknown[], R>(fn: (...args: A) => R): ((...args: A) => R) => {
    const t = db.transaction(fn);
    return (...args: A) => t.immediate(...args);
  };
  const json = (v: unknown): string => JSON.stringify(v);

  let closed = false;

  // ---- grants -------------------------------------------------------------------------------------------
  const grantByKey = 'SELECT * FROM grants WHERE app_id = ? AND openid = ? AND template_id = ? AND scene = ?';
  // Unwrapped bodies, so both the public methods and the consent redeem can run them in their own transaction.
  const recordOneTimeIn = (i: {
    appId: string;
    openid: string;
    templateId: string;
    scene: number;
    now: number;
  }): RecordGrantResult => {
    // The usual confirm is a new grant: one INSERT, and the row is known without reading it back.
    const id = ids();
    const inserted = q(
      `INSERT INTO grants (id, app_id, openid, template_id, scene, state, created_at, updated_at, confirmed_at, closed_at)
       VALUES (?, ?, ?, ?, ?, 'available', ?, ?, ?, NULL) ON CONFLICT (app_id, openid, template_id, scene) DO NOTHING`,
    ).run(id, i.appId, i.openid, i.templateId, i.scene, i.now, i.now, i.now);
    if (inserted.changes === 1) {
      const grant: Grant = {
        id,
        appId: i.appId,
        openid: i.openid,
        templateId: i.templateId,
        scene: i.scene,
        state: 'available',
        createdAt: i.now,
        updatedAt: i.now,
        confirmedAt: i.now,
        closedAt: null,
      };
      return { grant, created: true };
    }
    // Confirms do not stack: an open grant only gets its confirm time; a consumed/revoked one re-opens, `reserved`
    // when a message still holds it (revoked while queued): that message goes out on the new right.
    const row = q(grantByKey).get(i.appId, i.openid, i.templateId, i.scene) as Row;
    const reopen = row.state === 'consumed' || row.state === 'revoked';
    const r = q(
      `UPDATE grants SET state = CASE WHEN NOT ? THEN state
         WHEN state = 'revoked' AND ${HELD_BY_LIVE_MESSAGE} THEN 'reserved' ELSE 'available' END,
       closed_at = CASE WHEN ? THEN NULL ELSE closed_at END, confirmed_at = ?, updated_at = ?
     WHERE id = ? RETURNING *`,
    ).get(reopen ? 1 : 0, reopen ? 1 : 0, i.now, i.now, row.id) as Row;
    return { grant: toGrant(r), created: reopen };
  };
  const recordOneTime = tx(recordOneTimeIn);
  const recordRefusalIn = (i: {
    appId: string;
    templateId: string;
    scene: number;
    openid?: string;
    now: number;
  }): void => {
    q(
      'INSERT INTO refusals (id, app_id, template_id, scene, openid, created_at) VALUES (?, ?, ?, ?, ?, ?)',
    ).run(ids(), i.appId, i.templateId, i.scene, i.openid ?? null, i.now);
  };
  const useNonceIn = (i: { nonce: string; expiresAt: number; now: number }): boolean =>
    q(
      'INSERT INTO consent_nonces (expires_at, nonce, used_at) VALUES (?, ?, ?) ON CONFLICT (expires_at, nonce) DO NOTHING',
    ).run(i.expiresAt, i.nonce, i.now).changes === 1;
  // One consent callback's writes.
  const redeemOneIn = (i: RedeemOneTimeInput): RedeemOneTimeResult => {
    if (!useNonceIn(i)) return { fresh: false };
    if (i.action === 'confirm') return { fresh: true, action: 'confirm', ...recordOneTimeIn(i) };
    recordRefusalIn(i);
    return { fresh: true, action: 'cancel' };
  };
  // The same under its own SAVEPOINT (better-sqlite3 nests transactions that way), so a failing callback rolls
  // back alone: the careful path, taken only when a batch without savepoints failed.
  const redeemOne = db.transaction(redeemOneIn);
  // Group commit: callbacks that arrive in the same event-loop turn share ONE write transaction (one commit
  // instead of one each). Every caller still resolves only after the commit that holds its writes, and items
  // run in arrival order, so a nonce replayed within a batch finds the first use.
  type PendingRedeem = {
    input: RedeemOneTimeInput;
    resolve: (r: RedeemOneTimeResult) => void;
    reject: (e: unknown) => void;
  };
  let redeemQueue: PendingRedeem[] = [];
  const redeemBatch = tx((batch: PendingRedeem[]) =>
    batch.map((p): { ok: true; value: RedeemOneTimeResult } | { ok: false; error: unknown } => {
      try {
        return { ok: true, value: redeemOne(p.input) };
      } catch (error) {
        // Errors like SQLITE_FULL roll back the whole transaction: stop, so later items do not autocommit.
        if (!db.inTransaction) throw error;
        return { ok: false, error };
      }
    }),
  );
  // The usual batch: no callback fails, so none needs a savepoint of its own (two statements fewer per callback).
  // Any error rolls the whole transaction back, and the batch runs again on the careful path.
  const redeemBatchPlain = tx((batch: PendingRedeem[]) => batch.map((p) => redeemOneIn(p.input)));
  const flushRedeems = (): void => {
    const batch = redeemQueue;
    if (batch.length === 0) return;
    redeemQueue = [];
    let outcomes: ReturnType<typeof redeemBatch>;
    try {
      const values = redeemBatchPlain(batch);
      batch.forEach((p, k) => p.resolve(values[k] as RedeemOneTimeResult));
      return;
    } catch (error) {
      // Rolled back: nothing of this batch was written. A store-wide failure (busy, full, I/O) fails the batch as
      // it stands; anything else went wrong for some callback, and the careful path below finds which.
      if (isStoreWideError(error)) {
        for (const p of batch) p.reject(error);
        return;
      }
    }
    try {
      outcomes = redeemBatch(batch);
    } catch (error) {
      for (const p of batch) p.reject(error); // nothing committed
      return;
    }
    batch.forEach((p, k) => {
      const o = outcomes[k] as (typeof outcomes)[number];
      if (o.ok) p.resolve(o.value);
      else p.reject(o.error);
    });
  };
  const redeemOneTime = (input: RedeemOneTimeInput): Promise<RedeemOneTimeResult> =>
    new Promise((resolve, reject) => {
      if (closed) {
        reject(new AppError('STORE_UNAVAILABLE', { message: 'The store is closed' }));
        return;
      }
      redeemQueue.push({ input, resolve, reject });
      if (redeemQueue.length === 1) setImmediate(flushRedeems);
    });

  const availableScenes = (appId: string, openid: string, templateId: string): number[] =>
    q(
      `SELECT scene FROM grants WHERE app_id = ? AND openid = ? AND template_id = ? AND state = 'available' ORDER BY scene`,
    )
      .all(appId, openid, templateId)
      .map((r) => Number(r.scene));
  const creditOf = (appId: string, openid: string, templateId: string): Row | undefined =>
    q('SELECT * FROM notification_credits WHERE app_id = ? AND openid = ? AND template_id = ?').get(
      appId,
      openid,
      templateId,
    );

  const grants: GrantRepo = {
    async recordOneTime(i) {
      return recordOneTime(i);
    },
    async recordRefusal(i) {
      recordRefusalIn(i);
    },
    async consume(i) {
      const r = q(
        `UPDATE grants SET state = 'consumed', closed_at = ?, updated_at = ?
         WHERE app_id = ? AND openid = ? AND template_id = ? AND scene = ? AND state = 'available'`,
      ).run(i.now, i.now, i.appId, i.openid, i.templateId, i.scene);
      return r.changes === 1;
    },
    async revoke(i) {
      const r = q(
        `UPDATE grants SET state = 'revoked', closed_at = ?, updated_at = ?
         WHERE app_id = ? AND openid = ? AND template_id = ? AND (? IS NULL OR scene = ?) AND state IN ('available', 'reserved')`,
      ).run(i.now, i.now, i.appId, i.openid, i.templateId, i.scene ?? null, i.scene ?? null);
      return r.changes;
    },
    async availableScenes(i) {
      return availableScenes(i.appId, i.openid, i.templateId);
    },
    async knownScenes(i) {
      return q('SELECT scene FROM grants WHERE app_id = ? AND openid = ? AND template_id = ? ORDER BY scene')
        .all(i.appId, i.openid, i.templateId)
        .map((r) => Number(r.scene));
    },
    async get(i) {
      const r = q(grantByKey).get(i.appId, i.openid, i.templateId, i.scene);
      return r === undefined ? null : toGrant(r);
    },
    async listAvailable(i) {
      const after = decodeCursor('g', i.cursor);
      const limit = pageLimit(i.limit);
      const where = [`app_id = ?`, `state = 'available'`];
      const args: unknown[] = [i.appId];
      if (i.openid !== undefined) {
        where.push('openid = ?');
        args.push(i.openid);
      }
      if (i.templateId !== undefined) {
        where.push('template_id = ?');
        args.push(i.templateId);
      }
      if (after !== null) {
        where.push('id > ?');
        args.push(after);
      }
      const rows = q(`SELECT * FROM grants WHERE ${where.join(' AND ')} ORDER BY id LIMIT ?`).all(
        ...args,
        limit + 1,
      );
      const items = rows.slice(0, limit).map(toGrant);
      const last = items[items.length - 1];
      return { items, nextCursor: rows.length > limit && last ? encodeCursor('g', last.id) : null };
    },
    async countRefusals(i) {
      const r =
        i.templateId === undefined
          ? q('SELECT COUNT(*) AS n FROM refusals WHERE app_id = ?').get(i.appId)
          : q('SELECT COUNT(*) AS n FROM refusals WHERE app_id = ? AND template_id = ?').get(
              i.appId,
              i.templateId,
            );
      return Number(r?.n ?? 0);
    },
    async addNotificationCredits(i) {
      const r = q(
        `INSERT INTO notification_credits AS nc
           (id, app_id, openid, template_id, available, reserved, long_term, updated_at, accepted_at)
         VALUES (@id, @appId, @openid, @templateId, @count, 0, @longTerm, @now,
           CASE WHEN @count > 0 OR @longTerm = 1 THEN @now END)
         ON CONFLICT (app_id, openid, template_id) DO UPDATE SET available = available + excluded.available,
           long_term = MAX(long_term, excluded.long_term), updated_at = excluded.updated_at,
           accepted_at = MAX(COALESCE(nc.accepted_at, excluded.accepted_at), COALESCE(excluded.accepted_at, nc.accepted_at))
         RETURNING *`,
      ).get({
        id: ids(),
        appId: i.appId,
        openid: i.openid,
        templateId: i.templateId,
        count: Math.max(0, Math.floor(i.count)),
        longTerm: i.longTerm ? 1 : 0,
        now: i.now,
      }) as Row;
      return toCredit(r);
    },
    async clearNotificationCredits(i) {
      clearCredits(i);
    },
    async getNotificationCredit(i) {
      const r = creditOf(i.appId, i.openid, i.templateId);
      return r === undefined ? null : toCredit(r);
    },
    async listForUser(i) {
      const t = i.templateId ?? null;
      const g = q(
        'SELECT * FROM grants WHERE app_id = ? AND openid = ? AND (? IS NULL OR template_id = ?) ORDER BY template_id, scene',
      ).all(i.appId, i.openid, t, t);
      const c = q(
        'SELECT * FROM notification_credits WHERE app_id = ? AND openid = ? AND (? IS NULL OR template_id = ?) ORDER BY template_id',
      ).all(i.appId, i.openid, t, t);
      return { grants: g.map(toGrant), credits: c.map(toCredit) };
    },
  };

  // ---- outbox -------------------------------------------------------------------------------------------
  const insertMessage = (m: {
    appId: string;
    kind: string;
    openid: string;
    templateId: string;
    scene: number | null;
    grantId: string | null;
    creditReserved: boolean;
    payload: unknown;
    campaignId: string | null;
    idempotencyKey: string | null;
    requestHash: string | null;
    now: number;
  }): Row =>
    q(
      `INSERT INTO messages (id, app_id, kind, openid, template_id, scene, grant_id, credit_reserved, payload, status, attempts,
         next_attempt_at, campaign_id, idempotency_key, request_hash, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?) RETURNING *`,
    ).get(
      ids(),
      m.appId,
      m.kind,
      m.openid,
      m.templateId,
      m.scene,
      m.grantId,
      m.creditReserved ? 1 : 0,
      json(m.payload),
      m.now,
      m.campaignId,
      m.idempotencyKey,
      m.requestHash,
      m.now,
      m.now,
    ) as Row;

  // Campaign rows: the payload is serialised once per batch and nothing is read back.
  const insertCampaignMessage = (
    camp: { appId: string; kind: string; templateId: string; id: string },
    payloadJson: string,
    openid: string,
    scene: number | null,
    grantId: string | null,
    creditReserved: boolean,
    now: number,
  ): void => {
    q(
      `INSERT INTO messages (id, app_id, kind, openid, template_id, scene, grant_id, credit_reserved, payload, status, attempts,
         next_attempt_at, campaign_id, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)`,
    ).run(
      ids(),
      camp.appId,
      camp.kind,
      openid,
      camp.templateId,
      scene,
      grantId,
      creditReserved ? 1 : 0,
      payloadJson,
      now,
      camp.id,
      now,
      now,
    );
  };

  const reserveCredit = (appId: string, openid: string, templateId: string, now: number): Row | undefined =>
    q(
      `UPDATE notification_credits SET
         available = CASE WHEN long_term = 1 THEN available ELSE available - 1 END,
         reserved = CASE WHEN long_term = 1 THEN reserved ELSE reserved + 1 END, updated_at = ?
       WHERE app_id = ? AND openid = ? AND template_id = ? AND (long_term = 1 OR available > 0) RETURNING long_term`,
    ).get(now, appId, openid, templateId);

  const enqueue = tx((i: EnqueueInput): EnqueueResult => {
    const key = i.idempotencyKey ?? null;
    if (key !== null) {
      const existing = q('SELECT * FROM messages WHERE app_id = ? AND idempotency_key = ?').get(i.appId, key);
      if (existing !== undefined) {
        if ((existing.request_hash ?? null) !== (i.requestHash ?? null)) {
          return { ok: false, reason: 'idempotency-conflict', existingId: String(existing.id) };
        }
        return { ok: true, message: toMessage(existing), created: false };
      }
    }
    let grantId: string | null = null;
    let scene: number | null = null;
    let creditReserved = false;
    if (i.kind === 'one-time') {
      const g =
        typeof i.scene === 'number'
          ? q(
              `UPDATE grants SET state = 'reserved', updated_at = ?
               WHERE app_id = ? AND openid = ? AND template_id = ? AND scene = ? AND state = 'available' RETURNING id, scene`,
            ).get(i.now, i.appId, i.openid, i.templateId, i.scene)
          : q(
              `UPDATE grants SET state = 'reserved', updated_at = ? WHERE id = (
                 SELECT id FROM grants WHERE app_id = ? AND openid = ? AND template_id = ? AND state = 'available'
                 ORDER BY scene LIMIT 1) RETURNING id, scene`,
            ).get(i.now, i.appId, i.openid, i.templateId);
      if (g === undefined) return noGrant(i);
      grantId = String(g.id);
      scene = Number(g.scene);
    } else {
      const c = reserveCredit(i.appId, i.openid, i.templateId, i.now);
      if (c === undefined) return noGrant(i);
      creditReserved = Number(c.long_term) !== 1;
    }
    const row = insertMessage({
      appId: i.appId,
      kind: i.kind,
      openid: i.openid,
      templateId: i.templateId,
      scene,
      grantId,
      creditReserved,
      payload: i.payload,
      campaignId: i.campaignId ?? null,
      idempotencyKey: key,
      requestHash: i.requestHash ?? null,
      now: i.now,
    });
    return { ok: true, message: toMessage(row), created: true };
  });
  const noGrant = (i: EnqueueInput): EnqueueResult => {
    const c = creditOf(i.appId, i.openid, i.templateId);
    return {
      ok: false,
      reason: 'no-grant',
      heldScenes: availableScenes(i.appId, i.openid, i.templateId),
      notificationCredits: c === undefined ? 0 : Number(c.available),
    };
  };

  // Once a user's credits are revoked (43101) or cleared, WeChat holds none: the credits live messages reserved are
  // detached, so a later release of them gives nothing back (the credit row's `reserved` is set to 0 alongside).
  const revokeCredits = (i: { appId: string; openid: string; templateId: string; now: number }): void => {
    const held = creditOf(i.appId, i.openid, i.templateId);
    q(
      `UPDATE notification_credits SET available = 0, reserved = 0, long_term = 0, updated_at = ?
       WHERE app_id = ? AND openid = ? AND template_id = ?`,
    ).run(i.now, i.appId, i.openid, i.templateId);
    if (Number(held?.reserved ?? 0) > 0)
      q(
        `UPDATE messages SET credit_reserved = 0 WHERE kind = 'notification' AND status IN ('queued', 'sending')
           AND credit_reserved = 1 AND app_id = ? AND openid = ? AND template_id = ?`,
      ).run(i.appId, i.openid, i.templateId);
  };
  const clearCredits = tx(revokeCredits);
  // The 43101s of a group, per user: the credits go unless the user accepted again after the latest of those
  // attempts started (WeChat looked at each send before that accept, which stands there). Then each of these
  // messages only drops the credit it held, and the others keep theirs.
  const revokeCreditsAfter43101 = (rows: Row[], now: number): void => {
    const users = new Map<string, { rows: Row[]; startedAt: number | null }>();
    for (const r of rows) {
      const key = JSON.stringify([r.app_id, r.openid, r.template_id]);
      const startedAt = r.attempt_started_at === null ? null : Number(r.attempt_started_at);
      const user = users.get(key);
      if (user === undefined) users.set(key, { rows: [r], startedAt });
      else {
        user.rows.push(r);
        // An attempt of unknown start counts as the latest: nothing can be shown to have come after it.
        user.startedAt =
          user.startedAt === null || startedAt === null ? null : Math.max(user.startedAt, startedAt);
      }
    }
    for (const { rows: mine, startedAt } of users.values()) {
      const [first] = mine as [Row];
      const user = {
        appId: String(first.app_id),
        openid: String(first.openid),
        templateId: String(first.template_id),
      };
      const acceptedAt = creditOf(user.appId, user.openid, user.templateId)?.accepted_at ?? null;
      if (startedAt !== null && acceptedAt !== null && Number(acceptedAt) > startedAt) {
        for (const r of mine) applyCreditEffect(r, 'consume', now);
      } else revokeCredits({ ...user, now });
    }
  };
  const applyCreditEffect = (r: Row, effect: GrantEffect, now: number): void => {
    const held = Number(r.credit_reserved) === 1 ? 1 : 0;
    if (effect === 'none' || (effect === 'consume' && held === 0)) return;
    q(
      `UPDATE notification_credits SET
         available = CASE ? WHEN 'release' THEN available + ? WHEN 'revoke' THEN 0 ELSE available END,
         reserved = MAX(reserved - ?, 0),
         long_term = CASE WHEN ? = 'revoke' THEN 0 ELSE long_term END, updated_at = ?
       WHERE app_id = ? AND openid = ? AND template_id = ?`,
    ).run(effect, held, held, effect, now, r.app_id, r.openid, r.template_id);
  };
  // Each grant transition an outcome causes, written once: for one grant or a whole group of them.
  const grantEffectSql: Record<Exclude<GrantEffect, 'none'>, string> = {
    consume: `UPDATE grants SET state = 'consumed', closed_at = @now, updated_at = @now
      WHERE id IN (SELECT value FROM json_each(@ids)) AND state = 'reserved'`,
    release: `UPDATE grants SET state = 'available', updated_at = @now
      WHERE id IN (SELECT value FROM json_each(@ids)) AND state = 'reserved'`,
    revoke: `UPDATE grants SET state = 'revoked', closed_at = @now, updated_at = @now
      WHERE id IN (SELECT value FROM json_each(@ids)) AND state IN ('reserved', 'available')`,
  };
  // A 43101 revokes its grant unless the user confirmed it again after the attempt started: WeChat looked at the
  // send before that confirm, which stands there; the grant then goes back to `available` (the release below).
  const revokeStaleGrantsSql = `UPDATE grants SET state = 'revoked', closed_at = @now, updated_at = @now
    FROM json_each(@items) AS i
    WHERE grants.id = i.value ->> 0 AND grants.state IN ('reserved', 'available')
      AND (i.value ->> 1 IS NULL OR grants.confirmed_at IS NULL OR grants.confirmed_at <= i.value ->> 1)`;
  const moveGrants = (effect: GrantEffect, grantIds: string[], now: number): void => {
    if (effect !== 'none' && grantIds.length > 0) q(grantEffectSql[effect]).run({ now, ids: json(grantIds) });
  };
  const applyGrantEffect = (r: Row, effect: GrantEffect, now: number): void => {
    if (r.kind === 'notification') return applyCreditEffect(r, effect, now);
    if (r.grant_id === null || r.grant_id === undefined) return;
    moveGrants(effect, [String(r.grant_id)], now);
  };

  // A group of outcomes in one UPDATE … FROM json_each (and one UPDATE per grant effect), instead of two statements
  // per message: each row still costs its B-tree work, but no longer a statement's fixed cost of its own.
  // A retry of a message whose campaign was cancelled meanwhile goes no further: `cancelled` with its grant back, or
  // `unknown` with it spent when an earlier attempt may have reached WeChat (settledEffect in common.ts).
  const completeGroupSql = `UPDATE messages SET
       status = CASE WHEN i.value ->> 1 = 'queued' AND messages.campaign_id IN (SELECT id FROM campaigns WHERE status = 'cancelled')
         THEN CASE WHEN i.value ->> 4 = '${MAY_HAVE_LEFT_CODE}' THEN 'unknown' ELSE 'cancelled' END ELSE i.value ->> 1 END,
       next_attempt_at = COALESCE(i.value ->> 2, messages.next_attempt_at),
       lease_owner = NULL, lease_until = NULL, last_errcode = i.value ->> 3,
       error_code = CASE WHEN i.value ->> 1 = 'queued' AND i.value ->> 4 = '${MAY_HAVE_LEFT_CODE}'
           AND messages.campaign_id IN (SELECT id FROM campaigns WHERE status = 'cancelled')
         THEN '${OUTCOME_UNKNOWN_CODE}' ELSE i.value ->> 4 END,
       error_message = i.value ->> 5, msgid = COALESCE(i.value ->> 6, messages.msgid),
       sent_at = COALESCE(i.value ->> 7, messages.sent_at), attempts = MAX(messages.attempts - (i.value ->> 8), 0),
       updated_at = ?
     FROM json_each(?) AS i
     WHERE messages.id = i.value ->> 0 AND messages.status = 'sending' AND messages.lease_owner = ?
     RETURNING messages.id, messages.status, kind, grant_id, credit_reserved, app_id, openid, template_id, attempt_started_at`;
  /** Records outcomes of distinct messages; returns the ids recorded (the others' leases were lost). */
  const completeRows = (
    owner: string,
    items: { id: string; outcome: AttemptOutcome }[],
    now: number,
  ): Set<string> => {
    const effects = new Map<string, GrantEffect>();
    const rows = items.map((it) => {
      effects.set(it.id, grantEffect(it.outcome));
      return [...completionRow(it.id, it.outcome, now), attemptsGivenBack(it.outcome)];
    });
    const done = q(completeGroupSql).all(now, json(rows), owner);
    const grantIds: Record<Exclude<GrantEffect, 'none' | 'revoke'>, string[]> = { consume: [], release: [] };
    const revokedGrants: [string, unknown][] = [];
    const completed = new Set<string>();
    const revoked: Row[] = [];
    for (const r of done) {
      const id = String(r.id);
      completed.add(id);
      const effect = settledEffect(effects.get(id) ?? 'none', String(r.status));
      if (effect === 'none') continue;
      // Revokes last: they zero what the others of the group did to the same user, in whatever order they came.
      if (r.kind === 'notification' && effect === 'revoke') revoked.push(r);
      else if (r.kind === 'notification') applyCreditEffect(r, effect, now);
      else if (r.grant_id === null || r.grant_id === undefined) continue;
      else if (effect === 'revoke') revokedGrants.push([String(r.grant_id), r.attempt_started_at ?? null]);
      else grantIds[effect].push(String(r.grant_id));
    }
    moveGrants('consume', grantIds.consume, now);
    if (revokedGrants.length > 0) {
      q(revokeStaleGrantsSql).run({ now, items: json(revokedGrants) });
      grantIds.release.push(...revokedGrants.map(([id]) => id)); // those confirmed again meanwhile
    }
    moveGrants('release', grantIds.release, now);
    revokeCreditsAfter43101(revoked, now);
    return completed;
  };
  const complete = tx((i: { id: string; owner: string; outcome: AttemptOutcome; now: number }): boolean =>
    completeRows(i.owner, [{ id: i.id, outcome: i.outcome }], i.now).has(i.id),
  );
  const completeMany = tx(
    (i: { owner: string; items: { id: string; outcome: AttemptOutcome }[]; now: number }): boolean[] => {
      // One id twice in a group would be joined once: record such a (never expected) group one item at a time.
      if (new Set(i.items.map((it) => it.id)).size !== i.items.length)
        return i.items.map((it) => completeRows(i.owner, [it], i.now).has(it.id));
      const completed = completeRows(i.owner, i.items, i.now);
      return i.items.map((it) => completed.has(it.id));
    },
  );

  const claim = tx(
    (i: {
      owner: string;
      limit: number;
      leaseMs: number;
      now: number;
      excludeAppIds?: string[];
    }): OutboxMessage[] => {
      // A dead sender's started attempts that must not go again, as they may have been delivered: notifications
      // (credits stack), and messages of a campaign cancelled meanwhile (the user of the API asked for no more sends).
      // Only a started attempt counts; one the dead sender had merely claimed is re-claimed below.
      const expired = q(
        `UPDATE messages SET status = 'unknown', lease_until = NULL, error_code = 'DELIVERY_OUTCOME_UNKNOWN', error_message = ?, updated_at = ?
       WHERE status = 'sending' AND lease_until <= ? AND attempt_started_at IS NOT NULL
         AND (kind = 'notification' OR ${IN_CANCELLED_CAMPAIGN})
       RETURNING kind, grant_id, credit_reserved, app_id, openid, template_id`,
      ).all(LEASE_EXPIRED_MESSAGE, i.now, i.now);
      for (const r of expired) applyGrantEffect(r, 'consume', i.now);
      const limit = Math.max(0, Math.floor(i.limit));
      if (limit === 0) return [];
      const excluded = json(i.excludeAppIds ?? []);
      const leaseUntil = i.now + i.leaseMs;
      // A dead sender's claims: unstarted ones simply go again (that attempt never happened, so its count and error
      // fields stand); started one-time ones are retried (grants cannot stack), flagged for the 43101 logic.
      const reclaimed = q(
        `UPDATE messages SET status = 'sending', lease_owner = ?, lease_until = ?, updated_at = ?,
         attempts = CASE WHEN attempt_started_at IS NULL THEN attempts ELSE attempts + 1 END,
         error_code = CASE WHEN attempt_started_at IS NULL THEN error_code ELSE 'DELIVERY_MAY_HAVE_LEFT' END,
         attempt_started_at = NULL
       WHERE id IN (SELECT id FROM messages WHERE status = 'sending' AND lease_until <= ?
         AND (kind = 'one-time' OR attempt_started_at IS NULL)
         AND app_id NOT IN (SELECT value FROM json_each(?)) ORDER BY lease_until, id LIMIT ?) RETURNING *`,
      ).all(i.owner, leaseUntil, i.now, i.now, excluded, limit);
      const rest = limit - reclaimed.length;
      // No due message here belongs to a cancelled campaign: the cancel and every completion are serialized write
      // transactions, and a completion after the cancel ends a retry itself (completeGroupSql). PostgreSQL, where a
      // retry can race the cancel, checks in its claim instead; here the hot path is spared that lookup.
      const fresh =
        rest <= 0
          ? []
          : q(
              `UPDATE messages SET status = 'sending', attempts = attempts + 1, lease_owner = ?, lease_until = ?, updated_at = ?,
               attempt_started_at = NULL
             WHERE id IN (SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= ?
               AND app_id NOT IN (SELECT value FROM json_each(?)) ORDER BY next_attempt_at, id LIMIT ?) RETURNING *`,
            ).all(i.owner, leaseUntil, i.now, i.now, excluded, rest);
      return [...reclaimed, ...fresh]
        .map(toMessage)
        .sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || (a.id < b.id ? -1 : 1));
    },
  );

  // From the trigger-kept counts (migration 6): a few rows per app and campaign, never the messages themselves.
  const countMessages = (f: { appId?: string; campaignId?: string }): CampaignStats => {
    const where: string[] = [];
    const args: unknown[] = [];
    if (f.appId !== undefined) {
      where.push('app_id = ?');
      args.push(f.appId);
    }
    if (f.campaignId !== undefined) {
      where.push('campaign_id = ?');
      args.push(f.campaignId);
    }
    const sql = `SELECT status, SUM(n) AS n FROM message_counts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} GROUP BY status`;
    return statsFromCounts(q(sql).all(...args));
  };

  const enqueueBatch = tx((i: { campaignId: string; batchSize: number; now: number }): number => {
    const c = q('SELECT * FROM campaigns WHERE id = ?').get(i.campaignId);
    if (c === undefined || c.status !== 'enqueuing') return 0;
    const camp = toCampaign(c);
    const payloadJson = String(c.payload);
    const after = c.progress_openid === null ? '' : String(c.progress_openid);
    const size = Math.max(1, Math.floor(i.batchSize));
    let n = 0;
    let last: string | null = null;
    if (camp.kind === 'one-time') {
      const f = camp.sceneFilter;
      const scenes = f?.scenes === undefined ? null : json(f.scenes);
      // One message per holder: the lowest matching available scene of each openid (SQLite takes `id` from the MIN row).
      const rows = q(
        `SELECT openid, MIN(scene) AS scene, id FROM grants
         WHERE app_id = ? AND template_id = ? AND state = 'available' AND openid > ? AND scene >= ? AND scene <= ?
           AND (? IS NULL OR scene IN (SELECT value FROM json_each(?)))
         GROUP BY openid ORDER BY openid LIMIT ?`,
      ).all(camp.appId, camp.templateId, after, f?.min ?? -1, f?.max ?? 2_147_483_647, scenes, scenes, size);
      if (rows.length > 0) {
        last = String((rows[rows.length - 1] as Row).openid);
        // Reserve the batch's grants in one statement, then insert its messages in one (ids in openid order).
        const reserved = new Set(
          q(
            `UPDATE grants SET state = 'reserved', updated_at = ? WHERE id IN (SELECT value FROM json_each(?))
             AND state = 'available' RETURNING id`,
          )
            .all(i.now, json(rows.map((g) => g.id)))
            .map((r) => String(r.id)),
        );
        const messages = rows
          .filter((g) => reserved.has(String(g.id)))
          .map((g) => [ids(), String(g.openid), Number(g.scene), String(g.id)]);
        if (messages.length > 0)
          q(
            `INSERT INTO messages (id, app_id, kind, openid, template_id, scene, grant_id, credit_reserved, payload, status,
               attempts, next_attempt_at, campaign_id, created_at, updated_at)
             SELECT m.value ->> 0, @app, 'one-time', m.value ->> 1, @template, m.value ->> 2, m.value ->> 3, 0, @payload,
               'queued', 0, @now, @campaign, @now, @now
             FROM json_each(@messages) AS m ORDER BY m.key`,
          ).run({
            app: camp.appId,
            template: camp.templateId,
            payload: payloadJson,
            now: i.now,
            campaign: camp.id,
            messages: json(messages),
          });
        n = messages.length;
      }
    } else {
      const rows = q(
        `SELECT openid FROM notification_credits WHERE app_id = ? AND template_id = ? AND openid > ? AND (long_term = 1 OR available > 0)
         ORDER BY openid LIMIT ?`,
      ).all(camp.appId, camp.templateId, after, size);
      for (const r of rows) {
        last = String(r.openid);
        const res = reserveCredit(camp.appId, last, camp.templateId, i.now);
        if (res === undefined) continue;
        insertCampaignMessage(camp, payloadJson, last, null, null, Number(res.long_term) !== 1, i.now);
        n++;
      }
    }
    if (last === null) {
      q(`UPDATE campaigns SET status = 'running', updated_at = ? WHERE id = ?`).run(i.now, camp.id);
    } else {
      q('UPDATE campaigns SET progress_openid = ?, enqueued = enqueued + ?, updated_at = ? WHERE id = ?').run(
        last,
        n,
        i.now,
        camp.id,
      );
    }
    return n;
  });

  const cancelCampaign = tx((i: { id: string; now: number }): { cancelled: boolean; messages: number } => {
    const changed = q(
      `UPDATE campaigns SET status = 'cancelled', updated_at = ? WHERE id = ? AND status IN ('enqueuing', 'running')`,
    ).run(i.now, i.id).changes;
    // Already done or cancelled (or no such campaign): nothing to do, and the caller says so.
    if (changed === 0) return { cancelled: false, messages: 0 };
    // A message whose earlier attempt may have reached WeChat ends `unknown`, its grant or credit spent, as its retry would.
    const rows = q(
      `UPDATE messages SET status = CASE WHEN error_code = '${MAY_HAVE_LEFT_CODE}' THEN 'unknown' ELSE 'cancelled' END,
         error_code = CASE WHEN error_code = '${MAY_HAVE_LEFT_CODE}' THEN '${OUTCOME_UNKNOWN_CODE}' ELSE error_code END,
         lease_owner = NULL, lease_until = NULL, updated_at = ?
       WHERE campaign_id = ? AND (status = 'queued' OR (status = 'sending' AND attempt_started_at IS NULL))
       RETURNING kind, status, grant_id, credit_reserved, app_id, openid, template_id`,
    ).all(i.now, i.id);
    for (const r of rows) applyGrantEffect(r, r.status === 'cancelled' ? 'release' : 'consume', i.now);
    return { cancelled: true, messages: rows.length };
  });

  const outbox: OutboxRepo = {
    async enqueueMessage(i) {
      return enqueue(i);
    },
    async claim(i) {
      return claim(i);
    },
    async complete(i) {
      return complete(i);
    },
    async completeMany(i) {
      return i.items.length === 0 ? [] : completeMany(i);
    },
    async markAttemptStarted(i) {
      if (i.ids.length === 0) return [];
      const rows = q(
        `UPDATE messages SET attempt_started_at = ? WHERE id IN (SELECT value FROM json_each(?)) AND lease_owner = ? AND status = 'sending'
           AND lease_until > ?
         RETURNING id`,
      ).all(i.now, json(i.ids), i.owner, i.now);
      if (rows.length === i.ids.length) return i.ids.map(() => true);
      const marked = new Set(rows.map((r) => String(r.id)));
      return i.ids.map((id) => marked.has(id));
    },
    async extendLease(i) {
      if (i.ids.length === 0) return;
      q(
        `UPDATE messages SET lease_until = ? WHERE id IN (SELECT value FROM json_each(?)) AND lease_owner = ? AND status = 'sending'`,
      ).run(i.leaseUntil, json(i.ids), i.owner);
    },
    async getMessage(id) {
      const r = q('SELECT * FROM messages WHERE id = ?').get(id);
      return r === undefined ? null : toMessage(r);
    },
    async listMessages(f: MessageFilter) {
      const before = decodeCursor('m', f.cursor);
      const limit = pageLimit(f.limit);
      const where: string[] = [];
      const args: unknown[] = [];
      for (const [col, v] of [
        ['app_id', f.appId],
        ['status', f.status],
        ['template_id', f.templateId],
        ['openid', f.openid],
        ['campaign_id', f.campaignId],
      ] as const) {
        if (v !== undefined) {
          where.push(`${col} = ?`);
          args.push(v);
        }
      }
      if (before !== null) {
        where.push('id < ?');
        args.push(before);
      }
      const rows = q(
        `SELECT * FROM messages ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`,
      ).all(...args, limit + 1);
      const items = rows.slice(0, limit).map(toMessage);
      const last = items[items.length - 1];
      return { items, nextCursor: rows.length > limit && last ? encodeCursor('m', last.id) : null };
    },
    async countMessages(f) {
      return countMessages(f);
    },
    async createCampaign(i) {
      const r = q(
        `INSERT INTO campaigns (id, app_id, name, kind, template_id, scene_filter, payload, status, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'enqueuing', ?, ?) RETURNING *`,
      ).get(
        ids(),
        i.appId,
        i.name,
        i.kind,
        i.templateId,
        i.sceneFilter === null ? null : json(i.sceneFilter),
        json(i.payload),
        i.now,
        i.now,
      ) as Row;
      return toCampaign(r);
    },
    async enqueueCampaignBatch(i) {
      // A batch whose candidates were all taken concurrently advances the cursor; keep going until work or the end.
      for (;;) {
        const before = q('SELECT progress_openid FROM campaigns WHERE id = ?').get(i.campaignId);
        const n = enqueueBatch(i);
        if (n > 0) return n;
        const after = q('SELECT status, progress_openid FROM campaigns WHERE id = ?').get(i.campaignId);
        if (
          after === undefined ||
          after.status !== 'enqueuing' ||
          after.progress_openid === before?.progress_openid
        )
          return 0;
      }
    },
    async getCampaign(id) {
      const r = q('SELECT * FROM campaigns WHERE id = ?').get(id);
      return r === undefined
        ? null
        : { ...toCampaign(r), stats: countMessages({ appId: String(r.app_id), campaignId: id }) };
    },
    async cancelCampaign(i) {
      return cancelCampaign(i);
    },
    async listEnqueuingCampaigns() {
      return q(`SELECT * FROM campaigns WHERE status = 'enqueuing' ORDER BY id`).all().map(toCampaign);
    },
    async listRunningCampaigns() {
      return q(`SELECT * FROM campaigns WHERE status = 'running' ORDER BY id`).all().map(toCampaign);
    },
    async finishCampaignIfDrained(i) {
      const r = q(
        `UPDATE campaigns SET status = 'done', updated_at = ? WHERE id = ? AND status = 'running'
           AND NOT EXISTS (SELECT 1 FROM message_counts WHERE app_id = campaigns.app_id AND campaign_id = ?
             AND status IN ('queued', 'sending') AND n > 0)`,
      ).run(i.now, i.id, i.id);
      return r.changes === 1;
    },
    async pauseApp(i) {
      q(
        `INSERT INTO app_pauses (app_id, until, reason) VALUES (?, ?, ?)
         ON CONFLICT (app_id) DO UPDATE SET until = MAX(app_pauses.until, excluded.until),
           reason = CASE WHEN excluded.until >= app_pauses.until THEN excluded.reason ELSE app_pauses.reason END`,
      ).run(i.appId, i.until, i.reason);
    },
    async pausedApps(now) {
      return q('SELECT app_id, until, reason FROM app_pauses WHERE until > ? ORDER BY app_id')
        .all(now)
        .map((r) => ({ appId: String(r.app_id), until: Number(r.until), reason: String(r.reason) }));
    },
  };

  // ---- templates, keys, nonces ---------------------------------------------------------------------------
  const toTemplate = (r: Row): TemplateRecord => {
    const t: TemplateRecord = {
      appId: String(r.app_id),
      templateId: String(r.template_id),
      kind: r.kind as TemplateRecord['kind'],
      title: String(r.title),
      keywords: JSON.parse(String(r.keywords)) as TemplateRecord['keywords'],
    };
    if (r.type !== null && r.type !== undefined) t.type = Number(r.type);
    return t;
  };
  const templates: TemplateRepo = {
    async upsert(t) {
      q(
        `INSERT INTO templates (app_id, template_id, kind, title, keywords, type) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (app_id, template_id) DO UPDATE SET kind = excluded.kind, title = excluded.title,
           keywords = excluded.keywords, type = excluded.type`,
      ).run(t.appId, t.templateId, t.kind, t.title, json(t.keywords), t.type ?? null);
    },
    async get(appId, templateId) {
      const r = q('SELECT * FROM templates WHERE app_id = ? AND template_id = ?').get(appId, templateId);
      return r === undefined ? null : toTemplate(r);
    },
    async list(appId) {
      return q('SELECT * FROM templates WHERE app_id = ? ORDER BY template_id').all(appId).map(toTemplate);
    },
  };

  const toKey = (r: Row): ApiKeyRecord => ({
    id: String(r.id),
    name: String(r.name),
    createdAt: Number(r.created_at),
    revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
  });
  const apiKeys: ApiKeyRepo = {
    async create(i) {
      const r = q(
        'INSERT INTO api_keys (id, name, key_hash, created_at) VALUES (?, ?, ?, ?) RETURNING *',
      ).get(i.id, i.name, i.keyHash, i.now) as Row;
      return toKey(r);
    },
    async findByHash(keyHash) {
      const r = q('SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL').get(keyHash);
      return r === undefined ? null : toKey(r);
    },
    async revoke(id, now) {
      q('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id);
    },
    async list() {
      return q('SELECT * FROM api_keys ORDER BY created_at, id').all().map(toKey);
    },
  };

  const nonces: NonceRepo = {
    async use(i) {
      return useNonceIn(i);
    },
    async redeemOneTime(i) {
      return redeemOneTime(i);
    },
    async purgeExpired(now, limit) {
      // The oldest first, along the key (migration 7): reads only what it deletes.
      if (limit === undefined) return q('DELETE FROM consent_nonces WHERE expires_at <= ?').run(now).changes;
      return q(
        `DELETE FROM consent_nonces WHERE (expires_at, nonce) IN
           (SELECT expires_at, nonce FROM consent_nonces WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)`,
      ).run(now, Math.max(0, Math.floor(limit))).changes;
    },
  };

  // ---- migrations ----------------------------------------------------------------------------------------
  const migrate = tx((): number => {
    db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
    );
    const done = new Set(
      db
        .prepare<[], { id: number }>('SELECT id FROM schema_migrations')
        .all()
        .map((r) => r.id),
    );
    let applied = 0;
    for (const m of sqliteMigrations) {
      if (done.has(m.id)) continue;
      try {
        db.exec(m.sql);
      } catch (cause) {
        throw new AppError('STORE_MIGRATION_FAILED', {
          details: { engine: 'sqlite', id: m.id, name: m.name },
          cause,
        });
      }
      db.prepare('INSERT INTO schema_migrations (id, name, applied_at) VALUES (?, ?, ?)').run(
        m.id,
        m.name,
        clock.now(),
      );
      applied++;
    }
    return applied;
  });

  return {
    engine: 'sqlite',
    grants,
    outbox,
    templates,
    apiKeys,
    nonces,
    async migrate() {
      const n = migrate();
      cache.clear();
      return n;
    },
    async close() {
      if (closed) return;
      closed = true;
      if (redeemQueue.length > 0) flushRedeems(); // callers waiting for a commit get it before the close
      cache.clear();
      await checkpointer?.stop();
      db.close();
    },
  };
}
