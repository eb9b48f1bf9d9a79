// Helpers for testing an application against wxsub's emulator: start one, grant consent, read inboxes.
import { createEmulator, type Emulator, type EmulatorOptions, type EmulatorSeed } from '../emulator/index.js';
import { ManualClock } from '../util/clock.js';

export { ManualClock };
export type { Emulator, EmulatorOptions, EmulatorSeed };

/** A running emulator on a real port, with its base URL. */
export type RunningEmulator = { emulator: Emulator; baseUrl: string; close(): Promise<void> };

/**
 * Starts the emulator on a free loopback port (port 0) for a test; close it in `afterAll`.
 * @example const { baseUrl, close } = await startEmulator({ seed }); // createWeChatClient({}, { …, baseUrl })
 */
export async function startEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  const emulator = await createEmulator(options);
  const baseUrl = await emulator.listen({ port: 0, host: '127.0.0.1' });
  return { emulator, baseUrl, close: () => emulator.close() };
}
