// Tests of the service composition root: what `wxsub serve` runs besides the HTTP app and the dispatcher.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/schema.js';
import { NONCE_PURGE_GRACE_MS } from '../consent/nonce-purge.js';
import { ManualClock } from '../util/clock.js';
import { startService, type RunningService } from './serve.js';

describe('startService', () => {
  let dir: string | undefined;
  let svc: RunningService | undefined;
  afterEach(async () => {
    await svc?.close();
    svc = undefined;
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  async function start(purgeIntervalSeconds: number, clock: ManualClock): Promise<RunningService> {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-serve-'));
    svc = await startService(
      parseConfig({
        port: 0,
        sqlitePath: join(dir, 'wxsub.db'),
        wechat: { appId: 'wxserve00000001', appSecret: 'not-used-here', baseUrl: 'http://127.0.0.1:9' },
        consent: { purgeIntervalSeconds },
      }),
      { clock, logger: pino({ level: 'silent' }) },
    );
    return svc;
  }

  it('purges spent nonces of long-expired links on its interval, and keeps the ones still guarding a link', async () => {
    const clock = new ManualClock();
    const { store } = await start(1, clock);
    const t = clock.now();
    await store.nonces.use({ nonce: 'expired', expiresAt: t - NONCE_PURGE_GRACE_MS - 1, now: t });
    await store.nonces.use({ nonce: 'live', expiresAt: t + 600_000, now: t });
    const isSpent = async (nonce: string, expiresAt: number) =>
      !(await store.nonces.use({ nonce, expiresAt, now: t }));
    let purged = false; // found gone: `use` took the nonce afresh
    for (let i = 0; i < 60 && !purged; i++) {
      purged = !(await isSpent('expired', t - NONCE_PURGE_GRACE_MS - 1));
      if (!purged) await new Promise((r) => setTimeout(r, 50));
    }
    expect(purged).toBe(true);
    expect(await isSpent('live', t + 600_000)).toBe(true);
  });

  it('never purges when the interval is 0', async () => {
    const clock = new ManualClock();
    const { store } = await start(0, clock);
    const t = clock.now();
    await store.nonces.use({ nonce: 'expired', expiresAt: t - NONCE_PURGE_GRACE_MS - 1, now: t });
    await new Promise((r) => setTimeout(r, 1500));
    expect(
      await store.nonces.use({ nonce: 'expired', expiresAt: t - NONCE_PURGE_GRACE_MS - 1, now: t }),
    ).toBe(false);
  });
});
