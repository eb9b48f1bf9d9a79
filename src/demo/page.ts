// Renders the demo H5 page (inline CSS, no scripts needed): subscribe button, consent outcome, send form, inbox link.

/** A user the page can pick as the recipient. */
export type DemoUser = { openid: string; nickname?: string };

/** What the consent round trip told the page. */
export type DemoOutcome =
  | { kind: 'subscribed'; scene: string | null }
  | { kind: 'cancelled' }
  | { kind: 'error'; code: string; message: string };

/** Result of the last send, as the service answered it. */
export type DemoSendResult = { status: number; body: unknown };

/** Everything {@link renderDemoPage} needs. */
export type DemoView = {
  /** Where the subscribe button goes (the service's consent start URL). */
  consentUrl: string;
  outcome: DemoOutcome | null;
  /** The remembered recipient, if the service told us who subscribed. */
  openid: string | null;
  users: DemoUser[];
  /** Emulator base URL; the inbox link is `${emulatorUrl}/__emulator/inbox/:openid`. */
  emulatorUrl: string | null;
  sendResult: DemoSendResult | null;
  form: { title: string; content: string };
};

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function userLabel(u: DemoUser): string {
  return u.nickname ? `${u.nickname} (${u.openid})` : u.openid;
}

function outcomeBanner(o: DemoOutcome | null): string {
  if (o === null) return '';
  if (o.kind === 'subscribed') {
    const scene = o.scene === null ? '' : ` (scene ${escapeHtml(o.scene)})`;
    return `<div class="banner ok" id="outcome" data-outcome="subscribed">✓ 已订阅 — you are subscribed${scene}</div>`;
  }
  if (o.kind === 'cancelled') {
    return `<div class="banner warn" id="outcome" data-outcome="cancelled">已取消 — cancelled, no message will be sent</div>`;
  }
  return `<div class="banner err" id="outcome" data-outcome="error">✗ 订阅失败 — ${escapeHtml(o.code)}: ${escapeHtml(o.message)}</div>`;
}

function sendBanner(r: DemoSendResult | null): string {
  if (r === null) return '';
  const body = (r.body ?? {}) as Record<string, unknown>;
  const err = (body.error ?? null) as Record<string, unknown> | null;
  const id = typeof body.id === 'string' ? body.id : null;
  if (r.status >= 200 && r.status < 300) {
    const status = typeof body.status === 'string' ? `, ${escapeHtml(body.status)}` : '';
    return `<div class="banner ok" id="send-result" data-status="${r.status}">✓ 已加入发送队列 — queued (${r.status})${
      id ? ` <code>${escapeHtml(id)}</code>` : ''
    }${status}</div>`;
  }
  const code = err && typeof err.code === 'string' ? err.code : `HTTP ${r.status}`;
  const message = err && typeof err.message === 'string' ? err.message : '';
  const hint =
    r.status === 409
      ? '<br><small>先点上面的按钮订阅一次 — subscribe first with the button above.</small>'
      : '';
  return `<div class="banner err" id="send-result" data-status="${r.status}">✗ 发送被拒绝 — rejected (${r.status}) <code>${escapeHtml(
    code,
  )}</code> ${escapeHtml(message)}${hint}</div>`;
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 -apple-system,BlinkMacSystemFont,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;background:#ededed;color:#111}
header{background:#07c160;color:#fff;padding:14px 16px}
header h1{margin:0;font-size:18px;font-weight:600}
header p{margin:2px 0 0;font-size:13px;opacity:.9}
main{max-width:560px;margin:0 auto;padding:12px}
.card{background:#fff;border-radius:10px;padding:16px;margin:0 0 12px}
.card h2{margin:0 0 8px;font-size:16px}
.muted{color:#666;font-size:13px;margin:0 0 12px}
.btn{display:block;width:100%;text-align:center;border:0;border-radius:8px;padding:12px;font-size:16px;font-weight:600;cursor:pointer;text-decoration:none}
.primary{background:#07c160;color:#fff}
.secondary{background:#f2f2f2;color:#07c160}
label{display:block;font-size:14px;margin:10px 0 4px;color:#333}
input,select,textarea{width:100%;font:inherit;padding:10px;border:1px solid #ddd;border-radius:8px;background:#fff}
textarea{min-height:80px;resize:vertical}
.banner{border-radius:8px;padding:10px 12px;margin:0 0 12px;font-size:15px;word-break:break-word}
.ok{background:#e7f8ee;color:#06ad56}
.warn{background:#f5f5f5;color:#555}
.err{background:#fdecec;color:#c62828}
code{font-size:12px;background:rgba(0,0,0,.05);padding:1px 4px;border-radius:4px}
.row{margin-top:14px}
.hint{color:#888;font-size:12px;margin:4px 0 0}
footer{text-align:center;color:#999;font-size:12px;padding:8px 0 24px}
`;

/** Renders the full demo page. All dynamic text is escaped. */
export function renderDemoPage(v: DemoView): string {
  const users =
    v.users.some((u) => u.openid === v.openid) || v.openid === null
      ? v.users
      : [{ openid: v.openid }, ...v.users];
  const options = users
    .map(
      (u) =>
        `<option value="${escapeHtml(u.openid)}"${u.openid === v.openid ? ' selected' : ''}>${escapeHtml(userLabel(u))}</option>`,
    )
    .join('');
  const recipient =
    users.length > 0
      ? `<label for="openid">接收人 / Recipient</label><select id="openid" name="openid">${options}</select>`
      : `<label for="openid">接收人 openid / Recipient openid</label><input id="openid" name="openid" required value="${escapeHtml(v.openid ?? '')}">`;
  const inboxUsers = v.openid !== null ? users.filter((u) => u.openid === v.openid) : users;
  const inbox =
    v.emulatorUrl === null
      ? ''
      : `<section class="card"><h2>收件箱 / Inbox</h2><p class="muted">模拟器里该用户在微信中看到的消息 — what the user sees in WeChat (emulated).</p>${inboxUsers
          .map(
            (u) =>
              `<a class="btn secondary row inbox-link" data-openid="${escapeHtml(u.openid)}" href="${escapeHtml(
                `${v.emulatorUrl}/__emulator/inbox/${encodeURIComponent(u.openid)}`,
              )}">打开 ${escapeHtml(u.nickname ?? u.openid)} 的收件箱 / Open inbox</a>`,
          )
          .join('')}</section>`;
  return `<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>wxsub 演示 / Demo</title>
<style>${CSS}</style></head>
<body>
<header><h1>wxsub 演示 / Demo</h1><p>一次性订阅消息 / One-time subscription messages</p></header>
<main>
${outcomeBanner(v.outcome)}
<section class="card">
<h2>订阅一次提醒 / Notify me once</h2>
<p class="muted">点一下，微信会问你是否允许本服务号给你发送一条消息。<br>Tap once; WeChat asks whether this account may send you one message.</p>
<a class="btn primary" id="subscribe" href="${escapeHtml(v.consentUrl)}">订阅一次提醒 / Notify me once</a>
</section>
<section class="card">
<h2>发送消息 / Send a message</h2>
<p class="muted">由演示服务器带着 API key 调用 <code>POST /v1/messages</code> — the demo server calls the service with its API key; the key never reaches this page.</p>
${sendBanner(v.sendResult)}
<form method="post" action="./send" id="send-form">
${recipient}
${v.openid === null && users.length > 0 ? '<p class="hint">选你刚才在微信确认页上选的用户 — pick the user you chose on the consent page.</p>' : ''}
<label for="title">标题 / Title (≤15)</label><input id="title" name="title" maxlength="15" required value="${escapeHtml(v.form.title)}">
<label for="content">内容 / Content (≤200)</label><textarea id="content" name="content" maxlength="200" required>${escapeHtml(v.form.content)}</textarea>
<button class="btn primary row" type="submit" id="send">发送 / Send</button>
</form>
</section>
${inbox}
<footer>wxsub dev — 本地模拟，不会连接真实微信<br>local emulator, nothing reaches the real WeChat</footer>
</main>
</body></html>`;
}
