// Two child processes sharing a SQLite token store against one emulator on a port-0 socket: one token fetch per expiry window, and a 40001 caused by the other process's refresh absorbed without a second refresh.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createEmulator, type Emulator } from '../../src/emulator/index.js';
import { ManualClock } from '../../src/util/clock.js';

const APPID = 'wxprocs0000000001';
const SECRET = 'procsecret0123456789abcdef012345';
const OPENID = 'oProcUser00000000000000001';
const TPL = 'ProcOneTimeTpl00000000000000000000000000001';
const script = fileURLToPath(new URL('./sdk-token-child.ts', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

type Child = { proc: ChildProcess; call(msg: Record<string, unknown>): Promise<Record<string, unknown>> };

let emu: Emulator;
let clock: ManualClock;
let dir: string;
let children: Child[] = [];

async function spawnChild(base: string, dbFile: string): Promise<Child> {
  const proc = fork(script, [base, dbFile, APPID, SECRET, String(clock.now())], {
    execPath: process.execPath,
    execArgv: ['--import', 'tsx'],
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 1;
  const waiting = new Map<number, (m: Record<string, unknown>) => void>();
  const ready = new Promise<void>((resolve, reject) => {
    proc.once('error', reject);
    proc.on('message', (raw) => {
      const m = raw as Record<string, unknown> & { id: number };
      if (m.id === 0) resolve();
      waiting.get(m.id)?.(m);
      waiting.delete(m.id);
    });
  });
  await ready;
  return {
    proc,
    call(msg) {
      const id = next++;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        proc.send({ id, ...msg });
      });
    },
  };
}

async function setNow(now: number): Promise<void> {
  clock.set(now);
  await Promise.all(children.map((c) => c.call({ op: 'now', now })));
}

beforeEach(async () => {
  clock = new ManualClock(Date.UTC(2026, 0, 1, 4));
  emu = await createEmulator({
    clock,
    seed: {
      apps: [
        {
          appid: APPID,
          secret: SECRET,
          users: [{ openid: OPENID }],
          templates: [{ templateId: TPL, kind: 'one-time', title: '提醒' }],
        },
      ],
    },
  });
  const base = await emu.listen({ port: 0 });
  dir = mkdtempSync(join(tmpdir(), 'wxsub-procs-'));
  const db = join(dir, 'tokens.db');
  children = [await spawnChild(base, db), await spawnChild(base, db)];
}, 60_000);

afterEach(async () => {
  await Promise.all(
    children.map(async (c) => {
      const exited = new Promise((r) => c.proc.once('exit', r));
      await c.call({ op: 'exit' });
      await exited;
    }),
  );
  children = [];
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
});

it('two processes fetch one token per expiry window', async () => {
  const [a, b] = children as [Child, Child];
  for (let window = 1; window <= 3; window++) {
    const [ra, rb] = await Promise.all([a.call({ op: 'burst', n: 25 }), b.call({ op: 'burst', n: 25 })]);
    expect(ra.ok && rb.ok).toBe(true);
    const tokens = new Set([...(ra.tokens as string[]), ...(rb.tokens as string[])]);
    expect(tokens.size).toBe(1);
    expect(emu.state.counters(APPID).tokenFetches.stable).toBe(window);
    await setNow(clock.now() + 7_200_000 + 1_000);
  }
}, 60_000);

it("absorbs a 40001 caused by the other process's refresh without a second refresh", async () => {
  const [a, b] = children as [Child, Child];
  emu.state.grantOneTime(APPID, OPENID, TPL, 9);
  const first = await a.call({ op: 'burst', n: 1 });
  const forced = await b.call({ op: 'force' });
  expect(forced.ok).toBe(true);
  expect(forced.token).not.toBe((first.tokens as string[])[0]);
  expect(emu.state.counters(APPID).tokenFetches.stable).toBe(2);
  const sent = await a.call({
    op: 'send',
    input: {
      touser: OPENID,
      template_id: TPL,
      scene: 9,
      title: '提醒',
      data: { content: { value: 'hello' } },
    },
  });
  expect(sent).toMatchObject({ ok: true, result: { errcode: 0 } });
  expect(emu.state.counters(APPID).tokenFetches.stable).toBe(2);
  expect(emu.state.inbox(APPID, OPENID)).toHaveLength(1);
  // the other process's refresh is now the token everyone uses
  const after = await a.call({ op: 'burst', n: 3 });
  expect(new Set(after.tokens as string[])).toEqual(new Set([forced.token]));
}, 60_000);
