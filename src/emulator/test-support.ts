// Helpers for the emulator's own tests: a seeded emulator on a ManualClock and JSON call shortcuts.
import { ManualClock } from '../util/clock.js';
import { createEmulator, type Emulator } from './index.js';
import type { EmulatorSeed } from './seed.js';

/** The app every emulator unit test uses. */
export const APPID = 'wxtest0000000001';
/** Its secret (32 hex, like WeChat's). */
export const SECRET = '00112233445566778899aabbccddeeff';
/** Users of the test app. */
export const U1 = 'oTestUser0000000000000000001';
export const U2 = 'oTestUser0000000000000000002';
/** Templates of the test app. */
export const ONE_TIME = 'TestOneTimeTpl000000000000000000000000001';
export const NOTIFY = 'TestNotifyTpl0000000000000000000000000001';
export const LONG_TERM = 'TestLongTermTpl00000000000000000000000001';

/** Seed of the test app: 2 users, one one-time template, a type-2 and a type-3 notification template. */
export const TEST_SEED: EmulatorSeed = {
  apps: [
    {
      appid: APPID,
      secret: SECRET,
      name: '测试服务号',
      businessDomains: ['example.com', 'shop.example.com:8443'],
      oauthDomains: ['example.com'],
      users: [
        { openid: U1, nickname: '小明' },
        { openid: U2, nickname: 'Bob' },
      ],
      templates: [
        { templateId: ONE_TIME, kind: 'one-time', title: '活动提醒' },
        {
          templateId: NOTIFY,
          kind: 'notification',
          title: '物流状态通知',
          type: 2,
          content: '物品:{{thing1.DATA}}\n时间:{{time2.DATA}}',
        },
        {
          templateId: LONG_TERM,
          kind: 'notification',
          title: '办事进度通知',
          type: 3,
          content: '事项:{{thing1.DATA}}\n进度:{{enum2.DATA}}',
          keywordEnumValueList: [{ keywordCode: 'enum2.DATA', enumValueList: ['已受理', '已办结'] }],
        },
      ],
    },
  ],
};

/** A test emulator plus shortcuts. */
export type TestEmulator = Emulator & {
  clock: ManualClock;
  /** GET/POST JSON helper returning the parsed body. */
  call(path: string, body?: unknown, method?: string): Promise<Record<string, unknown>>;
  /** Fetches a fresh classic access token. */
  token(): Promise<string>;
};

/** Creates the seeded emulator on a ManualClock with randomSeed 1. */
export async function testEmulator(extra: Parameters<typeof createEmulator>[0] = {}): Promise<TestEmulator> {
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 2, 0, 0));
  const emu = await createEmulator({ clock, seed: TEST_SEED, randomSeed: 1, ...extra });
  const call = async (path: string, body?: unknown, method?: string) => {
    const init: RequestInit = { method: method ?? (body === undefined ? 'GET' : 'POST') };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      init.headers = { 'content-type': 'application/json' };
    }
    const res = await emu.fetch(`https://api.weixin.qq.com${path}`, init);
    return (await res.json()) as Record<string, unknown>;
  };
  const token = async () => {
    const r = await call(`/cgi-bin/token?grant_type=client_credential&appid=${APPID}&secret=${SECRET}`);
    return String(r.access_token);
  };
  return Object.assign(emu, { clock, call, token });
}

/** Matches the ` rid: xxxxxxxx-xxxxxxxx-xxxxxxxx` suffix. */
export const RID = / rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/;
