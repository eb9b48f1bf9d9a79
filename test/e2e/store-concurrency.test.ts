// Races several processes against one database: a grant is consumed exactly once, a message claimed by one owner.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/store.js';
import { createTempDatabase, skipUnless } from '../support/services.js';
import type { TempDatabase } from '../support/services.js';

const child = join(dirname(fileURLToPath(import.meta.url)), 'store-concurrency.child.ts');
const key = { appId: 'race-app', openid: 'race-user', templateId: 'race-tpl' };
const PROCESSES = 4;

function run(args: string[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`child exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as Record<string, unknown>);
      } catch (e) {
        reject(new Error(`bad child output ${out} ${err}`, { cause: e }));
      }
    });
  });
}

async function race(
  action: string,
  database: string,
  perProcess: number,
): Promise<Record<string, unknown>[]> {
  // Children need ~1-2 s to boot tsx on a busy 2-core machine; start them all at one wall-clock moment.
  const startAt = String(Date.now() + 4000);
  return Promise.all(
    Array.from({ length: PROCESSES }, (_, i) =>
      run([action, database, String(perProcess), startAt, `owner-${i}`]),
    ),
  );
}

function suite(
  engine: string,
  setup: () => Promise<{ database: string; cleanup: () => Promise<void> }>,
  skip: boolean,
): void {
  describe.skipIf(skip)(`store across ${PROCESSES} processes: ${engine}`, () => {
    let database: string;
    let cleanup: () => Promise<void>;
    let store: Store;
    beforeAll(async () => {
      ({ database, cleanup } = await setup());
      store = createStore(database);
      await store.migrate();
    });
    afterAll(async () => {
      await store?.close();
      await cleanup?.();
    });

    it('200 consumers of one grant: exactly one success', async () => {
      await store.grants.recordOneTime({ ...key, scene: 1, now: Date.now() });
      const results = await race('consume', database, 200 / PROCESSES);
      expect(results.reduce((n, r) => n + Number(r.wins), 0)).toBe(1);
      expect((await store.grants.get({ ...key, scene: 1 }))?.state).toBe('consumed');
    }, 60_000);

    it('100 enqueues for one grant: exactly one message', async () => {
      await store.grants.recordOneTime({ ...key, scene: 1, now: Date.now() });
      const results = await race('enqueue', database, 100 / PROCESSES);
      expect(results.reduce((n, r) => n + Number(r.wins), 0)).toBe(1);
      expect((await store.outbox.countMessages({ appId: key.appId })).queued).toBe(1);
    }, 60_000);

    it('claims from several processes never overlap', async () => {
      for (let s = 2; s < 62; s++) {
        await store.grants.recordOneTime({ ...key, scene: s, now: Date.now() });
        await store.outbox.enqueueMessage({
          ...key,
          kind: 'one-time',
          scene: s,
          payload: { title: 't', content: 'c' },
          now: Date.now() - 1000,
        });
      }
      const results = await race('claim', database, 20);
      const ids = results.flatMap((r) => r.ids as string[]);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBe(61);
    }, 60_000);
  });
}

const pgSkip = await skipUnless('postgres');
suite(
  'postgres',
  async () => {
    const db: TempDatabase = await createTempDatabase();
    return { database: db.url, cleanup: () => db.drop() };
  },
  pgSkip,
);
suite(
  'sqlite (one file, busy_timeout)',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wxsub-e2e-sqlite-'));
    return {
      database: join(dir, 'race.db'),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
  false,
);
