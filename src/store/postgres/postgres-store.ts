// The PostgreSQL implementation of the service store (pg Pool): row locks, SKIP LOCKED claims, single-statement CTEs.
import { createHash } from 'node:crypto';
import pg from 'pg';
import { AppError } from '../../errors.js';
import type { Clock } from '../../util/clock.js';
import { systemClock } from '../../util/clock.js';
import {
  LEASE_EXPIRED_MESSAGE,
  IN_CANCELLED_CAMPAIGN,
  HELD_BY_LIVE_MESSAGE,
  MAY_HAVE_LEFT_CODE,
  OUTCOME_UNKNOWN_CODE,
  PG_CONNECT_TIMEOUT_MS,
  attemptsGivenBack,
  completionRow,
  createIdGenerator,
  decodeCursor,
  statsFromCounts,
  encodeCursor,
  grantEffect,
  pageLimit,
  toCampaign,
  toCredit,
  toGrant,
  toMessage,
} from '../common.js';
import type { IdGenerator, Row } from '../common.js';
import type {
  ApiKeyRecord,
  ApiKeyRepo,
  AttemptOutcome,
  CampaignStats,
  EnqueueInput,
  EnqueueResult,
  GrantRepo,
  MessageFilter,
  NonceRepo,
  OutboxRepo,
  RecordGrantResult,
  RedeemOneTimeResult,
  Store,
  TemplateRecord,
  TemplateRepo,
} from '../store.js';
import { postgresMigrations } from './migrations/index.js';

/** Options of {@link createPostgresStore}: give a connection URL or an existing pool. */
export type PostgresStoreOptions = (
  | {
      /** Connection string. @example 'postgres://wxsub@127.0.0.1:5432/wxsub' */
      url: string;
      /** Connections in the pool. @default 10 */
      poolSize?: number;
    }
  | {
      /** A pool the caller owns; `close()` leaves it open. */
      pool: pg.Pool;
    }
) & {
  /** Clock for migration timestamps. @default systemClock */
  clock?: Clock;
  /** Id generator for rows. @default createIdGenerator() */
  ids?: IdGenerator;
};

type Queryable = pg.Pool | pg.PoolClient;

/** Campaign size from which finishing its enqueue refreshes planner statistics (see `enqueueCampaignBatch`). */
const BULK_ANALYZE_ROWS = 1000;

/** Advisory lock key that serialises concurrent `migrate()` calls (any 64-bit constant unique to wxsub). */
const MIGRATION_LOCK = 7_465_803_921;
/** Advisory lock key held by the one instance folding message count deltas (see `foldMessageCounts`). */
const FOLD_LOCK = 7_465_803_922;

// State tests of statements that name their rows by id. Written as an expression over the column (the `|| ''`
// idiom), they cannot be answered from the partial indexes on that state (messages_sending, grants_available), so
// the planner looks the few given ids up by primary key. Given the bare `status = 'sending'`, it chose to scan the
// whole partial index and join the ids to it whenever its statistics underrated that state, as they do while a
// campaign churns the outbox faster than (auto)analyze runs. With the index's dead entries, one pipeline bench run
// (40,000 messages, pg_stat_statements) spent 188 µs of PostgreSQL time per message in the completion alone.
const BY_ID_SENDING = `(messages.status || '') = 'sending'`;

/**
 * Creates a PostgreSQL store. Call `migrate()` before use.
 * @example const store = createPostgresStore({ url: process.env.DATABASE_URL! }); await store.migrate();
 */
export function createPostgresStore(options: PostgresStoreOptions): Store {
  const ownsPool = !('pool' in options);
  const pool: pg.Pool =
    'pool' in options
      ? options.pool
      : new pg.Pool({
          connectionString: options.url,
          max: options.poolSize ?? 10,
          // A server that takes the connection but never answers (a partition) fails instead of hanging.
          connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
        });
  // An idle client's error (e.g. the server restarted) must not crash the process; the next query reconnects.
  const onError = (): void => {};
  if (ownsPool) pool.on('error', onError);
  const clock = options.clock ?? systemClock;
  const ids = options.ids ?? createIdGenerator(() => clock.now());

  // Named statements are parsed once per connection; the name derives from the text so pools can be shared.
  const names = new Map<string, string>();
  const run = async (
    c: Queryable,
    query: { name?: string; text: string; values: unknown[] },
  ): Promise<Row[]> => {
    try {
      return (await c.query<Row>(query)).rows;
    } catch (err) {
      throw wrap(err);
    }
  };
  const q = (c: Queryable, text: string, values: unknown[] = []): Promise<Row[]> => {
    let name = names.get(text);
    if (name === undefined) {
      name = `wxsub_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
      names.set(text, name);
    }
    return run(c, { name, text, values });
  };
  // An unnamed statement, planned on every call for the values it is given. For statements whose best plan depends
  // on them: after five runs PostgreSQL may switch a named statement to a generic plan, costed for an unknown `now`
  // and LIMIT, and keep it while the table grows under it (the claim did: read and sorted every queued row).
  const qPlanned = (c: Queryable, text: string, values: unknown[]): Promise<Row[]> =>
    run(c, { text, values });
  const one = async (c: Queryable, text: string, values: unknown[] = []): Promise<Row | undefined> =>
    (await q(c, text, values))[0];
  const tx = async <T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> => {
    let c: pg.PoolClient;
    try {
      c = await pool.connect();
    } catch (err) {
      throw wrap(err);
    }
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  };
  const json = (v: unknown): string => JSON.stringify(v);

  // ---- grants -------------------------------------------------------------------------------------------
  // On the pool (autocommit) or on a transaction's client, so the consent redeem can share its transaction.
  const recordOneTimeOn = async (
    c: Queryable,
    i: { appId: string; openid: string; templateId: string; scene: number; now: number },
  ): Promise<RecordGrantResult> => {
    const key = [i.appId, i.openid, i.templateId, i.scene];
    // Two statements instead of one upsert so we can tell "re-opened" from "already open"; loop on races.
    // A grant revoked while a message held it re-opens for that message (`reserved`): it goes out on the new right,
    // which confirms do not stack, so no second message may take it.
    for (let attempt = 0; attempt < 5; attempt++) {
      const reopened = await one(
        c,
        `UPDATE grants SET state = CASE WHEN state = 'revoked' AND ${HELD_BY_LIVE_MESSAGE} THEN 'reserved' ELSE 'available' END,
           closed_at = NULL, confirmed_at = $5, updated_at = $5
         WHERE app_id = $1 AND openid = $2 AND template_id = $3 AND scene = $4 AND state IN ('consumed', 'revoked') RETURNING *`,
        [...key, i.now],
      );
      if (reopened) return { grant: toGrant(reopened), created: true };
      const r = await one(
        c,
        `INSERT INTO grants (id, app_id, openid, template_id, scene, state, created_at, updated_at, confirmed_at)
         VALUES ($6, $1, $2, $3, $4, 'available', $5, $5, $5)
         ON CONFLICT ON CONSTRAINT grants_key DO UPDATE SET confirmed_at = EXCLUDED.confirmed_at, updated_at = EXCLUDED.updated_at
           WHERE grants.state IN ('available', 'reserved')
         RETURNING *, (xmax = 0) AS inserted`,
        [...key, i.now, ids()],
      );
      if (r) return { grant: toGrant(r), created: r.inserted === true };
    }
    throw new AppError('STORE_UNAVAILABLE', {
      message: 'The grant kept changing while a confirm was recorded',
      retryable: true,
    });
  };
  const recordRefusalOn = async (
    c: Queryable,
    i: { appId: string; templateId: string; scene: number; openid?: string; now: number },
  ): Promise<void> => {
    await q(
      c,
      'INSERT INTO refusals (id, app_id, template_id, scene, openid, created_at) VALUES ($1, $2, $3, $4, $5, $6)',
      [ids(), i.appId, i.templateId, i.scene, i.openid ?? null, i.now],
    );
  };
  const useNonceOn = async (c: Queryable, i: { nonce: string; expiresAt: number; now: number }) =>
    (
      await q(
        c,
        'INSERT INTO consent_nonces (expires_at, nonce, used_at) VALUES ($1, $2, $3) ON CONFLICT (expires_at, nonce) DO NOTHING RETURNING 1',
        [i.expiresAt, i.nonce, i.now],
      )
    ).length === 1;

  const grants: GrantRepo = {
    async recordOneTime(i) {
      return recordOneTimeOn(pool, i);
    },
    async recordRefusal(i) {
      await recordRefusalOn(pool, i);
    },
    async consume(i) {
      const r = await q(
        pool,
        `UPDATE grants SET state = 'consumed', closed_at = $5, updated_at = $5
         WHERE app_id = $1 AND openid = $2 AND template_id = $3 AND scene = $4 AND state = 'available' RETURNING 1`,
        [i.appId, i.openid, i.templateId, i.scene, i.now],
      );
      return r.length === 1;
    },
    async revoke(i) {
      const r = await q(
        pool,
        `UPDATE grants SET state = 'revoked', closed_at = $5, updated_at = $5
         WHERE app_id = $1 AND openid = $2 AND template_id = $3 AND ($4::int IS NULL OR scene = $4) AND state IN ('available', 'reserved')
         RETURNING 1`,
        [i.appId, i.openid, i.templateId, i.scene ?? null, i.now],
      );
      return r.length;
    },
    async availableScenes(i) {
      return availableScenes(i.appId, i.openid, i.templateId);
    },
    async knownScenes(i) {
      const rows = await q(
        pool,
        'SELECT scene FROM grants WHERE app_id = $1 AND openid = $2 AND template_id = $3 ORDER BY scene',
        [i.appId, i.openid, i.templateId],
      );
      return rows.map((r) => Number(r.scene));
    },
    async get(i) {
      const r = await one(
        pool,
        'SELECT * FROM grants WHERE app_id = $1 AND openid = $2 AND template_id = $3 AND scene = $4',
        [i.appId, i.openid, i.templateId, i.scene],
      );
      return r ? toGrant(r) : null;
    },
    async listAvailable(i) {
      const after = decodeCursor('g', i.cursor);
      const limit = pageLimit(i.limit);
      const where = [`app_id = $1`, `state = 'available'`];
      const args: unknown[] = [i.appId];
      const add = (cond: string, v: unknown) => {
        args.push(v);
        where.push(cond.replace('?', `$${args.length}`));
      };
      if (i.openid !== undefined) add('openid = ?', i.openid);
      if (i.templateId !== undefined) add('template_id = ?', i.templateId);
      if (after !== null) add('id > ?', after);
      args.push(limit + 1);
      const rows = await q(
        pool,
        `SELECT * FROM grants WHERE ${where.join(' AND ')} ORDER BY id LIMIT $${args.length}`,
        args,
      );
      const items = rows.slice(0, limit).map(toGrant);
      const last = items[items.length - 1];
      return { items, nextCursor: rows.length > limit && last ? encodeCursor('g', last.id) : null };
    },
    async countRefusals(i) {
      const r = await one(
        pool,
        'SELECT count(*)::int AS n FROM refusals WHERE app_id = $1 AND ($2::text IS NULL OR template_id = $2)',
        [i.appId, i.templateId ?? null],
      );
      return Number(r?.n ?? 0);
    },
    async addNotificationCredits(i) {
      const r = await one(
        pool,
        `INSERT INTO notification_credits AS nc
           (id, app_id, openid, template_id, available, reserved, long_term, updated_at, accepted_at)
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7, CASE WHEN $5 > 0 OR $6 THEN $7::bigint END)
         ON CONFLICT (app_id, openid, template_id) DO UPDATE SET available = nc.available + EXCLUDED.available,
           long_term = nc.long_term OR EXCLUDED.long_term, updated_at = EXCLUDED.updated_at,
           accepted_at = GREATEST(nc.accepted_at, EXCLUDED.accepted_at)
         RETURNING *`,
        [
          ids(),
          i.appId,
          i.openid,
          i.templateId,
          Math.max(0, Math.floor(i.count)),
          i.longTerm === true,
          i.now,
        ],
      );
      return toCredit(r as Row);
    },
    async clearNotificationCredits(i) {
      // Locks the credit row first, so the detaching statement sees every message that reserved one before it.
      await tx(async (c) => {
        const [held] = await q(
          c,
          `UPDATE notification_credits nc SET available = 0, reserved = 0, long_term = false, updated_at = $4
           FROM (SELECT id, reserved FROM notification_credits WHERE app_id = $1 AND openid = $2 AND template_id = $3 FOR UPDATE) old
           WHERE nc.id = old.id RETURNING old.reserved`,
          [i.appId, i.openid, i.templateId, i.now],
        );
        if (Number(held?.reserved ?? 0) > 0)
          await q(c, detachCreditsSql, [[i.appId], [i.openid], [i.templateId]]);
      });
    },
    async getNotificationCredit(i) {
      const r = await creditOf(i.appId, i.openid, i.templateId);
      return r ? toCredit(r) : null;
    },
    async listForUser(i) {
      const args = [i.appId, i.openid, i.templateId ?? null];
      const [g, c] = await Promise.all([
        q(
          pool,
          'SELECT * FROM grants WHERE app_id = $1 AND openid = $2 AND ($3::text IS NULL OR template_id = $3) ORDER BY template_id, scene',
          args,
        ),
        q(
          pool,
          'SELECT * FROM notification_credits WHERE app_id = $1 AND openid = $2 AND ($3::text IS NULL OR template_id = $3) ORDER BY template_id',
          args,
        ),
      ]);
      return { grants: g.map(toGrant), credits: c.map(toCredit) };
    },
  };
  const availableScenes = async (appId: string, openid: string, templateId: string): Promise<number[]> =>
    (
      await q(
        pool,
        `SELECT scene FROM grants WHERE app_id = $1 AND openid = $2 AND template_id = $3 AND state = 'available' ORDER BY scene`,
        [appId, openid, templateId],
      )
    ).map((r) => Number(r.scene));
  const creditOf = (appId: string, openid: string, templateId: string): Promise<Row | undefined> =>
    one(pool, 'SELECT * FROM notification_credits WHERE app_id = $1 AND openid = $2 AND template_id = $3', [
      appId,
      openid,
      templateId,
    ]);

  // ---- outbox -------------------------------------------------------------------------------------------
  const insertCols = `INSERT INTO messages (id, app_id, kind, openid, template_id, scene, grant_id, credit_reserved, payload, status,
      attempts, next_attempt_at, campaign_id, idempotency_key, request_hash, created_at, updated_at)`;
  // Reserve + insert in ONE statement: if nothing is reserved nothing is inserted. An idempotency-key conflict
  // inserts nothing and the caller rolls the reservation back. A row lock is not a reservation: another
  // transaction may hold one without taking the grant (a consent re-confirm updates confirmed_at), so `wait`
  // locks without SKIP LOCKED, waits for that transaction, and re-checks the state on the row it left.
  const enqueueOneTimeSql = (lock: 'skip' | 'wait') => `WITH g AS (
      UPDATE grants SET state = 'reserved', updated_at = $7 WHERE state = 'available' AND id = (
        SELECT id FROM grants WHERE app_id = $1 AND openid = $2 AND template_id = $3 AND state = 'available'
          AND ($4::int IS NULL OR scene = $4) ORDER BY scene LIMIT 1 FOR UPDATE${lock === 'skip' ? ' SKIP LOCKED' : ''})
      RETURNING id, scene)
    ${insertCols}
    SELECT $5, $1, 'one-time', $2, $3, g.scene, g.id, false, $6::jsonb, 'queued', 0, $7, $8, $9, $10, $7, $7 FROM g
    ON CONFLICT (app_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *`;
  const enqueueOneTimeSkipSql = enqueueOneTimeSql('skip');
  const enqueueOneTimeWaitSql = enqueueOneTimeSql('wait');
  const enqueueNotificationSql = `WITH c AS (
      UPDATE notification_credits SET available = CASE WHEN long_term THEN available ELSE available - 1 END,
        reserved = CASE WHEN long_term THEN reserved ELSE reserved + 1 END, updated_at = $7
      WHERE app_id = $1 AND openid = $2 AND template_id = $3 AND (long_term OR available > 0) AND $4::int IS NULL
      RETURNING long_term)
    ${insertCols}
    SELECT $5, $1, 'notification', $2, $3, NULL, NULL, NOT c.long_term, $6::jsonb, 'queued', 0, $7, $8, $9, $10, $7, $7 FROM c
    ON CONFLICT (app_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *`;

  const byKey = (c: Queryable, appId: string, key: string) =>
    one(c, 'SELECT * FROM messages WHERE app_id = $1 AND idempotency_key = $2', [appId, key]);
  const idempotentAnswer = (existing: Row, i: EnqueueInput): EnqueueResult =>
    (existing.request_hash ?? null) !== (i.requestHash ?? null)
      ? { ok: false, reason: 'idempotency-conflict', existingId: String(existing.id) }
      : { ok: true, message: toMessage(existing), created: false };
  const noGrant = async (i: EnqueueInput): Promise<EnqueueResult> => {
    const [heldScenes, c] = await Promise.all([
      availableScenes(i.appId, i.openid, i.templateId),
      creditOf(i.appId, i.openid, i.templateId),
    ]);
    return { ok: false, reason: 'no-grant', heldScenes, notificationCredits: c ? Number(c.available) : 0 };
  };

  const enqueueMessage = async (i: EnqueueInput): Promise<EnqueueResult> => {
    const key = i.idempotencyKey ?? null;
    const scene = i.kind === 'one-time' && typeof i.scene === 'number' ? i.scene : null;
    const args = [
      i.appId,
      i.openid,
      i.templateId,
      scene,
      ids(),
      json(i.payload),
      i.now,
      i.campaignId ?? null,
      key,
      i.requestHash ?? null,
    ];
    // One scene: wait for a lock on its grant. Any scene: a grant nobody holds locked, else wait for a locked one.
    const insert = async (c: Queryable): Promise<Row | undefined> => {
      if (i.kind !== 'one-time') return one(c, enqueueNotificationSql, args);
      if (scene !== null) return one(c, enqueueOneTimeWaitSql, args);
      return (await one(c, enqueueOneTimeSkipSql, args)) ?? one(c, enqueueOneTimeWaitSql, args);
    };
    if (key === null) {
      const row = await insert(pool);
      return row ? { ok: true, message: toMessage(row), created: true } : noGrant(i);
    }
    const existing = await byKey(pool, i.appId, key);
    if (existing) return idempotentAnswer(existing, i);
    // Requests with one key run one after another (a transaction-scoped advisory lock on the key), and each looks
    // for the key's message again once it holds the lock. Without that, concurrent retries of one request would each
    // reserve a grant (SKIP LOCKED hands them different scenes) before the key's unique index let one of them
    // insert: the winner might not hold the lowest scene, and another request for the same user, racing them,
    // could find every grant reserved by a retry that was about to roll back and be refused for no grant.
    const outcome = await tx(async (c): Promise<{ row: Row } | { existing: Row }> => {
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [i.appId, key]);
      const prior = await byKey(c, i.appId, key);
      if (prior) return { existing: prior };
      const r = await insert(c);
      if (!r) throw ROLLBACK;
      return { row: r };
    }).catch((err: unknown) => {
      if (err === ROLLBACK) return undefined;
      throw err;
    });
    if (outcome === undefined) {
      // No grant (the key's unique index stays the last line: a row there means another writer got in first).
      const winner = await byKey(pool, i.appId, key);
      return winner ? idempotentAnswer(winner, i) : noGrant(i);
    }
    if ('existing' in outcome) return idempotentAnswer(outcome.existing, i);
    return { ok: true, message: toMessage(outcome.row), created: true };
  };

  // Expired leases: a started notification may have reached WeChat (credits stack) → unknown, credit spent; an
  // unstarted claim of any kind goes again with its attempt count and errors unchanged (that attempt never
  // happened); a started one-time message is retried (grants cannot stack), flagged DELIVERY_MAY_HAVE_LEFT.
  // A dead sender's started attempts that must not go again (notifications, whose credits stack, and messages of a
  // campaign cancelled meanwhile) end unknown, their grant or credit spent; `stale` takes exactly the other expired
  // leases (one statement cannot update a row twice).
  // A due message of a cancelled campaign is never sent: a retry recorded while the cancel ran (its statement saw the
  // campaign still running) is queued after the cancel passed it by. The claim ends it as a completion after the
  // cancel would have (`cancelled`, grant or credit back; `unknown`, spent, when an earlier attempt may have left)
  // and does not return it. Grants and credits of both kinds of ended messages change in one UPDATE each.
  const claimSql = `WITH expired AS (
      UPDATE messages SET status = 'unknown', lease_until = NULL, error_code = '${OUTCOME_UNKNOWN_CODE}', error_message = $5, updated_at = $1
      WHERE id IN (SELECT id FROM messages WHERE status = 'sending' AND lease_until <= $1 AND attempt_started_at IS NOT NULL
        AND (kind = 'notification' OR ${IN_CANCELLED_CAMPAIGN}) FOR UPDATE SKIP LOCKED)
      RETURNING kind, grant_id, app_id, openid, template_id, credit_reserved),
    stale AS (
      SELECT id, attempt_started_at IS NOT NULL AS started FROM messages WHERE status = 'sending' AND lease_until <= $1
        AND (attempt_started_at IS NULL OR (kind = 'one-time' AND NOT ${IN_CANCELLED_CAMPAIGN}))
        AND NOT (app_id = ANY($4::text[]))
      ORDER BY lease_until, id LIMIT $3 FOR UPDATE SKIP LOCKED),
    due AS (
      SELECT id, ${IN_CANCELLED_CAMPAIGN} AS dropped FROM messages
      WHERE status = 'queued' AND next_attempt_at <= $1 AND NOT (app_id = ANY($4::text[]))
      ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),
    pick AS ((SELECT id, started, true AS stale, false AS dropped FROM stale) UNION ALL (SELECT id, false, false, dropped FROM due)
      LIMIT $3),
    claimed AS (
      UPDATE messages m SET
        status = CASE WHEN NOT pick.dropped THEN 'sending' WHEN m.error_code = '${MAY_HAVE_LEFT_CODE}' THEN 'unknown' ELSE 'cancelled' END,
        lease_owner = CASE WHEN pick.dropped THEN NULL ELSE $2 END,
        lease_until = CASE WHEN pick.dropped THEN NULL ELSE $1::bigint + $6::bigint END, updated_at = $1,
        attempts = CASE WHEN pick.dropped OR (pick.stale AND NOT pick.started) THEN m.attempts ELSE m.attempts + 1 END,
        error_code = CASE WHEN pick.dropped AND m.error_code = '${MAY_HAVE_LEFT_CODE}' THEN '${OUTCOME_UNKNOWN_CODE}'
          WHEN pick.started THEN '${MAY_HAVE_LEFT_CODE}' ELSE m.error_code END,
        attempt_started_at = NULL
      FROM pick WHERE m.id = pick.id RETURNING m.*, pick.dropped AS dropped),
    ended AS (
      SELECT kind, grant_id, app_id, openid, template_id, credit_reserved, status = 'cancelled' AS released FROM claimed WHERE dropped
      UNION ALL SELECT kind, grant_id, app_id, openid, template_id, credit_reserved, false FROM expired),
    credits AS (
      UPDATE notification_credits nc SET available = nc.available + x.released, reserved = GREATEST(nc.reserved - x.n, 0), updated_at = $1
      FROM (SELECT app_id, openid, template_id, count(*)::int AS n, count(*) FILTER (WHERE released)::int AS released
        FROM ended WHERE kind = 'notification' AND credit_reserved GROUP BY 1, 2, 3) x
      WHERE nc.app_id = x.app_id AND nc.openid = x.openid AND nc.template_id = x.template_id RETURNING 1),
    grants AS (
      UPDATE grants g SET state = CASE WHEN x.released THEN 'available' ELSE 'consumed' END,
        closed_at = CASE WHEN x.released THEN g.closed_at ELSE $1 END, updated_at = $1
      FROM ended x WHERE x.kind = 'one-time' AND g.id = x.grant_id AND g.state = 'reserved' RETURNING 1)
    SELECT * FROM claimed WHERE NOT dropped`;

  // Once a user's credits are revoked (43101) or cleared, WeChat holds none: the credits live messages reserved are
  // detached, so a later release of them gives nothing back (the credit row's `reserved` is set to 0 alongside).
  const detachCreditsSql = `UPDATE messages SET credit_reserved = false
    WHERE kind = 'notification' AND status IN ('queued', 'sending') AND credit_reserved
      AND (app_id, openid, template_id) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`;
  const userColumns = (rows: Row[]): string[][] => [
    rows.map((r) => String(r.app_id)),
    rows.map((r) => String(r.openid)),
    rows.map((r) => String(r.template_id)),
  ];

  // A 43101 is about the consent WeChat held when it looked at the send, some time after the attempt started. A
  // one-time confirm or an accept of credits recorded after that start stands at WeChat: the grant goes back to
  // `available` instead of `revoked`, and the credits stay (the message only drops the one it held).
  const CONFIRMED_SINCE = `(m.effect = 'revoke' AND m.started_at IS NOT NULL AND grants.confirmed_at > m.started_at)`;
  const CREDITS_WIPED = `(x.revoke AND (x.revoke_started IS NULL OR nc.accepted_at IS NULL OR nc.accepted_at <= x.revoke_started))`;

  // Set-based completion: one statement for any number of messages of one owner. Credit rows are aggregated per
  // key first because one UPDATE can change a row only once.
  const completeSql = `WITH input AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[],
          $12::int[])
        AS t(id, status, next_attempt_at, last_errcode, error_code, error_message, msgid, sent_at, effect, attempts_back)),
    cancelled AS (SELECT id FROM campaigns WHERE status = 'cancelled'),
    m AS (
      UPDATE messages SET
        status = CASE WHEN i.status = 'queued' AND messages.campaign_id IN (SELECT id FROM cancelled)
          THEN CASE WHEN i.error_code = '${MAY_HAVE_LEFT_CODE}' THEN 'unknown' ELSE 'cancelled' END ELSE i.status END,
        next_attempt_at = COALESCE(i.next_attempt_at, messages.next_attempt_at),
        lease_owner = NULL, lease_until = NULL, last_errcode = i.last_errcode,
        error_code = CASE WHEN i.status = 'queued' AND i.error_code = '${MAY_HAVE_LEFT_CODE}'
            AND messages.campaign_id IN (SELECT id FROM cancelled)
          THEN '${OUTCOME_UNKNOWN_CODE}' ELSE i.error_code END,
        error_message = i.error_message,
        msgid = COALESCE(i.msgid, messages.msgid), sent_at = COALESCE(i.sent_at, messages.sent_at),
        attempts = GREATEST(messages.attempts - i.attempts_back, 0), updated_at = $11
      FROM input i WHERE messages.id = i.id AND ${BY_ID_SENDING} AND messages.lease_owner = $10
      RETURNING messages.id,
        CASE WHEN i.effect <> 'none' THEN i.effect WHEN messages.status = 'cancelled' THEN 'release'
          WHEN messages.status = 'unknown' THEN 'consume' ELSE 'none' END AS effect,
        messages.kind, messages.grant_id, messages.credit_reserved, messages.app_id, messages.openid, messages.template_id,
        messages.attempt_started_at AS started_at),
    g AS (
      UPDATE grants SET state = CASE m.effect WHEN 'consume' THEN 'consumed' WHEN 'release' THEN 'available'
          ELSE CASE WHEN ${CONFIRMED_SINCE} THEN 'available' ELSE 'revoked' END END,
        closed_at = CASE WHEN m.effect = 'release' OR ${CONFIRMED_SINCE} THEN grants.closed_at ELSE $11 END, updated_at = $11
      FROM m WHERE m.kind = 'one-time' AND m.effect <> 'none' AND grants.id = m.grant_id
        AND (grants.state = 'reserved' OR (m.effect = 'revoke' AND grants.state = 'available'))
      RETURNING 1),
    n AS (
      UPDATE notification_credits nc SET
        available = CASE WHEN ${CREDITS_WIPED} THEN 0 ELSE nc.available + x.released END,
        reserved = CASE WHEN ${CREDITS_WIPED} THEN 0 ELSE GREATEST(nc.reserved - x.spent, 0) END,
        long_term = nc.long_term AND NOT ${CREDITS_WIPED}, updated_at = $11
      FROM (SELECT app_id, openid, template_id,
              count(*) FILTER (WHERE credit_reserved AND effect = 'release')::int AS released,
              count(*) FILTER (WHERE credit_reserved)::int AS spent,
              bool_or(effect = 'revoke') AS revoke,
              -- the latest start among the 43101s (one of unknown start counts as the latest)
              CASE WHEN bool_or(effect = 'revoke' AND started_at IS NULL) THEN NULL
                ELSE max(started_at) FILTER (WHERE effect = 'revoke') END AS revoke_started
            FROM m WHERE kind = 'notification' AND effect <> 'none' GROUP BY 1, 2, 3) x
      WHERE nc.app_id = x.app_id AND nc.openid = x.openid AND nc.template_id = x.template_id
      RETURNING nc.app_id, nc.openid, nc.template_id, ${CREDITS_WIPED} AS wiped)
    SELECT id, app_id, openid, template_id, kind = 'notification' AND effect = 'revoke' AND EXISTS (
        SELECT 1 FROM n WHERE n.wiped AND n.app_id = m.app_id AND n.openid = m.openid AND n.template_id = m.template_id
      ) AS revoked
    FROM m`;
  const completeMany = async (
    owner: string,
    items: { id: string; outcome: AttemptOutcome }[],
    now: number,
  ): Promise<boolean[]> => {
    if (items.length === 0) return [];
    const cols: unknown[][] = [[], [], [], [], [], [], [], [], []];
    for (const it of items) {
      const row = [...completionRow(it.id, it.outcome, now), grantEffect(it.outcome)];
      row.forEach((v, k) => cols[k]?.push(v));
    }
    const back = items.map((it) => attemptsGivenBack(it.outcome));
    const args = [...cols, owner, now, back];
    const revokes = items.some((it) => it.outcome.status === 'failed' && it.outcome.grant === 'revoke');
    const rows = !revokes
      ? await q(pool, completeSql, args)
      : await tx(async (c) => {
          const r = await q(c, completeSql, args);
          const users = r.filter((x) => x.revoked === true);
          // Statement after the one that locked the credit rows: it sees every message reserved before the lock.
          if (users.length > 0) await q(c, detachCreditsSql, userColumns(users));
          return r;
        });
    const done = new Set(rows.map((r) => String(r.id)));
    return items.map((it) => done.has(it.id));
  };

  // From the trigger-kept counts (migration 5): folded totals plus the deltas not folded yet, in one statement (one
  // snapshot), so a fold committing meanwhile is seen wholly or not at all.
  const countMessages = async (f: { appId?: string; campaignId?: string }): Promise<CampaignStats> => {
    const rows = await q(
      pool,
      `SELECT status, sum(n)::bigint AS n FROM (
         SELECT status, n FROM message_counts WHERE ($1::text IS NULL OR app_id = $1) AND ($2::text IS NULL OR campaign_id = $2)
         UNION ALL
         SELECT status, n FROM message_count_deltas WHERE ($1::text IS NULL OR app_id = $1) AND ($2::text IS NULL OR campaign_id = $2)
       ) x GROUP BY status`,
      [f.appId ?? null, f.campaignId ?? null],
    );
    return statsFromCounts(rows);
  };
  // Moves the committed deltas into the totals. One folder at a time (the others skip); nothing else writes the
  // totals, so folding never waits on or deadlocks with the statements that append deltas.
  const foldMessageCounts = (): Promise<number> =>
    tx(async (c) => {
      const [lock] = await q(c, 'SELECT pg_try_advisory_xact_lock($1) AS ok', [FOLD_LOCK]);
      if (lock?.ok !== true) return 0;
      const [moved] = await q(
        c,
        `WITH moved AS (DELETE FROM message_count_deltas RETURNING app_id, campaign_id, status, n),
              folded AS (
                INSERT INTO message_counts (app_id, campaign_id, status, n)
                SELECT app_id, campaign_id, status, sum(n) FROM moved GROUP BY 1, 2, 3
                ON CONFLICT (app_id, campaign_id, status) DO UPDATE SET n = message_counts.n + excluded.n
              )
         SELECT count(*)::int AS n FROM moved`,
      );
      return Number(moved?.n ?? 0);
    });

  const enqueueBatchOnce = (campaignId: string, batchSize: number, now: number) =>
    tx(async (c): Promise<{ n: number; done: boolean; analyze?: 'outbox' | 'all' }> => {
      const row = await one(c, 'SELECT * FROM campaigns WHERE id = $1 FOR UPDATE', [campaignId]);
      if (!row || row.status !== 'enqueuing') return { n: 0, done: true };
      const camp = toCampaign(row);
      const after = row.progress_openid === null ? '' : String(row.progress_openid);
      const size = Math.max(1, Math.floor(batchSize));
      let candidates: Row[];
      let inserted: Row[];
      if (camp.kind === 'one-time') {
        const f = camp.sceneFilter;
        const filter = [f?.min ?? -1, f?.max ?? 2_147_483_647, f?.scenes ?? null];
        // One message per holder: the lowest matching available scene of each openid.
        candidates = await q(
          c,
          `SELECT DISTINCT ON (openid) id, openid FROM grants
           WHERE app_id = $1 AND template_id = $2 AND state = 'available' AND openid > $3 AND scene >= $4 AND scene <= $5
             AND ($6::int[] IS NULL OR scene = ANY($6::int[]))
           ORDER BY openid, scene LIMIT $7`,
          [camp.appId, camp.templateId, after, ...filter, size],
        );
        inserted = [];
        let pick = candidates;
        while (pick.length > 0) {
          const got = await q(
            c,
            `WITH c AS (SELECT * FROM unnest($1::text[], $2::text[]) AS t(gid, mid)),
             r AS (UPDATE grants g SET state = 'reserved', updated_at = $3 FROM c WHERE g.id = c.gid AND g.state = 'available'
                   RETURNING g.id, g.openid, g.scene, c.mid)
             ${insertCols}
             SELECT r.mid, $4, 'one-time', r.openid, $5, r.scene, r.id, false, $6::jsonb, 'queued', 0, $3, $7, NULL, NULL, $3, $3 FROM r
             RETURNING openid`,
            [
              pick.map((r) => r.id),
              pick.map(() => ids()),
              now,
              camp.appId,
              camp.templateId,
              json(camp.payload),
              camp.id,
            ],
          );
          inserted.push(...got);
          // A grant picked here that another transaction reserved meanwhile (another instance's campaign, an API
          // send) was skipped by the UPDATE, which waited for that transaction and saw its grant taken. The cursor
          // moves past these users, so pick their next matching grant now: this statement's snapshot sees the
          // committed state. Each round rules out the grants it lost, so the loop ends.
          const reserved = new Set(got.map((r) => String(r.openid)));
          const lost = pick.filter((r) => !reserved.has(String(r.openid))).map((r) => String(r.openid));
          pick =
            lost.length === 0
              ? []
              : await q(
                  c,
                  `SELECT DISTINCT ON (openid) id, openid FROM grants
                   WHERE app_id = $1 AND template_id = $2 AND state = 'available' AND openid = ANY($3::text[])
                     AND scene >= $4 AND scene <= $5 AND ($6::int[] IS NULL OR scene = ANY($6::int[]))
                   ORDER BY openid, scene`,
                  [camp.appId, camp.templateId, lost, ...filter],
                );
        }
      } else {
        candidates = await q(
          c,
          `SELECT openid FROM notification_credits WHERE app_id = $1 AND template_id = $2 AND openid > $3 AND (long_term OR available > 0)
           ORDER BY openid LIMIT $4`,
          [camp.appId, camp.templateId, after, size],
        );
        if (candidates.length === 0) inserted = [];
        else
          inserted = await q(
            c,
            `WITH c AS (SELECT * FROM unnest($1::text[], $2::text[]) AS t(openid, mid)),
             r AS (UPDATE notification_credits nc SET available = CASE WHEN nc.long_term THEN nc.available ELSE nc.available - 1 END,
                     reserved = CASE WHEN nc.long_term THEN nc.reserved ELSE nc.reserved + 1 END, updated_at = $3
                   FROM c WHERE nc.app_id = $4 AND nc.template_id = $5 AND nc.openid = c.openid AND (nc.long_term OR nc.available > 0)
                   RETURNING nc.openid, nc.long_term, c.mid)
             ${insertCols}
             SELECT r.mid, $4, 'notification', r.openid, $5, NULL, NULL, NOT r.long_term, $6::jsonb, 'queued', 0, $3, $7, NULL, NULL, $3, $3
             FROM r RETURNING 1`,
            [
              candidates.map((r) => r.openid),
              candidates.map(() => ids()),
              now,
              camp.appId,
              camp.templateId,
              json(camp.payload),
              camp.id,
            ],
          );
      }
      const last = candidates[candidates.length - 1];
      if (last === undefined) {
        await q(c, `UPDATE campaigns SET status = 'running', updated_at = $2 WHERE id = $1`, [camp.id, now]);
        return { n: 0, done: true, ...(Number(row.enqueued) >= BULK_ANALYZE_ROWS ? { analyze: 'all' } : {}) };
      }
      await q(
        c,
        'UPDATE campaigns SET progress_openid = $2, enqueued = enqueued + $3, updated_at = $4 WHERE id = $1',
        [camp.id, String(last.openid), inserted.length, now],
      );
      const before = Number(row.enqueued);
      const crossed = before < BULK_ANALYZE_ROWS && before + inserted.length >= BULK_ANALYZE_ROWS;
      return { n: inserted.length, done: false, ...(crossed ? { analyze: 'outbox' } : {}) };
    });

  const outbox: OutboxRepo = {
    enqueueMessage,
    async claim(i) {
      const limit = Math.max(0, Math.floor(i.limit));
      const rows = await qPlanned(pool, claimSql, [
        i.now,
        i.owner,
        limit,
        i.excludeAppIds ?? [],
        LEASE_EXPIRED_MESSAGE,
        i.leaseMs,
      ]);
      return rows.map(toMessage).sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || (a.id < b.id ? -1 : 1));
    },
    async complete(i) {
      const [ok] = await completeMany(i.owner, [{ id: i.id, outcome: i.outcome }], i.now);
      return ok === true;
    },
    async completeMany(i) {
      return completeMany(i.owner, i.items, i.now);
    },
    async markAttemptStarted(i) {
      if (i.ids.length === 0) return [];
      const rows = await q(
        pool,
        `UPDATE messages SET attempt_started_at = $1 WHERE id = ANY($2::text[]) AND lease_owner = $3 AND ${BY_ID_SENDING}
           AND lease_until > $1
         RETURNING id`,
        [i.now, i.ids, i.owner],
      );
      if (rows.length === i.ids.length) return i.ids.map(() => true);
      const marked = new Set(rows.map((r) => String(r.id)));
      return i.ids.map((id) => marked.has(id));
    },
    async extendLease(i) {
      if (i.ids.length === 0) return;
      await q(
        pool,
        `UPDATE messages SET lease_until = $1 WHERE id = ANY($2::text[]) AND lease_owner = $3 AND ${BY_ID_SENDING}`,
        [i.leaseUntil, i.ids, i.owner],
      );
    },
    async getMessage(id) {
      const r = await one(pool, 'SELECT * FROM messages WHERE id = $1', [id]);
      return r ? toMessage(r) : null;
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
          args.push(v);
          where.push(`${col} = $${args.length}`);
        }
      }
      if (before !== null) {
        args.push(before);
        where.push(`id < $${args.length}`);
      }
      args.push(limit + 1);
      const rows = await q(
        pool,
        `SELECT * FROM messages ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${args.length}`,
        args,
      );
      const items = rows.slice(0, limit).map(toMessage);
      const last = items[items.length - 1];
      return { items, nextCursor: rows.length > limit && last ? encodeCursor('m', last.id) : null };
    },
    countMessages,
    foldMessageCounts,
    async createCampaign(i) {
      const r = await one(
        pool,
        `INSERT INTO campaigns (id, app_id, name, kind, template_id, scene_filter, payload, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, 'enqueuing', $8, $8) RETURNING *`,
        [
          ids(),
          i.appId,
          i.name,
          i.kind,
          i.templateId,
          i.sceneFilter === null ? null : json(i.sceneFilter),
          json(i.payload),
          i.now,
        ],
      );
      return toCampaign(r as Row);
    },
    async enqueueCampaignBatch(i) {
      // A batch whose candidates were all taken concurrently only advances the cursor; keep going until work or the end.
      for (;;) {
        const r = await enqueueBatchOnce(i.campaignId, i.batchSize, i.now);
        // A big campaign changes the outbox and ledger by many rows: refresh the planner's statistics rather than
        // wait for autovacuum (or forever, where it is off), so the claim keeps its ordered index scan while the
        // campaign drains. Once early, when the campaign's queued messages start to outnumber what the last
        // statistics knew (before it, each claim read and sorted every queued row: 30,000 of them per claim
        // 30,000 messages into a campaign), and once over all three tables when the enqueue is done. Best effort.
        if (r.analyze !== undefined)
          await pool
            .query(
              r.analyze === 'all' ? 'ANALYZE messages, grants, notification_credits' : 'ANALYZE messages',
            )
            .catch(() => undefined);
        if (r.n > 0 || r.done) return r.n;
      }
    },
    async getCampaign(id) {
      const r = await one(pool, 'SELECT * FROM campaigns WHERE id = $1', [id]);
      return r
        ? { ...toCampaign(r), stats: await countMessages({ appId: String(r.app_id), campaignId: id }) }
        : null;
    },
    async cancelCampaign(i) {
      return tx(async (c) => {
        // Taking the campaign row first waits out a running batch, so the next statement sees its messages. A message
        // whose earlier attempt may have reached WeChat ends `unknown`, its grant or credit spent, as its retry would.
        const changed = await q(
          c,
          `UPDATE campaigns SET status = 'cancelled', updated_at = $2 WHERE id = $1 AND status IN ('enqueuing', 'running')
           RETURNING 1`,
          [i.id, i.now],
        );
        // Already done or cancelled (or no such campaign): nothing to do, and the caller says so.
        if (changed.length === 0) return { cancelled: false, messages: 0 };
        const r = await one(
          c,
          `WITH c AS (
             UPDATE messages SET status = CASE WHEN error_code = '${MAY_HAVE_LEFT_CODE}' THEN 'unknown' ELSE 'cancelled' END,
               error_code = CASE WHEN error_code = '${MAY_HAVE_LEFT_CODE}' THEN '${OUTCOME_UNKNOWN_CODE}' ELSE error_code END,
               lease_owner = NULL, lease_until = NULL, updated_at = $2
             WHERE campaign_id = $1 AND (status = 'queued' OR (status = 'sending' AND attempt_started_at IS NULL))
             RETURNING grant_id, credit_reserved, app_id, openid, template_id, status = 'cancelled' AS released),
           g AS (UPDATE grants SET state = CASE WHEN c.released THEN 'available' ELSE 'consumed' END,
                   closed_at = CASE WHEN c.released THEN grants.closed_at ELSE $2 END, updated_at = $2
                 FROM c WHERE grants.id = c.grant_id AND grants.state = 'reserved' RETURNING 1),
           n AS (UPDATE notification_credits nc SET available = nc.available + x.released, reserved = GREATEST(nc.reserved - x.n, 0), updated_at = $2
                 FROM (SELECT app_id, openid, template_id, count(*)::int AS n, count(*) FILTER (WHERE released)::int AS released
                       FROM c WHERE credit_reserved GROUP BY 1, 2, 3) x
                 WHERE nc.app_id = x.app_id AND nc.openid = x.openid AND nc.template_id = x.template_id RETURNING 1)
           SELECT count(*)::int AS n FROM c`,
          [i.id, i.now],
        );
        return { cancelled: true, messages: Number(r?.n ?? 0) };
      });
    },
    async listEnqueuingCampaigns() {
      return (await q(pool, `SELECT * FROM campaigns WHERE status = 'enqueuing' ORDER BY id`)).map(
        toCampaign,
      );
    },
    async listRunningCampaigns() {
      return (await q(pool, `SELECT * FROM campaigns WHERE status = 'running' ORDER BY id`)).map(toCampaign);
    },
    async finishCampaignIfDrained(i) {
      const r = await q(
        pool,
        `UPDATE campaigns SET status = 'done', updated_at = $2 WHERE id = $1 AND status = 'running'
           AND NOT EXISTS (SELECT 1 FROM messages WHERE campaign_id = $1 AND status IN ('queued', 'sending')) RETURNING 1`,
        [i.id, i.now],
      );
      return r.length === 1;
    },
    async pauseApp(i) {
      await q(
        pool,
        `INSERT INTO app_pauses (app_id, until, reason) VALUES ($1, $2, $3)
         ON CONFLICT (app_id) DO UPDATE SET until = GREATEST(app_pauses.until, EXCLUDED.until),
           reason = CASE WHEN EXCLUDED.until >= app_pauses.until THEN EXCLUDED.reason ELSE app_pauses.reason END`,
        [i.appId, i.until, i.reason],
      );
    },
    async pausedApps(now) {
      const rows = await q(
        pool,
        'SELECT app_id, until, reason FROM app_pauses WHERE until > $1 ORDER BY app_id',
        [now],
      );
      return rows.map((r) => ({ appId: String(r.app_id), until: Number(r.until), reason: String(r.reason) }));
    },
  };

  // ---- templates, keys, nonces ---------------------------------------------------------------------------
  const toTemplate = (r: Row): TemplateRecord => {
    const t: TemplateRecord = {
      appId: String(r.app_id),
      templateId: String(r.template_id),
      kind: r.kind as TemplateRecord['kind'],
      title: String(r.title),
      keywords: r.keywords as TemplateRecord['keywords'],
    };
    if (r.type !== null && r.type !== undefined) t.type = Number(r.type);
    return t;
  };
  const templates: TemplateRepo = {
    async upsert(t) {
      await q(
        pool,
        `INSERT INTO templates (app_id, template_id, kind, title, keywords, type) VALUES ($1, $2, $3, $4, $5::jsonb, $6)
         ON CONFLICT (app_id, template_id) DO UPDATE SET kind = EXCLUDED.kind, title = EXCLUDED.title,
           keywords = EXCLUDED.keywords, type = EXCLUDED.type`,
        [t.appId, t.templateId, t.kind, t.title, json(t.keywords), t.type ?? null],
      );
    },
    async get(appId, templateId) {
      const r = await one(pool, 'SELECT * FROM templates WHERE app_id = $1 AND template_id = $2', [
        appId,
        templateId,
      ]);
      return r ? toTemplate(r) : null;
    },
    async list(appId) {
      return (await q(pool, 'SELECT * FROM templates WHERE app_id = $1 ORDER BY template_id', [appId])).map(
        toTemplate,
      );
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
      const r = await one(
        pool,
        'INSERT INTO api_keys (id, name, key_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING *',
        [i.id, i.name, i.keyHash, i.now],
      );
      return toKey(r as Row);
    },
    async findByHash(keyHash) {
      const r = await one(pool, 'SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL', [
        keyHash,
      ]);
      return r ? toKey(r) : null;
    },
    async revoke(id, now) {
      await q(pool, 'UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL', [id, now]);
    },
    async list() {
      return (await q(pool, 'SELECT * FROM api_keys ORDER BY created_at, id')).map(toKey);
    },
  };

  const nonces: NonceRepo = {
    async use(i) {
      return useNonceOn(pool, i);
    },
    async redeemOneTime(i) {
      // A concurrent redeem of the same nonce waits on the unique index until this transaction ends, then
      // finds the nonce taken (or takes it, if this one rolled back).
      return tx(async (c): Promise<RedeemOneTimeResult> => {
        if (!(await useNonceOn(c, i))) return { fresh: false };
        if (i.action === 'confirm')
          return { fresh: true, action: 'confirm', ...(await recordOneTimeOn(c, i)) };
        await recordRefusalOn(c, i);
        return { fresh: true, action: 'cancel' };
      });
    },
    async purgeExpired(now, limit) {
      // The oldest first, along the primary key (migration 6). Two instances purging at once delete disjoint rows
      // or wait on each other's row locks and skip what the other deleted.
      if (limit === undefined)
        return (await q(pool, 'DELETE FROM consent_nonces WHERE expires_at <= $1 RETURNING 1', [now])).length;
      const deleted = await q(
        pool,
        `DELETE FROM consent_nonces WHERE (expires_at, nonce) IN
           (SELECT expires_at, nonce FROM consent_nonces WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)
         RETURNING 1`,
        [now, Math.max(0, Math.floor(limit))],
      );
      return deleted.length;
    },
  };

  // ---- migrations ----------------------------------------------------------------------------------------
  const migrate = async (): Promise<number> => {
    let c: pg.PoolClient;
    try {
      c = await pool.connect();
    } catch (err) {
      throw wrap(err);
    }
    try {
      // The advisory lock makes concurrent migrate() calls (several instances starting) run one after the other.
      await c.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      await c.query(
        'CREATE TABLE IF NOT EXISTS schema_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
      );
      const done = new Set(
        (await c.query<{ id: number }>('SELECT id FROM schema_migrations')).rows.map((r) => r.id),
      );
      let applied = 0;
      for (const m of postgresMigrations) {
        if (done.has(m.id)) continue;
        try {
          await c.query('BEGIN');
          await c.query(m.sql);
          await c.query('INSERT INTO schema_migrations (id, name, applied_at) VALUES ($1, $2, $3)', [
            m.id,
            m.name,
            clock.now(),
          ]);
          await c.query('COMMIT');
        } catch (cause) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw new AppError('STORE_MIGRATION_FAILED', {
            details: { engine: 'postgres', id: m.id, name: m.name },
            cause,
          });
        }
        applied++;
      }
      return applied;
    } finally {
      await c.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      c.release();
    }
  };

  let closed = false;
  return {
    engine: 'postgres',
    grants,
    outbox,
    templates,
    apiKeys,
    nonces,
    migrate,
    async close() {
      if (closed) return;
      closed = true;
      // The no-op error listener stays: pool.end() resolves before its clients' sockets have closed, and a
      // server-side termination arriving in that window (e.g. a dropped database) must not become an uncaught error.
      if (ownsPool) await pool.end();
    },
  };
}

const ROLLBACK = Symbol('rollback');

/** Connection-level failures become STORE_UNAVAILABLE (retryable); SQL errors pass through unchanged. */
function wrap(err: unknown): unknown {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  // Connection failures, a server shutting down, and a login refused (no such database 3D000, role or password
  // 28000/28P01): the store cannot be used, whatever the statement.
  if (
    typeof code === 'string' &&
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EPIPE|EHOSTUNREACH|57P0[1-3]|08\d{3}|3D000|28000|28P01)$/.test(
      code,
    )
  ) {
    return new AppError('STORE_UNAVAILABLE', { cause: err, details: { code } });
  }
  // pg's own connection timeout (connectionTimeoutMillis) and a connection closed under a query carry no code.
  const message = err instanceof Error ? err.message : '';
  if (/connection timeout|timeout expired|Connection terminated/i.test(message))
    return new AppError('STORE_UNAVAILABLE', { cause: err });
  return err;
}
