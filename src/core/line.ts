import type { EnrichContext, Fields } from '../enricher.js'
import type { Problems } from './problems.js'
import type { Slot } from './registry.js'

/**
 * One line waiting on one enricher. A compute's outcome reaches its lines
 * only through its waiter set, which forgets a line once it is written: a
 * compute that hangs keeps nothing alive of the lines it timed out.
 */
export interface Waiter {
  readonly slot: Slot
  /** The enricher's position in the line's `parts`. */
  readonly i: number
  readonly line: Line
  readonly set: Set<Waiter>
  /** A keyed enricher's cache key, for a last look at the cache at the deadline; undefined for a function enricher. */
  readonly key: string | undefined
}

/**
 * A line being enriched: what its keyed and function enrichers gave, what
 * it still waits for, and its problems. Every mode that waits (deferred
 * lines, the transport worker's, `enrich()`) makes its lines here, the
 * pino layer's with a subclass carrying what its mode needs to write them.
 * {@link Collector.gather} fills it; a queue writes it when it is ready or
 * at its deadline.
 */
export class Line {
  readonly ctx: EnrichContext
  /** The cache clock's time when the line was taken: freshness is judged at it. */
  readonly now: number
  /**
   * Each enricher's output by its position (keyed, then functions, then the
   * context fields), merged in that order whatever order they arrive in.
   */
  readonly parts: Array<Fields | undefined> = []
  problems: Problems | undefined = undefined
  /** Enrichers still awaited, with their positions in `parts`; undefined once none is. */
  waiting: Waiter[] | undefined = undefined
  /** Set once the line is written (or taken as it is): an answer after that changes nothing. */
  done = false
  /** The request-context fields gathered for it (also in `parts`), when it has any. */
  contexts: Fields | undefined = undefined
  /** Called once nothing is awaited any more. */
  onReady: (() => void) | undefined = undefined
  /** Time after which the line is written with what is ready (a queue sets it again on its own clock). */
  deadline: number
  /** Time from which the delay added to the line is measured; set with `deadline`. */
  start: number

  constructor(ctx: EnrichContext, now: number, deadlineMs: number) {
    this.ctx = ctx
    this.now = now
    this.deadline = now + deadlineMs
    this.start = now
  }

  /** Merges the parts into `out` in registration order; `skip`, a part written otherwise, left out. */
  mergeInto(out: Fields, skip?: Fields): void {
    const parts = this.parts
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]
      if (part !== undefined && part !== skip) Object.assign(out, part)
    }
  }
}
