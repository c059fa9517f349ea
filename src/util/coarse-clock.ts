// The system time read at most about once per millisecond: a cache lookup that
// reads Date.now() each time spends about a third of a fresh hit on it. As
// lru-cache's `ttlResolution` does, a read is kept until a timer clears it;
// unlike lru-cache, there is one timer for the whole process, whatever the
// number of caches, the read is also renewed every COARSE_MAX_READS reads (a
// busy event loop runs no timer), and fake timers are noticed at each read
// (lru-cache keeps the clock it captured at import: vitest's and jest's fake
// timers then never reach it).
import type { Clock } from '../clock.js'

/** How long one read of the time is reused at most while the event loop turns, in ms. */
export const COARSE_RESOLUTION_MS = 1

/**
 * How many reads one read of the time serves at most. It bounds the lag
 * inside one long synchronous turn, where the clearing timer cannot run, at
 * the cost of one exact read per 1 024.
 */
export const COARSE_MAX_READS = 1_024

/** The one timer a coarse clock keeps: Node's Timeout, re-armed by `refresh()` rather than made anew. */
export interface CoarseTimer {
  refresh(): unknown
  unref(): unknown
}

/** What a coarse clock reads and arms; the process-wide one is on the real globals. */
export interface CoarseClockHost {
  /** The exact time, read each time it is called. */
  now(): number
  /** Arms the clearing timer; called once per clock, the timer is re-armed with `refresh()`. */
  setTimeout(callback: () => void, ms: number): CoarseTimer
  /** Whether a read may be kept now; when false every read is exact and nothing is kept. */
  cacheable(): boolean
}

/**
 * A clock whose `now()` keeps the host's time from the first read until its
 * timer clears it ({@link COARSE_RESOLUTION_MS} later) or until
 * {@link COARSE_MAX_READS} reads have used it, whichever comes first; at most
 * one timer pending, unref'd. Unless the host's time steps back, it never
 * runs ahead of it: it lags it by at most 1 ms while the event loop turns,
 * and within one long synchronous turn by the time its last 1 024 reads
 * took. While `host.cacheable()` is false, it reads the host every time.
 */
export function createCoarseClock(host: CoarseClockHost): Clock {
  let held = false
  let time = 0
  let left = 0
  let armed = false
  let timer: CoarseTimer | undefined
  const clear = (): void => {
    held = false
    armed = false
  }
  return {
    now(): number {
      if (!host.cacheable()) {
        // What was kept is older than this exact read: kept on, it would take the clock back.
        held = false
        return host.now()
      }
      if (held && --left > 0) return time
      time = host.now()
      held = true
      left = COARSE_MAX_READS
      if (!armed) {
        armed = true
        if (timer === undefined) {
          timer = host.setTimeout(clear, COARSE_RESOLUTION_MS)
          timer.unref()
        } else {
          timer.refresh()
        }
      }
      return time
    },
  }
}

// The globals as the module found them: the clearing timer is always this real
// setTimeout, so uninstalling fake timers can never strand it unfired.
const REAL_DATE = globalThis.Date
const REAL_NOW = REAL_DATE.now
const REAL_SET_TIMEOUT = globalThis.setTimeout
/** Whether the globals captured are fake ones already (@sinonjs/fake-timers, used by vitest and jest, marks them). */
const CAPTURED_FAKE =
  (REAL_DATE as { isFake?: unknown }).isFake === true || (REAL_SET_TIMEOUT as { clock?: unknown }).clock !== undefined

/**
 * The system time, `Date.now()`, read at most once per millisecond for the
 * whole process, one timer per thread (see {@link createCoarseClock} for the
 * bound of its lag).
 * Exact, nothing kept, while `Date`, `Date.now` or `setTimeout` is not the one
 * this module found at import (fake timers installed, `Date.now` spied on), or
 * if it found fake ones: `vi.setSystemTime` and `vi.advanceTimersByTime` are
 * seen at the next read.
 */
export const coarseClock: Clock = createCoarseClock({
  now: () => Date.now(),
  setTimeout: (callback, ms) => REAL_SET_TIMEOUT(callback, ms),
  cacheable: () =>
    !CAPTURED_FAKE &&
    globalThis.Date === REAL_DATE &&
    REAL_DATE.now === REAL_NOW &&
    globalThis.setTimeout === REAL_SET_TIMEOUT,
})
