// `wxsub emulator`: runs the WeChat platform emulator on a port, optionally seeded from a JSON file, until Ctrl-C.
import { runUntilSignal } from './shutdown.js';

/** Options of {@link runEmulator}. */
export type RunEmulatorOptions = {
  /** Port (0 = any free port). @default 4100 */
  port?: number;
  /** Interface. @default '127.0.0.1' */
  host?: string;
  /** Path of a JSON seed file (apps, users, templates). */
  seed?: string;
  /** URL browsers use to reach the emulator. @default the listen URL */
  publicBaseUrl?: string;
  /** Seed of the emulator's RNG. */
  randomSeed?: number;
};

/**
 * Starts the emulator, prints `wxsub emulator listening on <url>` and what it was seeded with (never secrets),
 * and resolves after SIGINT/SIGTERM once it is closed.
 */
export async function runEmulator(options: RunEmulatorOptions): Promise<void> {
  const { createEmulator, loadSeedFile } = await import('../emulator/index.js');
  const seed = options.seed === undefined ? undefined : await loadSeedFile(options.seed);
  const emulator = await createEmulator({
    ...(seed === undefined ? {} : { seed }),
    ...(options.randomSeed === undefined ? {} : { randomSeed: options.randomSeed }),
    ...(options.publicBaseUrl === undefined ? {} : { publicBaseUrl: options.publicBaseUrl }),
  });
  const url = await emulator.listen({ port: options.port ?? 4100, host: options.host ?? '127.0.0.1' });
  console.log(`wxsub emulator listening on ${url}`);
  for (const app of seed?.apps ?? []) {
    const users = (app.users ?? [])
      .map((u) => (u.nickname ? `${u.nickname}=${u.openid}` : u.openid))
      .join(', ');
    console.log(
      `  app ${app.appid}${app.name ? ` (${app.name})` : ''}: ${app.templates?.length ?? 0} templates; users ${users || '(none)'}`,
    );
    for (const u of app.users ?? [])
      console.log(`    inbox ${url}/__emulator/inbox/${encodeURIComponent(u.openid)}`);
  }
  console.log('Press Ctrl-C to stop.');
  await runUntilSignal(() => emulator.close(), { onSignal: () => console.log('wxsub emulator: stopping…') });
}
