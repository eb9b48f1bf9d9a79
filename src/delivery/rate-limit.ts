// The per-app send rate limit contract (a token bucket per key); implementations in ./rate-limit/.

/** Options every rate limiter takes. */
export type RateLimitOptions = {
  /** Tokens added per second (sends per second per app). @default 500 */
  ratePerSecond: number;
  /** Bucket size: how many sends may go at once after a quiet spell. @default ratePerSecond (one second's worth), at least 1 */
  burst?: number;
};

/**
 * A token bucket per key (the key is the app id). `now` is passed in so tests agree on time without sleeping;
 * a limiter shared by several instances may keep one clock of its own instead (the Redis limiter uses the server's),
 * since instances' clocks disagree.
 */
export interface RateLimiter {
  /**
   * Takes one token from `key`'s bucket.
   * @returns 0 when the token was granted, else the ms to wait before asking again
   */
  take(key: string, now: number): Promise<number>;
  /** Releases connections or timers the limiter owns (not the ones it was given). */
  close(): Promise<void>;
}

/** The bucket size for `options`. */
export function burstOf(options: RateLimitOptions): number {
  return Math.max(1, options.burst ?? options.ratePerSecond);
}

/** Longest wait for one answer of a limiter, in ms: past it `acquire` fails (e.g. a Redis that stopped answering). */
export const LIMITER_TAKE_TIMEOUT_MS = 2000;

/** Thrown by {@link acquire} when the limiter did not answer within {@link LIMITER_TAKE_TIMEOUT_MS}. */
export class RateLimiterTimeoutError extends Error {
  override readonly name = 'RateLimiterTimeoutError';
  constructor() {
    super(`the rate limiter did not answer within ${LIMITER_TAKE_TIMEOUT_MS} ms`);
  }
}

function takeWithin(limiter: RateLimiter, key: string, now: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new RateLimiterTimeoutError()), LIMITER_TAKE_TIMEOUT_MS);
    limiter.take(key, now).then(
      (wait) => {
        clearTimeout(timer);
        resolve(wait);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The waiters of one limiter and key in this process: a chain of turns, and the error that ended the last one. */
type Line = { tail: Promise<void>; failed?: Error };
const lines = new WeakMap<RateLimiter, Map<string, Line>>();

/**
 * Waits for a token of `key`; resolves false if `signal` aborts first. Throws when the limiter fails or does not
 * answer within {@link LIMITER_TAKE_TIMEOUT_MS} (the caller puts its message back).
 *
 * Unthrottled callers ask the limiter directly. Once one has to wait, the others of this process wait in line behind
 * it and only the first in line asks again, so a throttled app costs the limiter (Redis) about one call per grant
 * per instance, not one per waiting send each time a token comes due. Only the first in line listens to `signal`;
 * the others see it aborted when their turn comes. When the first in line fails, the whole line fails with it.
 * @param now clock used for the bucket's time
 */
export async function acquire(
  limiter: RateLimiter,
  key: string,
  now: () => number,
  signal?: AbortSignal,
): Promise<boolean> {
  let byKey = lines.get(limiter);
  if (byKey === undefined) lines.set(limiter, (byKey = new Map()));
  let wait = 0;
  if (!byKey.has(key)) {
    if (signal?.aborted) return false;
    wait = await takeWithin(limiter, key, now());
    if (wait <= 0) return true;
  }
  let leave!: () => void;
  const mine = new Promise<void>((resolve) => (leave = resolve));
  const existing = byKey.get(key);
  const line: Line = existing ?? { tail: mine };
  const before = existing?.tail; // the turn of whoever is last in line now
  const tail = before === undefined ? mine : before.then(() => mine);
  line.tail = tail;
  byKey.set(key, line);
  try {
    if (before !== undefined) {
      await before;
      wait = 0;
    }
    for (;;) {
      if (line.failed !== undefined) throw line.failed;
      if (signal?.aborted) return false;
      if (wait > 0) await sleepUnlessAborted(Math.min(wait, 1000), signal);
      if (signal?.aborted) return false;
      try {
        wait = await takeWithin(limiter, key, now());
      } catch (err) {
        line.failed = err as Error;
        throw err;
      }
      if (wait <= 0) return true;
    }
  } finally {
    leave();
    if (line.tail === tail) byKey.delete(key);
  }
}
