// Deletes spent consent nonces once their links are long expired, so the nonce table holds about one link lifetime.
import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { Clock } from '../util/clock.js';

/**
 * How long past its expiry a spent nonce is kept. An expired link is refused on its expiry alone, so the nonce
 * guards nothing after it; the margin covers instances whose clocks disagree (one purging by a clock ahead of
 * another that still accepts the link).
 */
export const NONCE_PURGE_GRACE_MS = 3_600_000;
/** Nonces deleted per statement: a purge after a long pause never holds the store (or the event loop) for long. */
export const NONCE_PURGE_BATCH = 1000;

/** Options of {@link startNoncePurge}. */
export type NoncePurgeOptions = {
  store: Store;
  clock: Clock;
  /** Time between purges, in ms; the first runs one interval after the start. */
  intervalMs: number;
  logger?: Logger;
  /** @default NONCE_PURGE_GRACE_MS */
  graceMs?: number;
  /** @default NONCE_PURGE_BATCH */
  batchSize?: number;
};

/** A running purge timer. */
export type NoncePurge = {
  /** Purges now, in batches until none is full; resolves with how many nonces were deleted. */
  runOnce(): Promise<number>;
  /** Stops the timer and waits for a purge under way. */
  stop(): Promise<void>;
};

/**
 * Starts deleting spent nonces whose links expired more than `graceMs` ago, every `intervalMs`. A failing purge is
 * logged and tried again at the next interval; the timer never keeps the process alive.
 * @example const purge = startNoncePurge({ store, clock: systemClock, intervalMs: 300_000 }); … await purge.stop();
 */
export function startNoncePurge(options: NoncePurgeOptions): NoncePurge {
  const graceMs = options.graceMs ?? NONCE_PURGE_GRACE_MS;
  const batch = Math.max(1, options.batchSize ?? NONCE_PURGE_BATCH);
  let stopped = false;
  let running: Promise<number> | null = null;

  const purge = async (): Promise<number> => {
    const cutoff = options.clock.now() - graceMs;
    let total = 0;
    for (;;) {
      const n = await options.store.nonces.purgeExpired(cutoff, batch);
      total += n;
      if (n < batch || stopped) break;
      // Let requests in between the batches of a large backlog.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (total > 0) options.logger?.debug({ purged: total }, 'spent consent nonces purged');
    return total;
  };
  const runOnce = (): Promise<number> => {
    running ??= purge().finally(() => {
      running = null;
    });
    return running;
  };

  const timer = setInterval(
    () => {
      runOnce().catch((err: unknown) =>
        options.logger?.warn({ err }, 'could not purge spent consent nonces'),
      );
    },
    Math.max(1, options.intervalMs),
  );
  timer.unref();

  return {
    runOnce,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running?.catch(() => {});
    },
  };
}
