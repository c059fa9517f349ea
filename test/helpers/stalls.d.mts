/** The longest stall of the event loop in a span, and the sum of those over 2 ms, in ms. */
export interface Stalls {
  maxMs: number
  totalMs: number
}

/** Starts watching the event loop; the returned function stops and reports, the stall running at the call included. */
export function watchStalls(): () => Stalls
