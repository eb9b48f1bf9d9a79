// Injectable time: the system clock for production, a manual clock for tests.

/** A source of the current time in milliseconds since the epoch. */
export interface Clock {
  /** Current time in ms since the epoch. */
  now(): number;
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() };

/**
 * A clock that only moves when told to; tests use it instead of sleeping.
 * @example const clock = new ManualClock(Date.UTC(2026, 0, 1)); clock.advance(7_200_000);
 */
export class ManualClock implements Clock {
  #now: number;
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  /** Moves the clock forward by `ms`. */
  advance(ms: number): void {
    this.#now += ms;
  }
  /** Sets the clock to an absolute time. */
  set(ms: number): void {
    this.#now = ms;
  }
}
