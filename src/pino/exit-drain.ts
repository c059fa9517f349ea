import pino from 'pino'

/** A deferred queue as the exit drain sees it: lines that know their logger, written at once when forced. */
export interface DrainedQueue {
  forEach(fn: (line: { readonly logger: pino.Logger }) => void): void
  drain(force: boolean, exiting?: boolean): void
}

/**
 * Deferred queues with lines waiting, of every pipeline, for the exit drain.
 * A queue is here only while it holds lines: loggers with nothing pending are
 * not kept alive, and one process 'exit' listener serves them all.
 */
export const waitingQueues = new Set<DrainedQueue>()
let listening = false
// Once 'exit' has begun nothing asynchronous runs again: a line logged from
// then on (another 'exit' listener) is written at once with what is ready.
export let exiting = false
function drainAllAtExit(): void {
  exiting = true
  // The exit may come from inside a write (a destination that calls process.exit()): it will not return.
  for (const queue of Array.from(waitingQueues)) drainAtExit(queue, undefined, true)
}

/**
 * Writes every line of `queue` now, then flushes the streams they went to;
 * `inWrite`: also while a write of the queue's is under way (see {@link DrainedQueue}).
 */
export function drainAtExit(queue: DrainedQueue, written?: pino.Logger, inWrite = false): void {
  const streams = new Set<{ flushSync?: () => void }>()
  const add = (l: pino.Logger): void => {
    const s = (l as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as
      | { flushSync?: () => void }
      | undefined
    if (s !== undefined) streams.add(s)
  }
  if (written !== undefined) add(written)
  queue.forEach((item) => {
    add(item.logger)
  })
  queue.drain(true, inWrite)
  // These lines were written during 'exit': flush them now rather than rely
  // on the order of pino's own exit handler.
  for (const s of streams) {
    try {
      s.flushSync?.()
    } catch {
      // A destination that cannot flush synchronously at exit has nothing more we can do.
    }
  }
}

/** Installs the one process 'exit' listener that drains every waiting queue, at the first deferred queue. */
export function listenAtExit(): void {
  if (!listening) {
    listening = true
    process.prependListener('exit', drainAllAtExit)
  }
}
