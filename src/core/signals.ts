import { constants as osConstants } from 'node:os'
import type { Disposer } from '../events.js'
import { within } from '../util/async.js'

/** Options of {@link Pipeline.handleSignals}. */
export interface HandleSignalsOptions {
  /**
   * Exit with 128 + the signal number once the close is done. Default: only
   * when no other listener for the signal is installed; beside the
   * application's own handler, the exit is left to it.
   */
  exit?: boolean
}

/**
 * How long past `closeTimeoutMs` a signal's close may take (closing caches and
 * enrichers once the pending lines are written) before handleSignals goes on, in ms.
 */
const SIGNAL_CLOSE_GRACE_MS = 1_000
/** The listeners handleSignals() installed, of every pipeline, and how many of their closes run. */
const signalHandlers = new Set<(...args: never[]) => unknown>()
let signalClosing = 0
let signalExitCode: number | undefined

/**
 * Installs the handlers of `Pipeline.handleSignals()`: on one of `signals`,
 * `close()` runs (further signals are absorbed meanwhile), then the process
 * exits with 128 + the signal number unless `options.exit` or another
 * listener of the application's says otherwise. Every pipeline's handlers
 * share one exit, taken once all of their closes are done.
 *
 * @returns a disposer that removes the handlers
 * @throws TypeError for a signal Node does not know or an `exit` that is not a boolean, quoting the value
 */
export function handleSignals(
  close: () => Promise<void>,
  closeTimeoutMs: number,
  signals: readonly NodeJS.Signals[],
  options: HandleSignalsOptions,
): Disposer {
  if (!Array.isArray(signals) || signals.some((s) => osConstants.signals[s as NodeJS.Signals] === undefined)) {
    throw new TypeError(`signals must be an array of signal names such as 'SIGTERM', received ${String(signals)}`)
  }
  const exit = options.exit
  if (exit !== undefined && typeof exit !== 'boolean') {
    throw new TypeError(`exit must be a boolean, received ${JSON.stringify(exit)}`)
  }
  let closing = false
  const handler = (signal: NodeJS.Signals): void => {
    // Kept, not once(): while a listener remains, a second signal cannot take Node's default action.
    if (closing) return
    closing = true
    // Another pipeline's handleSignals() is no application handler: it would leave the exit to us, we to it.
    const others = process.listeners(signal).some((l) => !signalHandlers.has(l))
    const code = 128 + (osConstants.signals[signal] ?? 15)
    signalClosing++
    within(close(), closeTimeoutMs + SIGNAL_CLOSE_GRACE_MS, true).then(() => {
      dispose()
      signalClosing--
      if (exit ?? !others) signalExitCode ??= code
      // process.exit runs pino's own exit flush of its destinations; it waits for every pipeline closing.
      if (signalClosing === 0 && signalExitCode !== undefined) process.exit(signalExitCode)
    })
  }
  signalHandlers.add(handler)
  for (const s of signals) process.on(s, handler)
  const dispose = (): void => {
    signalHandlers.delete(handler)
    for (const s of signals) process.removeListener(s, handler)
  }
  return dispose
}
