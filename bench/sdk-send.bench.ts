// Benchmark: SDK sendOneTime at concurrency 64 vs a bare undici keep-alive Pool posting the same requests, both against the emulator on a real port.
import { Pool } from 'undici';
import { createEmulator } from '../src/emulator/index.js';
import { createWeChatClient } from '../src/wechat/index.js';
import { percentile, runConcurrent, type Bench } from './harness.js';

const APPID = 'wxbench0000000001';
const SECRET = 'benchsecret0123456789abcdef01234';
const TPL = 'BenchOneTimeTpl0000000000000000000000000001';
const USERS = 4;
const SCENES_PER_USER = 5_000; // 20,000 (openid, scene) grants in all
const CONCURRENCY = 64;
const WARMUP = 1_500;
const WARMUP_ROUNDS = 3;
const ROUNDS = 10;

const openid = (u: number) => `oBenchUser${String(u).padStart(16, '0')}`;
/** Grant i → (user, scene); the SDK uses the first half, the baseline the second. */
const pair = (i: number) => ({ touser: openid(i % USERS), scene: Math.floor(i / USERS) });

export const bench: Bench = {
  name: 'sdk-send',
  async run() {
    const emu = await createEmulator({
      seed: {
        apps: [
          {
            appid: APPID,
            secret: SECRET,
            users: Array.from({ length: USERS }, (_, u) => ({ openid: openid(u) })),
            templates: [{ templateId: TPL, kind: 'one-time', title: '压测' }],
          },
        ],
      },
    });
    const base = await emu.listen({ port: 0 });
    const total = USERS * SCENES_PER_USER;
    for (let i = 0; i < total; i++) {
      const p = pair(i);
      emu.state.grantOneTime(APPID, p.touser, TPL, p.scene);
    }
    emu.state.setQuota(APPID, '/cgi-bin/message/template/subscribe', { dailyLimit: 0, minuteLimit: 0 });
    const half = total / 2;
    const measured = half - WARMUP;

    const wx = createWeChatClient({}, { appId: APPID, secret: SECRET, baseUrl: base });
    const token = await wx.getAccessToken();
    const pool = new Pool(base, { connections: CONCURRENCY, keepAliveTimeout: 30_000 });
    const path = `/cgi-bin/message/template/subscribe?access_token=${encodeURIComponent(token)}`;
    const headers = { 'content-type': 'application/json; charset=utf-8', accept: 'application/json' };
    let failures = 0;

    const sdkSend = async (i: number) => {
      const p = pair(i);
      await wx
        .sendOneTime({
          touser: p.touser,
          template_id: TPL,
          scene: p.scene,
          title: '压测',
          data: { content: { value: `第${i}条` } },
        })
        .catch(() => failures++);
    };
    const bareSend = async (i: number) => {
      const p = pair(half + i);
      const body = JSON.stringify({
        touser: p.touser,
        template_id: TPL,
        scene: String(p.scene),
        title: '压测',
        data: { content: { value: `第${i}条` } },
      });
      const res = await pool.request({ path, method: 'POST', headers, body });
      const reply = JSON.parse(await res.body.text()) as { errcode?: number };
      if (reply.errcode !== 0) failures++;
    };

    // warm both paths (JIT, sockets), then measure each over the same count
    for (let w = 0; w < WARMUP_ROUNDS; w++) {
      const from = w * (WARMUP / WARMUP_ROUNDS);
      await runConcurrent(WARMUP / WARMUP_ROUNDS, CONCURRENCY, (i) => sdkSend(from + i));
      await runConcurrent(WARMUP / WARMUP_ROUNDS, CONCURRENCY, (i) => bareSend(from + i));
    }
    // Interleave the two in rounds (alternating who goes first) so load from other processes and
    // emulator state growth hit both equally.
    let sdkMs = 0;
    let bareMs = 0;
    const sdkRates: number[] = [];
    const bareRates: number[] = [];
    const chunk = Math.floor(measured / ROUNDS);
    for (let r = 0; r < ROUNDS; r++) {
      const from = WARMUP + r * chunk;
      const runSdk = async () => {
        const ms = await runConcurrent(chunk, CONCURRENCY, (i) => sdkSend(from + i));
        sdkMs += ms;
        sdkRates.push((chunk / ms) * 1000);
      };
      const runBare = async () => {
        const ms = await runConcurrent(chunk, CONCURRENCY, (i) => bareSend(from + i));
        bareMs += ms;
        bareRates.push((chunk / ms) * 1000);
      };
      if (r % 2 === 0) {
        await runSdk();
        await runBare();
      } else {
        await runBare();
        await runSdk();
      }
    }
    const count = chunk * ROUNDS;

    await wx.close();
    await pool.close();
    await emu.close();

    // Medians of the per-round rates: this machine is shared, and one stalled round should not decide.
    const sdkPerSec = Math.round(percentile(sdkRates, 50));
    const baselinePerSec = Math.round(percentile(bareRates, 50));
    const ratio = sdkPerSec / baselinePerSec;
    return {
      name: 'sdk-send',
      metrics: {
        sdkPerSec,
        baselinePerSec,
        sdkMeanPerSec: Math.round((count / sdkMs) * 1000),
        baselineMeanPerSec: Math.round((count / bareMs) * 1000),
        failures,
      },
      ratio,
      target: 'ratio >= 0.8',
      met: ratio >= 0.8 && failures === 0,
      notes: `${count} one-time sends each (${ROUNDS} interleaved rounds; per-sec figures are medians of the rounds) at concurrency ${CONCURRENCY} against the emulator on ${base}; baseline = undici Pool with a pre-fetched token; ${total} grants across ${USERS} users`,
    };
  },
};
