// Which line the pipeline is enriching now, so that a request store can call
// the application's `user(req)` once per line, however many enrichers read
// `userId` (a key function and the request fields, say), and again for the
// next line, by which time authentication may have set the user.

let next = 1
let current = 0

/** Marks the start of a line's enrichment; returns what to pass to {@link endLine}. */
export function beginLine(): number {
  const outer = current
  current = next++
  return outer
}

/** Marks the end of a line's enrichment, restoring an outer one (a line logged from an enricher). */
export function endLine(outer: number): void {
  current = outer
}

/** The line being enriched now, or 0 outside of one. */
export function lineNow(): number {
  return current
}
