// Graceful shutdown for long-running commands: waits for SIGINT/SIGTERM, closes everything once, forces exit on a second signal or a hang.

/** Options of {@link runUntilSignal}. */
export type RunUntilSignalOptions = {
  /** Longest time `close` may take before the process exits with code 1. @default 10000 */
  timeoutMs?: number;
  /** Called with the signal name before closing (e.g. to print "stopping…"). */
  onSignal?: (signal: NodeJS.Signals) => void;
  /** Signals to listen for. @default ['SIGINT', 'SIGTERM'] */
  signals?: NodeJS.Signals[];
};

/**
 * Resolves after the first SIGINT/SIGTERM once `close()` has finished. A second signal, or `close` taking
 * longer than `timeoutMs`, exits the process with code 1 at once.
 * @example await runUntilSignal(() => stack.close());
 */
export function runUntilSignal(
  close: () => Promise<void>,
  options: RunUntilSignalOptions = {},
): Promise<void> {
  const signals = options.signals ?? ['SIGINT', 'SIGTERM'];
  return new Promise<void>((resolve, reject) => {
    let closing = false;
    const handler = (signal: NodeJS.Signals): void => {
      if (closing) {
        process.exit(1);
      }
      closing = true;
      options.onSignal?.(signal);
      const timer = setTimeout(() => {
        console.error(`wxsub: shutdown took longer than ${options.timeoutMs ?? 10_000} ms, exiting`);
        process.exit(1);
      }, options.timeoutMs ?? 10_000);
      timer.unref();
      close().then(
        () => {
          clearTimeout(timer);
          for (const s of signals) process.off(s, handler);
          resolve();
        },
        (err: unknown) => {
          clearTimeout(timer);
          for (const s of signals) process.off(s, handler);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    };
    for (const s of signals) process.on(s, handler);
  });
}
