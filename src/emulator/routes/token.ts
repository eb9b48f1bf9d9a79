// Access-token, jsapi-ticket and quota endpoints of the emulated api.weixin.qq.com (wechat-spec.md §3, §2.2).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { apiRoute, jsonBody, publicApiRoute, queryParam } from '../http-util.js';
import type { EmuApp, EmulatorState } from '../state.js';
import { WX_OK, wxError } from '../wx-errors.js';

const SECRET_SHAPE = /^[0-9a-fA-F]{32}$/;

/**
 * Common checks of both token endpoints (spec §3.1, §3.2): 41002/41004 missing, 40002 grant_type,
 * 40013 unknown appid, IP whitelist 40164/61004, 40125 malformed / 40001 wrong secret.
 */
function authenticateApp(
  state: EmulatorState,
  req: FastifyRequest,
  input: { appid: unknown; secret: unknown; grantType: unknown },
  now: number,
): EmuApp | ReturnType<typeof wxError> {
  const { appid, secret, grantType } = input;
  if (appid === undefined || appid === null || appid === '') return wxError(41002, now);
  if (secret === undefined || secret === null || secret === '') return wxError(41004, now);
  if (grantType !== 'client_credential') return wxError(40002, now);
  const app = typeof appid === 'string' ? state.apps.get(appid) : undefined;
  if (!app) return wxError(40013, now);
  // An IPv4 caller on a dual-stack socket arrives as `::ffff:a.b.c.d`: WeChat treats both forms as one caller.
  const ip = req.ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  if (app.ipWhitelist.length > 0 && !app.ipWhitelist.some((w) => w.replace(/^::ffff:/, '') === ip)) {
    return app.ipWhitelistErrcode === 61004
      ? wxError(61004, now)
      : wxError(40164, now, `invalid ip ${ip} ipv6 ::ffff:${ip}, not in whitelist`);
  }
  if (secret !== app.secret) {
    return typeof secret === 'string' && SECRET_SHAPE.test(secret)
      ? wxError(40001, now)
      : wxError(40125, now);
  }
  return app;
}

/** Registers `/cgi-bin/token`, `/cgi-bin/stable_token`, `/cgi-bin/ticket/getticket`, quota get/clear (and clear by secret). */
export function registerTokenRoutes(fastify: FastifyInstance, state: EmulatorState): void {
  // https://developers.weixin.qq.com/doc/service/en/Basic_Information/Get_access_token.html
  publicApiRoute(fastify, state, 'GET', '/cgi-bin/token', ({ req, now }) => {
    const app = authenticateApp(
      state,
      req,
      {
        appid: queryParam(req, 'appid'),
        secret: queryParam(req, 'secret'),
        grantType: queryParam(req, 'grant_type'),
      },
      now,
    );
    if ('errcode' in app) return app;
    const q = state.consumeQuota(app, '/cgi-bin/token');
    if (q !== 0) return wxError(q, now);
    return state.issueClassicToken(app);
  });

  // https://developers.weixin.qq.com/doc/service/api/base/api_getstableaccesstoken
  publicApiRoute(fastify, state, 'POST', '/cgi-bin/stable_token', ({ req, now }) => {
    const body = jsonBody(req);
    if (!body.ok) return wxError(body.errcode, now);
    const b = body.value;
    const app = authenticateApp(
      state,
      req,
      { appid: b.appid, secret: b.secret, grantType: b.grant_type },
      now,
    );
    if ('errcode' in app) return app;
    const q = state.consumeQuota(app, '/cgi-bin/stable_token');
    if (q !== 0) return wxError(q, now);
    const force = b.force_refresh === true || b.force_refresh === 'true';
    const r = state.issueStableToken(app, force);
    return 'errcode' in r ? wxError(r.errcode, now) : r;
  });

  // JS-SDK 附录1: https://developers.weixin.qq.com/doc/offiaccount/OA_Web_Apps/JS-SDK.html
  apiRoute(fastify, state, 'GET', '/cgi-bin/ticket/getticket', ({ req, app, now }) => {
    if (queryParam(req, 'type') !== 'jsapi') return wxError(40035, now);
    return { ...WX_OK, ...state.getJsapiTicket(app) };
  });

  // https://developers.weixin.qq.com/doc/channels/api/basic/api_getapiquota.html
  apiRoute(fastify, state, 'POST', '/cgi-bin/openapi/quota/get', ({ req, app, now }) => {
    const body = jsonBody(req);
    if (!body.ok) return wxError(body.errcode, now);
    const path = body.value.cgi_path;
    if (typeof path !== 'string' || !path.startsWith('/')) return wxError(40035, now);
    return { ...WX_OK, quota: state.quotaInfo(app, path) };
  });

  // https://developers.weixin.qq.com/doc/channels/api/basic/api_clearapiquota.html
  apiRoute(fastify, state, 'POST', '/cgi-bin/openapi/quota/clear', ({ req, app, now }) => {
    const body = jsonBody(req);
    if (!body.ok) return wxError(body.errcode, now);
    const path = body.value.cgi_path;
    if (typeof path !== 'string' || !path.startsWith('/')) return wxError(40035, now);
    state.clearQuota(app, path);
    return { ...WX_OK };
  });

  // https://developers.weixin.qq.com/doc/channels/api/basic/api_clearquotabyappsecret.html: no token, the app's
  // own appid and secret (checked like the token endpoints), the same 10 resets a month as clear_quota.
  publicApiRoute(fastify, state, 'POST', '/cgi-bin/clear_quota/v2', ({ req, now }) => {
    const body = jsonBody(req);
    if (!body.ok) return wxError(body.errcode, now);
    const b = body.value;
    const app = authenticateApp(
      state,
      req,
      { appid: b.appid, secret: b.appsecret, grantType: 'client_credential' },
      now,
    );
    if ('errcode' in app) return app;
    const code = state.clearQuota(app, undefined, true);
    return code === 0 ? { ...WX_OK } : wxError(code, now);
  });

  // https://developers.weixin.qq.com/doc/channels/api/basic/api_clearquota.html (10 per month → 48006)
  apiRoute(fastify, state, 'POST', '/cgi-bin/clear_quota', ({ req, app, now }) => {
    const body = jsonBody(req);
    if (!body.ok) return wxError(body.errcode, now);
    if (body.value.appid !== app.appid) return wxError(40013, now);
    const code = state.clearQuota(app, undefined, true);
    return code === 0 ? { ...WX_OK } : wxError(code, now);
  });
}
