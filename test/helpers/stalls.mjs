// The event loop's stalls over a span, the one running at its end included.
// monitorEventLoopDelay records a stall only when its next tick fires, so a
// stall that lasts to the end of the span (a synchronous write just before
// exit, the process descheduled while it exits) never reaches its figures.
// Plain JavaScript, so that a worker thread's enricher module can use it too.
import { performance } from 'node:perf_hooks'

/** Gaps between ticks shorter than this are timer jitter, not stalls. */
const JITTER_MS = 2

/**
 * Starts watching: a 1 ms unref'd interval notes each gap past its due time.
 * The returned function stops it and reports the longest gap and the sum of
 * the gaps over `JITTER_MS`, the gap up to the call included.
 * @returns {() => { maxMs: number, totalMs: number }}
 */
export function watchStalls() {
  let last = performance.now()
  let maxMs = 0
  let totalMs = 0
  const note = (now) => {
    const gap = now - last - 1
    last = now
    if (gap > maxMs) maxMs = gap
    if (gap > JITTER_MS) totalMs += gap
  }
  const timer = setInterval(() => note(performance.now()), 1)
  timer.unref()
  let result
  return () => {
    if (result === undefined) {
      clearInterval(timer)
      note(performance.now())
      result = { maxMs, totalMs }
    }
    return result
  }
}
