// Retry delays: exponential backoff with full jitter, bounded by a maximum delay.

/** How retry delays grow. */
export type BackoffPolicy = {
  /** Delay ceiling of the first retry in ms (doubles per attempt). @default 500 */
  baseMs: number;
  /** Largest delay ceiling in ms. @default 60000 */
  maxMs: number;
};

/**
 * The delay before the next attempt after `attempt` attempts have failed ("full jitter": uniformly random in
 * [0, min(maxMs, baseMs · 2^(attempt-1)))), so many messages failing at once spread out instead of retrying in step.
 * @param attempt attempts made so far (1 after the first failure)
 * @param random a source of numbers in [0, 1) (inject a seeded one in tests)
 * @example backoffDelay(3, { baseMs: 500, maxMs: 60_000 }, Math.random) // somewhere in [0, 2000)
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const exp = Math.max(0, Math.min(attempt, 60) - 1);
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** exp);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(ceiling * r);
}
