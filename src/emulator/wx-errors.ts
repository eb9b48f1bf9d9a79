// WeChat errcode/errmsg strings the emulator answers with, and the ` rid: …` suffix every errmsg carries.

/**
 * English errmsg texts as WeChat returns them (wechat-spec.md §3.5, §1.5, §2.4, §2.6).
 * Where the spec only knows a Chinese meaning, the English text is our best reconstruction.
 */
export const WX_ERRMSG: Readonly<Record<number, string>> = {
  [-1]: 'system error',
  40001:
    'invalid credential, access_token is invalid or not latest, could get access_token by getStableAccessToken, more details at https://mmbizurl.cn/s/JtxxFh33r',
  40002: 'invalid grant_type',
  40003: 'invalid openid',
  40013: 'invalid appid',
  40014: 'invalid access_token',
  40029: 'invalid code',
  40030: 'invalid refresh_token',
  40035: 'invalid args',
  40037: 'invalid template_id',
  40125: 'invalid appsecret',
  40163: 'code been used',
  41001: 'access_token missing',
  41002: 'appid missing',
  41004: 'appsecret missing',
  41008: 'missing code',
  42001: 'access_token expired',
  43001: 'require GET method',
  43002: 'require POST method',
  43101: 'user refuse to accept the msg',
  44002: 'empty post data',
  45002: 'content size out of limit',
  45003: 'title size out of limit',
  45009: 'reach max api daily quota limit',
  45011: 'api minute-quota reach limit  must slower  retry next minute',
  47001: 'data format error',
  47003: 'argument invalid!',
  48001: 'api unauthorized',
  48006: 'forbid to clear quota because of reaching the limit',
  61004: 'access clientip is not registered, not in ip-white-list',
  20001: 'system error',
  20002: 'invalid args',
  200012: 'private template count reach the limit',
  200014: 'invalid tid',
  200016: 'invalid start',
  200017: 'invalid limit',
  200018: 'missing parameter ids',
  200019: 'invalid ids',
  200020: 'invalid kidList',
  200021: 'invalid sceneDesc',
};

let ridCounter = Math.floor(Math.random() * 0xffffffff);

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

/**
 * A request id in WeChat's shape `xxxxxxxx-xxxxxxxx-xxxxxxxx` (3 groups of 8 hex, spec §0).
 * @param nowMs emulator time, becomes the first group (seconds) like WeChat's rids.
 */
export function newRid(nowMs: number): string {
  ridCounter = (ridCounter + 1) >>> 0;
  return `${hex8(Math.floor(nowMs / 1000))}-${hex8(Math.imul(ridCounter, 2654435761))}-${hex8(ridCounter)}`;
}

/** A WeChat error body: `{errcode, errmsg}` where errmsg ends with ` rid: …`. */
export type WxErrorBody = { errcode: number; errmsg: string };

/**
 * Builds a WeChat error body.
 * @param detail replaces the default text (e.g. `argument invalid! data.thing1.value is emtpy`).
 */
export function wxError(errcode: number, nowMs: number, detail?: string): WxErrorBody {
  const text = detail ?? WX_ERRMSG[errcode] ?? 'system error';
  return { errcode, errmsg: `${text} rid: ${newRid(nowMs)}` };
}

/** The success envelope WeChat uses for calls that return nothing else. */
export const WX_OK = { errcode: 0, errmsg: 'ok' } as const;
