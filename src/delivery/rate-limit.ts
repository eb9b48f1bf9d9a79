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

/**
 * Waits for a token of `key`, sleeping between tries; resolves false if `signal` aborts first.
 * @param now clock used for the bucket's time
 */
export async function acquire(
  limiter: RateLimiter,
  key: string,
  now: () => number,
  signal?: AbortSignal,
): Promise<boolean> {
  for (;;) {
    if (signal?.aborted) return false;
    const wait = await limiter.take(key, now());
    if (wait <= 0) return true;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, Math.min(wait, 1000));
      function done() {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
