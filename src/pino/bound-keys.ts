import pino from 'pino'
import { bindingKeys } from '../util/bindings.js'

/**
 * Most binding keys a transport capture carries (`b`), and the longest:
 * later or longer keys are left out of the list, so a list past either bound
 * is not one the main thread wrote.
 */
export const MAX_BOUND_KEYS = 64
export const MAX_BOUND_KEY_LENGTH = 128

const { chindingsSym } = pino.symbols
/** pino's own bindings, which no enricher may write. */
const PINO_KEYS: ReadonlySet<string> = new Set(['pid', 'hostname'])

/**
 * The main thread's half: the capture member naming the top-level keys a
 * logger's bindings set (`"b":["reqId"]`), or `''` for none, so that the
 * worker leaves out a request-context field the line carries already
 * (Fastify's `request.log` and pino-http's `quietReqLogger` bind `reqId`).
 * The bindings are parsed once per logger, again only after `setBindings()`
 * ({@link bindingKeys}, shared with snapshot and deferred mode);
 * the last logger's member is kept at hand, so a run of its lines costs two
 * comparisons.
 */
export class BoundKeys {
  readonly #byLogger = new WeakMap<object, { chindings: unknown; member: string }>()
  #lastLogger: object | undefined
  #lastChindings: unknown
  #last = ''

  member(logger: object): string {
    const chindings = (logger as Record<symbol, unknown>)[chindingsSym]
    if (logger === this.#lastLogger && chindings === this.#lastChindings) return this.#last
    let known = this.#byLogger.get(logger)
    if (known === undefined || known.chindings !== chindings) {
      known = { chindings, member: boundMember(bindingKeys(logger)) }
      this.#byLogger.set(logger, known)
    }
    this.#lastLogger = logger
    this.#lastChindings = chindings
    this.#last = known.member
    return known.member
  }
}

/** The `b` member for a logger's binding keys ({@link bindingKeys}: parsed as pino's `bindings()` parses them). */
function boundMember(bound: readonly string[]): string {
  const keys: string[] = []
  for (const k of bound) {
    if (PINO_KEYS.has(k) || k.length > MAX_BOUND_KEY_LENGTH) continue
    keys.push(k)
    if (keys.length === MAX_BOUND_KEYS) break
  }
  return keys.length === 0 ? '' : `"b":${JSON.stringify(keys)}`
}

/**
 * The worker's half: the binding keys a capture's `b` names, or undefined
 * when it names none or is not a list the main thread writes (an array of at
 * most {@link MAX_BOUND_KEYS} strings of at most {@link MAX_BOUND_KEY_LENGTH}
 * characters). Such a list is ignored whole: a field is only ever left out
 * for a key the main thread saw bound.
 */
export function readBoundKeys(b: unknown): ReadonlySet<string> | undefined {
  if (!Array.isArray(b) || b.length === 0 || b.length > MAX_BOUND_KEYS) return undefined
  for (const k of b) if (typeof k !== 'string' || k.length > MAX_BOUND_KEY_LENGTH) return undefined
  return new Set(b as string[])
}
