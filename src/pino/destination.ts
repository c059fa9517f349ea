import pino from 'pino'

/** What is known of one destination stream, shared by every pipeline and logger writing to it. */
interface Watched {
  /** Set at its first 'error': from then on every line given to it is counted as dropped. */
  failed: boolean
  /** The counters of the pipelines writing to it, told of the lines it held when it failed. */
  readonly sinks: Set<WeakRef<Counters>>
  readonly known: WeakSet<Counters>
  /** Size of `sinks` past which collected pipelines are pruned from it. */
  prune: number
}

interface Counters {
  dropped: number
}

type ErrorEmitter = {
  on?: (event: 'error', listener: (err: unknown) => void) => unknown
  listenerCount?: (event: 'error') => number
}

/**
 * Streams watched in this process. One 'error' listener per stream, whatever
 * the number of `pinoOptions()` calls writing to it: one per call made every
 * eleventh logger on stdout warn of a listener leak, and kept every dropped
 * pipeline's listener on the stream for good.
 */
const watched = new WeakMap<object, Watched>()

function watchStream(stream: object & ErrorEmitter): Watched {
  let w = watched.get(stream)
  if (w !== undefined) return w
  const state: Watched = { failed: false, sinks: new Set(), known: new WeakSet(), prune: 64 }
  w = state
  watched.set(stream, state)
  ;(stream.on as NonNullable<ErrorEmitter['on']>).call(stream, 'error', (err: unknown) => {
    if (!state.failed) {
      state.failed = true
      const held = heldLines(stream)
      if (held > 0) {
        for (const ref of state.sinks) {
          const c = ref.deref()
          if (c !== undefined) c.dropped += held
        }
      }
    }
    if (stream.listenerCount?.('error') === 1) throw err
  })
  return w
}

/** What a line's writer reads of its destination: whether it has failed. */
export interface DestinationState {
  /** True from the destination's first 'error' on: a line given to it is counted as dropped. */
  readonly failed: boolean
}

/**
 * Watches the destination of `logger` for the lines it refuses, counted into
 * `counters.dropped`; returns its state, or undefined for a destination that
 * emits no events. Called once per logger, when the state of its lines is
 * made: the caller reads `failed` for each line and counts the line when it
 * is true (a reader gone, `EPIPE`; a disk error; a destroyed stream).
 *
 * Each stream gets one 'error' listener in the process. When the stream
 * fails, the lines it still held are counted too, for pino's own
 * destinations (`pino.destination()`, the default stdout, SonicBoom), whose
 * buffer is readable; another stream's buffer is not, so only the lines
 * given to it after its failure are counted.
 * The listener changes nothing else: pino's own handling of `EPIPE` (further
 * writes become no-ops) stands, and where it is the stream's only listener
 * the error is thrown on, as it would have been without it.
 */
export function watchDestination(logger: pino.Logger, counters: Counters): DestinationState | undefined {
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as
    | (object & ErrorEmitter)
    | undefined
  if (typeof stream !== 'object' || stream === null || typeof stream.on !== 'function') return undefined
  const w = watchStream(stream)
  if (!w.known.has(counters)) {
    w.known.add(counters)
    if (w.sinks.size >= w.prune) {
      for (const ref of w.sinks) if (ref.deref() === undefined) w.sinks.delete(ref)
      w.prune = Math.max(64, 2 * w.sinks.size)
    }
    w.sinks.add(new WeakRef(counters))
  }
  return w
}

/** Lines a SonicBoom held unwritten when its write failed; 0 for another stream. */
function heldLines(stream: object): number {
  const s = stream as { _writingBuf?: unknown; _bufs?: unknown }
  let n = countLines(s._writingBuf)
  if (Array.isArray(s._bufs)) for (const b of s._bufs) n += countLines(b)
  return n
}

function countLines(chunk: unknown): number {
  let n = 0
  if (typeof chunk === 'string') {
    for (let i = chunk.indexOf('\n'); i !== -1; i = chunk.indexOf('\n', i + 1)) n++
  } else if (chunk instanceof Uint8Array) {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++
  }
  return n
}
