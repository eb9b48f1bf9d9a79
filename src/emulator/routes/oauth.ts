// Web OAuth of open.weixin.qq.com/connect/oauth2/authorize and /sns/* (wechat-spec.md §5).
import type { FastifyInstance, FastifyReply } from 'fastify';
import { errorPage, page } from '../html.js';
import { escapeHtml, publicApiRoute, queryParam } from '../http-util.js';
import type { EmulatorState } from '../state.js';
import { wxError } from '../wx-errors.js';
import { appendBeforeFragment, hostAllowed } from './consent.js';

/** Codes of the OAuth authorize error page (spec §5; 10003/10005 documented, the rest our choice). */
export const OAUTH_ERROR = {
  REDIRECT_DOMAIN: 10003,
  SCOPE: 10005,
  SCOPE_MISSING: 10010,
  REDIRECT_MISSING: 10011,
  APPID: 10012,
  RESPONSE_TYPE: 10015,
  /** `state` outside `a-zA-Z0-9` or over 128 bytes: 不合法的参数, as the consent page answers a bad `reserved`. */
  STATE: 40035,
} as const;

/** `state` (spec §5): `a-zA-Z0-9`, at most 128 bytes. */
const STATE_RE = /^[A-Za-z0-9]{0,128}$/;

const SECRET_SHAPE = /^[0-9a-fA-F]{32}$/;

function sendError(reply: FastifyReply, code: number, message: string) {
  return reply
    .code(200)
    .header('content-type', 'text/html; charset=utf-8')
    .header('x-emulator-error', String(code))
    .send(errorPage(code, message));
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** Registers the authorize page and `/sns/oauth2/access_token`, `/sns/oauth2/refresh_token`, `/sns/userinfo`. */
export function registerOAuthRoutes(fastify: FastifyInstance, state: EmulatorState): void {
  // https://developers.weixin.qq.com/doc/offiaccount/OA_Web_Apps/Wechat_webpage_authorization.html
  fastify.get('/connect/oauth2/authorize', async (req, reply) => {
    const appid = queryParam(req, 'appid');
    const app = appid ? state.apps.get(appid) : undefined;
    if (!app) return sendError(reply, OAUTH_ERROR.APPID, 'appid 参数错误');
    const redirectUri = queryParam(req, 'redirect_uri');
    if (!redirectUri) return sendError(reply, OAUTH_ERROR.REDIRECT_MISSING, 'redirect_uri 参数错误');
    let parsed: URL | undefined;
    try {
      parsed = new URL(redirectUri);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      return sendError(reply, OAUTH_ERROR.REDIRECT_MISSING, 'redirect_uri 参数错误');
    }
    // 网页授权域名 is a bare host (no port): any port of a listed host passes (spec §5).
    if (
      !hostAllowed(
        parsed,
        app.oauthDomains.map((d) => d.replace(/:\d+$/, '')),
      )
    ) {
      return sendError(reply, OAUTH_ERROR.REDIRECT_DOMAIN, 'redirect_uri域名与后台配置不一致');
    }
    if (queryParam(req, 'response_type') !== 'code') {
      return sendError(reply, OAUTH_ERROR.RESPONSE_TYPE, 'response_type 参数错误');
    }
    const scope = queryParam(req, 'scope');
    if (!scope) return sendError(reply, OAUTH_ERROR.SCOPE_MISSING, 'scope 参数错误');
    if (scope !== 'snsapi_base' && scope !== 'snsapi_userinfo') {
      return sendError(reply, OAUTH_ERROR.SCOPE, '此公众号并没有这些scope的权限');
    }
    const stateParam = queryParam(req, 'state') ?? '';
    if (!STATE_RE.test(stateParam)) return sendError(reply, OAUTH_ERROR.STATE, 'state 参数错误');
    const cookieName = `wxemu_openid_${app.appid}`;
    const chosen = queryParam(req, 'openid') ?? cookieValue(req.headers.cookie, cookieName);
    if (chosen && app.users.has(chosen)) {
      const code = state.issueOAuthCode(app.appid, chosen, scope);
      const location = appendBeforeFragment(
        redirectUri,
        [
          ['code', code],
          ['state', stateParam],
        ],
        'preserve',
      );
      return reply
        .code(302)
        .header('set-cookie', `${cookieName}=${encodeURIComponent(chosen)}; Path=/; HttpOnly; SameSite=Lax`)
        .header('location', location)
        .send();
    }
    const keep = ['appid', 'redirect_uri', 'response_type', 'scope', 'state']
      .map((k) => [k, queryParam(req, k)] as const)
      .filter((e): e is readonly [string, string] => e[1] !== undefined)
      .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`)
      .join('');
    const options = [...app.users.values()]
      .map(
        (u) =>
          `<option value="${escapeHtml(u.openid)}">${escapeHtml(u.nickname)}（${escapeHtml(u.openid)}）</option>`,
      )
      .join('');
    const body = `<div class="account"><div class="avatar">${escapeHtml([...app.name][0] ?? '微')}</div>
<div><div>${escapeHtml(app.name)}</div><div class="muted">申请获取你的${scope === 'snsapi_userinfo' ? '昵称、头像' : '身份标识'}</div></div></div>
<form method="get" action="/connect/oauth2/authorize">${keep}
<label for="openid">你是哪位用户（模拟器）</label><select name="openid" id="openid">${options}</select>
${chosen ? '<p class="muted">所选用户不存在，请重新选择。</p>' : ''}
<button class="btn btn-primary" type="submit">允许</button></form>`;
    return reply.header('content-type', 'text/html; charset=utf-8').send(page('网页授权', body));
  });

  // https://developers.weixin.qq.com/doc/service/api/webdev/access/api_snsaccesstoken.html
  publicApiRoute(fastify, state, 'GET', '/sns/oauth2/access_token', ({ req, now }) => {
    const appid = queryParam(req, 'appid');
    const secret = queryParam(req, 'secret');
    const code = queryParam(req, 'code');
    if (!appid) return wxError(41002, now);
    if (!secret) return wxError(41004, now);
    if (!code) return wxError(41008, now);
    if (queryParam(req, 'grant_type') !== 'authorization_code') return wxError(40002, now);
    const app = state.apps.get(appid);
    if (!app) return wxError(40013, now);
    if (secret !== app.secret) return wxError(SECRET_SHAPE.test(secret) ? 40001 : 40125, now);
    const q = state.consumeQuota(app, '/sns/oauth2/access_token');
    if (q !== 0) return wxError(q, now);
    const r = state.exchangeOAuthCode(app, code);
    return 'errcode' in r ? wxError(r.errcode, now) : r;
  });

  publicApiRoute(fastify, state, 'GET', '/sns/oauth2/refresh_token', ({ req, now }) => {
    const appid = queryParam(req, 'appid');
    const token = queryParam(req, 'refresh_token');
    if (!appid) return wxError(41002, now);
    if (queryParam(req, 'grant_type') !== 'refresh_token') return wxError(40002, now);
    const app = state.apps.get(appid);
    if (!app) return wxError(40013, now);
    if (!token) return wxError(40030, now);
    const r = state.refreshSns(app, token);
    return 'errcode' in r ? wxError(r.errcode, now) : r;
  });

  publicApiRoute(fastify, state, 'GET', '/sns/userinfo', ({ req, now }) => {
    const token = queryParam(req, 'access_token');
    if (!token) return wxError(41001, now);
    const rec = state.checkSnsToken(token);
    if (typeof rec === 'number') return wxError(rec, now);
    if (queryParam(req, 'openid') !== rec.openid) return wxError(40003, now);
    if (rec.scope !== 'snsapi_userinfo') return wxError(48001, now);
    const user = state.apps.get(rec.appid)?.users.get(rec.openid);
    return {
      openid: rec.openid,
      nickname: user?.nickname ?? '',
      sex: 0,
      province: '',
      city: '',
      country: '',
      headimgurl: '',
      privilege: [],
    };
  });
}
