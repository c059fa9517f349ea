/** A source of the current time in milliseconds. Inject one in tests. */
export interface Clock {
  /** The current time in ms. Timestamps such as `retryAt` are on this clock; {@link systemClock} gives epoch ms. */
  now(): number
}

/**
 * The default clock: `Date.now()`, so that `retryAt` and similar timestamps are
 * wall-clock epoch milliseconds. vitest's fake timers replace it too.
 */
export const systemClock: Clock = { now: () => Date.now() }

/**
 * A clock that never steps: `performance.now()`, ms since the process
 * started. Deadlines, timeouts and delays are measured on it, so that an NTP
 * step or a changed system time neither holds a line nor cuts its deadline
 * short. vitest's fake timers replace it too (and `vi.setSystemTime` moves
 * only `Date`).
 */
export const monotonicClock: Clock = { now: () => performance.now() }
