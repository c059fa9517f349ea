import { bindingKeys } from '../util/bindings.js'

/** A defineContextFields enricher as the writer needs it. */
export interface ContextSlot {
  /** Context keys read, and the output keys they are written under. */
  readonly from: readonly string[] | undefined
  readonly to: readonly string[] | undefined
  readonly minLevel: number
  errors: number
}

/**
 * Longest request-context string written onto a line, in characters. A longer
 * one (a 15 KB user id, an 8 KB unmatched path) is refused, not cut: a cut id
 * would name someone else. Its enricher is recorded as `invalid` instead.
 */
export const MAX_CONTEXT_VALUE_LENGTH = 1_024

/**
 * Called for a slot that refused a value, with what the line's writer has
 * refused so far (undefined for the first); returns the new record of it.
 */
export type RefusedValue<P> = (slot: ContextSlot, so: P | undefined) => P

/**
 * Writes every context-fields enricher's keys from the request context `c`
 * into `out`. Returns what `refused` made of the values left out for being
 * longer than {@link MAX_CONTEXT_VALUE_LENGTH}, or undefined when none was.
 */
export type ContextWriter<P = unknown> = (
  c: Record<string, unknown>,
  level: number,
  out: Record<string, unknown>,
) => P | undefined

/**
 * Makes the writer of a set of context-fields enrichers. It is compiled to
 * straight-line code with the output keys as literals, so each store is a named
 * store V8 keeps monomorphic: a loop storing `out[to[i]]` sees every key at one
 * site, goes megamorphic, and costs about 50 ns a line more. The keys are the
 * developer's own configuration, embedded as JSON string literals. Where code
 * generation is disallowed (`--disallow-code-generation-from-strings`) the
 * same writer runs as a loop.
 */
export function compileContextWriter<P>(
  slots: readonly ContextSlot[],
  refused: RefusedValue<P>,
  skip: ReadonlySet<string> = NONE,
): ContextWriter<P> {
  if (slots.length === 0) return noop
  let body = ''
  slots.forEach((slot, s) => {
    const from = slot.from ?? []
    const to = slot.to ?? []
    let copy = ''
    for (let i = 0; i < from.length; i++) {
      if (skip.has(to[i] as string)) continue
      const target = `out[${JSON.stringify(to[i])}]`
      copy +=
        `v = c[${JSON.stringify(from[i])}]; t = typeof v\n` +
        `if (t === 'string') { if (v.length <= ${MAX_CONTEXT_VALUE_LENGTH}) ${target} = v; else bad = refused(slots[${s}], bad) }\n` +
        `else if (t === 'number' || t === 'boolean') ${target} = v\n`
    }
    // A context getter that throws costs its own enricher's fields, never the line.
    const guarded = `try {\n${copy}} catch {\nslots[${s}].errors++\n}\n`
    body += Number.isFinite(slot.minLevel) ? `if (level >= ${slot.minLevel}) {\n${guarded}}\n` : guarded
  })
  try {
    return new Function(
      'slots',
      'refused',
      `'use strict'\nreturn function writeContexts(c, level, out) {\nlet v, t, bad\n${body}return bad\n}`,
    )(slots, refused) as ContextWriter<P>
  } catch (e) {
    // Only a refusal to generate code; anything else would be a bug here and should surface.
    if (e instanceof EvalError) return loopWriter(slots, refused, skip)
    throw e
  }
}

/** The same writer without code generation. Exported for the tests. */
export function loopWriter<P>(
  slots: readonly ContextSlot[],
  refused: RefusedValue<P>,
  skip: ReadonlySet<string> = NONE,
): ContextWriter<P> {
  return (c, level, out) => {
    let bad: P | undefined
    for (let s = 0; s < slots.length; s++) {
      const slot = slots[s] as ContextSlot
      if (level < slot.minLevel) continue
      const from = slot.from as readonly string[]
      const to = slot.to as readonly string[]
      try {
        for (let i = 0; i < from.length; i++) {
          if (skip.has(to[i] as string)) continue
          const v = c[from[i] as string]
          const t = typeof v
          if (t === 'string') {
            if ((v as string).length <= MAX_CONTEXT_VALUE_LENGTH) out[to[i] as string] = v
            else bad = refused(slot, bad)
          } else if (t === 'number' || t === 'boolean') out[to[i] as string] = v
        }
      } catch {
        slot.errors++
      }
    }
    return bad
  }
}

const noop = (): undefined => undefined
const NONE: ReadonlySet<string> = new Set()

/**
 * The request-context fields of a line as JSON text, for a logger whose line
 * can carry them in its time part: they are then not an object pino walks,
 * tests and quotes key by key on every line (about 200 ns of a 550 ns line).
 * The text is made again only when a value changes, so the lines of one
 * request share it.
 */
export interface ContextFragment {
  /**
   * `,"key":value` for each field of `c`, as pino would have written it, or
   * undefined when the line must go through the writer instead: a value too
   * long (the writer records it), a getter that throws (the writer counts it).
   */
  text(c: Record<string, unknown>): string | undefined
}

/**
 * A string as pino's line writes a string value or key: quotes and
 * backslashes escaped, and JSON.stringify for one of more than 100 characters
 * or with a control character.
 */
export function pinoString(s: string): string {
  if (s.length > 100) return JSON.stringify(s)
  let escapes = false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 32) return JSON.stringify(s)
    if (c === 34 || c === 92) escapes = true
  }
  return escapes ? `"${s.replace(/["\\]/g, '\\$&')}"` : `"${s}"`
}

/**
 * Fields a context writer wrote (string, number and boolean values) as the
 * text a {@link ContextFragment} makes of them: for a line that read its
 * request context when logged and is written later.
 */
export function fieldsText(fields: Record<string, unknown>): string {
  let s = ''
  for (const key of Object.keys(fields)) {
    const v = fields[key]
    const t = typeof v
    const k = `,${pinoString(key)}:`
    if (t === 'string') s += k + pinoString(v as string)
    else if (t === 'number') s += k + (Number.isFinite(v) ? `${v}` : 'null')
    else if (t === 'boolean') s += k + (v ? 'true' : 'false')
  }
  return s
}

/** {@link ContextWriters.sets} for `keys`: a check per key, as literals where code generation is allowed. */
function compileSets(keys: readonly string[]): (o: object) => boolean {
  if (keys.length === 0) return () => false
  const test = keys.map((k) => `${JSON.stringify(k)} in o`).join(' || ')
  let sets: (o: object) => boolean
  try {
    sets = new Function(`'use strict'\nreturn function sets(o) {\nreturn ${test}\n}`)() as (o: object) => boolean
  } catch (e) {
    if (!(e instanceof EvalError)) throw e
    sets = (o) => keys.some((k) => k in o)
  }
  return (o) => {
    try {
      return sets(o)
    } catch {
      return true
    }
  }
}

/**
 * The {@link ContextFragment} of a set of context-fields enrichers, or
 * undefined when their fields cannot be written as text before the line's
 * level is known (a slot with a `minLevel`), or where code generation is
 * disallowed (the writer's loop then writes them). Straight-line code with
 * the keys as literals, as {@link compileContextWriter}.
 */
export function compileContextFragment(
  slots: readonly ContextSlot[],
  skip: ReadonlySet<string> = NONE,
): ContextFragment | undefined {
  const sources = new Map<string, string>()
  for (const slot of slots) {
    if (Number.isFinite(slot.minLevel)) return undefined
    const from = slot.from ?? []
    const to = slot.to ?? []
    for (let i = 0; i < from.length; i++) {
      const key = to[i] as string
      if (skip.has(key)) continue
      // Two enrichers writing one key (the later value, or the earlier when the later is no
      // primitive), or one pino's line object would take as its prototype: the writer's.
      if (sources.has(key) || key === '__proto__') return undefined
      sources.set(key, from[i] as string)
    }
  }
  if (sources.size === 0) return undefined
  let reads = ''
  let same = ''
  let parts = ''
  let keep = ''
  let n = 0
  // In the order the writer's object lists its keys (integer-like ones first), as pino wrote them from it.
  for (const key of Object.keys(Object.fromEntries([...sources.keys()].map((k) => [k, 0])))) {
    const v = `v${n}`
    const text = JSON.stringify(`,${pinoString(key)}:`)
    reads += `const ${v} = c[${JSON.stringify(sources.get(key))}]\n`
    same += ` && ${v} === p${n}`
    parts +=
      `t = typeof ${v}\n` +
      `if (t === 'string') { if (${v}.length > ${MAX_CONTEXT_VALUE_LENGTH}) return undefined; s += ${text} + str(${v}) }\n` +
      `else if (t === 'number') s += ${text} + (Number.isFinite(${v}) ? '' + ${v} : 'null')\n` +
      `else if (t === 'boolean') s += ${text} + (${v} ? 'true' : 'false')\n`
    keep += `p${n} = ${v}\n`
    n++
  }
  const previous = Array.from({ length: n }, (_, i) => `p${i}`).join(', ')
  try {
    return new Function(
      'str',
      `'use strict'\nlet ${previous}, last\nreturn {\n` +
        `text(c) {\nlet t, s = ''\ntry {\n${reads}if (last !== undefined${same}) return last\n${parts}${keep}} catch {\nreturn undefined\n}\nlast = s\nreturn s\n}\n}`,
    )(pinoString) as ContextFragment
  } catch (e) {
    if (e instanceof EvalError) return undefined
    throw e
  }
}

/** Writers for different sets of skipped keys; past this many, a writer is made per logger, uncached. */
const MAX_VARIANTS = 32
/** No output key left out. */
const NO_SKIP: readonly string[] = []

/**
 * The context writer for each pino logger. A logger whose bindings already
 * carry an output key (Fastify's `request.log` and pino-http's
 * `quietReqLogger` bind `reqId`) gets a writer that leaves that key out, so
 * no line carries a key twice: the binding, written by pino, is the one kept.
 * The caller reads a logger's binding keys with {@link bindingKeys}, parsed once per logger
 * (and again only after `setBindings()`), and keeps the writer it chose for
 * the logger's lines (the pino layer's state per logger), never choosing per line.
 */
export class ContextWriters<P> {
  readonly #slots: readonly ContextSlot[]
  readonly #refused: RefusedValue<P>
  readonly #outKeys: readonly string[]
  /** The writer for a logger that binds none of the output keys. */
  readonly all: ContextWriter<P>
  readonly #bySkip = new Map<string, ContextWriter<P>>()
  readonly #fragments = new Map<string, ContextFragment | undefined>()
  // A logger's state asks for its writer and then its fragment: the second finds the same keys.
  // An array of keys from bindingKeys is never changed, so the same array means the same keys.
  #lastBound: readonly string[] = NO_SKIP
  #lastSkip: readonly string[] = NO_SKIP

  /**
   * Whether a call's object has one of the output keys, own or inherited,
   * whatever its value (`in`: no getter is called), or asking throws (a Proxy
   * trap): pino's merge of the call's value, even `undefined`, decides that
   * line's field, so its request fields go through the writer, not as text.
   */
  readonly sets: (o: object) => boolean
  /** Each output key with the text a fragment writes before its value (`,"key":`). */
  readonly keyTexts: ReadonlyArray<readonly [string, string]>
  /** Whether an output key is `req` or `res`, the keys pino logs a request or a response under. */
  readonly writesReq: boolean
  readonly writesRes: boolean

  constructor(slots: readonly ContextSlot[], refused: RefusedValue<P>) {
    this.#slots = slots
    this.#refused = refused
    this.all = compileContextWriter(slots, refused)
    const keys = new Set<string>()
    for (const slot of slots) for (const k of slot.to ?? []) keys.add(k)
    this.#outKeys = [...keys]
    this.sets = compileSets(this.#outKeys)
    this.keyTexts = this.#outKeys.map((k) => [k, `,${pinoString(k)}:`] as const)
    this.writesReq = keys.has('req')
    this.writesRes = keys.has('res')
  }

  /** Whether one of the enrichers writes the output key `key`. */
  writes(key: string): boolean {
    return this.#outKeys.includes(key)
  }

  /**
   * The writer for lines of a logger whose bindings carry the keys `bound`
   * ({@link bindingKeys}): those output keys are left out. {@link all} when
   * none of them is an output key.
   */
  for(bound: readonly string[]): ContextWriter<P> {
    if (this.#outKeys.length === 0 || bound.length === 0) return this.all
    return this.#writerSkipping(this.#skipped(bound))
  }

  /**
   * The writer for lines whose own bindings carry the keys `bound` (the
   * transport worker reads them from the line's capture): those output keys
   * are left out. {@link all} when none of them is an output key.
   */
  without(bound: ReadonlySet<string>): ContextWriter<P> {
    return this.#writerSkipping(this.#outKeys.filter((k) => bound.has(k)))
  }

  /**
   * The {@link ContextFragment} of the fields the writer {@link for} `bound`
   * writes (the keys a logger's bindings carry left out), or undefined when they
   * cannot be written as text ({@link compileContextFragment}) or one of them
   * is in `objectKeys` (`true`: all are), keys pino must see as objects, or
   * in `coreKeys` (its errorKey, messageKey...).
   */
  fragmentFor(
    bound: readonly string[],
    objectKeys: ReadonlySet<string> | true,
    coreKeys: ReadonlySet<string>,
  ): ContextFragment | undefined {
    if (this.#outKeys.length === 0 || objectKeys === true) return undefined
    const skip = bound.length === 0 ? NO_SKIP : this.#skipped(bound)
    // A key pino must see in the line's object (a serializer's, redact's), or one of its own: every field goes there.
    if (this.#outKeys.some((k) => (objectKeys.has(k) || coreKeys.has(k)) && !skip.includes(k))) return undefined
    const signature = skip.join('\u0000')
    if (this.#fragments.has(signature)) return this.#fragments.get(signature)
    // Past as many variants as writers are kept for, the writer writes them: no code made per logger.
    if (this.#fragments.size >= MAX_VARIANTS) return undefined
    const fragment = compileContextFragment(this.#slots, new Set(skip))
    this.#fragments.set(signature, fragment)
    return fragment
  }

  /** The output keys among `bound`. */
  #skipped(bound: readonly string[]): readonly string[] {
    if (bound !== this.#lastBound) {
      const skip = this.#outKeys.filter((k) => bound.includes(k))
      this.#lastBound = bound
      this.#lastSkip = skip.length === 0 ? NO_SKIP : skip
    }
    return this.#lastSkip
  }

  #writerSkipping(skip: readonly string[]): ContextWriter<P> {
    if (skip.length === 0) return this.all
    const signature = skip.join('\u0000')
    let write = this.#bySkip.get(signature)
    if (write === undefined) {
      write = compileContextWriter(this.#slots, this.#refused, new Set(skip))
      if (this.#bySkip.size < MAX_VARIANTS) this.#bySkip.set(signature, write)
    }
    return write
  }
}
