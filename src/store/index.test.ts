// Tests the store factory's engine choice and the shared id/cursor helpers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isAppError } from '../errors.js';
import { decodeCursor, encodeCursor, grantEffect } from './common.js';
import { createIdGenerator, createStore, isPostgresUrl } from './index.js';
import { sqliteMigrations } from './sqlite/migrations/index.js';

const dir = mkdtempSync(join(tmpdir(), 'wxsub-store-index-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('createStore', () => {
  it('picks PostgreSQL for postgres:// URLs and SQLite for paths', async () => {
    expect(isPostgresUrl('postgres://u@h/db')).toBe(true);
    expect(isPostgresUrl('postgresql://u@h/db')).toBe(true);
    expect(isPostgresUrl('./data/wxsub.db')).toBe(false);
    const pgStore = createStore('postgres://postgres@127.0.0.1:1/none');
    expect(pgStore.engine).toBe('postgres');
    await pgStore.close();
    const file = createStore(join(dir, 'a', 'x.db'));
    expect(file.engine).toBe('sqlite');
    expect(await file.migrate()).toBe(sqliteMigrations.length);
    await file.close();
    const dflt = createStore(undefined, { defaultSqlitePath: join(dir, 'default.db') });
    expect(await dflt.migrate()).toBe(sqliteMigrations.length);
    await dflt.close();
  });
});

describe('ids and cursors', () => {
  it('makes 26-char ids that sort by creation, also within one millisecond', () => {
    let t = Date.UTC(2026, 0, 1);
    const next = createIdGenerator(() => t);
    const ids = Array.from({ length: 1000 }, (_, i) => {
      if (i % 100 === 0) t += 1;
      return next();
    });
    for (const id of ids) expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    const later = createIdGenerator(() => t + 1)();
    expect(later > (ids[999] as string)).toBe(true);
  });

  it('round-trips cursors and rejects foreign ones', () => {
    expect(decodeCursor('m', encodeCursor('m', 'ABC'))).toBe('ABC');
    expect(decodeCursor('m', undefined)).toBeNull();
    for (const bad of [encodeCursor('g', 'ABC'), '!!', 'bQ']) {
      expect(() => decodeCursor('m', bad)).toThrow();
      try {
        decodeCursor('m', bad);
      } catch (e) {
        expect(isAppError(e, 'STORE_INVALID_CURSOR')).toBe(true);
      }
    }
  });

  it('maps outcomes to grant effects', () => {
    expect(grantEffect({ status: 'sent' })).toBe('consume');
    expect(grantEffect({ status: 'unknown', errorCode: 'X', errorMessage: '' })).toBe('consume');
    expect(grantEffect({ status: 'failed', grant: 'keep', errorCode: 'X', errorMessage: '' })).toBe(
      'consume',
    );
    expect(grantEffect({ status: 'failed', grant: 'release', errorCode: 'X', errorMessage: '' })).toBe(
      'release',
    );
    expect(grantEffect({ status: 'failed', grant: 'revoke', errorCode: 'X', errorMessage: '' })).toBe(
      'revoke',
    );
    expect(grantEffect({ status: 'retry', nextAttemptAt: 1, errorCode: 'X', errorMessage: '' })).toBe('none');
  });
});
