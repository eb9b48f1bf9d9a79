// The emulator's control API `/__emulator/*` (JSON) and each user's 服务通知 inbox page.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { page } from '../html.js';
import { escapeHtml, jsonBody, queryParam } from '../http-util.js';
import { appSchema, templateSchema, type EmulatorSeedTemplate } from '../seed.js';
import {
  EmulatorStateError,
  type CreateAppInput,
  type EmuApp,
  type EmuTemplate,
  type EmulatorBehavior,
  type EmulatorState,
  type FaultRule,
  type InboxMessage,
} from '../state.js';

const createAppSchema = appSchema.partial({ appid: true, secret: true });
const patchAppSchema = appSchema
  .pick({
    name: true,
    secret: true,
    businessDomains: true,
    jsDomains: true,
    oauthDomains: true,
    ipWhitelist: true,
    ipWhitelistErrcode: true,
  })
  .partial();
const userSchema = z.strictObject({
  openid: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/)
    .optional(),
  nickname: z.string().max(64).optional(),
});
const grantSchema = z.strictObject({
  openid: z.string().min(1),
  template_id: z.string().min(1),
  scene: z.union([z.number().int(), z.string().regex(/^\d{1,5}$/)]).optional(),
  count: z.number().int().min(1).max(1_000_000).optional(),
});
const revokeSchema = z.strictObject({ openid: z.string().min(1), template_id: z.string().min(1) });
const probability = z.number().min(0).max(1);
const faultSchema = z.strictObject({
  path: z
    .string()
    .regex(/^(?:\*|\/[^?#]*)$/, 'path is "*" or an API path starting with "/" (no query or fragment)'),
  errcodes: z.record(z.string().regex(/^-?\d+$/), probability).optional(),
  http5xx: probability.optional(),
  drop: probability.optional(),
  dropAfterProcessing: z.boolean().optional(),
  latencyMs: z.number().int().min(0).max(60_000).optional(),
});
const quotaSchema = z.strictObject({
  cgi_path: z.string().startsWith('/'),
  dailyLimit: z.number().int().min(0).optional(),
  minuteLimit: z.number().int().min(0).optional(),
});
const clockSchema = z.strictObject({ advanceMs: z.number().int().min(0) });
const behaviorSchema = z
  .strictObject({
    overLengthErrcodes: z.enum(['argument-invalid', 'size-limit']),
    notificationTemplateOnOneTime: z.union([z.literal(40037), z.literal(43101)]),
    notificationCreditsStack: z.boolean(),
    requireWechatRedirectHash: z.boolean(),
    fragmentEncoding: z.enum(['wechat', 'preserve']),
    inboxLimitPerUser: z.number().int().min(1).max(1_000_000),
    sentEventLimit: z.number().int().min(1).max(10_000_000),
    maxPrivateTemplates: z.number().int().min(0).max(10_000),
    addtemplateSceneDescRequired: z.boolean(),
    oneTimeSceneType: z.enum(['any', 'string', 'number']),
  })
  .partial();

/** Control-API error body: `{ error: { code, message } }`. */
function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({ error: { code, message } });
}

function parse<T>(req: FastifyRequest, reply: FastifyReply, schema: z.ZodType<T>): T | undefined {
  const body = jsonBody(req);
  if (!body.ok) {
    fail(
      reply,
      400,
      'EMU_BAD_JSON',
      body.errcode === 44002 ? 'A JSON object body is required' : 'Body is not valid JSON',
    );
    return undefined;
  }
  const r = schema.safeParse(body.value);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
    fail(reply, 400, 'EMU_BAD_ARGUMENT', msg);
    return undefined;
  }
  return r.data;
}

/** JSON view of an app (the secret is included: the emulator's secrets are fake by design). */
export function appView(app: EmuApp) {
  return {
    appid: app.appid,
    secret: app.secret,
    name: app.name,
    originalId: app.originalId,
    businessDomains: app.businessDomains,
    jsDomains: app.jsDomains,
    oauthDomains: app.oauthDomains,
    ipWhitelist: app.ipWhitelist,
    ipWhitelistErrcode: app.ipWhitelistErrcode,
    users: [...app.users.values()].map((u) => ({ openid: u.openid, nickname: u.nickname })),
    templates: [...app.templates.values()].map(templateView),
  };
}

/** JSON view of a template. */
export function templateView(t: EmuTemplate) {
  return {
    templateId: t.templateId,
    kind: t.kind,
    title: t.title,
    ...(t.tid !== undefined ? { tid: t.tid } : {}),
    ...(t.kind === 'notification'
      ? { type: t.type, content: t.content, keywordEnumValueList: t.keywordEnumValueList }
      : {}),
  };
}

function fmtTime(ms: number): string {
  const d = new Date(ms + 8 * 3_600_000);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}年${d.getUTCMonth() + 1}月${d.getUTCDate()}日 ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
}

function safeHref(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : undefined;
  } catch {
    return undefined;
  }
}

function renderInbox(state: EmulatorState, openid: string, messages: InboxMessage[]): string {
  const cards = messages
    .map((m) => {
      const app = state.apps.get(m.appid);
      const lines = m.content
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const i = m.kind === 'notification' ? l.indexOf(':') : -1;
          return i > 0
            ? `<div class="msg-line"><span class="k">${escapeHtml(l.slice(0, i))}</span>&#12288;${escapeHtml(l.slice(i + 1))}</div>`
            : `<div class="msg-line">${escapeHtml(l)}</div>`;
        })
        .join('');
      const href = safeHref(m.url ?? m.page);
      const link = href
        ? `<a class="msg-link" href="${escapeHtml(href)}"><span>详情</span><span>›</span></a>`
        : m.miniprogram
          ? `<div class="msg-link"><span>详情（小程序 ${escapeHtml(m.miniprogram.appid)}）</span><span>›</span></div>`
          : '';
      return `<div class="msg-time">${escapeHtml(fmtTime(m.time))}</div>
<div class="card msg" data-msgid="${escapeHtml(m.msgid)}"><div class="muted">${escapeHtml(app?.name ?? m.appid)}</div>
<div class="msg-title">${escapeHtml(m.title)}</div>${lines}${link}</div>`;
    })
    .join('');
  const body = `<div class="muted">用户 ${escapeHtml(openid)}</div>${cards || '<div class="empty">暂无服务通知</div>'}`;
  return page('服务通知', body);
}

/** Registers `/__emulator/*`. */
export function registerControlRoutes(fastify: FastifyInstance, state: EmulatorState): void {
  const appOf = (req: FastifyRequest) => state.requireApp((req.params as { appid: string }).appid);

  fastify.get('/__emulator', async () => ({
    apps: [...state.apps.keys()],
    now: state.now(),
    faults: state.getFaults(),
    behavior: state.behavior,
  }));

  fastify.get('/__emulator/apps', async () => ({ apps: [...state.apps.values()].map(appView) }));
  fastify.post('/__emulator/apps', async (req, reply) => {
    const input = parse(req, reply, createAppSchema);
    if (!input) return reply;
    return reply.code(201).send(appView(state.createApp(input as CreateAppInput)));
  });
  fastify.get('/__emulator/apps/:appid', async (req) => appView(appOf(req)));
  fastify.patch('/__emulator/apps/:appid', async (req, reply) => {
    const app = appOf(req);
    const input = parse(req, reply, patchAppSchema);
    if (!input) return reply;
    const patch = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
    return appView(state.updateApp(app.appid, patch));
  });

  fastify.get('/__emulator/apps/:appid/users', async (req) => ({
    users: [...appOf(req).users.values()].map((u) => ({ openid: u.openid, nickname: u.nickname })),
  }));
  fastify.post('/__emulator/apps/:appid/users', async (req, reply) => {
    const app = appOf(req);
    const input = parse(req, reply, userSchema);
    if (!input) return reply;
    const u = state.createUser(
      app.appid,
      Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)),
    );
    return reply.code(201).send({ openid: u.openid, nickname: u.nickname });
  });

  fastify.get('/__emulator/apps/:appid/templates', async (req) => ({
    templates: [...appOf(req).templates.values()].map(templateView),
  }));
  fastify.post('/__emulator/apps/:appid/templates', async (req, reply) => {
    const app = appOf(req);
    const input = parse(req, reply, templateSchema);
    if (!input) return reply;
    return reply.code(201).send(templateView(state.createTemplate(app.appid, input as EmulatorSeedTemplate)));
  });

  fastify.get('/__emulator/apps/:appid/grants', async (req) =>
    state.listGrants(appOf(req).appid, queryParam(req, 'openid')),
  );
  fastify.post('/__emulator/apps/:appid/grants', async (req, reply) => {
    const app = appOf(req);
    const input = parse(req, reply, grantSchema);
    if (!input) return reply;
    const tpl = app.templates.get(input.template_id);
    if (!tpl) return fail(reply, 404, 'EMU_TEMPLATE_NOT_FOUND', `No template ${input.template_id}`);
    if (tpl.kind === 'one-time') {
      if (input.scene === undefined)
        return fail(reply, 400, 'EMU_BAD_ARGUMENT', 'scene is required for a one-time template');
      state.grantOneTime(app.appid, input.openid, input.template_id, Number(input.scene));
      return reply.code(201).send({ kind: 'one-time', remaining: 1 });
    }
    const n = state.grantNotification(app.appid, input.openid, input.template_id, input.count ?? 1);
    return reply.code(201).send({ kind: 'notification', remaining: Number.isFinite(n) ? n : 'unlimited' });
  });
  fastify.delete('/__emulator/apps/:appid/grants', async (req, reply) => {
    const app = appOf(req);
    const input = parse(req, reply, revokeSchema);
    if (!input) return reply;
    state.revokeNotification(app.appid, input.openid, input.template_id);
    return { ok: true };
  });

  fastify.get('/__emulator/apps/:appid/users/:openid/messages', async (req) => {
    const app = appOf(req);
    const { openid } = req.params as { openid: string };
    return { messages: state.inbox(app.appid, openid) };
  });
  fastify.get('/__emulator/apps/:appid/sent-events', async (req) => ({
    events: state.sentEvents(appOf(req).appid),
  }));
  fastify.get('/__emulator/apps/:appid/counters', async (req) => state.counters(appOf(req).appid));
  fastify.put('/__emulator/apps/:appid/quotas', async (req, reply) => {
    const app = appOf(req);
    const input = parse(req, reply, quotaSchema);
    if (!input) return reply;
    const limits: { dailyLimit?: number; minuteLimit?: number } = {};
    if (input.dailyLimit !== undefined) limits.dailyLimit = input.dailyLimit;
    if (input.minuteLimit !== undefined) limits.minuteLimit = input.minuteLimit;
    state.setQuota(app.appid, input.cgi_path, limits);
    return { cgi_path: input.cgi_path, ...limits };
  });

  fastify.get('/__emulator/faults', async () => ({ faults: state.getFaults() }));
  fastify.put('/__emulator/faults', async (req, reply) => {
    const input = parse(req, reply, z.union([faultSchema, z.array(faultSchema)]));
    if (!input) return reply;
    state.setFaults(input as FaultRule | FaultRule[]);
    return { faults: state.getFaults() };
  });
  fastify.delete('/__emulator/faults', async (req) => {
    state.clearFaults(queryParam(req, 'path'));
    return { faults: state.getFaults() };
  });

  fastify.get('/__emulator/clock', async () => ({
    now: state.now(),
    iso: new Date(state.now()).toISOString(),
  }));
  fastify.post('/__emulator/clock', async (req, reply) => {
    const input = parse(req, reply, clockSchema);
    if (!input) return reply;
    state.advanceClock(input.advanceMs);
    return { now: state.now(), iso: new Date(state.now()).toISOString() };
  });

  fastify.get('/__emulator/behavior', async () => state.behavior);
  fastify.put('/__emulator/behavior', async (req, reply) => {
    const input = parse(req, reply, behaviorSchema);
    if (!input) return reply;
    state.behavior = { ...state.behavior, ...(input as Partial<EmulatorBehavior>) };
    return state.behavior;
  });

  fastify.post('/__emulator/reset', async () => {
    state.reset();
    return { ok: true, apps: [...state.apps.keys()] };
  });

  fastify.get('/__emulator/inbox/:openid', async (req, reply) => {
    const { openid } = req.params as { openid: string };
    const appid = queryParam(req, 'appid');
    const messages = appid ? state.inbox(appid, openid) : state.inboxAllApps(openid);
    return reply
      .header('content-type', 'text/html; charset=utf-8')
      .send(renderInbox(state, openid, messages));
  });
}

/** Maps a thrown {@link EmulatorStateError} to the control API's JSON error. */
export function isStateError(err: unknown): err is EmulatorStateError {
  return err instanceof EmulatorStateError;
}
