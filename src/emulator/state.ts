// The emulated WeChat platform's in-memory state: apps, users, templates, grants, tokens, inboxes, quotas, faults.
import { randomBytes } from 'node:crypto';
import type { Clock } from '../util/clock.js';
import { parsePlaceholders, type Placeholder } from './keywords.js';
import { createRng } from './rng.js';
import type { EmulatorSeed, EmulatorSeedApp, EmulatorSeedTemplate } from './seed.js';

/** Access tokens and jsapi tickets live 7200 s (spec §3.1, §3.2, §2.2). */
export const TOKEN_TTL_MS = 7_200_000;
/** Overlap during which a superseded token/ticket still works (spec §3.1 "5分钟内新老access_token都可用"). */
export const OVERLAP_MS = 300_000;
/** OAuth codes expire after 5 minutes (spec §5). */
export const OAUTH_CODE_TTL_MS = 300_000;
/** Beijing time offset: WeChat's daily quotas reset at 00:00 UTC+8. */
const BEIJING_OFFSET_MS = 8 * 3_600_000;
/** The latest time a JavaScript Date can hold (ECMA-262 §21.4.1.1). */
const MAX_DATE_MS = 8.64e15;

/** Tunable behaviour where the spec is silent or contradictory. */
export type EmulatorBehavior = {
  /**
   * Errcodes for one-time sends whose title > 15 or content > 200 chars (spec §1.5, [UNVERIFIED]):
   * `'argument-invalid'` → 47003; `'size-limit'` → 45003 (title) / 45002 (content).
   * @default 'argument-invalid'
   */
  overLengthErrcodes: 'argument-invalid' | 'size-limit';
  /**
   * Errcode of `template/subscribe` called with a 订阅通知 template id: the spec cites 40037 (§1.1, "do not mix")
   * and, elsewhere, an observed 43101 (§2.4). @default 40037
   */
  notificationTemplateOnOneTime: 40037 | 43101;
  /** Whether each 订阅通知 accept adds a send (spec §2.1 [UNVERIFIED]); false = at most 1 pending. @default true */
  notificationCreditsStack: boolean;
  /** Consent page's inline JS requires `location.hash === '#wechat_redirect'` (spec §1.2). @default true */
  requireWechatRedirectHash: boolean;
  /** `'wechat'` re-encodes the redirect_url fragment `#/x` → `#%23/x` like WeChat (spec §1.3); `'preserve'` keeps it. @default 'wechat' */
  fragmentEncoding: 'wechat' | 'preserve';
  /** Newest messages kept per user inbox. @default 1000 */
  inboxLimitPerUser: number;
  /** Newest `subscribe_msg_sent_event` records kept per app. @default 100000 */
  sentEventLimit: number;
  /** Private 订阅通知 templates per app (addtemplate → 200012 beyond). @default 25 */
  maxPrivateTemplates: number;
  /**
   * Whether addtemplate requires `sceneDesc` (spec §2.6, disputed: required in the service-account doc, optional in
   * the mini-program doc). When false, a missing one is accepted; a given one must still be 1–15 chars.
   * @default true
   */
  addtemplateSceneDescRequired: boolean;
  /**
   * What JSON type `template/subscribe` takes for `scene` (spec §1.4, disputed: a string in the new doc's table and
   * example, an integer on the consent URL; SDKs send either). `'any'` takes both; `'string'` or `'number'` answer
   * the other with the same 47003 a bad scene gets (what WeChat would answer is not known).
   * @default 'any'
   */
  oneTimeSceneType: 'any' | 'string' | 'number';
};

/** Defaults of {@link EmulatorBehavior}. */
export const DEFAULT_BEHAVIOR: EmulatorBehavior = {
  overLengthErrcodes: 'argument-invalid',
  notificationTemplateOnOneTime: 40037,
  notificationCreditsStack: true,
  requireWechatRedirectHash: true,
  fragmentEncoding: 'wechat',
  inboxLimitPerUser: 1000,
  sentEventLimit: 100_000,
  maxPrivateTemplates: 25,
  addtemplateSceneDescRequired: true,
  oneTimeSceneType: 'any',
};

/** An emulated user of one app. */
export type EmuUser = { openid: string; nickname: string; createdAt: number };

/** A template of one app. */
export type EmuTemplate = {
  templateId: string;
  kind: 'one-time' | 'notification';
  title: string;
  tid?: number;
  type: 2 | 3;
  content: string;
  example: string;
  keywordEnumValueList: Array<{ keywordCode: string; enumValueList: string[] }>;
  /** Precompiled placeholders of `content`. */
  placeholders: Placeholder[];
  /** keyword key (`enum2`) → allowed values. */
  enumValues: Map<string, string[]>;
};

/** One message a user received (their 服务通知 inbox). */
export type InboxMessage = {
  appid: string;
  openid: string;
  kind: 'one-time' | 'notification';
  templateId: string;
  title: string;
  /** Rendered text: one-time content value, or the notification content with placeholders filled. */
  content: string;
  data: Record<string, unknown>;
  url?: string;
  page?: string;
  miniprogram?: { appid: string; pagepath: string };
  /** bizsend's `miniprogram_state` and `lang` as the sender gave them (accepted, otherwise ignored: spec §2.4). */
  miniprogramState?: string;
  lang?: string;
  scene?: number;
  msgid: string;
  /** Emulator time in ms. */
  time: number;
};

/** A `subscribe_msg_sent_event` waiting to be pushed (push delivery comes later). */
export type SentEvent = {
  appid: string;
  toUserName: string;
  openid: string;
  templateId: string;
  msgId: string;
  errorCode: number;
  errorStatus: string;
  /** Unix seconds. */
  createTime: number;
};

/** A fault rule for one API path (or `*`). Probabilities are in [0, 1]. */
export type FaultRule = {
  path: string;
  /** errcode → probability, e.g. `{ "-1": 0.1, "45011": 0.05 }`; answered without processing. */
  errcodes?: Record<string, number>;
  /** Probability of an HTTP 503 without processing. */
  http5xx?: number;
  /** Probability of closing the connection with no HTTP response. */
  drop?: number;
  /** When dropping, process the request first (the state changes, the caller never learns). @default false */
  dropAfterProcessing?: boolean;
  /** Added delay in real milliseconds before processing. @default 0 */
  latencyMs?: number;
};

/** The decision for one request taken from the fault rules. */
export type FaultDecision =
  | { kind: 'none'; latencyMs: number }
  | { kind: 'errcode'; errcode: number; latencyMs: number }
  | { kind: 'http5xx'; latencyMs: number }
  | { kind: 'drop'; afterProcessing: boolean; latencyMs: number };

type TokenKind = 'classic' | 'stable';
type TokenRec = { token: string; appid: string; kind: TokenKind; expiresAt: number; validUntil: number };
type TicketRec = { ticket: string; appid: string; expiresAt: number; validUntil: number };
type QuotaRec = {
  dailyLimit: number;
  minuteLimit: number;
  day: number;
  dayUsed: number;
  minute: number;
  minuteUsed: number;
};
type OAuthCode = {
  code: string;
  appid: string;
  openid: string;
  scope: string;
  expiresAt: number;
  used: boolean;
};
type SnsToken = { appid: string; openid: string; scope: string; expiresAt: number };

/** Per-app counters exposed to tests. */
export type EmuCounters = {
  tokenFetches: { classic: number; stable: number };
  ticketFetches: number;
  oauthCodeExchanges: number;
  /** Successful sends per endpoint path. */
  sends: Record<string, number>;
  /** Authenticated API calls per endpoint path (successful or not). */
  calls: Record<string, number>;
};

/** One emulated service account. */
export type EmuApp = {
  appid: string;
  secret: string;
  name: string;
  originalId: string;
  businessDomains: string[];
  jsDomains: string[];
  oauthDomains: string[];
  ipWhitelistErrcode: 40164 | 61004;
  ipWhitelist: string[];
  users: Map<string, EmuUser>;
  templates: Map<string, EmuTemplate>;
  /** One-time grants: `openid\0template\0scene` → granted at (ms). Value ∈ {present, absent} (spec §1.6). */
  oneTimeGrants: Map<string, number>;
  /** Notification credits: `openid\0template` → remaining sends (spec §2.8). */
  credits: Map<string, number>;
  /** Long-term (type 3) accepts: `openid\0template`. */
  longTerm: Set<string>;
  inboxes: Map<string, InboxMessage[]>;
  sentEvents: SentEvent[];
  counters: EmuCounters;
  quotas: Map<string, QuotaRec>;
  classic: { current?: TokenRec; previous?: TokenRec };
  stable: {
    current?: TokenRec;
    previous?: TokenRec;
    forceDay: number;
    forceCount: number;
    lastForceAt: number;
  };
  ticket: { current?: TicketRec };
  clearQuota: { month: number; count: number };
};

/** Error thrown by state operations used by the control API; `status` is the HTTP status to answer. */
export class EmulatorStateError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, status: number, message: string) {
    super(message);
    this.name = 'EmulatorStateError';
    this.code = code;
    this.status = status;
  }
}

/** Default daily / per-minute limits per API path (spec §6). Unlisted paths: 100 000/day, unlimited per minute. */
export const DEFAULT_QUOTAS: Readonly<Record<string, { dailyLimit: number; minuteLimit: number }>> = {
  '/cgi-bin/token': { dailyLimit: 2000, minuteLimit: 0 },
  '/cgi-bin/stable_token': { dailyLimit: 500_000, minuteLimit: 10_000 },
  '/cgi-bin/ticket/getticket': { dailyLimit: 100_000, minuteLimit: 0 },
  '/sns/oauth2/access_token': { dailyLimit: 10_000_000, minuteLimit: 50_000 },
  '/cgi-bin/message/template/subscribe': { dailyLimit: 10_000_000, minuteLimit: 0 },
  '/cgi-bin/message/subscribe/bizsend': { dailyLimit: 10_000_000, minuteLimit: 0 },
};
const FALLBACK_QUOTA = { dailyLimit: 100_000, minuteLimit: 0 };

const TOKEN_SHAPE = /^\d+_[A-Za-z0-9_-]{64,512}$/;

function randomId(bytes: number): string {
  return randomBytes(bytes).toString('base64url');
}

/** Input for {@link EmulatorState.createApp}: a seed app whose appid and secret may be generated. */
export type CreateAppInput = Omit<EmulatorSeedApp, 'appid' | 'secret'> & { appid?: string; secret?: string };

/** Options of {@link EmulatorState}. */
export type EmulatorStateOptions = {
  clock: Clock;
  seed?: EmulatorSeed;
  /** @default random */
  randomSeed?: number;
  behavior?: Partial<EmulatorBehavior>;
};

/**
 * All state of the emulated platform. Tests may drive it directly (`emulator.state`);
 * the control API `/__emulator/*` is a thin JSON layer over these methods.
 */
export class EmulatorState {
  readonly apps = new Map<string, EmuApp>();
  behavior: EmulatorBehavior;
  /** Base URL used in pages and links (set by `listen`). */
  publicBaseUrl: string;
  readonly #clock: Clock;
  #offset = 0;
  readonly #seed: EmulatorSeed | undefined;
  readonly #tokens = new Map<string, TokenRec>();
  readonly #tickets = new Map<string, TicketRec>();
  readonly #codes = new Map<string, OAuthCode>();
  readonly #snsTokens = new Map<string, SnsToken>();
  readonly #snsRefresh = new Map<
    string,
    { appid: string; openid: string; scope: string; expiresAt: number }
  >();
  readonly #faults = new Map<string, FaultRule>();
  #rng: () => number;
  readonly #randomSeed: number;
  /** The behaviour the emulator was created with, which {@link reset} restores. */
  readonly #initialBehavior: EmulatorBehavior;
  #tokenSeq = 1;
  #nextMsgId: bigint;

  constructor(options: EmulatorStateOptions) {
    this.#clock = options.clock;
    this.#seed = options.seed;
    this.#randomSeed = options.randomSeed ?? Math.floor(Math.random() * 0xffffffff);
    this.#rng = createRng(this.#randomSeed);
    this.#initialBehavior = { ...DEFAULT_BEHAVIOR, ...options.behavior };
    this.behavior = { ...this.#initialBehavior };
    this.publicBaseUrl = 'http://127.0.0.1';
    this.#nextMsgId = 3_000_000_000_000_000_000n + BigInt(this.#randomSeed);
    if (options.seed) this.applySeed(options.seed);
  }

  // ---- time --------------------------------------------------------------------------------------

  /** Emulator time in ms: the injected clock plus any {@link advanceClock} offset. */
  now(): number {
    return this.#clock.now() + this.#offset;
  }

  /**
   * Moves emulator time forward. A clock with an `advance(ms)` method (ManualClock) is advanced
   * itself, so an SDK sharing it sees the same time; otherwise an offset is added.
   */
  advanceClock(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0)
      throw new EmulatorStateError('EMU_BAD_ARGUMENT', 400, 'advanceMs must be ≥ 0');
    if (this.now() + ms > MAX_DATE_MS)
      throw new EmulatorStateError(
        'EMU_BAD_ARGUMENT',
        400,
        `advanceMs must keep the clock a valid date (at most ${MAX_DATE_MS - this.now()} from now)`,
      );
    const c = this.#clock as Clock & { advance?: (ms: number) => void };
    if (typeof c.advance === 'function') c.advance(ms);
    else this.#offset += ms;
  }

  // ---- seed / reset --------------------------------------------------------------------------------

  /** Adds every app of a seed. */
  applySeed(seed: EmulatorSeed): void {
    for (const app of seed.apps) {
      const { users, templates, ...rest } = app;
      this.createApp(rest);
      for (const u of users ?? []) this.createUser(app.appid, u);
      for (const t of templates ?? []) this.createTemplate(app.appid, t);
    }
  }

  /**
   * Forgets everything (tokens, grants, inboxes, counters, faults, behaviour switches, the clock offset of
   * {@link advanceClock}) and re-applies the seed. An injected clock that was advanced itself stays where it is (it
   * is the caller's); msgids keep counting up, so no msgid is ever handed out twice.
   */
  reset(): void {
    this.behavior = { ...this.#initialBehavior };
    this.#offset = 0;
    this.apps.clear();
    this.#tokens.clear();
    this.#tickets.clear();
    this.#codes.clear();
    this.#snsTokens.clear();
    this.#snsRefresh.clear();
    this.#faults.clear();
    this.#rng = createRng(this.#randomSeed);
    if (this.#seed) this.applySeed(this.#seed);
  }

  // ---- apps, users, templates -----------------------------------------------------------------------

  /** Looks an app up; throws a 404 {@link EmulatorStateError} when unknown. */
  requireApp(appid: string): EmuApp {
    const app = this.apps.get(appid);
    if (!app) throw new EmulatorStateError('EMU_APP_NOT_FOUND', 404, `No emulated app ${appid}`);
    return app;
  }

  /** Creates an app (appid `wx` + 16 hex and a 32-hex secret generated when absent). */
  createApp(input: CreateAppInput): EmuApp {
    const appid = input.appid ?? `wx${randomBytes(8).toString('hex')}`;
    if (this.apps.has(appid))
      throw new EmulatorStateError('EMU_APP_EXISTS', 409, `App ${appid} already exists`);
    const app: EmuApp = {
      appid,
      secret: input.secret ?? randomBytes(16).toString('hex'),
      name: input.name ?? 'Emulated Account',
      originalId: input.originalId ?? `gh_${randomBytes(6).toString('hex')}`,
      businessDomains: [...(input.businessDomains ?? [])],
      jsDomains: [...(input.jsDomains ?? [])],
      oauthDomains: [...(input.oauthDomains ?? [])],
      ipWhitelistErrcode: input.ipWhitelistErrcode ?? 40164,
      ipWhitelist: [...(input.ipWhitelist ?? [])],
      users: new Map(),
      templates: new Map(),
      oneTimeGrants: new Map(),
      credits: new Map(),
      longTerm: new Set(),
      inboxes: new Map(),
      sentEvents: [],
      counters: {
        tokenFetches: { classic: 0, stable: 0 },
        ticketFetches: 0,
        oauthCodeExchanges: 0,
        sends: {},
        calls: {},
      },
      quotas: new Map(),
      classic: {},
      stable: { forceDay: -1, forceCount: 0, lastForceAt: -Infinity },
      ticket: {},
      clearQuota: { month: -1, count: 0 },
    };
    this.apps.set(appid, app);
    try {
      for (const u of input.users ?? []) this.createUser(appid, u);
      for (const t of input.templates ?? []) this.createTemplate(appid, t);
    } catch (err) {
      this.apps.delete(appid); // a duplicate user or template: no half-built app is left behind
      throw err;
    }
    return app;
  }

  /** Changes an app's domains, name or IP whitelist. */
  updateApp(
    appid: string,
    patch: Partial<
      Pick<
        EmuApp,
        | 'name'
        | 'businessDomains'
        | 'jsDomains'
        | 'oauthDomains'
        | 'ipWhitelist'
        | 'ipWhitelistErrcode'
        | 'secret'
      >
    >,
  ): EmuApp {
    const app = this.requireApp(appid);
    Object.assign(app, patch);
    return app;
  }

  /** Adds a user (openid `o` + 27 chars generated when absent). */
  createUser(appid: string, input: { openid?: string; nickname?: string } = {}): EmuUser {
    const app = this.requireApp(appid);
    const openid = input.openid ?? `o${randomId(21).slice(0, 27)}`;
    if (app.users.has(openid))
      throw new EmulatorStateError('EMU_USER_EXISTS', 409, `User ${openid} already exists`);
    const user: EmuUser = {
      openid,
      nickname: input.nickname ?? `用户${app.users.size + 1}`,
      createdAt: this.now(),
    };
    app.users.set(openid, user);
    return user;
  }

  /** Adds a template; notification templates need `content` with `{{typeN.DATA}}` placeholders. */
  createTemplate(appid: string, input: EmulatorSeedTemplate): EmuTemplate {
    const app = this.requireApp(appid);
    const templateId = input.templateId ?? randomId(33).slice(0, 43);
    if (app.templates.has(templateId)) {
      throw new EmulatorStateError('EMU_TEMPLATE_EXISTS', 409, `Template ${templateId} already exists`);
    }
    const content = input.kind === 'notification' ? (input.content ?? '内容:{{thing1.DATA}}') : '';
    const list = input.keywordEnumValueList ?? [];
    const enumValues = new Map<string, string[]>();
    for (const e of list) enumValues.set(e.keywordCode.replace(/\.DATA$/, ''), e.enumValueList);
    const placeholders = parsePlaceholders(content);
    for (const p of placeholders) {
      if (p.type === 'enum' && (enumValues.get(p.key)?.length ?? 0) === 0)
        throw new EmulatorStateError(
          'EMU_BAD_ARGUMENT',
          400,
          `{{${p.key}.DATA}} needs its values in keywordEnumValueList (spec §2.5): no value could ever be sent`,
        );
    }
    const tpl: EmuTemplate = {
      templateId,
      kind: input.kind,
      title: input.title,
      type: input.kind === 'one-time' ? 2 : (input.type ?? 2),
      content,
      example: placeholders.map((p) => `${p.key}: …`).join('\n'),
      keywordEnumValueList: list,
      placeholders,
      enumValues,
    };
    if (input.tid !== undefined) tpl.tid = input.tid;
    app.templates.set(templateId, tpl);
    return tpl;
  }

  /** Removes a template; returns false when it did not exist. */
  deleteTemplate(appid: string, templateId: string): boolean {
    return this.requireApp(appid).templates.delete(templateId);
  }

  #requireUser(app: EmuApp, openid: string): EmuUser {
    const u = app.users.get(openid);
    if (!u) throw new EmulatorStateError('EMU_USER_NOT_FOUND', 404, `No user ${openid} in app ${app.appid}`);
    return u;
  }

  #requireTemplate(app: EmuApp, templateId: string, kind: EmuTemplate['kind']): EmuTemplate {
    const t = app.templates.get(templateId);
    if (!t)
      throw new EmulatorStateError(
        'EMU_TEMPLATE_NOT_FOUND',
        404,
        `No template ${templateId} in app ${app.appid}`,
      );
    if (t.kind !== kind) {
      throw new EmulatorStateError(
        'EMU_TEMPLATE_KIND',
        400,
        `Template ${templateId} is a ${t.kind} template`,
      );
    }
    return t;
  }

  // ---- grants ----------------------------------------------------------------------------------------

  /** Records a one-time consent (spec §1.1: idempotent per scene, confirms do not stack). */
  grantOneTime(appid: string, openid: string, templateId: string, scene: number): void {
    const app = this.requireApp(appid);
    this.#requireUser(app, openid);
    this.#requireTemplate(app, templateId, 'one-time');
    if (!Number.isInteger(scene) || scene < 0 || scene > 10000) {
      throw new EmulatorStateError('EMU_BAD_ARGUMENT', 400, 'scene must be an integer 0–10000');
    }
    app.oneTimeGrants.set(`${openid}\0${templateId}\0${scene}`, this.now());
  }

  /** Whether a one-time grant is pending. */
  hasOneTimeGrant(appid: string, openid: string, templateId: string, scene: number): boolean {
    return this.requireApp(appid).oneTimeGrants.has(`${openid}\0${templateId}\0${scene}`);
  }

  /**
   * Records `count` 订阅通知 accepts (spec §2.8): type 2 adds credits (or caps at 1 when
   * `notificationCreditsStack` is off); type 3 (long-term) marks the user as subscribed.
   */
  grantNotification(appid: string, openid: string, templateId: string, count = 1): number {
    const app = this.requireApp(appid);
    this.#requireUser(app, openid);
    const tpl = this.#requireTemplate(app, templateId, 'notification');
    if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
      throw new EmulatorStateError('EMU_BAD_ARGUMENT', 400, 'count must be an integer 1–1000000');
    }
    const key = `${openid}\0${templateId}`;
    if (tpl.type === 3) {
      app.longTerm.add(key);
      return Infinity;
    }
    const next = this.behavior.notificationCreditsStack ? (app.credits.get(key) ?? 0) + count : 1;
    app.credits.set(key, next);
    return next;
  }

  /** A user rejected a notification template in settings (spec §2.7 change event): credits cleared. */
  revokeNotification(appid: string, openid: string, templateId: string): void {
    const app = this.requireApp(appid);
    this.#requireUser(app, openid);
    const tpl = app.templates.get(templateId);
    if (!tpl) throw new EmulatorStateError('EMU_TEMPLATE_NOT_FOUND', 404, `No template ${templateId}`);
    if (tpl.kind !== 'notification')
      throw new EmulatorStateError(
        'EMU_BAD_ARGUMENT',
        400,
        `Template ${templateId} is not a notification template`,
      );
    const key = `${openid}\0${templateId}`;
    app.credits.delete(key);
    app.longTerm.delete(key);
  }

  /** Remaining notification sends (Infinity for an accepted long-term template). */
  notificationCredits(appid: string, openid: string, templateId: string): number {
    const app = this.requireApp(appid);
    const key = `${openid}\0${templateId}`;
    if (app.longTerm.has(key)) return Infinity;
    return app.credits.get(key) ?? 0;
  }

  /** Every pending grant of an app (optionally one user), for the control API. */
  listGrants(
    appid: string,
    openid?: string,
  ): {
    oneTime: Array<{ openid: string; template_id: string; scene: number; grantedAt: number }>;
    notification: Array<{ openid: string; template_id: string; remaining: number | 'unlimited' }>;
  } {
    const app = this.requireApp(appid);
    const oneTime: Array<{ openid: string; template_id: string; scene: number; grantedAt: number }> = [];
    for (const [k, at] of app.oneTimeGrants) {
      const [o = '', t = '', s = '0'] = k.split('\0');
      if (openid === undefined || o === openid)
        oneTime.push({ openid: o, template_id: t, scene: Number(s), grantedAt: at });
    }
    const notification: Array<{ openid: string; template_id: string; remaining: number | 'unlimited' }> = [];
    for (const [k, n] of app.credits) {
      const [o = '', t = ''] = k.split('\0');
      if ((openid === undefined || o === openid) && n > 0)
        notification.push({ openid: o, template_id: t, remaining: n });
    }
    for (const k of app.longTerm) {
      const [o = '', t = ''] = k.split('\0');
      if (openid === undefined || o === openid)
        notification.push({ openid: o, template_id: t, remaining: 'unlimited' });
    }
    return { oneTime, notification };
  }

  // ---- inbox / events ---------------------------------------------------------------------------------

  /** Next msgid: a decimal int64 string. */
  nextMsgId(): string {
    this.#nextMsgId += 1n;
    return this.#nextMsgId.toString();
  }

  /** Appends a message to a user's inbox (bounded by `inboxLimitPerUser`). */
  deliver(app: EmuApp, msg: InboxMessage): void {
    let box = app.inboxes.get(msg.openid);
    if (!box) {
      box = [];
      app.inboxes.set(msg.openid, box);
    }
    box.push(msg);
    const limit = this.behavior.inboxLimitPerUser;
    // Trim in batches so the send path stays amortised O(1).
    if (box.length > limit + Math.max(16, limit >> 2)) box.splice(0, box.length - limit);
  }

  /** Records a `subscribe_msg_sent_event` for later push (bounded by `sentEventLimit`). */
  recordSentEvent(app: EmuApp, ev: SentEvent): void {
    app.sentEvents.push(ev);
    const limit = this.behavior.sentEventLimit;
    if (app.sentEvents.length > limit + Math.max(16, limit >> 2)) {
      app.sentEvents.splice(0, app.sentEvents.length - limit);
    }
  }

  /** A user's messages, newest first. */
  inbox(appid: string, openid: string): InboxMessage[] {
    const box = this.requireApp(appid).inboxes.get(openid) ?? [];
    const limit = this.behavior.inboxLimitPerUser;
    return box.slice(-limit).reverse();
  }

  /** Messages of a user across every app (for the inbox page without `appid`), newest first. */
  inboxAllApps(openid: string): InboxMessage[] {
    const all: InboxMessage[] = [];
    for (const app of this.apps.values()) all.push(...(app.inboxes.get(openid) ?? []));
    return all.sort((a, b) => b.time - a.time || (BigInt(b.msgid) > BigInt(a.msgid) ? 1 : -1));
  }

  /** Recorded `subscribe_msg_sent_event`s of an app, oldest first. */
  sentEvents(appid: string): SentEvent[] {
    return [...this.requireApp(appid).sentEvents];
  }

  /** A copy of an app's counters. */
  counters(appid: string): EmuCounters {
    return structuredClone(this.requireApp(appid).counters);
  }

  // ---- tokens -------------------------------------------------------------------------------------------

  #newTokenString(): string {
    return `${this.#tokenSeq++}_${randomId(96)}`;
  }

  #issue(app: EmuApp, kind: TokenKind): TokenRec {
    const now = this.now();
    const rec: TokenRec = {
      token: this.#newTokenString(),
      appid: app.appid,
      kind,
      expiresAt: now + TOKEN_TTL_MS,
      validUntil: now + TOKEN_TTL_MS,
    };
    this.#tokens.set(rec.token, rec);
    this.#pruneTokens(now);
    return rec;
  }

  #pruneTokens(now: number): void {
    if (this.#tokens.size < 4096) return;
    for (const [k, r] of this.#tokens) if (r.validUntil + TOKEN_TTL_MS < now) this.#tokens.delete(k);
  }

  /**
   * `/cgi-bin/token`: every call issues a new token (spec §3.1). The previous one keeps working for
   * 5 minutes; the one before it stops at once (only "new and old" overlap).
   */
  issueClassicToken(app: EmuApp): { access_token: string; expires_in: number } {
    const now = this.now();
    const s = app.classic;
    if (s.previous) s.previous.validUntil = Math.min(s.previous.validUntil, now);
    if (s.current) {
      s.current.validUntil = Math.min(s.current.validUntil, now + OVERLAP_MS);
      s.previous = s.current;
    }
    s.current = this.#issue(app, 'classic');
    app.counters.tokenFetches.classic++;
    return { access_token: s.current.token, expires_in: TOKEN_TTL_MS / 1000 };
  }

  /**
   * `/cgi-bin/stable_token` (spec §3.2). Normal mode: the same token until 5 minutes before expiry,
   * then a new one while the old stays valid to its expiry. `force_refresh`: the previous token dies
   * at once; at most 20 per Beijing day (→ 45009) and ≥ 30 s apart (→ 45011).
   */
  issueStableToken(
    app: EmuApp,
    force: boolean,
  ): { access_token: string; expires_in: number } | { errcode: number } {
    const now = this.now();
    const s = app.stable;
    if (force) {
      const day = Math.floor((now + BEIJING_OFFSET_MS) / 86_400_000);
      if (s.forceDay !== day) {
        s.forceDay = day;
        s.forceCount = 0;
      }
      if (s.forceCount >= 20) return { errcode: 45009 };
      if (now - s.lastForceAt < 30_000) return { errcode: 45011 };
      s.forceCount++;
      s.lastForceAt = now;
      if (s.previous) s.previous.validUntil = Math.min(s.previous.validUntil, now);
      if (s.current) s.current.validUntil = Math.min(s.current.validUntil, now);
      delete s.previous;
      s.current = this.#issue(app, 'stable');
    } else if (!s.current || now >= s.current.validUntil || now >= s.current.expiresAt - OVERLAP_MS) {
      if (s.previous) s.previous.validUntil = Math.min(s.previous.validUntil, now);
      if (s.current && now < s.current.validUntil) s.previous = s.current;
      s.current = this.#issue(app, 'stable');
    }
    app.counters.tokenFetches.stable++;
    return { access_token: s.current.token, expires_in: Math.floor((s.current.expiresAt - now) / 1000) };
  }

  /** Resolves an access_token to its app, or the errcode WeChat answers with (spec §3.3, §3.5). */
  checkToken(token: string | undefined): EmuApp | number {
    if (token === undefined || token === '') return 41001;
    const rec = this.#tokens.get(token);
    if (!rec) return TOKEN_SHAPE.test(token) ? 40001 : 40014;
    const now = this.now();
    if (now >= rec.expiresAt) return 42001;
    if (now >= rec.validUntil) return 40001;
    return this.apps.get(rec.appid) ?? 40001;
  }

  // ---- jsapi ticket -------------------------------------------------------------------------------------

  /**
   * `/cgi-bin/ticket/getticket?type=jsapi`: one ticket per app, returned again (with the remaining
   * `expires_in`) until it expires after 7200 s; the next call then issues a new one. Not bound to
   * the token that fetched it (any valid token of the app gets the same ticket).
   */
  getJsapiTicket(app: EmuApp): { ticket: string; expires_in: number } {
    const now = this.now();
    const s = app.ticket;
    if (!s.current || now >= s.current.expiresAt) {
      if (s.current) this.#tickets.delete(s.current.ticket);
      const ticket = randomId(64);
      s.current = { ticket, appid: app.appid, expiresAt: now + TOKEN_TTL_MS, validUntil: now + TOKEN_TTL_MS };
      this.#tickets.set(ticket, s.current);
    }
    app.counters.ticketFetches++;
    return { ticket: s.current.ticket, expires_in: Math.floor((s.current.expiresAt - now) / 1000) };
  }

  /** Whether a jsapi_ticket currently verifies for the app (for the JS-SDK shim). */
  isTicketValid(appid: string, ticket: string): boolean {
    const rec = this.#tickets.get(ticket);
    return !!rec && rec.appid === appid && this.now() < rec.expiresAt;
  }

  // ---- oauth -------------------------------------------------------------------------------------------

  /** Issues an OAuth code (single use, 5 minutes, spec §5). */
  issueOAuthCode(appid: string, openid: string, scope: string): string {
    const code = randomId(24);
    this.#codes.set(code, {
      code,
      appid,
      openid,
      scope,
      expiresAt: this.now() + OAUTH_CODE_TTL_MS,
      used: false,
    });
    return code;
  }

  /** Exchanges an OAuth code: 40029 unknown/expired/other app, 40163 already used (spec §5). */
  exchangeOAuthCode(
    app: EmuApp,
    code: string,
  ):
    | { access_token: string; expires_in: number; refresh_token: string; openid: string; scope: string }
    | { errcode: number } {
    const rec = this.#codes.get(code);
    if (!rec || rec.appid !== app.appid || this.now() >= rec.expiresAt) return { errcode: 40029 };
    if (rec.used) return { errcode: 40163 };
    rec.used = true;
    app.counters.oauthCodeExchanges++;
    return this.#issueSns(app.appid, rec.openid, rec.scope);
  }

  #issueSns(appid: string, openid: string, scope: string) {
    const now = this.now();
    const access_token = `${this.#tokenSeq++}_${randomId(72)}`;
    const refresh_token = `${this.#tokenSeq++}_${randomId(72)}`;
    this.#snsTokens.set(access_token, { appid, openid, scope, expiresAt: now + TOKEN_TTL_MS });
    this.#snsRefresh.set(refresh_token, { appid, openid, scope, expiresAt: now + 30 * 86_400_000 });
    return { access_token, expires_in: TOKEN_TTL_MS / 1000, refresh_token, openid, scope };
  }

  /** `/sns/oauth2/refresh_token`: 40030 for an unknown or expired refresh token. */
  refreshSns(app: EmuApp, refreshToken: string) {
    const rec = this.#snsRefresh.get(refreshToken);
    if (!rec || rec.appid !== app.appid || this.now() >= rec.expiresAt) return { errcode: 40030 };
    this.#snsRefresh.delete(refreshToken);
    return this.#issueSns(rec.appid, rec.openid, rec.scope);
  }

  /** Resolves a user access token from OAuth (`/sns/userinfo`). */
  checkSnsToken(token: string): SnsToken | number {
    const rec = this.#snsTokens.get(token);
    if (!rec) return TOKEN_SHAPE.test(token) ? 40001 : 40014;
    if (this.now() >= rec.expiresAt) return 42001;
    return rec;
  }

  // ---- quotas -----------------------------------------------------------------------------------------

  #quota(app: EmuApp, path: string): QuotaRec {
    let q = app.quotas.get(path);
    if (!q) {
      const d = DEFAULT_QUOTAS[path] ?? FALLBACK_QUOTA;
      q = {
        dailyLimit: d.dailyLimit,
        minuteLimit: d.minuteLimit,
        day: -1,
        dayUsed: 0,
        minute: -1,
        minuteUsed: 0,
      };
      app.quotas.set(path, q);
    }
    return q;
  }

  /** Counts one call of `path`; returns 0, 45009 (daily) or 45011 (per minute) (spec §6). */
  consumeQuota(app: EmuApp, path: string): number {
    const q = this.#quota(app, path);
    const now = this.now();
    const day = Math.floor((now + BEIJING_OFFSET_MS) / 86_400_000);
    const minute = Math.floor(now / 60_000);
    if (q.day !== day) {
      q.day = day;
      q.dayUsed = 0;
    }
    if (q.minute !== minute) {
      q.minute = minute;
      q.minuteUsed = 0;
    }
    if (q.dailyLimit > 0 && q.dayUsed >= q.dailyLimit) return 45009;
    if (q.minuteLimit > 0 && q.minuteUsed >= q.minuteLimit) return 45011;
    q.dayUsed++;
    q.minuteUsed++;
    app.counters.calls[path] = (app.counters.calls[path] ?? 0) + 1;
    return 0;
  }

  /** `quota/get` view of one path (spec §3.4). */
  quotaInfo(app: EmuApp, path: string): { daily_limit: number; used: number; remain: number } {
    const q = this.#quota(app, path);
    const day = Math.floor((this.now() + BEIJING_OFFSET_MS) / 86_400_000);
    const used = q.day === day ? q.dayUsed : 0;
    return { daily_limit: q.dailyLimit, used, remain: Math.max(0, q.dailyLimit - used) };
  }

  /** Sets limits for one path of an app (0 = unlimited). */
  setQuota(appid: string, path: string, limits: { dailyLimit?: number; minuteLimit?: number }): void {
    const q = this.#quota(this.requireApp(appid), path);
    if (limits.dailyLimit !== undefined) q.dailyLimit = limits.dailyLimit;
    if (limits.minuteLimit !== undefined) q.minuteLimit = limits.minuteLimit;
  }

  /** Resets used counts (one path or all); `clear_quota` is limited to 10 per month (→ 48006). */
  clearQuota(app: EmuApp, path?: string, limited = false): number {
    if (limited) {
      const d = new Date(this.now() + BEIJING_OFFSET_MS);
      const month = d.getUTCFullYear() * 12 + d.getUTCMonth();
      if (app.clearQuota.month !== month) app.clearQuota = { month, count: 0 };
      if (app.clearQuota.count >= 10) return 48006;
      app.clearQuota.count++;
    }
    for (const [p, q] of app.quotas) {
      if (path === undefined || p === path) {
        q.dayUsed = 0;
        q.minuteUsed = 0;
      }
    }
    return 0;
  }

  // ---- faults -------------------------------------------------------------------------------------------

  /** Whether any fault rule is set (the hot path skips fault logic otherwise). */
  get hasFaults(): boolean {
    return this.#faults.size > 0;
  }

  /** Adds or replaces fault rules (one per path; `*` applies where no exact path rule exists). */
  setFaults(rules: FaultRule | FaultRule[]): void {
    for (const r of Array.isArray(rules) ? rules : [rules]) this.#faults.set(r.path, { ...r });
  }

  /** Removes the rule of one path, or all rules. */
  clearFaults(path?: string): void {
    if (path === undefined) this.#faults.clear();
    else this.#faults.delete(path);
  }

  /** The current fault rules. */
  getFaults(): FaultRule[] {
    return [...this.#faults.values()].map((r) => ({ ...r }));
  }

  /**
   * Rolls the dice for one request of `path`. Deterministic for a given `randomSeed` and request order:
   * one draw for drop, one for 5xx, one for the errcode table (cumulative, in insertion order).
   */
  decideFault(path: string): FaultDecision {
    const rule = this.#faults.get(path) ?? this.#faults.get('*');
    if (!rule) return { kind: 'none', latencyMs: 0 };
    const latencyMs = rule.latencyMs ?? 0;
    if (rule.drop && this.#rng() < rule.drop) {
      return { kind: 'drop', afterProcessing: rule.dropAfterProcessing ?? false, latencyMs };
    }
    if (rule.http5xx && this.#rng() < rule.http5xx) return { kind: 'http5xx', latencyMs };
    if (rule.errcodes) {
      const roll = this.#rng();
      let acc = 0;
      for (const [code, p] of Object.entries(rule.errcodes)) {
        acc += p;
        if (roll < acc) return { kind: 'errcode', errcode: Number(code), latencyMs };
      }
    }
    return { kind: 'none', latencyMs };
  }
}
