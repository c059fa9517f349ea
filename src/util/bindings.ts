import pino from 'pino'

const { chindingsSym } = pino.symbols
const NONE: readonly string[] = Object.freeze([])
/** A logger's parsed bindings, kept on it: `keys` are valid while its chindings are still `chindings`. */
const PARSED = Symbol('pino-enrich.binding-keys')
interface Parsed {
  readonly chindings: string
  readonly keys: readonly string[]
}
type Parsable = { [PARSED]?: Parsed } & Record<symbol, unknown>
/** Loggers that cannot take a property (frozen, sealed). */
const fixed = new WeakMap<object, Parsed>()

/**
 * The top-level keys of a pino logger's bindings (its serialized chindings,
 * `,"pid":1,"reqId":"r1"`), exactly as `Object.keys(logger.bindings())`
 * lists them: `JSON.parse` decides, so a key nested in a bound object or
 * quoted inside a value does not count, a key bound twice counts once, and
 * bindings that are not JSON (a key with a quote in it, which pino writes
 * unescaped) have none. Empty for anything that is not a logger.
 *
 * The answer is kept on the logger and worked out again only after
 * `setBindings()`. A child's chindings begin with its parent's (pino appends
 * to them), so only the part the child added is parsed, and the parent's keys
 * are reused: a request logger (Fastify's `request.log`, pino-http's
 * `req.log`, made for every request) costs the parse of its own bindings
 * alone, once, for every reader of them.
 */
export function bindingKeys(logger: unknown): readonly string[] {
  return keysAt(logger, 0)
}

/**
 * Ancestors whose keys are worked out, at most, to reuse them for a child:
 * past it the child parses its whole bindings, so a chain of thousands of
 * children (each a level of the prototype chain) never runs out of stack.
 */
const MAX_ANCESTORS = 32

function keysAt(logger: unknown, depth: number): readonly string[] {
  if (typeof logger !== 'object' || logger === null) return NONE
  const l = logger as Parsable
  const chindings = l[chindingsSym]
  if (typeof chindings !== 'string' || chindings.length < 2) return NONE
  // Read through the prototype: a child made with no bindings of its own shares its parent's.
  const extensible = Object.isExtensible(logger)
  let known = l[PARSED]
  if (!extensible && (known === undefined || known.chindings !== chindings)) known = fixed.get(logger)
  if (known !== undefined && known.chindings === chindings) return known.keys
  const keys = keysOf(logger, chindings, depth)
  const parsed: Parsed = { chindings, keys }
  if (!extensible) fixed.set(logger, parsed)
  else {
    try {
      l[PARSED] = parsed
    } catch {
      // A frozen ancestor's own entry cannot be shadowed by assignment, only defined over.
      Object.defineProperty(l, PARSED, { value: parsed, writable: true, configurable: true })
    }
  }
  return keys
}

function keysOf(logger: object, chindings: string, depth: number): readonly string[] {
  const parent = depth < MAX_ANCESTORS ? (Object.getPrototypeOf(logger) as Record<symbol, unknown> | null) : null
  const prefix = parent === null ? undefined : parent[chindingsSym]
  if (
    typeof prefix === 'string' &&
    prefix.length >= 2 &&
    chindings.length > prefix.length + 1 &&
    chindings.charCodeAt(prefix.length) === COMMA &&
    chindings.startsWith(prefix)
  ) {
    const inherited = keysAt(parent, depth + 1)
    // With at least one key the parent's part is a complete JSON member list,
    // so the whole parses exactly when the added part does, with the keys of
    // both. Otherwise (bindings that are not JSON, or no member) only the
    // whole can tell.
    if (inherited.length !== 0) {
      const added = chindings.slice(prefix.length)
      // `{ }` parses, where the whole would end in a dangling comma.
      if (added.trim() === ',') return NONE
      const own = parseKeys(added)
      if (own === undefined) return NONE
      return merge(inherited, own)
    }
  }
  return parseKeys(chindings) ?? NONE
}

const COMMA = 44

/** `Object.keys` of `{` + the members after the leading comma + `}`, or undefined when that is not JSON. */
function parseKeys(members: string): readonly string[] | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(`{${members.slice(1)}}`)
  } catch {
    return undefined
  }
  const keys = Object.keys(parsed as object)
  return keys.length === 0 ? NONE : keys
}

/**
 * The parent's keys, then the child's own that are new, in the order
 * `Object.keys` gives the whole: array indices (`"0"`, `"17"`) first,
 * ascending, then the others in the order they were first bound.
 */
function merge(inherited: readonly string[], own: readonly string[]): readonly string[] {
  let out: string[] | undefined
  let index = false
  for (let i = 0; i < own.length; i++) {
    const k = own[i] as string
    if (inherited.includes(k)) continue
    out ??= inherited.slice()
    out.push(k)
    if (!index && isArrayIndex(k)) index = true
  }
  if (out === undefined) return inherited
  if (!index) return out
  const indices = out.filter(isArrayIndex).sort((a, b) => Number(a) - Number(b))
  return indices.concat(out.filter((k) => !isArrayIndex(k)))
}

/** An own key `Object.keys` lists first: the canonical form of an integer below 2^32 - 1. */
function isArrayIndex(k: string): boolean {
  return /^(?:0|[1-9]\d{0,9})$/.test(k) && Number(k) < 4_294_967_295
}
