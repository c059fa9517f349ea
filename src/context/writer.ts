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

/** Writers for different sets of skipped keys; past this many, a writer is made per logger, uncached. */
const MAX_VARIANTS = 32

/**
 * The context writer for each pino logger. A logger whose bindings already
 * carry an output key (Fastify's `request.log` and pino-http's
 * `quietReqLogger` bind `reqId`) gets a writer that leaves that key out, so
 * no line carries a key twice: the binding, written by pino, is the one kept.
 * The bindings are read with {@link bindingKeys}, parsed once per logger (and
 * again only after `setBindings()`); the caller keeps the writer it chose for
 * the logger's lines (the pino layer's state per logger), never choosing per line.
 */
export class ContextWriters<P> {
  readonly #slots: readonly ContextSlot[]
  readonly #refused: RefusedValue<P>
  readonly #outKeys: readonly string[]
  /** The writer for a logger that binds none of the output keys. */
  readonly all: ContextWriter<P>
  readonly #bySkip = new Map<string, ContextWriter<P>>()

  constructor(slots: readonly ContextSlot[], refused: RefusedValue<P>) {
    this.#slots = slots
    this.#refused = refused
    this.all = compileContextWriter(slots, refused)
    const keys = new Set<string>()
    for (const slot of slots) for (const k of slot.to ?? []) keys.add(k)
    this.#outKeys = [...keys]
  }

  /** The writer for lines of `logger`; `undefined` or a non-pino object gets {@link all}. */
  for(logger: unknown): ContextWriter<P> {
    if (this.#outKeys.length === 0) return this.all
    const bound = bindingKeys(logger)
    if (bound.length === 0) return this.all
    return this.#writerSkipping(this.#outKeys.filter((k) => bound.includes(k)))
  }

  /**
   * The writer for lines whose own bindings carry the keys `bound` (the
   * transport worker reads them from the line's capture): those output keys
   * are left out. {@link all} when none of them is an output key.
   */
  without(bound: ReadonlySet<string>): ContextWriter<P> {
    return this.#writerSkipping(this.#outKeys.filter((k) => bound.has(k)))
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
