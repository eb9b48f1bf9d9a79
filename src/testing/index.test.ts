// The testing entry point starts a real emulator a user's test can talk to over HTTP.
import { describe, expect, it } from 'vitest';
import { startEmulator } from './index.js';

describe('startEmulator', () => {
  it('listens on a free loopback port and answers token requests', async () => {
    const running = await startEmulator({
      seed: { apps: [{ appid: 'wxtesting000000001', secret: '0123456789abcdef0123456789abcdef' }] },
    });
    try {
      expect(running.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${running.baseUrl}/cgi-bin/stable_token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          grant_type: 'client_credential',
          appid: 'wxtesting000000001',
          secret: '0123456789abcdef0123456789abcdef',
        }),
      });
      const body = (await res.json()) as { access_token?: string; expires_in?: number };
      expect(body.expires_in).toBe(7200);
      expect(body.access_token).toBeTypeOf('string');
    } finally {
      await running.close();
    }
  });
});
