// Child process for store-concurrency.test.ts: opens its own store and races the other processes.
// argv: <action: consume|enqueue|claim> <database: postgres URL or SQLite path> <count> <startAt ms> <owner>
import { createStore } from '../../src/store/index.js';

const [action, database, countArg, startAtArg, owner = 'child'] = process.argv.slice(2);
const count = Number(countArg);
const store = createStore(database, { poolSize: 10 });
const key = { appId: 'race-app', openid: 'race-user', templateId: 'race-tpl' };

// Warm up the connection so every process starts racing at the same moment.
await store.grants.get({ ...key, scene: 1 });
const wait = Number(startAtArg) - Date.now();
if (wait > 0) await new Promise((r) => setTimeout(r, wait));

let result: unknown;
if (action === 'consume') {
  const wins = await Promise.all(
    Array.from({ length: count }, () => store.grants.consume({ ...key, scene: 1, now: Date.now() })),
  );
  result = { wins: wins.filter(Boolean).length };
} else if (action === 'enqueue') {
  const rs = await Promise.all(
    Array.from({ length: count }, () =>
      store.outbox.enqueueMessage({
        ...key,
        kind: 'one-time',
        scene: 'any',
        payload: { title: 't', content: 'c' },
        now: Date.now(),
      }),
    ),
  );
  result = { wins: rs.filter((r) => r.ok).length };
} else {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const got = await store.outbox.claim({ owner, limit: 5, leaseMs: 600_000, now: Date.now() });
    ids.push(...got.map((m) => m.id));
  }
  result = { ids };
}
await store.close();
process.stdout.write(JSON.stringify(result) + '\n');
