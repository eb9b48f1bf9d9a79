// Child process of the pipeline benchmark: the emulator with one app and N users holding one-time grants in
// scenes 1 and 3 (for the bare undici baseline before and after) and 2 (for the wxsub pipeline); prints its base URL as JSON.
import { createEmulator } from '../src/emulator/index.js';

/** The app, secret and template the benchmark uses. */
export const BENCH_APP = {
  appId: 'wxbenchpipeline01',
  secret: 'fedcba9876543210fedcba9876543210',
  templateId: 'BenchOneTimeTpl0000000000000000000000000001',
};

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? '100000');
  const emu = await createEmulator({});
  emu.state.createApp({
    appid: BENCH_APP.appId,
    secret: BENCH_APP.secret,
    templates: [{ templateId: BENCH_APP.templateId, kind: 'one-time', title: '基准' }],
  });
  for (let i = 0; i < n; i++) {
    const openid = benchOpenid(i);
    emu.state.createUser(BENCH_APP.appId, { openid });
    emu.state.grantOneTime(BENCH_APP.appId, openid, BENCH_APP.templateId, 1);
    emu.state.grantOneTime(BENCH_APP.appId, openid, BENCH_APP.templateId, 2);
    emu.state.grantOneTime(BENCH_APP.appId, openid, BENCH_APP.templateId, 3);
  }
  const baseUrl = await emu.listen({ port: 0 });
  console.log(JSON.stringify({ baseUrl }));
  const stop = () => void emu.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** The i-th benchmark user. */
export function benchOpenid(i: number): string {
  return `oBench${String(i).padStart(21, '0')}`;
}

if (process.argv[1]?.endsWith('pipeline-emulator.ts')) await main();
