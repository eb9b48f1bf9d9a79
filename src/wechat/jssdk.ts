// JS-SDK signing (spec §2.2): sha1 over jsapi_ticket, noncestr, timestamp and the page URL without its fragment.
import { createHash } from 'node:crypto';
import { WeChatInvalidArgumentError } from './errors.js';

/** Input of {@link signJsSdk}. */
export type JsSdkSignInput = { ticket: string; nonceStr: string; timestamp: number | string; url: string };

/** The page URL as signed: everything before the first `#`. */
export function urlWithoutFragment(url: string): string {
  const i = url.indexOf('#');
  return i < 0 ? url : url.slice(0, i);
}

/**
 * `sha1("jsapi_ticket=…&noncestr=…&timestamp=…&url=…")` with raw (unescaped) values and the URL's fragment removed.
 * @example signJsSdk({ ticket, nonceStr: 'Wm3WZYTPz0wzccnW', timestamp: 1414587457, url: 'http://mp.weixin.qq.com' })
 */
export function signJsSdk(input: JsSdkSignInput): string {
  const s = `jsapi_ticket=${input.ticket}&noncestr=${input.nonceStr}&timestamp=${input.timestamp}&url=${urlWithoutFragment(input.url)}`;
  return createHash('sha1').update(s, 'utf8').digest('hex');
}

/** The object a page passes to `wx.config`. */
export type JsSdkConfig = {
  appId: string;
  timestamp: number;
  nonceStr: string;
  signature: string;
  jsApiList: string[];
  openTagList: string[];
};

/** Checks a page URL given for signing: absolute http(s). */
export function checkPageUrl(url: unknown): string {
  // `new URL()` would quietly drop surrounding whitespace and tabs or line breaks, but the signature is over the
  // text given: a URL no page's `location.href` can be, whose signature wx.config would always refuse.
  if (typeof url !== 'string' || url.length > 4096 || /^\s|\s$|[\t\r\n]/.test(url))
    throw new WeChatInvalidArgumentError('url', 'must be an absolute http(s) URL');
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new WeChatInvalidArgumentError('url', 'must be an absolute http(s) URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new WeChatInvalidArgumentError('url', 'must be an absolute http(s) URL');
  return urlWithoutFragment(url);
}
