// Test helpers for the real PostgreSQL and Redis on loopback: throwaway databases and key prefixes.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Base URL of the PostgreSQL server tests use. */
export const PG_ADMIN_URL = process.env.WXSUB_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** URL of the Redis server tests use. */
export const REDIS_URL = process.env.WXSUB_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function reachable(fn: () => Promise<void>): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch {
    return false;
  }
}

/** True when PostgreSQL answers. */
export async function pgAvailable(): Promise<boolean> {
  return reachable(async () => {
    const c = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 2000 });
    await c.connect();
    await c.end();
  });
}

/** True when Redis answers PING. */
export async function redisAvailable(): Promise<boolean> {
  const { Redis } = await import('ioredis');
  return reachable(async () => {
    const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2000 });
    try {
      await r.connect();
      await r.ping();
    } finally {
      r.disconnect();
    }
  });
}

/**
 * Decides whether a suite needing an outside service runs. In CI a missing service is a failure,
 * never a skip; locally the suite is skipped with a printed reason.
 * @returns true when the suite should be skipped
 */
export async function skipUnless(name: 'postgres' | 'redis'): Promise<boolean> {
  const ok = name === 'postgres' ? await pgAvailable() : await redisAvailable();
  if (ok) return false;
  if (process.env.CI) throw new Error(`${name} is required in CI but is not reachable`);
  console.warn(`[wxsub tests] skipping ${name} suite: ${name} is not reachable and CI is unset`);
  return true;
}

/** A throwaway PostgreSQL database; `drop()` removes it. */
export type TempDatabase = { url: string; name: string; drop(): Promise<void> };

/** Creates an empty database with a random name on the test server. */
export async function createTempDatabase(prefix = 'wxsub_t'): Promise<TempDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** A random Redis key prefix so suites never see each other's keys. */
export function tempRedisPrefix(): string {
  return `wxsub_t:${randomBytes(6).toString('hex')}:`;
}
