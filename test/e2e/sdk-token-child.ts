// Child process for token-broker-processes.test.ts: one SDK client over a shared SQLite token store, driven by IPC messages from the parent.
import { ManualClock } from '../../src/util/clock.js';
import { createSqliteTokenStore, createWeChatClient } from '../../src/wechat/index.js';

type Msg =
  | { id: number; op: 'now'; now: number }
  | { id: number; op: 'burst'; n: number }
  | { id: number; op: 'force' }
  | { id: number; op: 'send'; input: unknown }
  | { id: number; op: 'exit' };

const [baseUrl, dbFile, appId, secret, start] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
];
const clock = new ManualClock(Number(start));
const store = createSqliteTokenStore(dbFile);
const wx = createWeChatClient(
  { clock, tokenStore: store },
  { appId, secret, baseUrl, lease: { pollMs: 10 } },
);

process.on('message', (raw) => {
  const m = raw as Msg;
  const reply = (body: Record<string, unknown>) => process.send?.({ id: m.id, ...body });
  const run = async (): Promise<Record<string, unknown>> => {
    switch (m.op) {
      case 'now':
        clock.set(m.now);
        return {};
      case 'burst':
        return { tokens: await Promise.all(Array.from({ length: m.n }, () => wx.getAccessToken())) };
      case 'force':
        return { token: await wx.forceRefreshToken() };
      case 'send':
        return { result: await wx.sendOneTime(m.input as never) };
      case 'exit':
        await wx.close();
        await store.close();
        setImmediate(() => process.exit(0));
        return {};
    }
  };
  run().then(
    (body) => reply({ ok: true, ...body }),
    (err: unknown) =>
      reply({
        ok: false,
        error: {
          code: (err as { code?: string }).code,
          errcode: (err as { errcode?: number }).errcode,
          message: String((err as Error).message),
        },
      }),
  );
});
process.send?.({ id: 0, ready: true });
