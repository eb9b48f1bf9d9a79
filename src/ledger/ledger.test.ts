// Tests scene=auto picking and holdings summaries against a real SQLite store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Store } from '../store/store.js';
import { createLedger, pickAutoScene } from './ledger.js';

describe('pickAutoScene', () => {
  it('returns the lowest free scene in range', () => {
    expect(pickAutoScene([])).toBe(0);
    expect(pickAutoScene([0, 1, 3])).toBe(2);
    expect(pickAutoScene([5], { min: 5, max: 7 })).toBe(6);
    expect(pickAutoScene([5, 6, 7], { min: 5, max: 7 })).toBeNull();
    expect(pickAutoScene([], { min: -5, max: 20_000 })).toBe(0);
  });

  it('never returns an open scene or one outside 0..10000', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 40 })),
        fc.integer({ min: 0, max: 30 }),
        fc.integer({ min: 0, max: 30 }),
        (open, a, b) => {
          const range = { min: Math.min(a, b), max: Math.max(a, b) };
          const s = pickAutoScene(open, range);
          if (s === null) {
            for (let x = range.min; x <= range.max; x++) expect(open).toContain(x);
          } else {
            expect(open).not.toContain(s);
            expect(s).toBeGreaterThanOrEqual(range.min);
            expect(s).toBeLessThanOrEqual(range.max);
            for (let x = range.min; x < s; x++) expect(open).toContain(x);
          }
        },
      ),
    );
  });
});

describe('ledger over a store', () => {
  let dir: string;
  let store: Store;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wxsub-ledger-'));
    store = createSqliteStore({ path: join(dir, 'l.db') });
    await store.migrate();
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('skips available and reserved scenes but reuses consumed ones', async () => {
    const ledger = createLedger({ grants: store.grants });
    const base = { appId: 'a', openid: 'u', templateId: 't' };
    expect(await ledger.pickAutoScene(base)).toBe(0);
    for (const scene of [0, 1, 2]) await store.grants.recordOneTime({ ...base, scene, now: 1 });
    await store.outbox.enqueueMessage({
      ...base,
      kind: 'one-time',
      scene: 1,
      payload: { title: 't', content: 'c' },
      now: 2,
    });
    expect(await ledger.pickAutoScene(base)).toBe(3);
    await store.grants.consume({ ...base, scene: 0, now: 3 });
    expect(await ledger.pickAutoScene(base)).toBe(0);
    expect(await ledger.pickAutoScene({ ...base, min: 1, max: 2 })).toBeNull();
  });

  it('summarises holdings per template', async () => {
    const ledger = createLedger({ grants: store.grants });
    await store.grants.recordOneTime({ appId: 'a', openid: 'u', templateId: 't2', scene: 9, now: 1 });
    await store.grants.recordOneTime({ appId: 'a', openid: 'u', templateId: 't2', scene: 4, now: 1 });
    await store.grants.recordOneTime({ appId: 'a', openid: 'u', templateId: 't3', scene: 1, now: 1 });
    await store.grants.consume({ appId: 'a', openid: 'u', templateId: 't3', scene: 1, now: 2 });
    await store.grants.addNotificationCredits({
      appId: 'a',
      openid: 'u',
      templateId: 't1',
      count: 2,
      now: 1,
    });
    await store.grants.addNotificationCredits({
      appId: 'a',
      openid: 'u',
      templateId: 't0',
      count: 0,
      now: 1,
    });
    expect(await ledger.holdings({ appId: 'a', openid: 'u' })).toEqual({
      appId: 'a',
      openid: 'u',
      templates: [
        {
          templateId: 't1',
          availableScenes: [],
          reservedScenes: [],
          notificationCredits: 2,
          reservedCredits: 0,
          longTerm: false,
        },
        {
          templateId: 't2',
          availableScenes: [4, 9],
          reservedScenes: [],
          notificationCredits: 0,
          reservedCredits: 0,
          longTerm: false,
        },
      ],
    });
  });
});
