// Moves SQLite WAL checkpoints (their page copies and fsyncs) off the writer's thread: a worker thread with its own connection.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** Options of {@link startBackgroundCheckpoint}. */
export type BackgroundCheckpointOptions = {
  /**
   * How often the worker runs `PRAGMA wal_checkpoint(PASSIVE)`, in ms. Rarer is kinder to the writer on a busy
   * machine (each checkpoint competes for CPU and disk); the WAL holds at most one interval of writes more.
   * @default 500
   */
  intervalMs?: number;
  /** Called when the worker cannot open the database or dies (the store then relies on its auto-checkpoint). */
  onError?: (err: Error) => void;
};

/** A running background checkpointer. */
export type BackgroundCheckpoint = {
  /** Stops the worker and closes its connection; resolves once the thread has exited. */
  stop(): Promise<void>;
};

// Plain CommonJS so the worker needs no TypeScript loader (tests, tsx and compiled builds alike).
// PASSIVE never waits for the writer and never blocks it; the writer restarts the WAL once a checkpoint caught up.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
(function main() {
  let db;
  try {
    db = new Database(workerData.path, { fileMustExist: true });
  } catch (err) {
    parentPort.postMessage({ type: 'error', message: String(err && err.message) });
    parentPort.close();
    return;
  }
  let timer = null;
  const tick = () => {
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch (err) {
      // SQLITE_BUSY and friends: another checkpoint is running; try again next tick.
    }
    timer = setTimeout(tick, workerData.intervalMs);
  };
  timer = setTimeout(tick, workerData.intervalMs);
  parentPort.on('message', (m) => {
    if (m !== 'stop') return;
    clearTimeout(timer);
    db.close();
    parentPort.close();
  });
})();
`;

/**
 * Starts a worker thread that checkpoints the WAL of the database at `path` every `intervalMs`, so the
 * connection that writes (the event loop) never pays a checkpoint's copy and fsyncs inside a commit.
 * The database must exist and be in WAL mode. The thread never keeps the process alive.
 * @example const cp = startBackgroundCheckpoint('./data/wxsub.db'); … await cp.stop();
 */
export function startBackgroundCheckpoint(
  path: string,
  options: BackgroundCheckpointOptions = {},
): BackgroundCheckpoint {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const intervalMs = Math.max(1, Math.floor(options.intervalMs ?? 500));
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { driver, path, intervalMs },
  });
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.on('message', (m: { type?: string; message?: string }) => {
    if (m.type === 'error') options.onError?.(new Error(m.message ?? 'checkpoint worker failed'));
  });
  worker.on('error', (err) => options.onError?.(err));
  let stopping: Promise<void> | null = null;
  return {
    stop() {
      stopping ??= (async () => {
        worker.postMessage('stop');
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(resolve, 2000, 'timeout');
        });
        const first = await Promise.race([exited, timeout]);
        clearTimeout(timer);
        if (first === 'timeout') await worker.terminate();
      })();
      return stopping;
    },
  };
}
