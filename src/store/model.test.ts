// Model-based store test: random sequences of store operations on SQLite and PostgreSQL in lockstep (fast-check), the
// ledger/outbox invariants checked on each engine after every step, and the engines' results and rows compared.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyStats } from './common.js';
import { createPostgresStore } from './postgres/postgres-store.js';
import { createSqliteStore } from './sqlite/sqlite-store.js';
import type { AttemptOutcome, CampaignStats, Store } from './store.js';
import { createTempDatabase, skipUnless, type TempDatabase } from '../../test/support/services.js';

const APP = 'app';
const TPL = 'tpl1';
const NTPL = 'ntpl';
const T0 = Date.UTC(2026, 0, 1, 2);
const LEASE = 10_000;
const USERS = ['u0', 'u1', 'u2', 'u3'];
const OWNERS = ['w1', 'w2'];

type OutcomeKind =
  'sent' | 'failRelease' | 'failKeep' | 'failRevoke' | 'unknown' | 'retryBusy' | 'retryLeft' | 'retryUnsent';
type Op =
  | { t: 'grant'; u: number; scene: number }
  | { t: 'credits'; u: number; count: number; longTerm: boolean }
  | { t: 'clear'; u: number }
  | { t: 'revoke'; u: number; scene: number | null }
  | { t: 'enq1'; u: number; scene: number | null }
  | { t: 'enqN'; u: number }
  | { t: 'campaign'; kind: 'one-time' | 'notification'; batch: number }
  | { t: 'batch'; c: number; batch: number }
  | { t: 'claim'; owner: number; limit: number }
  | { t: 'start'; owner: number; picks: number[] }
  | { t: 'complete'; owner: number; items: { pick: number; kind: OutcomeKind }[]; many: boolean }
  | { t: 'cancel'; c: number }
  | { t: 'tick'; ms: number }
  | { t: 'finish'; c: number }
  | { t: 'extend'; owner: number }
  | { t: 'fold' };

const u = fc.nat({ max: USERS.length - 1 });
const own = fc.nat({ max: OWNERS.length - 1 });
const outcomeKind = fc.constantFrom<OutcomeKind>(
  'sent',
  'failRelease',
  'failKeep',
  'failRevoke',
  'unknown',
  'retryBusy',
  'retryLeft',
  'retryUnsent',
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({ t: fc.constant('grant' as const), u, scene: fc.integer({ min: 1, max: 3 }) }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      t: fc.constant('credits' as const),
      u,
      count: fc.integer({ min: 0, max: 2 }),
      longTerm: fc.constantFrom(false, false, false, true),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ t: fc.constant('clear' as const), u }), weight: 1 },
  {
    arbitrary: fc.record({
      t: fc.constant('revoke' as const),
      u,
      scene: fc.option(fc.integer({ min: 1, max: 3 })),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      t: fc.constant('enq1' as const),
      u,
      scene: fc.option(fc.integer({ min: 1, max: 3 })),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ t: fc.constant('enqN' as const), u }), weight: 3 },
  {
    arbitrary: fc.record({
      t: fc.constant('campaign' as const),
      kind: fc.constantFrom('one-time' as const, 'notification' as const),
      batch: fc.integer({ min: 1, max: 3 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      t: fc.constant('batch' as const),
      c: fc.nat({ max: 3 }),
      batch: fc.integer({ min: 1, max: 3 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({ t: fc.constant('claim' as const), owner: own, limit: fc.constantFrom(1, 2, 100) }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      t: fc.constant('start' as const),
      owner: own,
      picks: fc.array(fc.nat({ max: 9 }), { minLength: 1, maxLength: 3 }),
    }),
    weight: 6,
  },
  {
    arbitrary: fc.record({
      t: fc.constant('complete' as const),
      owner: own,
      items: fc.array(fc.record({ pick: fc.nat({ max: 9 }), kind: outcomeKind }), {
        minLength: 1,
        maxLength: 3,
      }),
      many: fc.boolean(),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ t: fc.constant('cancel' as const), c: fc.nat({ max: 3 }) }), weight: 1 },
  {
    arbitrary: fc.record({ t: fc.constant('tick' as const), ms: fc.constantFrom(1, 1000, 11_000, 40_000) }),
    weight: 2,
  },
  { arbitrary: fc.record({ t: fc.constant('finish' as const), c: fc.nat({ max: 3 }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('extend' as const), owner: own }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('fold' as const) }), weight: 1 },
);

const counterIds = () => {
  let n = 0;
  return () => `ID${String(++n).padStart(12, '0')}`;
};

type Raw = Record<string, unknown>;
type Engine = {
  name: string;
  store: Store;
  rows: (sql: string) => Promise<Raw[]>;
  close: () => Promise<void>;
};
type Snap = {
  messages: Raw[];
  grants: Raw[];
  credits: Raw[];
  campaigns: Raw[];
};

const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
const bool = (v: unknown) => v === true || v === 1 || v === '1';

async function snapshot(e: Engine): Promise<Snap> {
  const grants = await e.rows('SELECT * FROM grants ORDER BY openid, template_id, scene');
  const gkey = new Map(grants.map((g) => [String(g.id), `${g.openid}/${g.scene}`]));
  const campaigns = await e.rows('SELECT * FROM campaigns ORDER BY id');
  const ckey = new Map(campaigns.map((c, i) => [String(c.id), i]));
  const messages = await e.rows('SELECT * FROM messages ORDER BY id');
  return {
    grants: grants.map((g) => ({
      key: `${g.openid}/${g.scene}`,
      state: g.state,
      confirmedAt: num(g.confirmed_at),
      closedAt: num(g.closed_at),
    })),
    credits: (await e.rows('SELECT * FROM notification_credits ORDER BY openid, template_id')).map((c) => ({
      openid: c.openid,
      available: num(c.available),
      reserved: num(c.reserved),
      longTerm: bool(c.long_term),
    })),
    campaigns: campaigns.map((c) => ({
      id: c.id,
      kind: c.kind,
      status: c.status,
      progress: c.progress_openid,
      enqueued: num(c.enqueued),
    })),
    messages: messages.map((m) => ({
      id: m.id,
      kind: m.kind,
      openid: m.openid,
      scene: num(m.scene),
      grant: m.grant_id === null ? null : (gkey.get(String(m.grant_id)) ?? 'MISSING'),
      creditReserved: bool(m.credit_reserved),
      status: m.status,
      attempts: num(m.attempts),
      nextAttemptAt: num(m.next_attempt_at),
      leaseOwner: m.lease_owner,
      leaseUntil: num(m.lease_until),
      started: num(m.attempt_started_at),
      lastErrcode: num(m.last_errcode),
      errorCode: m.error_code,
      msgid: m.msgid,
      campaign: m.campaign_id === null ? null : (ckey.get(String(m.campaign_id)) ?? 'MISSING'),
      createdAt: num(m.created_at),
      sentAt: num(m.sent_at),
    })),
  };
}

/** The snapshot without engine ids (ids differ: the engines draw from their generators a different number of times). */
const comparable = (s: Snap) => ({
  ...s,
  messages: s.messages.map(({ id: _id, ...rest }) => rest),
  campaigns: s.campaigns.map(({ id: _id, ...rest }) => rest),
});

const LIVE = new Set(['queued', 'sending']);

async function checkInvariants(e: Engine, s: Snap, revokedWhileLive: Set<string>): Promise<void> {
  const where = e.name;
  // Counts equal a recount, overall and per campaign.
  const recount = (pick: (m: Raw) => boolean): CampaignStats => {
    const st = emptyStats();
    for (const m of s.messages.filter(pick)) {
      st[m.status as keyof CampaignStats]++;
      st.total++;
    }
    return st;
  };
  expect(await e.store.outbox.countMessages({}), `${where}: counts`).toEqual(recount(() => true));
  for (const [i, c] of s.campaigns.entries()) {
    const got = await e.store.outbox.getCampaign(String(c.id));
    expect(got?.stats, `${where}: stats of campaign ${i}`).toEqual(recount((m) => m.campaign === i));
    if (c.status === 'done')
      expect(
        s.messages.filter((m) => m.campaign === i && LIVE.has(String(m.status))).length,
        `${where}: done campaign ${i} has live messages`,
      ).toBe(0);
  }
  // A cancelled campaign has nothing queued; a message whose earlier attempt may have reached WeChat never ends
  // `cancelled` (the store's own rule for a retry recorded after a cancel: `unknown`, grant spent).
  for (const [i, c] of s.campaigns.entries())
    if (c.status === 'cancelled')
      expect(
        s.messages.filter((m) => m.campaign === i && m.status === 'queued').length,
        `${where}: cancelled campaign ${i} has queued messages`,
      ).toBe(0);
  for (const m of s.messages)
    if (m.kind === 'one-time' && m.status === 'cancelled' && m.errorCode === 'DELIVERY_MAY_HAVE_LEFT')
      expect.fail(
        `${where}: message ${String(m.id)} cancelled though an earlier attempt may have reached WeChat`,
      );
  // Credits: never negative; reserved equals the live messages holding a credit.
  for (const c of s.credits) {
    expect(Number(c.available), `${where}: available of ${c.openid}`).toBeGreaterThanOrEqual(0);
    const holding = s.messages.filter(
      (m) =>
        m.kind === 'notification' && m.openid === c.openid && m.creditReserved && LIVE.has(String(m.status)),
    ).length;
    expect(c.reserved, `${where}: reserved of ${c.openid} vs live messages holding one`).toBe(holding);
  }
  // Grants: a reserved grant is held by exactly one live message; a live message's grant is reserved (or revoked
  // by a revoke while it was live) and held by no other live message.
  for (const g of s.grants) {
    const holders = s.messages.filter((m) => m.grant === g.key && LIVE.has(String(m.status)));
    if (g.state === 'reserved')
      expect(holders.length, `${where}: holders of reserved grant ${g.key}`).toBe(1);
    if (holders.length > 1) expect.fail(`${where}: grant ${g.key} held by ${holders.length} live messages`);
    if (holders.length === 1 && g.state !== 'reserved' && !revokedWhileLive.has(String(g.key)))
      expect.fail(`${where}: live message holds grant ${g.key} in state ${g.state}`);
  }
}

function outcome(kind: OutcomeKind, now: number): AttemptOutcome {
  switch (kind) {
    case 'sent':
      return { status: 'sent', msgid: `m${now}` };
    case 'failRelease':
      return {
        status: 'failed',
        grant: 'release',
        lastErrcode: 47003,
        errorCode: 'DELIVERY_REJECTED',
        errorMessage: 'x',
      };
    case 'failKeep':
      return {
        status: 'failed',
        grant: 'keep',
        lastErrcode: 47003,
        errorCode: 'DELIVERY_REJECTED',
        errorMessage: 'x',
      };
    case 'failRevoke':
      return {
        status: 'failed',
        grant: 'revoke',
        lastErrcode: 43101,
        errorCode: 'DELIVERY_CONSENT_REVOKED',
        errorMessage: 'x',
      };
    case 'unknown':
      return { status: 'unknown', errorCode: 'DELIVERY_OUTCOME_UNKNOWN', errorMessage: 'x' };
    case 'retryBusy':
      return {
        status: 'retry',
        nextAttemptAt: now + 500,
        lastErrcode: -1,
        errorCode: 'DELIVERY_WECHAT_BUSY',
        errorMessage: 'x',
      };
    case 'retryLeft':
      return {
        status: 'retry',
        nextAttemptAt: now + 500,
        errorCode: 'DELIVERY_MAY_HAVE_LEFT',
        errorMessage: 'x',
      };
    case 'retryUnsent':
      return {
        status: 'retry',
        nextAttemptAt: now,
        errorCode: 'DELIVERY_RELEASED',
        errorMessage: 'x',
        unsent: true,
      };
  }
}

const skipPg = await skipUnless('postgres');

describe.skipIf(skipPg)('store model: SQLite and PostgreSQL in lockstep', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wxsub-store-model-'));
  let db: TempDatabase;
  let pool: pg.Pool;
  let runNo = 0;
  beforeAll(async () => {
    db = await createTempDatabase('wxsub_model');
    pool = new pg.Pool({ connectionString: db.url, max: 4 });
    pool.on('error', () => {});
    const s = createPostgresStore({ pool });
    await s.migrate();
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function engines(): Promise<Engine[]> {
    const path = join(dir, `m${runNo++}.db`);
    const sq = createSqliteStore({ path, ids: counterIds(), checkpoint: 'auto' });
    await sq.migrate();
    const raw = new Database(path, { readonly: true });
    await pool.query(
      'TRUNCATE grants, notification_credits, refusals, campaigns, messages, message_counts, message_count_deltas, app_pauses',
    );
    const pgs = createPostgresStore({ pool, ids: counterIds() });
    return [
      {
        name: 'sqlite',
        store: sq,
        rows: async (sql) => raw.prepare(sql).all() as Raw[],
        close: async () => {
          raw.close();
          await sq.close();
        },
      },
      {
        name: 'postgres',
        store: pgs,
        rows: async (sql) => (await pool.query(sql)).rows as Raw[],
        close: async () => pgs.close(),
      },
    ];
  }

  async function runOps(ops: Op[], log: string[]): Promise<void> {
    const es = await engines();
    let now = T0;
    const revokedWhileLive = [new Set<string>(), new Set<string>()];
    try {
      let snaps = await Promise.all(es.map(snapshot));
      for (const op of ops) {
        now += 1;
        const results: unknown[] = [];
        for (const [k, e] of es.entries()) {
          const s = e.store;
          const snap = snaps[k] as Snap;
          const campaignId = (c: number) => snap.campaigns[c]?.id as string | undefined;
          const sendingOf = (owner: string) =>
            snap.messages.filter((m) => m.status === 'sending' && m.leaseOwner === owner);
          let r: unknown;
          switch (op.t) {
            case 'grant':
              r = (
                await s.grants.recordOneTime({
                  appId: APP,
                  openid: USERS[op.u]!,
                  templateId: TPL,
                  scene: op.scene,
                  now,
                })
              ).created;
              break;
            case 'credits':
              r = (
                await s.grants.addNotificationCredits({
                  appId: APP,
                  openid: USERS[op.u]!,
                  templateId: NTPL,
                  count: op.count,
                  longTerm: op.longTerm,
                  now,
                })
              ).available;
              break;
            case 'clear':
              await s.grants.clearNotificationCredits({
                appId: APP,
                openid: USERS[op.u]!,
                templateId: NTPL,
                now,
              });
              break;
            case 'revoke': {
              for (const m of snap.messages)
                if (
                  m.openid === USERS[op.u] &&
                  m.kind === 'one-time' &&
                  LIVE.has(String(m.status)) &&
                  (op.scene === null || m.scene === op.scene)
                )
                  revokedWhileLive[k]!.add(String(m.grant));
              r = await s.grants.revoke({
                appId: APP,
                openid: USERS[op.u]!,
                templateId: TPL,
                ...(op.scene === null ? {} : { scene: op.scene }),
                now,
              });
              break;
            }
            case 'enq1': {
              const res = await s.outbox.enqueueMessage({
                appId: APP,
                kind: 'one-time',
                openid: USERS[op.u]!,
                templateId: TPL,
                scene: op.scene ?? 'any',
                payload: { title: 't', content: 'c' },
                now,
              });
              r = res.ok
                ? res.message.scene
                : res.reason === 'no-grant'
                  ? [res.heldScenes, res.notificationCredits]
                  : res;
              break;
            }
            case 'enqN': {
              const res = await s.outbox.enqueueMessage({
                appId: APP,
                kind: 'notification',
                openid: USERS[op.u]!,
                templateId: NTPL,
                payload: { data: { thing1: { value: 'x' } } },
                now,
              });
              r = res.ok
                ? res.message.status
                : res.reason === 'no-grant'
                  ? [res.heldScenes, res.notificationCredits]
                  : res;
              break;
            }
            case 'campaign': {
              if (snap.campaigns.length >= 4) {
                r = 'skip';
                break;
              }
              const c = await s.outbox.createCampaign({
                appId: APP,
                name: 'c',
                kind: op.kind,
                templateId: op.kind === 'one-time' ? TPL : NTPL,
                sceneFilter: null,
                payload:
                  op.kind === 'one-time'
                    ? { title: 't', content: 'c' }
                    : { data: { thing1: { value: 'x' } } },
                now,
              });
              r = await s.outbox.enqueueCampaignBatch({ campaignId: c.id, batchSize: op.batch, now });
              break;
            }
            case 'batch': {
              const id = campaignId(op.c);
              r =
                id === undefined
                  ? 'skip'
                  : await s.outbox.enqueueCampaignBatch({ campaignId: id, batchSize: op.batch, now });
              break;
            }
            case 'claim': {
              const got = await s.outbox.claim({
                owner: OWNERS[op.owner]!,
                limit: op.limit,
                leaseMs: LEASE,
                now,
              });
              const pos = new Map(
                (await e.rows('SELECT id FROM messages ORDER BY id')).map((m, i) => [String(m.id), i]),
              );
              r = got
                .map((m) => [pos.get(m.id), m.status, m.attempts, m.errorCode, m.attemptStartedAt])
                .sort();
              break;
            }
            case 'start': {
              const mine = sendingOf(OWNERS[op.owner]!);
              if (mine.length === 0) {
                r = 'skip';
                break;
              }
              const ids = [...new Set(op.picks.map((p) => String(mine[p % mine.length]!.id)))];
              r = await s.outbox.markAttemptStarted({ ids, owner: OWNERS[op.owner]!, now });
              break;
            }
            case 'complete': {
              const mine = sendingOf(OWNERS[op.owner]!);
              if (mine.length === 0) {
                r = 'skip';
                break;
              }
              const seen = new Set<string>();
              const items: { id: string; outcome: AttemptOutcome }[] = [];
              for (const it of op.items) {
                const started = mine.filter((x) => x.started !== null);
                const unstarted = mine.filter((x) => x.started === null);
                const pool =
                  (it.kind === 'retryUnsent' ? unstarted : started).length > 0
                    ? it.kind === 'retryUnsent'
                      ? unstarted
                      : started
                    : mine;
                const m = pool[it.pick % pool.length]!;
                if (seen.has(String(m.id))) continue;
                seen.add(String(m.id));
                // As the dispatcher does: an attempt that never started can only be put back unsent; a started one
                // ends however WeChat answered.
                const kind: OutcomeKind =
                  m.started === null ? 'retryUnsent' : it.kind === 'retryUnsent' ? 'retryBusy' : it.kind;
                items.push({ id: String(m.id), outcome: outcome(kind, now) });
              }
              if (op.many) r = await s.outbox.completeMany!({ owner: OWNERS[op.owner]!, items, now });
              else {
                const out: boolean[] = [];
                for (const it of items)
                  out.push(
                    await s.outbox.complete({
                      id: it.id,
                      owner: OWNERS[op.owner]!,
                      outcome: it.outcome,
                      now,
                    }),
                  );
                r = out;
              }
              break;
            }
            case 'cancel': {
              const id = campaignId(op.c);
              r = id === undefined ? 'skip' : await s.outbox.cancelCampaign({ id, now });
              break;
            }
            case 'tick':
              now += op.ms;
              r = null;
              break;
            case 'finish': {
              const id = campaignId(op.c);
              r = id === undefined ? 'skip' : await s.outbox.finishCampaignIfDrained({ id, now });
              break;
            }
            case 'extend': {
              const mine = sendingOf(OWNERS[op.owner]!);
              await s.outbox.extendLease({
                ids: mine.map((m) => String(m.id)),
                owner: OWNERS[op.owner]!,
                leaseUntil: now + LEASE,
              });
              break;
            }
            case 'fold':
              r = s.outbox.foldMessageCounts ? 'folded' : 'folded';
              if (s.outbox.foldMessageCounts) await s.outbox.foldMessageCounts();
              break;
          }
          // `tick` advanced the shared clock once per engine: undo for all but the last.
          if (op.t === 'tick' && k < es.length - 1) now -= op.ms;
          results.push(r);
        }
        log.push(`${JSON.stringify(op)} → ${JSON.stringify(results)}`);
        snaps = await Promise.all(es.map(snapshot));
        for (const [k, e] of es.entries()) await checkInvariants(e, snaps[k] as Snap, revokedWhileLive[k]!);
        expect(results[1], `engines disagree on the result of ${JSON.stringify(op)}`).toEqual(results[0]);
        expect(comparable(snaps[1] as Snap), `engines disagree after ${JSON.stringify(op)}`).toEqual(
          comparable(snaps[0] as Snap),
        );
      }
      if (process.env.STORE_MODEL_COVERAGE === '1') {
        const last = snaps[0] as Snap;
        for (const m of last.messages)
          coverage.set(
            `${m.kind}:${m.status}:${m.errorCode}`,
            (coverage.get(`${m.kind}:${m.status}:${m.errorCode}`) ?? 0) + 1,
          );
        for (const c of last.campaigns)
          coverage.set(
            `campaign:${c.kind}:${c.status}`,
            (coverage.get(`campaign:${c.kind}:${c.status}`) ?? 0) + 1,
          );
        for (const g of last.grants)
          coverage.set(`grant:${g.state}`, (coverage.get(`grant:${g.state}`) ?? 0) + 1);
      }
    } finally {
      for (const e of es) await e.close();
    }
  }
  const coverage = new Map<string, number>();
  afterAll(() => {
    if (process.env.STORE_MODEL_COVERAGE === '1')
      console.log(
        [...coverage.entries()]
          .sort()
          .map(([k, v]) => `${k} ${v}`)
          .join('\n'),
      );
  });

  it('random sequences keep the ledger, the outbox and the counts exact and equal on both engines', async () => {
    const numRuns = Number(process.env.STORE_MODEL_RUNS ?? 60);
    const seed =
      process.env.STORE_MODEL_SEED === undefined ? undefined : Number(process.env.STORE_MODEL_SEED);
    let lastLog: string[] = [];
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb, {
            minLength: 1,
            maxLength: Number(process.env.STORE_MODEL_LEN ?? 40),
            size: 'max',
          }),
          async (ops) => {
            lastLog = [];
            await runOps(ops, lastLog);
            if (process.env.STORE_MODEL_DEBUG === '1') console.log(lastLog.join('\n'));
          },
        ),
        {
          numRuns,
          ...(seed === undefined ? {} : { seed }),
          endOnFailure: process.env.STORE_MODEL_NOSHRINK === '1',
        },
      );
    } catch (err) {
      console.log(`last run (shrunk):\n${lastLog.join('\n')}`);
      throw err;
    }
  }, 600_000);
});
