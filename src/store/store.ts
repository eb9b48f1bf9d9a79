// The storage port of the service: grants (the ledger), the outbox, campaigns, templates, API keys
// and consent nonces. Implemented by ./sqlite and ./postgres; one contract suite (./contract.ts) runs
// against both. Every method is atomic on its own; the ones that span areas (enqueue = reserve grant +
// insert message) are one transaction.
import type { MiniprogramState, NotificationLang } from '../wechat/validate.js';

/** Which engine backs a store. */
export type Engine = 'sqlite' | 'postgres';

/** The two consent flows. */
export type MessageKind = 'one-time' | 'notification';

/**
 * State of a one-time grant (one send for (app, openid, template, scene)).
 * available → reserved (a message was enqueued) → consumed (WeChat accepted it)
 * reserved → available (released: WeChat did not use it) ; any → revoked (43101, refusal, opt-out).
 */
export type GrantState = 'available' | 'reserved' | 'consumed' | 'revoked';

/** A one-time grant row. Times are ms since the epoch. */
export type Grant = {
  id: string;
  appId: string;
  openid: string;
  templateId: string;
  scene: number;
  state: GrantState;
  createdAt: number;
  updatedAt: number;
  /** When the user (last) confirmed. */
  confirmedAt: number;
  /** When it was consumed/revoked, if it was. */
  closedAt: number | null;
};

/** Notification credits for (app, openid, template): accepts minus sends; long-term templates set `longTerm`. */
export type NotificationCredit = {
  appId: string;
  openid: string;
  templateId: string;
  /** Credits that can still be reserved. */
  available: number;
  /** Credits held by queued/sending messages. */
  reserved: number;
  longTerm: boolean;
  updatedAt: number;
};

/** Outcome of recording a one-time confirm. */
export type RecordGrantResult = {
  grant: Grant;
  /** False when the grant already existed and was available or reserved (confirms do not stack). */
  created: boolean;
};

/** Outbox message states. `queued → sending → sent | failed | unknown`; `cancelled` for campaign cancel. */
export type MessageStatus = 'queued' | 'sending' | 'sent' | 'failed' | 'unknown' | 'cancelled';

/** The payload of a one-time message, as WeChat's template/subscribe takes it (minus touser/template/scene). */
export type OneTimePayload = {
  title: string;
  content: string;
  color?: string;
  url?: string;
  miniprogram?: { appid: string; pagepath: string };
};

/** The payload of a notification, as bizsend takes it (minus touser/template). */
export type NotificationPayload = {
  data: Record<string, { value: string }>;
  page?: string;
  miniprogram?: { appid: string; pagepath: string };
  /** Passed to bizsend only when given (spec §2.4: listed by the current doc only). */
  miniprogram_state?: MiniprogramState;
  /** Passed to bizsend only when given, like `miniprogram_state`. */
  lang?: NotificationLang;
};

/** A message in the outbox. */
export type OutboxMessage = {
  id: string;
  appId: string;
  kind: MessageKind;
  openid: string;
  templateId: string;
  /** Scene of the reserved grant (one-time only). */
  scene: number | null;
  /** The grant this message holds (one-time only). */
  grantId: string | null;
  payload: OneTimePayload | NotificationPayload;
  status: MessageStatus;
  attempts: number;
  /** Earliest time the next attempt may start. */
  nextAttemptAt: number;
  leaseOwner: string | null;
  leaseUntil: number | null;
  /**
   * When the current attempt's request was about to leave ({@link OutboxRepo.markAttemptStarted}); null while a
   * claimed message still waits to be sent. Only a started attempt may have reached WeChat.
   */
  attemptStartedAt: number | null;
  /** WeChat errcode of the last attempt, if any. */
  lastErrcode: number | null;
  /** Stable wxsub code explaining a failure (e.g. DELIVERY_CONSENT_REVOKED). */
  errorCode: string | null;
  errorMessage: string | null;
  msgid: string | null;
  campaignId: string | null;
  idempotencyKey: string | null;
  createdAt: number;
  updatedAt: number;
  sentAt: number | null;
};

/** Input of {@link Store.enqueueMessage}. */
export type EnqueueInput = {
  appId: string;
  kind: MessageKind;
  openid: string;
  templateId: string;
  /** One-time: a scene, or 'any' for any scene the user holds (lowest available scene first). */
  scene?: number | 'any';
  payload: OneTimePayload | NotificationPayload;
  /** Idempotency-Key header; with `requestHash` makes retries return the first message. */
  idempotencyKey?: string;
  /** Hash of the canonical request body; same key + other hash → conflict. */
  requestHash?: string;
  campaignId?: string;
  now: number;
};

/** Result of {@link Store.enqueueMessage}. */
export type EnqueueResult =
  | {
      ok: true;
      message: OutboxMessage;
      /** false when an idempotent retry returned the existing message */ created: boolean;
    }
  | {
      ok: false;
      reason: 'no-grant';
      /** what the user does hold for this template (available one-time scenes) */ heldScenes: number[];
      notificationCredits: number;
    }
  | { ok: false; reason: 'idempotency-conflict'; existingId: string };

/** How an attempt ended, as the dispatcher decided from WeChat's reply. */
export type AttemptOutcome =
  | { status: 'sent'; msgid?: string; lastErrcode?: number; errorCode?: string }
  /** grant: 'release' when WeChat did not use the grant, 'revoke' on 43101, 'keep' otherwise */
  | {
      status: 'failed';
      grant: 'release' | 'revoke' | 'keep';
      lastErrcode?: number;
      errorCode: string;
      errorMessage: string;
    }
  | { status: 'unknown'; lastErrcode?: number; errorCode: string; errorMessage: string }
  | {
      status: 'retry';
      nextAttemptAt: number;
      lastErrcode?: number;
      errorCode: string;
      errorMessage: string;
      /** The attempt never started (put back unsent): the count the claim added is given back. */
      unsent?: boolean;
    };

/** Filter for listing messages. Cursor is opaque (returned as `nextCursor`). */
export type MessageFilter = {
  appId?: string;
  status?: MessageStatus;
  templateId?: string;
  openid?: string;
  campaignId?: string;
  cursor?: string;
  limit?: number;
};

/** A page of results. */
export type Page<T> = { items: T[]; nextCursor: string | null };

/** A campaign: one message per current holder of an available grant. */
export type Campaign = {
  id: string;
  appId: string;
  name: string;
  kind: MessageKind;
  templateId: string;
  /** Which scenes count (one-time only); null = all. */
  sceneFilter: { min?: number; max?: number; scenes?: number[] } | null;
  payload: OneTimePayload | NotificationPayload;
  status: 'enqueuing' | 'running' | 'done' | 'cancelled';
  createdAt: number;
  updatedAt: number;
};

/** Counters of a campaign's messages by status. */
export type CampaignStats = {
  total: number;
  queued: number;
  sending: number;
  sent: number;
  failed: number;
  unknown: number;
  cancelled: number;
};

/** A template the service knows (for local validation and for "unknown template" errors). */
export type TemplateRecord = {
  appId: string;
  templateId: string;
  kind: MessageKind;
  title: string;
  /** Notification keywords in order, e.g. [{ key: 'thing1', type: 'thing' }] ; empty for one-time. */
  keywords: { key: string; type: string; enumValues?: string[] }[];
  /** 2 = one-time notification, 3 = long-term (notification only). */
  type?: number;
};

/** A stored API key (the secret itself is never stored, only its hash). */
export type ApiKeyRecord = { id: string; name: string; createdAt: number; revokedAt: number | null };

/** The ledger: one-time grants and notification credits. */
export interface GrantRepo {
  /** Records a one-time confirm. Idempotent; never stacks within one scene; re-opens a consumed/revoked grant. */
  recordOneTime(input: {
    appId: string;
    openid: string;
    templateId: string;
    scene: number;
    now: number;
  }): Promise<RecordGrantResult>;
  /** Records a refusal (cancel) for statistics; no grant. */
  recordRefusal(input: {
    appId: string;
    templateId: string;
    scene: number;
    openid?: string;
    now: number;
  }): Promise<void>;
  /** Atomically available → consumed. Exactly one of many concurrent callers gets `true`. */
  consume(input: {
    appId: string;
    openid: string;
    templateId: string;
    scene: number;
    now: number;
  }): Promise<boolean>;
  /** Marks every open grant of (app, openid, template) (or one scene) revoked. Returns how many. */
  revoke(input: {
    appId: string;
    openid: string;
    templateId: string;
    scene?: number;
    now: number;
  }): Promise<number>;
  /** Scenes the user holds available for a template, ascending. */
  availableScenes(input: { appId: string; openid: string; templateId: string }): Promise<number[]>;
  /** All scenes that ever had a grant row for the user (any state), for `scene=auto`. */
  knownScenes(input: { appId: string; openid: string; templateId: string }): Promise<number[]>;
  /** One grant by key. */
  get(input: { appId: string; openid: string; templateId: string; scene: number }): Promise<Grant | null>;
  /** Grants in state available (and notification credits > 0) filtered, paged by an opaque cursor. */
  listAvailable(input: {
    appId: string;
    openid?: string;
    templateId?: string;
    cursor?: string;
    limit?: number;
  }): Promise<Page<Grant>>;
  /** Refusal count for statistics. */
  countRefusals(input: { appId: string; templateId?: string }): Promise<number>;
  /** Adds `count` notification credits (popup accept). */
  addNotificationCredits(input: {
    appId: string;
    openid: string;
    templateId: string;
    count: number;
    longTerm?: boolean;
    now: number;
  }): Promise<NotificationCredit>;
  /** Sets notification credits to zero and clears long-term (change event reject / 43101). */
  clearNotificationCredits(input: {
    appId: string;
    openid: string;
    templateId: string;
    now: number;
  }): Promise<void>;
  /** Current notification credits, or null. */
  getNotificationCredit(input: {
    appId: string;
    openid: string;
    templateId: string;
  }): Promise<NotificationCredit | null>;
  /** Every grant row (any state) and credit row of one user, for holdings summaries and `scene=auto`. (added by the store helper) */
  listForUser(input: {
    appId: string;
    openid: string;
    templateId?: string;
  }): Promise<{ grants: Grant[]; credits: NotificationCredit[] }>;
}

/** The outbox and campaigns. */
export interface OutboxRepo {
  /** In ONE transaction: reserve a grant/credit and insert the message (honouring the idempotency key). */
  enqueueMessage(input: EnqueueInput): Promise<EnqueueResult>;
  /**
   * Claims up to `limit` due messages for `owner` until `now + leaseMs`: queued ones whose nextAttemptAt ≤ now,
   * and sending ones whose lease expired. Returns claimed messages with status `sending`, `attemptStartedAt` null
   * and attempts incremented. Uses FOR UPDATE SKIP LOCKED on PostgreSQL. `excludeAppIds` skips paused apps.
   *
   * What an expired lease means depends on whether the dead owner had started the attempt
   * ({@link OutboxRepo.markAttemptStarted}):
   * - not started (claimed, never sent): the attempt did not happen. The message is re-claimable like a queued
   *   one, with its attempt count and error fields unchanged (the dead claim's increment stands for this claim).
   * - started, notification: the request may have reached WeChat and credits stack, so it is NOT re-claimed but set
   *   `unknown` (DELIVERY_OUTCOME_UNKNOWN), its credit spent.
   * - started, one-time: re-claimed (grants cannot stack) with attempts incremented and `errorCode` set to
   *   'DELIVERY_MAY_HAVE_LEFT' (persisted by the claim), so the dispatcher treats a later 43101 as confirmation
   *   that the first attempt went through (see delivery/outcome.ts).
   */
  claim(input: {
    owner: string;
    limit: number;
    leaseMs: number;
    now: number;
    excludeAppIds?: string[];
  }): Promise<OutboxMessage[]>;
  /**
   * Records an attempt's outcome if `owner` still holds the lease; applies the grant effect in the same
   * transaction (sent → consume, failed/release → grant back to available or credit back, failed/revoke → revoke).
   * Returns false when the lease was lost (another owner took the message).
   */
  complete(input: { id: string; owner: string; outcome: AttemptOutcome; now: number }): Promise<boolean>;
  /**
   * Optional batch form of {@link OutboxRepo.complete}: records many outcomes of one owner in ONE transaction,
   * same rules per item. Returns, per item in order, false when the lease was lost. The dispatcher uses it when
   * present (far fewer commits per message), else falls back to `complete`.
   */
  completeMany?(input: {
    owner: string;
    items: { id: string; outcome: AttemptOutcome }[];
    now: number;
  }): Promise<boolean[]>;
  /**
   * Marks the current attempt of claimed messages as started, right before their requests go to WeChat: ONE
   * statement for the whole group. Only messages still `sending` under `owner`'s unexpired lease (`leaseUntil` >
   * `now`: past it another instance may claim and send the message) are marked; returns, per
   * id in order, whether it was (false = the lease was lost: do not send). From now on an expired lease makes the
   * message `unknown` (notification) or a 'DELIVERY_MAY_HAVE_LEFT' retry (one-time) instead of a plain re-claim.
   */
  markAttemptStarted(input: { ids: string[]; owner: string; now: number }): Promise<boolean[]>;
  /** Extends the lease of messages still being worked on. */
  extendLease(input: { ids: string[]; owner: string; leaseUntil: number }): Promise<void>;
  /** One message. */
  getMessage(id: string): Promise<OutboxMessage | null>;
  /** Messages filtered, newest first, paged by an opaque cursor. */
  listMessages(filter: MessageFilter): Promise<Page<OutboxMessage>>;
  /**
   * Counts by status, overall, per app or per campaign (for status, metrics and campaign reports). Read from counts the
   * store keeps as messages change (a few rows per app and campaign), not by counting messages.
   */
  countMessages(filter: { appId?: string; campaignId?: string }): Promise<CampaignStats>;
  /**
   * Housekeeping for stores that append count changes and fold them later (PostgreSQL): folds what has committed
   * and returns how many changes it folded (0 when another instance is folding). Counts are exact either way; folding
   * keeps reading them cheap. The dispatcher calls it now and then. Absent where counts are updated in place (SQLite).
   */
  foldMessageCounts?(): Promise<number>;

  /** Creates a campaign in state `enqueuing`. */
  createCampaign(
    input: Omit<Campaign, 'id' | 'status' | 'createdAt' | 'updatedAt'> & { now: number },
  ): Promise<Campaign>;
  /**
   * Enqueues the next batch (server-side INSERT … SELECT) of one message per holder of an available grant
   * matching the campaign, reserving each grant. Returns how many were enqueued; 0 when done (then the
   * campaign moves to `running`).
   */
  enqueueCampaignBatch(input: { campaignId: string; batchSize: number; now: number }): Promise<number>;
  /** A campaign with its counters. */
  getCampaign(id: string): Promise<(Campaign & { stats: CampaignStats }) | null>;
  /**
   * Cancels: queued messages, and claimed ones whose attempt has not started, → cancelled with their grants/credits
   * back to available, or → `unknown` with them spent when an earlier attempt may have reached WeChat
   * (`DELIVERY_MAY_HAVE_LEFT`); `messages` says how many. An attempt already under way ends as it ends, except that a
   * retry of it ({@link OutboxRepo.complete}) is not queued again: `cancelled` (grant back), or `unknown` (grant
   * spent) when an earlier attempt may have reached WeChat. `cancelled` is whether this call cancelled the campaign:
   * false (and nothing changed) when it was already done or cancelled, or does not exist, so of two cancels racing
   * each other exactly one learns it won.
   */
  cancelCampaign(input: { id: string; now: number }): Promise<{ cancelled: boolean; messages: number }>;
  /** Campaigns still `enqueuing` (so a restarted instance finishes enqueuing them). */
  listEnqueuingCampaigns(): Promise<Campaign[]>;
  /** Campaigns `running` (enqueued, maybe drained: so a restarted instance can mark them `done`). */
  listRunningCampaigns(): Promise<Campaign[]>;
  /** Marks a `running` campaign `done` when nothing is queued or sending. */
  finishCampaignIfDrained(input: { id: string; now: number }): Promise<boolean>;

  /**
   * Pauses an app's sending until `until` (45009 daily quota, 45011 minute limit), shared by every instance. A pause
   * only ever extends: a shorter one (a minute's, while the day's is on) leaves the longer one and its reason.
   */
  pauseApp(input: { appId: string; until: number; reason: string }): Promise<void>;
  /** Apps paused at `now`. */
  pausedApps(now: number): Promise<{ appId: string; until: number; reason: string }[]>;
}

/** Templates known to the service. */
export interface TemplateRepo {
  upsert(t: TemplateRecord): Promise<void>;
  get(appId: string, templateId: string): Promise<TemplateRecord | null>;
  list(appId: string): Promise<TemplateRecord[]>;
}

/** API keys, stored as SHA-256 hashes. */
export interface ApiKeyRepo {
  /** Stores the hash of a new key; the caller generates and shows the key once. */
  create(input: { id: string; name: string; keyHash: string; now: number }): Promise<ApiKeyRecord>;
  /** Finds an unrevoked key by hash. */
  findByHash(keyHash: string): Promise<ApiKeyRecord | null>;
  revoke(id: string, now: number): Promise<void>;
  list(): Promise<ApiKeyRecord[]>;
}

/**
 * Input of {@link NonceRepo.redeemOneTime}: the consent nonce to spend and the callback's outcome to record with it.
 * A confirm carries the openid; a cancel may carry one (WeChat sends it when it knows the user).
 */
export type RedeemOneTimeInput = {
  nonce: string;
  /** When the nonce's token expires (rows past it may be purged). */
  expiresAt: number;
  appId: string;
  templateId: string;
  scene: number;
  now: number;
} & ({ action: 'confirm'; openid: string } | { action: 'cancel'; openid?: string });

/** Result of {@link NonceRepo.redeemOneTime}. `fresh: false` = the nonce was used before and nothing was written. */
export type RedeemOneTimeResult =
  | { fresh: false }
  | ({ fresh: true; action: 'confirm' } & RecordGrantResult)
  | { fresh: true; action: 'cancel' };

/** Single-use consent nonces (the `reserved` token's id). */
export interface NonceRepo {
  /** Marks a nonce used; false if it was used before. Rows past `expiresAt` may be purged. */
  use(input: { nonce: string; expiresAt: number; now: number }): Promise<boolean>;
  /**
   * In ONE transaction: marks the nonce used and records the callback's outcome, a confirm exactly as
   * {@link GrantRepo.recordOneTime} or a cancel as {@link GrantRepo.recordRefusal}. A nonce used before
   * (a replayed callback) changes nothing and returns `{ fresh: false }`; of many concurrent redeems of one
   * nonce exactly one is fresh. The consent callback's single write, so a crash never spends a nonce
   * without its grant or writes a grant whose nonce stays usable.
   */
  redeemOneTime(input: RedeemOneTimeInput): Promise<RedeemOneTimeResult>;
  /**
   * Deletes nonces that expired at or before `now`, the oldest first, at most `limit` of them (default: all);
   * returns how many. An expired nonce guards nothing: its token is refused as expired before the nonce is read.
   */
  purgeExpired(now: number, limit?: number): Promise<number>;
}

/** The service's store. */
export interface Store {
  readonly engine: Engine;
  readonly grants: GrantRepo;
  readonly outbox: OutboxRepo;
  readonly templates: TemplateRepo;
  readonly apiKeys: ApiKeyRepo;
  readonly nonces: NonceRepo;
  /** Applies pending numbered migrations; returns the number applied. */
  migrate(): Promise<number>;
  /** Closes connections. */
  close(): Promise<void>;
}
