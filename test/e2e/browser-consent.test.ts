// Real-Chromium journey through the dev stack: demo → service → emulator consent page → back, send, inbox; and the cancel path.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevStack, type DevStack } from '../../src/cli/dev.js';

/** Path of the system Chromium, or null. In CI a missing browser is a failure, locally a printed skip. */
function chromiumPath(): string | null {
  let p: string;
  try {
    p = execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim();
  } catch {
    p = '';
  }
  if (p === '' && existsSync('/usr/bin/chromium')) p = '/usr/bin/chromium';
  if (p !== '') return p;
  if (process.env.CI)
    throw new Error('chromium is required in CI but was not found (which chromium, /usr/bin/chromium)');
  console.warn('[wxsub tests] skipping browser tests: chromium is not installed and CI is unset');
  return null;
}

const executablePath = chromiumPath();
const ARTIFACTS = join(process.cwd(), 'test-artifacts');

describe.skipIf(executablePath === null)('browser: one-time consent journey', () => {
  let stack: DevStack;
  let browser: Browser;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'wxsub-browser-'));
    mkdirSync(ARTIFACTS, { recursive: true });
    stack = await startDevStack({
      servicePort: 0,
      emulatorPort: 0,
      demoPort: 0,
      dataDir,
      logLevel: 'silent',
    });
    browser = await chromium.launch({
      executablePath: executablePath as string,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  async function newPage(): Promise<Page> {
    const ctx = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 1,
      locale: 'zh-CN',
    });
    return ctx.newPage();
  }

  async function grantsOf(openid: string): Promise<unknown[]> {
    const res = await fetch(`${stack.serviceUrl}/v1/users/${openid}/grants`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { oneTime: unknown[] };
    expect(Array.isArray(body.oneTime)).toBe(true);
    return body.oneTime;
  }

  it('subscribe → allow → back subscribed → send → message in the inbox', async () => {
    const user = stack.users[1]!; // 李四
    const page = await newPage();
    await page.goto(`${stack.demoUrl}/`);
    await expect(page.title()).resolves.toContain('wxsub');

    await page.click('#subscribe');
    await page.waitForURL((u) => u.toString().startsWith(`${stack.emulatorUrl}/mp/subscribemsg`));
    await page.selectOption('select[name="openid"]', user.openid);
    await page.screenshot({ path: join(ARTIFACTS, 'consent-page.png'), fullPage: true });
    await page.click('button:has-text("允许")');

    await page.waitForURL(
      (u) => u.toString().startsWith(`${stack.demoUrl}/`) && u.searchParams.has('wxsub_outcome'),
    );
    const outcome = page.locator('#outcome');
    await expect(outcome.getAttribute('data-outcome')).resolves.toBe('subscribed');
    await expect(outcome.textContent()).resolves.toMatch(/已订阅 — you are subscribed \(scene \d+\)/);
    expect(await grantsOf(user.openid)).toHaveLength(1);
    await page.screenshot({ path: join(ARTIFACTS, 'demo-subscribed.png'), fullPage: true });

    const title = '到货提醒';
    const content = `浏览器测试 ${Date.now()}`;
    await page.selectOption('#openid', user.openid);
    await page.fill('#title', title);
    await page.fill('#content', content);
    await page.click('#send');
    await page.waitForSelector('#send-result');
    await expect(page.locator('#send-result').getAttribute('data-status')).resolves.toBe('202');
    await page.screenshot({ path: join(ARTIFACTS, 'demo-after-send.png'), fullPage: true });

    const inboxHref = await page.locator(`a.inbox-link[data-openid="${user.openid}"]`).getAttribute('href');
    expect(inboxHref).toBe(stack.inboxUrl(user.openid));
    await page.goto(inboxHref as string);
    // The dispatcher runs in the background: reload until the message shows up.
    const deadline = Date.now() + 15_000;
    let body = await page.content();
    while (!body.includes(content) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      await page.reload();
      body = await page.content();
    }
    expect(body).toContain(content);
    await page.screenshot({ path: join(ARTIFACTS, 'inbox.png'), fullPage: true });

    // The grant was used: a second send is refused with 409.
    await page.goto(`${stack.demoUrl}/`);
    await page.selectOption('#openid', user.openid);
    await page.click('#send');
    await page.waitForSelector('#send-result');
    await expect(page.locator('#send-result').getAttribute('data-status')).resolves.toBe('409');
    await page.context().close();
  });

  it('subscribe → cancel → back cancelled, no grant recorded', async () => {
    const user = stack.users[2]!; // 王五
    const page = await newPage();
    await page.goto(`${stack.demoUrl}/`);
    await page.click('#subscribe');
    await page.waitForURL((u) => u.toString().startsWith(`${stack.emulatorUrl}/mp/subscribemsg`));
    await page.selectOption('select[name="openid"]', user.openid);
    await page.click('button:has-text("取消")');

    await page.waitForURL(
      (u) => u.toString().startsWith(`${stack.demoUrl}/`) && u.searchParams.has('wxsub_outcome'),
    );
    await expect(page.locator('#outcome').getAttribute('data-outcome')).resolves.toBe('cancelled');
    await expect(page.locator('#outcome').textContent()).resolves.toContain('已取消');
    await page.screenshot({ path: join(ARTIFACTS, 'demo-cancelled.png'), fullPage: true });
    expect(await grantsOf(user.openid)).toHaveLength(0);

    await page.selectOption('#openid', user.openid);
    await page.click('#send');
    await page.waitForSelector('#send-result');
    await expect(page.locator('#send-result').getAttribute('data-status')).resolves.toBe('409');
    await page.context().close();
  });
});
