/** A source of the current time in milliseconds. Inject one in tests. */
export interface Clock {
  now(): number
}

/**
 * The default clock: `Date.now()`, so that `retryAt` and similar timestamps are
 * wall-clock epoch milliseconds. vitest's fake timers replace it too.
 */
export const systemClock: Clock = { now: () => Date.now() }
