import pino from 'pino'
import type { ContextFragment, ContextWriter, ContextWriters } from '../context/writer.js'
import type { Enrichment } from '../core/enrichment.js'
import type { View } from '../core/globals.js'
import type { Problems } from '../core/problems.js'
import { bindingKeys } from '../util/bindings.js'
import { type DestinationState, watchDestination } from './destination.js'

const { chindingsSym, streamSym } = pino.symbols
const NO_KEYS: readonly string[] = []

/** The keys a logger's bindings set, other than its base and pino's own. */
function ownBindingKeys(bound: readonly string[], baseKeys: ReadonlySet<string>, coreKeys: ReadonlySet<string>) {
  if (bound.length === 0) return NO_KEYS
  const keys = bound.filter((k) => !baseKeys.has(k) && !coreKeys.has(k))
  return keys.length === 0 ? NO_KEYS : keys
}

/** pino's mark of a stream that reads `lastTime`, `lastObj`... (pino.multistream). */
const NEEDS_METADATA = Symbol.for('pino.metadata')
/** A child logger's own view, when its options route more keys than its parent's. */
export const VIEW = Symbol('pino-enrich.view')
export type Views = { [VIEW]?: View }

/**
 * What the lines of one logger need of it, made at its first line and kept on
 * the logger, as pino keeps a logger's chindings: made again only after its
 * `setBindings()` or after the pipeline's context-fields enrichers change. A
 * line reads it with one property load and three comparisons. Looked up part
 * by part on every line (view, destination, context writer, bound keys, each
 * with a last-logger cache of its own), they made the mixin and `timestamp`
 * too large for V8 to inline into pino's write: 592 and 478 bytes of bytecode,
 * where its limit is 460.
 */
export interface LoggerState {
  /** The logger it was made for: a child reads its parent's through the prototype until it has its own. */
  readonly logger: object
  readonly chindings: unknown
  /** The pipeline's context writers it was made from. */
  readonly writers: ContextWriters<Problems>
  readonly view: View
  /** The logger's stream, whose watch (`destination`) a child writing to it reuses. */
  readonly stream: unknown
  readonly destination: DestinationState | undefined
  /** The logger's stream when it reads pino's line metadata (`lastTime`...), else undefined. */
  readonly metadata: { lastTime?: string } | undefined
  /** Writes the request-context fields, leaving out keys the logger's bindings carry. */
  readonly writeContexts: ContextWriter<Problems>
  /**
   * The same fields as text for the line's time part, or undefined when they
   * must go through pino's object path (a serializer or redact path on one of
   * their keys, `formatters.log`, a stream reading pino's line metadata).
   */
  readonly fragment: ContextFragment | undefined
  /** Enricher keys the logger's bindings set: left out of the mixin's object. */
  readonly bound: readonly string[]
  /**
   * Whether its bindings (base included) set the errorKey: pino writes them
   * before the mixin's object, so a line's problems go in that object, after
   * them, as snapshot writes them, and not with the time part, before them.
   */
  readonly bindsErrorKey: boolean
}
const STATE = Symbol('pino-enrich.state')
type Logged = { [STATE]?: LoggerState } & Record<symbol, unknown>
/** States of loggers that cannot take a property (frozen, sealed). */
const fixedStates = new WeakMap<object, LoggerState>()

/**
 * The {@link LoggerState} of a logger, for the options of one `pinoOptions()`
 * call: kept on the logger, made again only when its bindings or the
 * pipeline's context writers have changed. `fragments`: whether the
 * options let a line carry its request fields in its time part.
 */
export function loggerStates(
  registry: Enrichment['registry'],
  counters: Enrichment['counters'],
  rootView: View,
  baseKeys: ReadonlySet<string>,
  errorKey: string,
  fragments: boolean,
): (logger: pino.Logger) => LoggerState {
  const newState = (logger: pino.Logger, inherited: LoggerState | undefined): LoggerState => {
    const l = logger as unknown as Logged & Views
    const chindings = l[chindingsSym]
    const writers = registry.contextWriters
    // Only a logger that cannot take a property has its state in the WeakMap.
    const fixed = Object.isExtensible(logger) ? undefined : fixedStates.get(logger)
    if (fixed !== undefined && fixed.chindings === chindings && fixed.writers === writers) return fixed
    const stream = l[streamSym] as Record<symbol, unknown> | undefined
    // A child writing where its parent writes (pino's children share the
    // stream) takes the parent's watch of it: a request logger made per
    // request then costs no lookups of the stream.
    const same = inherited !== undefined && inherited.stream === stream
    const bound = bindingKeys(logger)
    const view = l[VIEW] ?? rootView
    const metadata =
      stream !== undefined && stream[NEEDS_METADATA] === true ? (stream as { lastTime?: string }) : undefined
    const s: LoggerState = {
      logger,
      chindings,
      writers,
      view,
      stream,
      destination: same ? inherited.destination : watchDestination(logger, counters),
      metadata,
      writeContexts: writers.for(bound),
      // pino's errorKey and messageKey (core keys) are never written from the context as text.
      fragment:
        metadata !== undefined || !fragments ? undefined : writers.fragmentFor(bound, view.routed, registry.coreKeys),
      bound: ownBindingKeys(bound, baseKeys, registry.coreKeys),
      bindsErrorKey: bound.includes(errorKey),
    }
    if (!Object.isExtensible(logger)) fixedStates.set(logger, s)
    else {
      try {
        l[STATE] = s
      } catch {
        // A frozen ancestor's own state cannot be shadowed by assignment, only defined over.
        Object.defineProperty(l, STATE, { value: s, writable: true, configurable: true })
      }
    }
    return s
  }
  const stateOf = (logger: pino.Logger): LoggerState => {
    const l = logger as unknown as Logged
    const s = l[STATE]
    if (
      s !== undefined &&
      s.logger === logger &&
      s.chindings === l[chindingsSym] &&
      s.writers === registry.contextWriters
    )
      return s
    // Read through the prototype, `s` is the parent's state until the logger has its own.
    return newState(logger, s !== undefined && s.writers === registry.contextWriters ? s : undefined)
  }
  return stateOf
}
