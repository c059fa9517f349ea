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
 * lists them: JSON.parse's answer ({@link scanKeys} reads the text pino
 * writes for it), so a key nested in a bound object or quoted inside a value
 * does not count, a key bound twice counts once, and bindings that are not
 * JSON (text set by hand, or a key an older pino wrote unescaped) have none.
 * Empty for anything that is not a logger.
 *
 * The answer is kept on the logger and worked out again only after
 * `setBindings()`. A child's chindings begin with its parent's (pino appends
 * to them), so only the part the child added is read, and the parent's keys
 * are reused: a request logger (Fastify's `request.log`, pino-http's
 * `req.log`, made for every request) costs the reading of its own bindings
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
      const scanned = scanKeys(chindings, prefix.length)
      // No member: `{ }` parses, where the whole would end in a dangling comma.
      if (scanned !== undefined) return scanned.length === 0 ? NONE : merge(inherited, scanned)
      const added = chindings.slice(prefix.length)
      if (added.trim() === ',') return NONE
      const own = parseKeys(added)
      if (own === undefined) return NONE
      return merge(inherited, own)
    }
  }
  const scanned = scanKeys(chindings, 0)
  if (scanned !== undefined) return scanned.length === 0 ? NONE : scanned
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

const QUOTE = 34
const COLON = 58
const OPEN_OBJECT = 123
const CLOSE_OBJECT = 125
const OPEN_ARRAY = 91
const CLOSE_ARRAY = 93
/** What the scan leaves to JSON.parse: a backslash (an escape) or a control character (tab, line feed...). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: JSON strings may not hold them raw, and whitespace is one.
const UNUSUAL = /[\u0000-\u001f\\]/g
/** Most top-level keys the scan lists (its check for a repeated key walks the list); past it, JSON.parse decides. */
const MAX_SCANNED_KEYS = 32
/**
 * Longest text the scan reads. Past it JSON.parse reads it alone: on long
 * runs of numbers or literals the scan is slower than JSON.parse (2.5x on
 * 500,000 booleans), and text it gave up on late would be read twice.
 */
const MAX_SCANNED_LENGTH = 8_192

/**
 * The top-level keys of `{` + `text` after `start` and the character there
 * + `}`, as {@link parseKeys} finds them, read without building the bound
 * values: a request logger's bindings (pino-http's `req`, its headers in it)
 * are read in less time than JSON.parse takes to build them (0.65x for such
 * a binding alone; in a profile of the Express benchmark's server, the
 * binding keys went from 2.3% of the process to 0.8-1.0%).
 *
 * Undefined whenever the scan is not certain, and JSON.parse then decides:
 * it reads only text as pino's stringify writes it (no whitespace, no
 * escape, no control character, no array-index key, at most
 * {@link MAX_SCANNED_KEYS} keys and {@link MAX_SCANNED_LENGTH} characters).
 * What it lists is exactly what JSON.parse would: each value is checked
 * against JSON's grammar in full, so text that is not JSON is never given
 * keys.
 */
export function scanKeys(text: string, start: number): string[] | undefined {
  if (text.length - start > MAX_SCANNED_LENGTH) return undefined
  UNUSUAL.lastIndex = start
  if (UNUSUAL.test(text)) return undefined
  const end = text.length
  const keys: string[] = []
  let i = start + 1
  if (i >= end) return i === end ? keys : undefined
  // The containers open around the value being read: true for an object, false for an array.
  const open: boolean[] = []
  for (;;) {
    // A top-level member: `"key":` and its value.
    if (text.charCodeAt(i) !== QUOTE) return undefined
    const close = text.indexOf('"', i + 1)
    if (close === -1 || text.charCodeAt(close + 1) !== COLON) return undefined
    const key = text.slice(i + 1, close)
    if (!keys.includes(key)) {
      if (keys.length === MAX_SCANNED_KEYS || isArrayIndex(key)) return undefined
      keys.push(key)
    }
    i = valueEnd(text, close + 2, open)
    if (i === -1) return undefined
    if (i === end) return keys
    if (text.charCodeAt(i) !== COMMA) return undefined
    i++
  }
}

/**
 * Past the JSON value that begins at `i`, or -1. `open` (empty when it
 * returns an index) holds the containers being read, true for an object and
 * false for an array: no depth of nesting runs out of stack.
 */
function valueEnd(text: string, i: number, open: boolean[]): number {
  for (;;) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      const e = text.indexOf('"', i + 1)
      if (e === -1) return -1
      i = e + 1
    } else if (c === OPEN_OBJECT) {
      if (text.charCodeAt(i + 1) !== CLOSE_OBJECT) {
        i = memberKey(text, i + 1)
        if (i === -1) return -1
        open.push(true)
        continue
      }
      i += 2
    } else if (c === OPEN_ARRAY) {
      if (text.charCodeAt(i + 1) !== CLOSE_ARRAY) {
        open.push(false)
        i++
        continue
      }
      i += 2
    } else if (c === 116 /* t */) {
      if (!text.startsWith('true', i)) return -1
      i += 4
    } else if (c === 102 /* f */) {
      if (!text.startsWith('false', i)) return -1
      i += 5
    } else if (c === 110 /* n */) {
      if (!text.startsWith('null', i)) return -1
      i += 4
    } else {
      i = numberEnd(text, i)
      if (i === -1) return -1
    }
    // After a value: the next one in its container, or the container's end.
    for (;;) {
      if (open.length === 0) return i
      const inObject = open[open.length - 1] as boolean
      const d = text.charCodeAt(i)
      if (d === COMMA) {
        i = inObject ? memberKey(text, i + 1) : i + 1
        break
      }
      if (d !== (inObject ? CLOSE_OBJECT : CLOSE_ARRAY)) return -1
      open.pop()
      i++
    }
    if (i === -1) return -1
  }
}

/** Past the `"key":` of a member that begins at `i`, or -1. */
function memberKey(text: string, i: number): number {
  if (text.charCodeAt(i) !== QUOTE) return -1
  const close = text.indexOf('"', i + 1)
  return close === -1 || text.charCodeAt(close + 1) !== COLON ? -1 : close + 2
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57

/** Past a JSON number that begins at `i` (`-`, then `0` or digits not led by 0, a fraction, an exponent), or -1. */
function numberEnd(text: string, i: number): number {
  if (text.charCodeAt(i) === 45 /* - */) i++
  const first = text.charCodeAt(i)
  if (first === 48 /* 0 */) i++
  else if (isDigit(first)) i = digitsEnd(text, i)
  else return -1
  if (text.charCodeAt(i) === 46 /* . */) {
    if (!isDigit(text.charCodeAt(i + 1))) return -1
    i = digitsEnd(text, i + 1)
  }
  const e = text.charCodeAt(i)
  if (e === 101 /* e */ || e === 69 /* E */) {
    i++
    const sign = text.charCodeAt(i)
    if (sign === 43 /* + */ || sign === 45 /* - */) i++
    if (!isDigit(text.charCodeAt(i))) return -1
    i = digitsEnd(text, i)
  }
  return i
}

function digitsEnd(text: string, i: number): number {
  while (isDigit(text.charCodeAt(i))) i++
  return i
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
  // Most keys start with a letter: no regular expression for them (scanKeys asks this of every key).
  if (!isDigit(k.charCodeAt(0))) return false
  return /^(?:0|[1-9]\d{0,9})$/.test(k) && Number(k) < 4_294_967_295
}
