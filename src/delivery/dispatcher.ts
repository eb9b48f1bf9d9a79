// The delivery dispatcher: claims outbox batches under a lease, sends with bounded concurrency and a per-app rate
// limit, records outcomes by the errcode table, pauses apps on 45009 and keeps campaigns enqueuing on any instance.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { isAppError, type AppError } from '../errors.js';
import { systemClock, type Clock } from '../util/clock.js';
import type { MiniprogramState, NotificationLang } from '../wechat/validate.js';
import type {
  AttemptOutcome,
  NotificationPayload,
  OneTimePayload,
  OutboxMessage,
  Store,
} from '../store/store.js';
import { acquire, type RateLimiter } from './rate-limit.js';
import { createMemoryRateLimiter } from './rate-limit/memory.js';
import {
  MAY_HAVE_LEFT,
  QUOTA_ERRCODE,
  classifyAttempt,
  nextQuotaReset,
  priorAttemptMayHaveLeft,
  type AttemptResult,
  type DeliveryEffect,
  type ErrcodeAction,
  type MinuteLimitPolicy,
} from './outcome.js';

/** The part of the SDK's WeChat client the dispatcher uses (`createWeChatClient(...)` satisfies it). */
export interface DeliverySender {
  /** POST /cgi-bin/message/template/subscribe (one-time subscription message). */
  sendOneTime(input: {
    touser: string;
    template_id: string;
    scene: number;
    title: string;
    data: { content: { value: string; color?: string } };
    url?: string;
    miniprogram?: { appid: string; pagepath: string };
  }): Promise<unknown>;
  /** POST /cgi-bin/message/subscribe/bizsend (subscription notification); resolves with WeChat's msgid when given. */
  sendNotification(input: {
    touser: string;
    template_id: string;
    data: Record<string, { value: string }>;
    page?: string;
    miniprogram?: { appid: string; pagepath: string };
    miniprogram_state?: MiniprogramState;
    lang?: NotificationLang;
  }): Promise<{ msgid?: string | number } | unknown>;
}

/** A pino-compatible logger subset. */
export interface DeliveryLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Dependencies of {@link createDispatcher}. */
export type DispatcherDeps = {
  store: Store;
  /** The WeChat client of an app. */
  wechat: (appId: string) => DeliverySender;
  /** @default systemClock */
  clock?: Clock;
  /** @default a silent logger */
  logger?: DeliveryLogger;
  /** Shared (Redis) or in-process limiter. @default an in-process limiter at `options.ratePerSecond`, or none */
  rateLimiter?: RateLimiter;
  /** Jitter source in [0, 1). @default Math.random */
  random?: () => number;
  /** Generates the instance id when `options.instanceId` is not given. */
  ids?: () => string;
  /** The SDK's action for errcodes the delivery table does not name (pass `(c) => errcodeInfo(c).action`). */
  errcodeAction?: (errcode: number) => ErrcodeAction | undefined;
};

/** Options of {@link createDispatcher}; the service takes them from `config.delivery`. */
export type DispatcherOptions = {
  /** Lease owner name of this instance. @default `${hostname}:${pid}:${random}` */
  instanceId?: string;
  /** Sends in flight at once. @default 16 */
  concurrency: number;
  /** Largest number of messages claimed at once (the loop holds at most concurrency + batchSize). @default 100 */
  batchSize: number;
  /** Lease of a claimed message in ms; extended while the instance still works on it. @default 30000 */
  leaseMs: number;
  /** Sleep between polls when nothing is due, in ms. @default 500 */
  pollIntervalMs?: number;
  /** Attempts before a retryable failure becomes final. @default 8 */
  maxAttempts: number;
  /** First retry delay ceiling in ms. @default 500 */
  backoffBaseMs: number;
  /** Longest retry delay in ms. @default 60000 */
  backoffMaxMs: number;
  /** What a 45011 does (see {@link MinuteLimitPolicy}). @default 'pause' */
  minuteLimit?: MinuteLimitPolicy;
  /** Sends per second per app for the default in-process limiter (ignored when `deps.rateLimiter` is given). */
  ratePerSecond?: number;
  /** Messages enqueued per campaign batch (server-side INSERT … SELECT). @default 1000 */
  campaignBatchSize?: number;
  /** Largest number of outcomes recorded in one store transaction. @default 500 */
  completeBatchSize?: number;
  /**
   * Longest time a received outcome waits to be group-committed with others, in ms; a group is also committed as
   * soon as it holds `concurrency` outcomes. Each commit has a fixed cost, so tiny groups would dominate the CPU;
   * a crash loses at most one group's outcomes (those messages end `unknown`). @default 10
   */
  completeLingerMs?: number;
};

/** Counters since the dispatcher was created. */
export type DispatcherCounters = {
  claimed: number;
  sent: number;
  failed: number;
  unknown: number;
  retried: number;
  /** Outcomes the store refused because another instance took the message over. */
  leaseLost: number;
  /** Store errors while claiming or recording (each retried). */
  storeErrors: number;
  /** Messages put back unsent because the rate limiter failed (e.g. Redis unreachable). */
  rateLimiterErrors: number;
  /** Messages put back unsent because no access token could be had (token endpoint or token store failing). */
  tokenErrors: number;
  /** Messages enqueued for campaigns by this instance. */
  campaignEnqueued: number;
};

/** What the service's status page and metrics show. */
export type DispatcherStatus = {
  instanceId: string;
  running: boolean;
  /** Messages claimed and not yet recorded. */
  held: number;
  /** Requests to WeChat in flight. */
  inFlight: number;
  /** Apps whose sending is paused (45009), until when. */
  pausedApps: { appId: string; until: number; reason: string }[];
  /** Apps whose sending waits after failing to get an access token (other than 45009), until when, and why. */
  tokenUnavailable: { appId: string; until: number; failures: number; reason: string }[];
  counters: DispatcherCounters;
};

/** A running dispatcher. */
export interface Dispatcher {
  /** The lease owner name of this instance. */
  readonly instanceId: string;
  /** Starts the background loop (idempotent). */
  start(): void;
  /**
   * Stops claiming, waits for requests already sent to WeChat and records their outcomes; messages claimed but
   * not yet sent go back to the queue. Idempotent.
   */
  stop(): Promise<void>;
  /** One cycle in the foreground (for tests): campaign enqueuing, one claim, send all, record all. Returns how many were claimed. */
  runOnce(): Promise<number>;
  /** Resolves when the loop last found nothing due and holds nothing (resolves at once when not running and idle). */
  idle(): Promise<void>;
  /** Live status for /status and metrics. */
  status(): DispatcherStatus;
  /**
   * Wakes the loop now instead of at its next poll: call it after enqueuing a message or creating a campaign
   * (see {@link kickingStore}). Cheap and idempotent; does nothing when stopped.
   */
  kick(): void;
}

/**
 * Wraps a store so that every successful `enqueueMessage` and `createCampaign` through it kicks the dispatcher:
 * new work starts at once, not at the next poll (the service hands this to its HTTP routes).
 * @example createServiceApp({ store: kickingStore(store, () => dispatcher.kick()), … })
 */
export function kickingStore(store: Store, kick: () => void): Store {
  const outbox: Store['outbox'] = {
    ...store.outbox,
    async enqueueMessage(input) {
      const r = await store.outbox.enqueueMessage(input);
      if (r.ok && r.created) kick();
      return r;
    },
    async createCampaign(input) {
      const c = await store.outbox.createCampaign(input);
      kick();
      return c;
    },
  };
  return { ...store, outbox };
}

type Pending = { message: OutboxMessage; outcome: AttemptOutcome };

const silent: DeliveryLogger = { info() {}, warn() {}, error() {} };
/** How long a message waits after the rate limiter failed before it is claimed again. */
const LIMITER_RETRY_MS = 1000;
/** How often the dispatcher looks for `running` campaigns it is not watching (see finishCampaigns). */
const RUNNING_RESCAN_MS = 30_000;
/** At most one warning per outage kind (rate limiter, token) per this many ms: every message of a batch meets it. */
const WARN_EVERY_MS = 10_000;
/**
 * How long an app's messages wait after its access token could not be had: this, doubled per failure in a row, up
 * to {@link TOKEN_RETRY_MAX_MS}. Waiting per app (not per message) keeps a backlog from asking the token endpoint,
 * whose daily quota is small, once per message.
 */
const TOKEN_RETRY_MS = 1000;
const TOKEN_RETRY_MAX_MS = 60_000;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** A counting semaphore bounding concurrent sends. */
class Semaphore {
  #free: number;
  #waiters: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#waiters.push(r));
    try {
      return await fn();
    } finally {
      const next = this.#waiters.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/**
 * Creates the dispatcher of one service instance. N instances on one PostgreSQL share the work through leases
 * (FOR UPDATE SKIP LOCKED), the shared pause table and (optionally) a Redis rate limiter; no coordinator.
 * @example
 * const d = createDispatcher({ store, wechat: () => client }, { concurrency: 16, batchSize: 100, leaseMs: 30_000, maxAttempts: 8, backoffBaseMs: 500, backoffMaxMs: 60_000 });
 * d.start(); … await d.stop();
 */
export function createDispatcher(deps: DispatcherDeps, options: DispatcherOptions): Dispatcher {
  const { store } = deps;
  const clock = deps.clock ?? systemClock;
  const log = deps.logger ?? silent;
  const random = deps.random ?? Math.random;
  const instanceId =
    options.instanceId ?? deps.ids?.() ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const pollIntervalMs = options.pollIntervalMs ?? 500;
  const campaignBatchSize = options.campaignBatchSize ?? 1000;
  const completeBatchSize = options.completeBatchSize ?? 500;
  const completeLingerMs = Math.max(0, options.completeLingerMs ?? 10);
  const completeGroupSize = Math.max(1, Math.min(completeBatchSize, options.concurrency));
  const limiter =
    deps.rateLimiter ??
    (options.ratePerSecond === undefined
      ? undefined
      : createMemoryRateLimiter({ ratePerSecond: options.ratePerSecond }));
  const ownsLimiter = deps.rateLimiter === undefined && limiter !== undefined;
  const backoff = { baseMs: options.backoffBaseMs, maxMs: options.backoffMaxMs };
  const sem = new Semaphore(Math.max(1, options.concurrency));

  const counters: DispatcherCounters = {
    claimed: 0,
    sent: 0,
    failed: 0,
    unknown: 0,
    retried: 0,
    leaseLost: 0,
    storeErrors: 0,
    rateLimiterErrors: 0,
    tokenErrors: 0,
    campaignEnqueued: 0,
  };
  let limiterWarnedAt = -Infinity;
  let tokenWarnedAt = -Infinity;
  const tokenWait = new Map<string, { until: number; failures: number; reason: string }>();
  const held = new Map<string, OutboxMessage>();
  const paused = new Map<string, { until: number; reason: string }>();
  let pausedFetchedAt = -Infinity;
  let finishing = new Set<string>();
  let lastFinishAt = -Infinity;
  let runningFetchedAt = -Infinity;
  let campaignsFetchedAt = -Infinity;
  let enqueuing: string[] = [];
  let inFlight = 0;
  let running = false;
  let loopDone: Promise<void> | null = null;
  let abort = new AbortController();
  let leaseTimer: NodeJS.Timeout | null = null;
  const batches = new Set<Promise<void>>();
  let idleWaiters: (() => void)[] = [];
  let capacityWaiter: (() => void) | null = null;
  let wakeLoop: AbortController = new AbortController();
  let kicked = false;

  // Outcomes waiting to be recorded; group-committed (see `record`) in transactions of up to completeBatchSize.
  let pending: Pending[] = [];
  let lastClaimEmpty = false;
  let flushing: Promise<void> | null = null;
  let flushTimer: NodeJS.Timeout | null = null;

  function pausedUntil(appId: string, now: number): { until: number; reason: string } | undefined {
    const p = paused.get(appId);
    if (p === undefined) return undefined;
    if (p.until <= now) {
      paused.delete(appId);
      return undefined;
    }
    return p;
  }

  async function refreshPaused(now: number, force = false): Promise<void> {
    if (!force && now - pausedFetchedAt < Math.max(1000, pollIntervalMs)) return;
    pausedFetchedAt = now;
    const rows = await store.outbox.pausedApps(now);
    paused.clear();
    for (const r of rows) paused.set(r.appId, { until: r.until, reason: r.reason });
  }

  async function applyEffects(effects: DeliveryEffect[]): Promise<void> {
    for (const e of effects) {
      const known = paused.get(e.appId);
      if (known !== undefined && known.until >= e.until) continue;
      paused.set(e.appId, { until: e.until, reason: e.reason });
      log.warn({ appId: e.appId, until: new Date(e.until).toISOString(), reason: e.reason }, 'app paused');
      try {
        await store.outbox.pauseApp({ appId: e.appId, until: e.until, reason: e.reason });
      } catch (err) {
        counters.storeErrors++;
        log.error({ err, appId: e.appId }, 'could not record app pause');
      }
    }
  }

  function count(outcome: AttemptOutcome): void {
    if (outcome.status === 'retry') counters.retried++;
    else counters[outcome.status]++;
  }

  async function flushOnce(): Promise<void> {
    while (pending.length > 0) {
      const chunk = pending.slice(0, completeBatchSize);
      const now = clock.now();
      let results: boolean[];
      try {
        if (store.outbox.completeMany !== undefined) {
          results = await store.outbox.completeMany({
            owner: instanceId,
            items: chunk.map((p) => ({ id: p.message.id, outcome: p.outcome })),
            now,
          });
        } else {
          results = [];
          for (const p of chunk)
            results.push(
              await store.outbox.complete({ id: p.message.id, owner: instanceId, outcome: p.outcome, now }),
            );
        }
      } catch (err) {
        // Keep the outcomes and try again: the leases are still extended while we hold the messages.
        counters.storeErrors++;
        log.error({ err, count: chunk.length }, 'could not record outcomes; retrying');
        await sleep(Math.min(pollIntervalMs, 1000));
        continue;
      }
      pending = pending.slice(chunk.length);
      chunk.forEach((p, i) => {
        held.delete(p.message.id);
        if (results[i] === false) {
          counters.leaseLost++;
          log.warn(
            { id: p.message.id, outcome: p.outcome.status },
            'lease lost before the outcome was recorded',
          );
        } else {
          count(p.outcome);
        }
      });
      notifyCapacity();
    }
  }

  /** Records every pending outcome (joining a flush already under way, then flushing what it did not take). */
  async function flush(): Promise<void> {
    while (pending.length > 0 || flushing !== null) {
      if (flushing !== null) {
        await flushing;
        continue;
      }
      flushing = flushOnce().finally(() => {
        flushing = null;
      });
    }
    if (flushTimer !== null) {
      clearTimeout(flushTimer);
      flushTimer = null;
    }
  }

  /**
   * Queues an outcome for a group commit: recorded once `concurrency` outcomes wait or `completeLingerMs` after the
   * first of them (batch ends flush at once). Small groups keep what a crash could lose — messages it would leave
   * `unknown` though WeChat answered — to about one group, while sparing a commit per message.
   */
  function record(message: OutboxMessage, outcome: AttemptOutcome): void {
    pending.push({ message, outcome });
    if (pending.length >= completeGroupSize) {
      if (flushTimer !== null) clearTimeout(flushTimer);
      flushTimer = null;
      void flush();
    } else if (flushTimer === null) {
      flushTimer = setTimeout(() => {
        flushTimer = null;
        void flush();
      }, completeLingerMs);
    }
  }

  // Attempts about to start, marked in the store in one statement per group (all that became ready in one
  // event-loop turn, or while the previous group's statement ran). A crash then leaves `unknown` only what was
  // really started; claimed-but-unsent messages are simply claimed again after the lease.
  type StartWaiter = { id: string; resolve: (r: 'started' | 'lost' | 'error') => void };
  let startQueue: StartWaiter[] = [];
  let startScheduled = false;
  let starting = false;

  async function flushStarts(): Promise<void> {
    startScheduled = false;
    if (starting) return;
    starting = true;
    try {
      while (startQueue.length > 0) {
        const group = startQueue;
        startQueue = [];
        try {
          const marked = await store.outbox.markAttemptStarted({
            ids: group.map((g) => g.id),
            owner: instanceId,
            now: clock.now(),
          });
          group.forEach((g, i) => g.resolve(marked[i] === true ? 'started' : 'lost'));
        } catch (err) {
          counters.storeErrors++;
          log.error({ err, count: group.length }, 'could not mark attempts started; putting them back');
          for (const g of group) g.resolve('error');
        }
      }
    } finally {
      starting = false;
    }
  }

  /** Resolves once the store knows `m`'s attempt started ('lost': another owner has it; 'error': do not send). */
  function startAttempt(m: OutboxMessage): Promise<'started' | 'lost' | 'error'> {
    return new Promise((resolve) => {
      startQueue.push({ id: m.id, resolve });
      if (!startScheduled && !starting) {
        startScheduled = true;
        setImmediate(() => void flushStarts());
      }
    });
  }

  function notifyCapacity(): void {
    const w = capacityWaiter;
    capacityWaiter = null;
    w?.();
    if (held.size === 0 && pending.length === 0) {
      const ws = idleWaiters;
      if (!running || lastClaimEmpty) {
        idleWaiters = [];
        for (const r of ws) r();
      }
    }
  }
  /** A retry outcome that puts an unsent message back without losing what we know about earlier attempts. */
  function putBack(
    m: OutboxMessage,
    nextAttemptAt: number,
    errorCode: string,
    errorMessage: string,
  ): AttemptOutcome {
    const outcome: AttemptOutcome = {
      status: 'retry',
      nextAttemptAt,
      errorCode: m.errorCode === MAY_HAVE_LEFT ? MAY_HAVE_LEFT : errorCode,
      errorMessage,
      // Nothing was sent: the claim's attempt count goes back, so pauses, restarts and outages do not use up
      // attempts (nor lengthen the backoff) of a message WeChat never saw.
      unsent: true,
    };
    if (m.lastErrcode !== null) outcome.lastErrcode = m.lastErrcode;
    return outcome;
  }

  /**
   * The send never left because no access token could be had: nothing was attempted, so the message goes back
   * unsent. A 45009 from the token endpoint (its daily quota) pauses the app until the quota resets, like a 45009
   * from a send; anything else (store down, endpoint failing, wrong secret) makes the app's messages wait a while.
   */
  async function tokenUnavailable(m: OutboxMessage, err: AppError): Promise<AttemptOutcome> {
    counters.tokenErrors++;
    const now = clock.now();
    const reason = err.message.slice(0, 300);
    if (err.details?.errcode === QUOTA_ERRCODE) {
      const until = nextQuotaReset(now);
      await applyEffects([{ type: 'pause-app', appId: m.appId, until, reason }]);
      return putBack(m, until, 'DELIVERY_APP_PAUSED', reason);
    }
    // Requests that were already waiting for the same failed fetch count as one failure, not one each.
    let wait = tokenWait.get(m.appId);
    if (wait === undefined || wait.until <= now) {
      const failures = (wait?.failures ?? 0) + 1;
      wait = {
        until: now + Math.min(TOKEN_RETRY_MS * 2 ** (failures - 1), TOKEN_RETRY_MAX_MS),
        failures,
        reason,
      };
      tokenWait.set(m.appId, wait);
    }
    if (now - tokenWarnedAt >= WARN_EVERY_MS) {
      tokenWarnedAt = now;
      log.warn(
        { appId: m.appId, failures: wait.failures, retryAt: new Date(wait.until).toISOString(), reason },
        'no access token: putting messages back unsent',
      );
    }
    return putBack(m, wait.until, 'DELIVERY_TOKEN_UNAVAILABLE', reason);
  }

  async function send(m: OutboxMessage): Promise<AttemptResult> {
    let client: DeliverySender;
    try {
      client = deps.wechat(m.appId);
    } catch (err) {
      return {
        ok: false,
        error: Object.assign(new Error(`no WeChat client for app ${m.appId}`, { cause: err }), {
          requestMayHaveLeft: false,
        }),
      };
    }
    inFlight++;
    try {
      if (m.kind === 'one-time') {
        const p = m.payload as OneTimePayload;
        const content: { value: string; color?: string } = { value: p.content };
        if (p.color !== undefined) content.color = p.color;
        const req: Parameters<DeliverySender['sendOneTime']>[0] = {
          touser: m.openid,
          template_id: m.templateId,
          scene: m.scene ?? 0,
          title: p.title,
          data: { content },
        };
        if (p.url !== undefined) req.url = p.url;
        if (p.miniprogram !== undefined) req.miniprogram = p.miniprogram;
        await client.sendOneTime(req);
        return { ok: true };
      }
      const p = m.payload as NotificationPayload;
      const req: Parameters<DeliverySender['sendNotification']>[0] = {
        touser: m.openid,
        template_id: m.templateId,
        data: p.data,
      };
      if (p.page !== undefined) req.page = p.page;
      if (p.miniprogram !== undefined) req.miniprogram = p.miniprogram;
      if (p.miniprogram_state !== undefined) req.miniprogram_state = p.miniprogram_state;
      if (p.lang !== undefined) req.lang = p.lang;
      const r = await client.sendNotification(req);
      const msgid = typeof r === 'object' && r !== null ? (r as { msgid?: unknown }).msgid : undefined;
      return { ok: true, msgid: typeof msgid === 'string' || typeof msgid === 'number' ? msgid : null };
    } catch (error) {
      return { ok: false, error };
    } finally {
      inFlight--;
    }
  }

  async function deliver(m: OutboxMessage, signal: AbortSignal): Promise<void> {
    const tw = tokenWait.get(m.appId);
    if (tw !== undefined && tw.until > clock.now()) {
      record(m, putBack(m, tw.until, 'DELIVERY_TOKEN_UNAVAILABLE', tw.reason));
      return;
    }
    const p = pausedUntil(m.appId, clock.now());
    if (p !== undefined) {
      record(
        m,
        putBack(
          m,
          p.until,
          'DELIVERY_APP_PAUSED',
          `app paused until ${new Date(p.until).toISOString()}: ${p.reason}`,
        ),
      );
      return;
    }
    let admitted: boolean;
    try {
      admitted =
        !signal.aborted &&
        (limiter === undefined || (await acquire(limiter, m.appId, () => clock.now(), signal)));
    } catch (err) {
      // A limiter that cannot answer (Redis down) must not strand the message in `sending` under our lease: put it
      // back unsent, a little later, rather than send past a limit other instances may be counting on.
      counters.rateLimiterErrors++;
      const now = clock.now();
      if (now - limiterWarnedAt >= WARN_EVERY_MS) {
        limiterWarnedAt = now;
        log.warn({ err, appId: m.appId }, 'rate limiter unavailable: putting messages back unsent');
      }
      record(
        m,
        putBack(
          m,
          now + LIMITER_RETRY_MS,
          'DELIVERY_RATE_LIMITER_UNAVAILABLE',
          'the rate limiter could not be reached; will be sent later',
        ),
      );
      return;
    }
    if (!admitted) {
      record(m, putBack(m, clock.now(), 'DELIVERY_RELEASED', 'released unsent by a stopping dispatcher'));
      return;
    }
    // Another message of this app may have hit 45009 while we waited for a token.
    const p2 = pausedUntil(m.appId, clock.now());
    if (p2 !== undefined) {
      record(
        m,
        putBack(
          m,
          p2.until,
          'DELIVERY_APP_PAUSED',
          `app paused until ${new Date(p2.until).toISOString()}: ${p2.reason}`,
        ),
      );
      return;
    }
    const started = await startAttempt(m);
    if (started === 'lost') {
      // Another instance took the message over after our lease ran out (it is theirs to send), or its campaign
      // was cancelled before the attempt started.
      held.delete(m.id);
      counters.leaseLost++;
      log.warn({ id: m.id }, 'lease lost (or campaign cancelled) before sending');
      notifyCapacity();
      return;
    }
    if (started === 'error') {
      record(m, putBack(m, clock.now(), 'DELIVERY_RELEASED', 'put back unsent: the store was unavailable'));
      return;
    }
    const result = await send(m);
    if (!result.ok && isAppError(result.error, 'WX_TOKEN_UNAVAILABLE')) {
      record(m, await tokenUnavailable(m, result.error));
      return;
    }
    tokenWait.delete(m.appId); // a token was had
    const ctx = {
      now: clock.now(),
      attempt: m.attempts,
      maxAttempts: options.maxAttempts,
      backoff,
      random,
      priorAttemptMayHaveLeft: priorAttemptMayHaveLeft(m),
      minuteLimit: options.minuteLimit ?? 'pause',
      ...(deps.errcodeAction === undefined ? {} : { errcodeAction: deps.errcodeAction }),
    };
    const { outcome, effects } = classifyAttempt(m, result, ctx);
    if (effects.length > 0) await applyEffects(effects);
    record(m, outcome);
  }

  async function processBatch(batch: OutboxMessage[], signal: AbortSignal): Promise<void> {
    await Promise.all(batch.map((m) => sem.run(() => deliver(m, signal))));
    await flush();
  }

  async function enqueueCampaigns(now: number): Promise<boolean> {
    if (enqueuing.length === 0 && now - campaignsFetchedAt < Math.max(1000, pollIntervalMs)) return false;
    if (enqueuing.length === 0) {
      campaignsFetchedAt = now;
      enqueuing = (await store.outbox.listEnqueuingCampaigns()).map((c) => c.id);
    }
    let any = false;
    for (const id of [...enqueuing]) {
      const n = await store.outbox.enqueueCampaignBatch({
        campaignId: id,
        batchSize: campaignBatchSize,
        now: clock.now(),
      });
      counters.campaignEnqueued += n;
      if (n === 0) {
        enqueuing = enqueuing.filter((x) => x !== id);
        finishing.add(id);
      } else any = true;
    }
    return any;
  }

  async function finishCampaigns(now: number, force: boolean): Promise<void> {
    // Campaigns this instance did not see draining: after a restart, or whose last messages another instance's
    // claim ended `unknown` (a dead sender's started notifications), so that no message of theirs passed through here.
    // The rescan also forgets campaigns that stopped running (cancelled, or finished elsewhere): they would be
    // checked every second for as long as this instance runs.
    if (now - runningFetchedAt >= RUNNING_RESCAN_MS) {
      runningFetchedAt = now;
      finishing = new Set((await store.outbox.listRunningCampaigns()).map((c) => c.id));
    }
    if (finishing.size === 0 || (!force && now - lastFinishAt < Math.max(1000, pollIntervalMs))) return;
    lastFinishAt = now;
    for (const id of [...finishing]) {
      if (await store.outbox.finishCampaignIfDrained({ id, now })) {
        finishing.delete(id);
        log.info({ campaignId: id }, 'campaign done');
      }
    }
  }

  async function claim(limit: number): Promise<OutboxMessage[]> {
    const now = clock.now();
    await refreshPaused(now);
    const excludeAppIds = [...paused.keys()].filter((a) => pausedUntil(a, now) !== undefined);
    const input: Parameters<Store['outbox']['claim']>[0] = {
      owner: instanceId,
      limit,
      leaseMs: options.leaseMs,
      now,
    };
    if (excludeAppIds.length > 0) input.excludeAppIds = excludeAppIds;
    const claimed = await store.outbox.claim(input);
    counters.claimed += claimed.length;
    lastClaimEmpty = claimed.length === 0;
    const batch: OutboxMessage[] = [];
    for (const m of claimed) {
      // Our own lease ran out (the store was unreachable to extend it) and this claim took it back: the delivery
      // that holds it is still under way, and starting a second one could send the message twice.
      if (held.has(m.id)) continue;
      held.set(m.id, m);
      batch.push(m);
      if (m.campaignId !== null) finishing.add(m.campaignId);
    }
    return batch;
  }

  async function extendLeases(): Promise<void> {
    if (held.size === 0) return;
    try {
      await store.outbox.extendLease({
        ids: [...held.keys()],
        owner: instanceId,
        leaseUntil: clock.now() + options.leaseMs,
      });
    } catch (err) {
      counters.storeErrors++;
      log.error({ err }, 'could not extend leases');
    }
  }

  let foldingCounts = false;
  /** Folds the store's appended count changes (where it keeps counts that way), so reading them stays cheap. */
  async function foldCounts(): Promise<void> {
    if (store.outbox.foldMessageCounts === undefined || foldingCounts) return;
    foldingCounts = true;
    try {
      await store.outbox.foldMessageCounts();
    } catch (err) {
      counters.storeErrors++;
      log.error({ err }, 'could not fold message counts');
    } finally {
      foldingCounts = false;
    }
  }

  function startLeaseTimer(): void {
    if (leaseTimer !== null) return;
    leaseTimer = setInterval(
      () => {
        void extendLeases();
        void foldCounts();
      },
      Math.max(250, Math.floor(options.leaseMs / 3)),
    );
    leaseTimer.unref();
  }

  async function loop(): Promise<void> {
    // Hold at most one claim batch beyond the sends in flight: the pipe stays full while the next claim runs. A crash
    // delays the held-but-unstarted ones by one lease (they are re-claimed); only started attempts end `unknown`.
    const highWater = Math.max(1, options.concurrency) + Math.max(1, options.batchSize);
    // Claim only once there is room for at least half a batch: every claim is a write transaction with a fixed
    // cost, so topping up a few messages at a time after each recorded outcome would spend most of the CPU there.
    const claimRoom = Math.max(1, Math.ceil(options.batchSize / 2));
    while (running) {
      try {
        const now = clock.now();
        const enqueued = await enqueueCampaigns(now);
        // At most once a second, also while busy: a campaign drains while others keep the outbox full.
        await finishCampaigns(now, false);
        if (highWater - held.size < claimRoom) {
          await new Promise<void>((r) => {
            capacityWaiter = r;
          });
          continue;
        }
        const batch = await claim(Math.min(options.batchSize, highWater - held.size));
        if (batch.length > 0) {
          const signal = abort.signal;
          const p = processBatch(batch, signal).catch((err: unknown) => log.error({ err }, 'batch failed'));
          batches.add(p);
          void p.finally(() => batches.delete(p));
          continue;
        }
        await finishCampaigns(clock.now(), true);
        notifyCapacity();
        if (!enqueued && !kicked) {
          wakeLoop = new AbortController();
          await sleep(pollIntervalMs, wakeLoop.signal);
        }
        kicked = false;
      } catch (err) {
        counters.storeErrors++;
        log.error({ err }, 'dispatcher cycle failed; retrying');
        await sleep(pollIntervalMs, wakeLoop.signal);
      }
    }
  }

  return {
    instanceId,
    start() {
      if (running) return;
      running = true;
      abort = new AbortController();
      startLeaseTimer();
      loopDone = loop();
      log.info({ instanceId }, 'dispatcher started');
    },
    async stop() {
      if (!running && loopDone === null) return;
      running = false;
      abort.abort();
      wakeLoop.abort();
      const w = capacityWaiter;
      capacityWaiter = null;
      w?.();
      await loopDone;
      loopDone = null;
      while (batches.size > 0) await Promise.all([...batches]);
      await flush();
      if (leaseTimer !== null) clearInterval(leaseTimer);
      leaseTimer = null;
      if (ownsLimiter) await limiter?.close();
      notifyCapacity();
      log.info({ instanceId }, 'dispatcher stopped');
    },
    async runOnce() {
      const now = clock.now();
      await enqueueCampaigns(now);
      const batch = await claim(options.batchSize);
      if (batch.length > 0) {
        startLeaseTimer();
        try {
          await processBatch(batch, new AbortController().signal);
        } finally {
          if (!running && leaseTimer !== null) {
            clearInterval(leaseTimer);
            leaseTimer = null;
          }
        }
      }
      await finishCampaigns(clock.now(), true);
      return batch.length;
    },
    idle() {
      if (held.size === 0 && pending.length === 0 && (!running || lastClaimEmpty)) return Promise.resolve();
      return new Promise<void>((r) => idleWaiters.push(r));
    },
    kick() {
      if (!running) return;
      campaignsFetchedAt = -Infinity;
      kicked = true;
      wakeLoop.abort();
    },
    status() {
      const now = clock.now();
      return {
        instanceId,
        running,
        held: held.size,
        inFlight,
        pausedApps: [...paused.entries()]
          .filter(([, p]) => p.until > now)
          .map(([appId, p]) => ({ appId, until: p.until, reason: p.reason })),
        tokenUnavailable: [...tokenWait.entries()]
          .filter(([, w]) => w.until > now)
          .map(([appId, w]) => ({ appId, until: w.until, failures: w.failures, reason: w.reason })),
        counters: { ...counters },
      };
    },
  };
}
