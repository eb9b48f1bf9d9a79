// The REST API under /v1 (API key required): templates, messages (send, idempotency), grants and campaigns.
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { DispatcherStatus } from '../delivery/dispatcher.js';
import { AppError } from '../errors.js';
import { ID_RE } from '../store/common.js';
import type {
  Campaign,
  CampaignStats,
  EnqueueResult,
  Grant,
  OutboxMessage,
  Store,
  TemplateRecord,
} from '../store/store.js';
import type { Clock } from '../util/clock.js';
import { authenticate } from './api-keys.js';
import { validationError } from './error-handler.js';
import {
  checkNotificationPayload,
  checkOneTimePayload,
  createCampaignSchema,
  keyTypePrefix,
  listGrantsQuery,
  listMessagesQuery,
  notificationPayloadSchema,
  oneTimePayloadSchema,
  putTemplateSchema,
  requestError,
  sendMessageSchema,
} from './message-schemas.js';

/** What the /v1 routes need. */
export type V1Deps = {
  store: Store;
  appId: string;
  clock: Clock;
  onCampaignCreated?: (id: string) => void;
  /** Live status of this instance's dispatcher, if it runs in-process. */
  dispatcherStatus?: () => DispatcherStatus | null;
};

const IDEMPOTENCY_KEY_RE = /^[\x21-\x7E]{1,255}$/;

/** Parses a body or query; `inMessage` names the message fields (see {@link requestError}). */
function parse<S extends z.ZodType>(
  schema: S,
  value: unknown,
  inMessage?: (path: readonly PropertyKey[]) => boolean,
): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw requestError(r.error, inMessage);
  return r.data;
}

function pathId(request: FastifyRequest, name: string): string {
  const v = (request.params as Record<string, string>)[name] ?? '';
  if (!ID_RE.test(v)) {
    throw new AppError('HTTP_VALIDATION_FAILED', {
      message: `${name} must be 1–128 characters [A-Za-z0-9_-]`,
      details: { field: name },
    });
  }
  return v;
}

/** JSON with sorted keys: equal bodies hash equal whatever the key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The API view of an outbox message. */
export function messageView(m: OutboxMessage) {
  return {
    id: m.id,
    kind: m.kind,
    openid: m.openid,
    template: m.templateId,
    scene: m.scene,
    status: m.status,
    attempts: m.attempts,
    payload: m.payload,
    lastErrcode: m.lastErrcode,
    errorCode: m.errorCode,
    errorMessage: m.errorMessage,
    msgid: m.msgid,
    campaignId: m.campaignId,
    createdAt: iso(m.createdAt),
    updatedAt: iso(m.updatedAt),
    sentAt: iso(m.sentAt),
  };
}

function grantView(g: Grant) {
  return { openid: g.openid, template: g.templateId, scene: g.scene, confirmedAt: iso(g.confirmedAt) };
}

function templateView(t: TemplateRecord) {
  return {
    id: t.templateId,
    kind: t.kind,
    title: t.title,
    keywords: t.keywords,
    ...(t.type === undefined ? {} : { type: t.type }),
  };
}

function campaignView(c: Campaign & { stats?: CampaignStats }) {
  return {
    id: c.id,
    name: c.name,
    kind: c.kind,
    template: c.templateId,
    // As the request gave it: `list`, not the store's `scenes`.
    scenes:
      c.sceneFilter === null
        ? null
        : {
            ...(c.sceneFilter.min === undefined ? {} : { min: c.sceneFilter.min }),
            ...(c.sceneFilter.max === undefined ? {} : { max: c.sceneFilter.max }),
            ...(c.sceneFilter.scenes === undefined ? {} : { list: c.sceneFilter.scenes }),
          },
    status: c.status,
    createdAt: iso(c.createdAt),
    updatedAt: iso(c.updatedAt),
    ...(c.stats === undefined ? {} : { stats: c.stats }),
  };
}

/** A campaign's payload parsed as its template's kind wants it; shape issues are named under `payload`. */
function campaignPayload<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const p = schema.safeParse(value);
  if (p.success) return p.data;
  throw validationError(new z.ZodError(p.error.issues.map((i) => ({ ...i, path: ['payload', ...i.path] }))));
}

/** Registers /v1/* (auth on every route). */
export function registerV1Routes(app: FastifyInstance, d: V1Deps): void {
  const { store, appId } = d;
  const templateOf = async (templateId: string): Promise<TemplateRecord> => {
    const t = await store.templates.get(appId, templateId);
    if (t === null) throw new AppError('MESSAGE_TEMPLATE_UNKNOWN', { details: { template: templateId } });
    return t;
  };

  void app.register(
    async (v1) => {
      v1.addHook('onRequest', async (request) => {
        await authenticate(store, request);
        const type = request.headers['content-type'];
        // The REST API speaks JSON only; other parsers (form, text) exist for other route families.
        if (type !== undefined && request.method !== 'GET' && !/^application\/json\s*(;|$)/i.test(type)) {
          throw new AppError('HTTP_UNSUPPORTED_MEDIA_TYPE', { details: { expected: 'application/json' } });
        }
      });

      v1.get('/templates', async () => ({ items: (await store.templates.list(appId)).map(templateView) }));

      v1.put('/templates/:id', async (request) => {
        const templateId = pathId(request, 'id');
        const body = parse(putTemplateSchema, request.body);
        if (body.kind === 'one-time' && (body.keywords.length > 0 || body.type !== undefined)) {
          throw new AppError('HTTP_VALIDATION_FAILED', {
            message: 'one-time templates have no keywords or type',
            details: { field: 'keywords' },
          });
        }
        const keywords = body.keywords.map((k) => {
          const type = k.type ?? (keyTypePrefix(k.key) as string); // the schema's key pattern has a prefix
          return k.enumValues === undefined
            ? { key: k.key, type }
            : { key: k.key, type, enumValues: k.enumValues };
        });
        const rec: TemplateRecord = { appId, templateId, kind: body.kind, title: body.title, keywords };
        if (body.type !== undefined) rec.type = body.type;
        await store.templates.upsert(rec);
        return templateView(rec);
      });

      v1.post('/messages', async (request, reply) => {
        const keyHeader = request.headers['idempotency-key'];
        if (
          keyHeader !== undefined &&
          (typeof keyHeader !== 'string' || !IDEMPOTENCY_KEY_RE.test(keyHeader))
        ) {
          throw new AppError('HTTP_VALIDATION_FAILED', {
            message: 'Idempotency-Key must be 1–255 visible ASCII characters',
            details: { field: 'Idempotency-Key' },
          });
        }
        // Every free-text field of a send is a message field: a broken text rule is a 422, like WeChat's rules.
        const body = parse(sendMessageSchema, request.body, () => true);
        const template = await templateOf(body.template);
        if (template.kind !== body.kind) {
          throw new AppError('MESSAGE_KIND_MISMATCH', {
            details: { template: body.template, templateKind: template.kind, kind: body.kind },
          });
        }
        const payload =
          body.kind === 'one-time' ? checkOneTimePayload(body) : checkNotificationPayload(body, template);
        const scene = body.kind === 'one-time' ? { scene: body.scene ?? 'any' } : {};
        const key = keyHeader as string | undefined; // checked above
        const enqueue = (requestHash?: string) =>
          store.outbox.enqueueMessage({
            appId,
            kind: body.kind,
            openid: body.openid,
            templateId: body.template,
            ...scene,
            payload,
            ...(key === undefined || requestHash === undefined ? {} : { idempotencyKey: key, requestHash }),
            now: d.clock.now(),
          });
        let result: EnqueueResult;
        if (key === undefined) result = await enqueue();
        else {
          // The hash is of the request as enqueued, in the body's own shape: spellings of one send (scene left out
          // or "any", a data value as "x" or { value: "x" }) replay one message.
          const { kind, openid, template: templateId } = body;
          const hash = sha256(canonical({ kind, openid, template: templateId, ...scene, ...payload }));
          result = await enqueue(hash);
          if (!result.ok && result.reason === 'idempotency-conflict') {
            // Earlier releases stored a hash of the raw body: a retry of the very same body still replays those.
            // The key's message exists, so this call can only replay or conflict, never enqueue.
            const raw = sha256(canonical(body));
            if (raw !== hash) result = await enqueue(raw);
          }
        }
        if (!result.ok) {
          if (result.reason === 'idempotency-conflict') {
            throw new AppError('MESSAGE_IDEMPOTENCY_CONFLICT', {
              details: { existingId: result.existingId },
            });
          }
          throw new AppError('GRANT_NOT_AVAILABLE', {
            details: {
              openid: body.openid,
              template: body.template,
              heldScenes: result.heldScenes,
              notificationCredits: result.notificationCredits,
            },
          });
        }
        if (!result.created) void reply.header('idempotent-replayed', 'true');
        return reply.code(202).send({
          id: result.message.id,
          status: result.message.status,
          message: messageView(result.message),
        });
      });

      v1.get('/messages/:id', async (request) => {
        const id = pathId(request, 'id');
        const m = await store.outbox.getMessage(id);
        if (m === null || m.appId !== appId) throw new AppError('MESSAGE_NOT_FOUND', { details: { id } });
        return messageView(m);
      });

      v1.get('/messages', async (request) => {
        const q = parse(listMessagesQuery, request.query);
        const page = await store.outbox.listMessages({
          appId,
          ...(q.status === undefined ? {} : { status: q.status }),
          ...(q.template === undefined ? {} : { templateId: q.template }),
          ...(q.openid === undefined ? {} : { openid: q.openid }),
          ...(q.campaign === undefined ? {} : { campaignId: q.campaign }),
          ...(q.cursor === undefined ? {} : { cursor: q.cursor }),
          ...(q.limit === undefined ? {} : { limit: q.limit }),
        });
        return { items: page.items.map(messageView), nextCursor: page.nextCursor };
      });

      /** Notification credits of one user: for one template, or for every registered notification template. */
      const creditsOf = async (openid: string, templateId?: string) => {
        const templates =
          templateId !== undefined
            ? [templateId]
            : (await store.templates.list(appId))
                .filter((t) => t.kind === 'notification')
                .map((t) => t.templateId);
        const out = [];
        for (const t of templates) {
          const c = await store.grants.getNotificationCredit({ appId, openid, templateId: t });
          if (c !== null && (c.available > 0 || c.longTerm)) {
            out.push({ template: t, available: c.available, reserved: c.reserved, longTerm: c.longTerm });
          }
        }
        return out;
      };

      const listGrants = async (q: z.output<typeof listGrantsQuery>) => {
        const page = await store.grants.listAvailable({
          appId,
          ...(q.openid === undefined ? {} : { openid: q.openid }),
          ...(q.template === undefined ? {} : { templateId: q.template }),
          ...(q.cursor === undefined ? {} : { cursor: q.cursor }),
          ...(q.limit === undefined ? {} : { limit: q.limit }),
        });
        // Credits are per (openid, template) and are listed on the first page only.
        const firstPage = q.cursor === undefined || q.cursor === ''; // `?cursor=` is the first page too
        const credits = q.openid !== undefined && firstPage ? await creditsOf(q.openid, q.template) : [];
        return {
          oneTime: page.items.map(grantView),
          notificationCredits: credits,
          nextCursor: page.nextCursor,
        };
      };

      v1.get('/grants', async (request) => listGrants(parse(listGrantsQuery, request.query)));

      v1.get('/users/:openid/grants', async (request) => {
        const openid = pathId(request, 'openid');
        const q = parse(listGrantsQuery.omit({ openid: true }), request.query);
        return { openid, ...(await listGrants({ ...q, openid })) };
      });

      v1.post('/campaigns', async (request, reply) => {
        const body = parse(createCampaignSchema, request.body, (path) => path[0] === 'payload');
        const template = await templateOf(body.template);
        let payload;
        if (template.kind === 'one-time') {
          payload = checkOneTimePayload(campaignPayload(oneTimePayloadSchema, body.payload), 'payload.');
        } else {
          const p = campaignPayload(notificationPayloadSchema, body.payload);
          if (body.scenes !== undefined) {
            throw new AppError('HTTP_VALIDATION_FAILED', {
              message: 'scenes apply to one-time templates only',
              details: { field: 'scenes' },
            });
          }
          payload = checkNotificationPayload(p, template, 'payload.');
        }
        const s = body.scenes;
        const sceneFilter =
          s === undefined
            ? null
            : {
                ...(s.min === undefined ? {} : { min: s.min }),
                ...(s.max === undefined ? {} : { max: s.max }),
                ...(s.list === undefined ? {} : { scenes: s.list }),
              };
        const c = await store.outbox.createCampaign({
          appId,
          name: body.name,
          kind: template.kind,
          templateId: template.templateId,
          sceneFilter,
          payload,
          now: d.clock.now(),
        });
        d.onCampaignCreated?.(c.id);
        return reply.code(202).send({ id: c.id, status: c.status, campaign: campaignView(c) });
      });

      const campaignOf = async (request: FastifyRequest) => {
        const id = pathId(request, 'id');
        const c = await store.outbox.getCampaign(id);
        if (c === null || c.appId !== appId) throw new AppError('CAMPAIGN_NOT_FOUND', { details: { id } });
        return c;
      };

      v1.get('/campaigns/:id', async (request) => campaignView(await campaignOf(request)));

      // Delivery status: shared state (paused apps, counts) comes from the store so every instance
      // answers the same; the dispatcher part is this instance's own.
      v1.get('/status', async () => {
        const now = d.clock.now();
        const paused = (await store.outbox.pausedApps(now)).filter((p) => p.appId === appId);
        return {
          engine: store.engine,
          appId,
          paused: paused.length > 0,
          pausedApps: paused.map((p) => ({ appId: p.appId, until: iso(p.until), reason: p.reason })),
          messages: await store.outbox.countMessages({ appId }),
          dispatcher: d.dispatcherStatus?.() ?? null,
        };
      });

      v1.post('/campaigns/:id/cancel', async (request) => {
        const c = await campaignOf(request);
        // The store decides, atomically: of two cancels at once (or a cancel as the campaign finishes) one wins.
        const r = await store.outbox.cancelCampaign({ id: c.id, now: d.clock.now() });
        const now = (await store.outbox.getCampaign(c.id)) ?? c;
        if (!r.cancelled)
          throw new AppError('CAMPAIGN_NOT_CANCELLABLE', { details: { id: c.id, status: now.status } });
        return { id: c.id, cancelled: r.messages, campaign: campaignView(now) };
      });
    },
    { prefix: '/v1' },
  );
}
