// The one-time subscription consent page of mp.weixin.qq.com/mp/subscribemsg (wechat-spec.md §1.2, §1.3, §1.6).
import type { FastifyInstance, FastifyReply } from 'fastify';
import { errorMarkup, errorPage, page } from '../html.js';
import { escapeHtml, formBody, jsonForScript, queryParam } from '../http-util.js';
import type { EmuApp, EmuTemplate, EmulatorState } from '../state.js';

/** Codes shown on (and sent as `x-emulator-error` with) consent error pages. */
export const CONSENT_ERROR = {
  /** action is not get_confirm, or bad scene/reserved/redirect_url/decision. */
  INVALID_ARGS: 40035,
  /** appid missing or unknown. */
  INVALID_APPID: 40013,
  /** template_id missing, unknown or not a one-time template. */
  INVALID_TEMPLATE: 40037,
  /** redirect_url host is not a registered business domain. */
  DOMAIN_MISMATCH: 10003,
  /** The chosen user is not a user of the app. */
  INVALID_OPENID: 40003,
  /** The URL lacks `#wechat_redirect` (client-side check). */
  MISSING_WECHAT_REDIRECT: 10014,
} as const;

/** A validated consent request. */
export type ConsentRequest = {
  app: EmuApp;
  template: EmuTemplate;
  scene: number;
  redirectUrl: string;
  /** undefined when the parameter was absent. */
  reserved: string | undefined;
};

/** Outcome of validating consent parameters. */
export type ConsentValidation =
  { ok: true; value: ConsentRequest } | { ok: false; code: number; reason: string; message: string };

const RESERVED = /^[A-Za-z0-9]{0,128}$/;
const LOOPBACK = ['localhost', '127.0.0.1', '[::1]'];

/**
 * Whether a URL's host matches a domain list (`host` matches any port, `host:port` only that port).
 * An empty list accepts loopback hosts only, so a fresh app works in local development.
 */
export function hostAllowed(url: URL, domains: readonly string[]): boolean {
  const host = url.hostname.toLowerCase();
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  const list = domains.length ? domains : LOOPBACK;
  return list.some((entry) => {
    const e = entry.trim().toLowerCase();
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(e);
    if (!m) return false;
    return m[1] === host && (m[2] === undefined || m[2] === port);
  });
}

/**
 * Validates consent parameters exactly as spec §1.2/§1.6: action=get_confirm, known appid, known
 * one-time template, integer scene 0–10000, reserved `^[A-Za-z0-9]{0,128}$`, redirect_url on a
 * business domain.
 */
export function validateConsent(
  state: EmulatorState,
  get: (name: string) => string | undefined,
  expectAction: boolean,
): ConsentValidation {
  const fail = (code: number, reason: string, message: string): ConsentValidation => ({
    ok: false,
    code,
    reason,
    message,
  });
  if (expectAction && get('action') !== 'get_confirm') {
    return fail(CONSENT_ERROR.INVALID_ARGS, 'action', 'action 参数错误');
  }
  const appid = get('appid');
  const app = appid ? state.apps.get(appid) : undefined;
  if (!app) return fail(CONSENT_ERROR.INVALID_APPID, 'appid', 'appid 参数错误');
  const templateId = get('template_id');
  const template = templateId ? app.templates.get(templateId) : undefined;
  if (!template || template.kind !== 'one-time') {
    return fail(CONSENT_ERROR.INVALID_TEMPLATE, 'template_id', 'template_id 参数错误');
  }
  const sceneRaw = get('scene');
  if (sceneRaw === undefined || !/^\d{1,5}$/.test(sceneRaw) || Number(sceneRaw) > 10000) {
    return fail(CONSENT_ERROR.INVALID_ARGS, 'scene', 'scene 参数错误');
  }
  const reserved = get('reserved');
  if (reserved !== undefined && !RESERVED.test(reserved)) {
    return fail(CONSENT_ERROR.INVALID_ARGS, 'reserved', 'reserved 参数错误');
  }
  const redirectUrl = get('redirect_url');
  let parsed: URL | undefined;
  try {
    parsed = redirectUrl ? new URL(redirectUrl) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!redirectUrl || !parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    return fail(CONSENT_ERROR.INVALID_ARGS, 'redirect_url', 'redirect_url 参数错误');
  }
  if (!hostAllowed(parsed, app.businessDomains)) {
    return fail(CONSENT_ERROR.DOMAIN_MISMATCH, 'redirect_url_domain', 'redirect_url 域名与业务域名不一致');
  }
  return { ok: true, value: { app, template, scene: Number(sceneRaw), redirectUrl, reserved } };
}

/**
 * Appends `params` to `url`'s query, before any fragment (spec §1.3). In `'wechat'` mode the original
 * fragment is re-encoded like WeChat does (`#/x` → `#%23/x`).
 */
export function appendBeforeFragment(
  url: string,
  params: ReadonlyArray<readonly [string, string]>,
  fragmentEncoding: 'wechat' | 'preserve',
): string {
  const i = url.indexOf('#');
  const base = i >= 0 ? url.slice(0, i) : url;
  const frag = i >= 0 ? url.slice(i + 1) : undefined;
  const qs = params.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
  const sep = base.includes('?') ? (base.endsWith('?') || base.endsWith('&') ? '' : '&') : '?';
  let out = `${base}${sep}${qs}`;
  if (frag !== undefined) out += fragmentEncoding === 'wechat' ? `#%23${frag}` : `#${frag}`;
  // Header values must be ASCII: percent-encode anything else (spaces, CJK) the caller left raw.
  return out.replace(/[^\x21-\x7E]/gu, (c) => encodeURIComponent(c));
}

function sendError(reply: FastifyReply, code: number, reason: string, message: string) {
  return reply
    .code(200)
    .header('content-type', 'text/html; charset=utf-8')
    .header('x-emulator-error', String(code))
    .header('x-emulator-error-reason', reason)
    .send(errorPage(code, message));
}

function renderConsent(c: ConsentRequest, hashCheck: boolean): string {
  const { app, template } = c;
  const users = [...app.users.values()];
  const options = users
    .map(
      (u) =>
        `<option value="${escapeHtml(u.openid)}">${escapeHtml(u.nickname)}（${escapeHtml(u.openid)}）</option>`,
    )
    .join('');
  const hidden = [
    ['appid', app.appid],
    ['template_id', template.templateId],
    ['scene', String(c.scene)],
    ['redirect_url', c.redirectUrl],
    ...(c.reserved !== undefined ? [['reserved', c.reserved]] : []),
  ]
    .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`)
    .join('');
  const initial = escapeHtml([...app.name][0] ?? '微');
  const body = `<div id="consent">
<div class="account"><div class="avatar">${initial}</div><div><div class="account-name">${escapeHtml(app.name)}</div>
<div class="muted">申请向你发送一次以下消息</div></div></div>
<div class="card"><div class="msg-title" id="subscription-title">${escapeHtml(template.title)}</div>
<div class="muted">允许后，该服务号可向你发送一条此类消息</div></div>
<form method="post" action="/mp/subscribemsg/decide" id="consent-form">${hidden}
<label for="openid">你是哪位用户（模拟器）</label>
<select name="openid" id="openid">${options}</select>
${users.length === 0 ? '<p class="muted">该服务号还没有模拟用户，无法允许。</p>' : ''}
<button class="btn btn-primary" type="submit" name="action" value="confirm"${users.length === 0 ? ' disabled' : ''}>允许</button>
<button class="btn btn-default" type="submit" name="action" value="cancel">取消</button>
</form></div>
<template id="hash-error">${errorMarkup(CONSENT_ERROR.MISSING_WECHAT_REDIRECT, '请在链接末尾加上 #wechat_redirect')}</template>
<script>(function(){var required=${jsonForScript(hashCheck)};
if(required&&location.hash!=='#wechat_redirect'){var t=document.getElementById('hash-error');var c=document.getElementById('consent');
if(t&&c){c.replaceWith(t.content.cloneNode(true));document.documentElement.setAttribute('data-emulator-error',${jsonForScript(String(CONSENT_ERROR.MISSING_WECHAT_REDIRECT))});}}})();</script>`;
  return page('订阅消息', body);
}

/** Registers `GET /mp/subscribemsg` (the confirm page) and `POST /mp/subscribemsg/decide` (its form). */
export function registerConsentRoutes(fastify: FastifyInstance, state: EmulatorState): void {
  fastify.get('/mp/subscribemsg', async (req, reply) => {
    const v = validateConsent(state, (n) => queryParam(req, n), true);
    if (!v.ok) return sendError(reply, v.code, v.reason, v.message);
    const hashParam = queryParam(req, '__emulator_hash_check');
    const hashCheck =
      hashParam === '0' ? false : hashParam === '1' ? true : state.behavior.requireWechatRedirectHash;
    return reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(renderConsent(v.value, hashCheck));
  });

  fastify.post('/mp/subscribemsg/decide', async (req, reply) => {
    const form = formBody(req);
    const get = (n: string) => form.get(n) ?? undefined;
    const v = validateConsent(state, get, false);
    if (!v.ok) return sendError(reply, v.code, v.reason, v.message);
    const action = form.get('action');
    if (action !== 'confirm' && action !== 'cancel') {
      return sendError(reply, CONSENT_ERROR.INVALID_ARGS, 'action', 'action 参数错误');
    }
    const { app, template, scene, redirectUrl, reserved } = v.value;
    const params: Array<[string, string]> = [];
    if (action === 'confirm') {
      const openid = form.get('openid');
      if (!openid || !app.users.has(openid)) {
        return sendError(reply, CONSENT_ERROR.INVALID_OPENID, 'openid', '请选择一个模拟用户');
      }
      state.grantOneTime(app.appid, openid, template.templateId, scene);
      params.push(['openid', openid]);
    }
    // Order as observed on real WeChat: openid, template_id, action, reserved, scene (spec §1.3).
    params.push(['template_id', template.templateId], ['action', action]);
    if (reserved !== undefined) params.push(['reserved', reserved]);
    params.push(['scene', String(scene)]);
    const location = appendBeforeFragment(redirectUrl, params, state.behavior.fragmentEncoding);
    return reply.code(302).header('location', location).header('cache-control', 'no-store').send();
  });
}
