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
