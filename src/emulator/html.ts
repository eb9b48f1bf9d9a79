// Shared HTML shell and WeChat-style error page of the emulator's pages (consent, OAuth, inbox).
import { escapeHtml } from './http-util.js';

/** WeChat green. */
export const WECHAT_GREEN = '#07C160';

const BASE_CSS = `
*{box-sizing:border-box}
body{margin:0;background:#EDEDED;font:16px/1.5 -apple-system,BlinkMacSystemFont,"PingFang SC","Helvetica Neue","Microsoft YaHei",sans-serif;color:#191919}
.phone{max-width:420px;min-height:100vh;margin:0 auto;background:#F7F7F7;display:flex;flex-direction:column}
.bar{height:48px;display:flex;align-items:center;justify-content:center;font-weight:600;background:#EDEDED;border-bottom:1px solid #E5E5E5}
.content{flex:1;padding:24px 20px}
.account{display:flex;align-items:center;gap:12px;margin-bottom:24px}
.avatar{width:44px;height:44px;border-radius:6px;background:${WECHAT_GREEN};color:#fff;display:flex;align-items:center;justify-content:center;font-size:20px;font-weight:600}
.muted{color:#888;font-size:14px}
.card{background:#fff;border-radius:8px;padding:16px;margin:12px 0}
.btn{display:block;width:100%;max-width:184px;margin:12px auto;padding:10px 0;border:0;border-radius:4px;font-size:17px;font-weight:600;cursor:pointer}
.btn-primary{background:${WECHAT_GREEN};color:#fff}
.btn-default{background:#F2F2F2;color:${WECHAT_GREEN}}
label{display:block;font-size:14px;color:#555;margin:16px 0 6px}
select{width:100%;padding:10px;font-size:16px;border:1px solid #ddd;border-radius:6px;background:#fff}
.err{text-align:center;padding-top:80px}
.err .icon{width:64px;height:64px;border-radius:50%;background:#FA5151;color:#fff;font-size:40px;line-height:64px;margin:0 auto 20px}
.msg-time{text-align:center;color:#999;font-size:12px;margin:20px 0 8px}
.msg-title{font-size:17px;font-weight:600;margin-bottom:8px}
.msg-line{font-size:15px;color:#333;white-space:pre-wrap;word-break:break-all}
.msg-line .k{color:#888}
.msg-link{display:flex;justify-content:space-between;border-top:1px solid #eee;margin-top:12px;padding-top:10px;color:#191919;text-decoration:none;font-size:14px}
.empty{text-align:center;color:#999;padding:80px 0}
`;

/** Wraps page content in the phone-sized shell. `body` must already be escaped HTML. */
export function page(title: string, body: string, extraHead = ''): string {
  return `<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1,maximum-scale=1">
<title>${escapeHtml(title)}</title><style>${BASE_CSS}</style>${extraHead}</head>
<body><div class="phone"><div class="bar">${escapeHtml(title)}</div><div class="content">${body}</div></div></body></html>`;
}

/** Inner markup of the error page (also embedded in the consent page for the client-side hash check). */
export function errorMarkup(code: number, message: string): string {
  return `<div class="err" data-error-code="${escapeHtml(code)}"><div class="icon">!</div>
<h2>参数错误</h2><p class="muted">${escapeHtml(message)}</p><p class="muted">错误码：${escapeHtml(code)}</p></div>`;
}

/** A whole WeChat-like error page (served with HTTP 200, like WeChat). */
export function errorPage(code: number, message: string): string {
  return page('微信', errorMarkup(code, message));
}
