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
  readonly i: number
  readonly g: Gathering
  readonly stale: boolean
  readonly set: Set<Waiter>
}

/** Where one line's enrichment is gathered. */
export interface Gathering {
  ctx: EnrichContext
  /** The cache clock's time when the line was taken: freshness is judged at it. */
  now: number
  /** Each enricher's output by its position (keyed, then functions), merged in that order whatever order they arrive in. */
  parts: Array<Fields | undefined>
  problems: Problems | undefined
  /** Enrichers still awaited, with their positions in `parts`. */
  waiting: Waiter[] | undefined
  done: boolean
  onReady: (() => void) | undefined
}
