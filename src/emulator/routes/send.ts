// The two send APIs: one-time `template/subscribe` (spec §1.4–1.6) and 订阅通知 `subscribe/bizsend` (§2.4–2.8).
import type { FastifyInstance } from 'fastify';
import { apiRoute, jsonBody } from '../http-util.js';
import { checkKeyword, renderContent } from '../keywords.js';
import type { EmuApp, EmulatorState, InboxMessage } from '../state.js';
import { WX_OK, wxError } from '../wx-errors.js';

const ONE_TIME_PATH = '/cgi-bin/message/template/subscribe';
const BIZSEND_PATH = '/cgi-bin/message/subscribe/bizsend';

function cpLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `argument invalid! <field> …` (spec §2.4 observed shapes; "emtpy" sic). */
function argInvalid(
  now: number,
  field: string,
  problem: 'empty' | 'invalid' | 'size',
): ReturnType<typeof wxError> {
  const tail = problem === 'empty' ? 'is emtpy' : problem === 'invalid' ? 'invalid' : 'size out of limit';
  return wxError(47003, now, `argument invalid! ${field} ${tail}`);
}

/** Checks the optional jump fields shared by both send APIs. */
function checkJump(
  b: Record<string, unknown>,
  urlField: 'url' | 'page',
  now: number,
): ReturnType<typeof wxError> | { url?: string; miniprogram?: { appid: string; pagepath: string } } {
  const out: { url?: string; miniprogram?: { appid: string; pagepath: string } } = {};
  const url = b[urlField];
  if (url !== undefined && url !== null) {
    if (typeof url !== 'string') return argInvalid(now, urlField, 'invalid');
    if (url !== '') out.url = url;
  }
  const mp = b.miniprogram;
  if (mp !== undefined && mp !== null) {
    if (!isObject(mp)) return argInvalid(now, 'miniprogram', 'invalid');
    if (typeof mp.appid !== 'string' || mp.appid === '') return argInvalid(now, 'miniprogram.appid', 'empty');
    if (typeof mp.pagepath !== 'string' || mp.pagepath === '')
      return argInvalid(now, 'miniprogram.pagepath', 'empty');
    out.miniprogram = { appid: mp.appid, pagepath: mp.pagepath };
  }
  return out;
}

function parseScene(v: unknown): number | 'empty' | 'invalid' {
  if (v === undefined || v === null || v === '') return 'empty';
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 10000 ? v : 'invalid';
  if (typeof v === 'string' && /^\d{1,5}$/.test(v)) {
    const n = Number(v);
    return n <= 10000 ? n : 'invalid';
  }
  return 'invalid';
}

function bumpSend(app: EmuApp, path: string): void {
  app.counters.sends[path] = (app.counters.sends[path] ?? 0) + 1;
}

/** Registers both send endpoints. */
export function registerSendRoutes(fastify: FastifyInstance, state: EmulatorState): void {
  // https://developers.weixin.qq.com/doc/service/api/notify/subscribe/api_templatesubscribe.html
  apiRoute(fastify, state, 'POST', ONE_TIME_PATH, ({ req, app, now }) => {
    const body = jsonBody(req);
    if (!body.ok) return wxError(body.errcode, now);
    const b = body.value;
    const tpl = typeof b.template_id === 'string' ? app.templates.get(b.template_id) : undefined;
    if (!tpl) return wxError(40037, now);
    // A 订阅通知 template id is not interchangeable with the one-time id: 40037 (spec §1.1), or the 43101 seen in §2.4.
    if (tpl.kind !== 'one-time') {
      return state.behavior.notificationTemplateOnOneTime === 43101
        ? wxError(43101, now, 'user refuse to accept the msg')
        : wxError(40037, now);
    }
    const openid = b.touser;
    if (typeof openid !== 'string' || !app.users.has(openid)) return wxError(40003, now);
    const sceneType = state.behavior.oneTimeSceneType;
    if (sceneType !== 'any' && b.scene !== undefined && typeof b.scene !== sceneType)
      return argInvalid(now, 'scene', 'invalid');
    const scene = parseScene(b.scene);
    if (typeof scene !== 'number') return argInvalid(now, 'scene', scene);
    const sizeLimit = state.behavior.overLengthErrcodes === 'size-limit';
    if (b.title === undefined || b.title === null || b.title === '') return argInvalid(now, 'title', 'empty');
    if (typeof b.title !== 'string') return argInvalid(now, 'title', 'invalid');
    if (cpLength(b.title) > 15) return sizeLimit ? wxError(45003, now) : argInvalid(now, 'title', 'size');
    if (!isObject(b.data) || !isObject(b.data.content)) return argInvalid(now, 'data.content.value', 'empty');
    const content = b.data.content;
    const value = content.value;
    if (value === undefined || value === null || value === '')
      return argInvalid(now, 'data.content.value', 'empty');
    if (typeof value !== 'string') return argInvalid(now, 'data.content.value', 'invalid');
    if (cpLength(value) > 200)
      return sizeLimit ? wxError(45002, now) : argInvalid(now, 'data.content.value', 'size');
    if (
      content.color !== undefined &&
      (typeof content.color !== 'string' || !/^#[0-9A-Fa-f]{6}$/.test(content.color))
    ) {
      return argInvalid(now, 'data.content.color', 'invalid');
    }
    const jump = checkJump(b, 'url', now);
    if ('errcode' in jump) return jump;
    // Quota key (appid, openid, template_id, scene), value 0/1 (spec §1.1, §1.6).
    const key = `${openid}\0${tpl.templateId}\0${scene}`;
    if (!app.oneTimeGrants.delete(key)) return wxError(43101, now, 'user refuse to accept the msg');
    const msg: InboxMessage = {
      appid: app.appid,
      openid,
      kind: 'one-time',
      templateId: tpl.templateId,
      title: b.title,
      content: value,
      data: b.data,
      scene,
      msgid: state.nextMsgId(),
      time: now,
    };
    if (jump.url !== undefined) msg.url = jump.url;
    if (jump.miniprogram) msg.miniprogram = jump.miniprogram;
    state.deliver(app, msg);
    bumpSend(app, ONE_TIME_PATH);
    return { ...WX_OK };
  });

  // https://developers.weixin.qq.com/doc/service/api/notify/notify/api_sendnewsubscribemsg.html
  apiRoute(fastify, state, 'POST', BIZSEND_PATH, ({ req, app, now }) => {
    const body = jsonBody(req);
    if (!body.ok) return wxError(body.errcode, now);
    const b = body.value;
    const tpl = typeof b.template_id === 'string' ? app.templates.get(b.template_id) : undefined;
    if (!tpl || tpl.kind !== 'notification') return wxError(40037, now);
    const openid = b.touser;
    if (typeof openid !== 'string' || !app.users.has(openid)) return wxError(40003, now);
    const data = b.data;
    if (!isObject(data)) return argInvalid(now, 'data', 'empty');
    const values: Record<string, string> = {};
    for (const p of tpl.placeholders) {
      const entry = data[p.key];
      const v = isObject(entry) ? entry.value : undefined;
      const check = checkKeyword(p.type, v, tpl.enumValues.get(p.key));
      if (check !== 'ok') return argInvalid(now, `data.${p.key}.value`, check);
      values[p.key] = v as string;
    }
    const jump = checkJump(b, 'page', now);
    if ('errcode' in jump) return jump;
    // miniprogram_state and lang (new doc, spec §2.4) are accepted and otherwise ignored: kept on the message only,
    // so a test can see what the sender passed.
    const key = `${openid}\0${tpl.templateId}`;
    if (!app.longTerm.has(key)) {
      const left = app.credits.get(key) ?? 0;
      if (left <= 0) return wxError(43101, now, 'user refuse to accept the msg');
      if (left === 1) app.credits.delete(key);
      else app.credits.set(key, left - 1);
    }
    const msgid = state.nextMsgId();
    const msg: InboxMessage = {
      appid: app.appid,
      openid,
      kind: 'notification',
      templateId: tpl.templateId,
      title: tpl.title,
      content: renderContent(tpl.content, values),
      data,
      msgid,
      time: now,
    };
    if (jump.url !== undefined) msg.page = jump.url;
    if (jump.miniprogram) msg.miniprogram = jump.miniprogram;
    if (typeof b.miniprogram_state === 'string') msg.miniprogramState = b.miniprogram_state;
    if (typeof b.lang === 'string') msg.lang = b.lang;
    state.deliver(app, msg);
    state.recordSentEvent(app, {
      appid: app.appid,
      toUserName: app.originalId,
      openid,
      templateId: tpl.templateId,
      msgId: msgid,
      errorCode: 0,
      errorStatus: 'success',
      createTime: Math.floor(now / 1000),
    });
    bumpSend(app, BIZSEND_PATH);
    return { ...WX_OK, msgid };
  });
}
