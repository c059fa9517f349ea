/** A defineContextFields enricher as the writer needs it. */
export interface ContextSlot {
  /** Context keys read, and the output keys they are written under. */
  readonly from: readonly string[] | undefined
  readonly to: readonly string[] | undefined
  readonly minLevel: number
  errors: number
}

/** Writes every context-fields enricher's keys from the request context `c` into `out`. */
export type ContextWriter = (c: Record<string, unknown>, level: number, out: Record<string, unknown>) => void

/**
 * Makes the writer of a set of context-fields enrichers. It is compiled to
 * straight-line code with the output keys as literals, so each store is a named
 * store V8 keeps monomorphic: a loop storing `out[to[i]]` sees every key at one
 * site, goes megamorphic, and costs about 50 ns a line more. The keys are the
 * developer's own configuration, embedded as JSON string literals. Where code
 * generation is disallowed (`--disallow-code-generation-from-strings`) the
 * same writer runs as a loop.
 */
export function compileContextWriter(slots: readonly ContextSlot[]): ContextWriter {
  if (slots.length === 0) return noop
  let body = ''
  slots.forEach((slot, s) => {
    const from = slot.from ?? []
    const to = slot.to ?? []
    let copy = ''
    for (let i = 0; i < from.length; i++) {
      copy +=
        `v = c[${JSON.stringify(from[i])}]; t = typeof v\n` +
        `if (t === 'string' || t === 'number' || t === 'boolean') out[${JSON.stringify(to[i])}] = v\n`
    }
    // A context getter that throws costs its own enricher's fields, never the line.
    const guarded = `try {\n${copy}} catch {\nslots[${s}].errors++\n}\n`
    body += Number.isFinite(slot.minLevel) ? `if (level >= ${slot.minLevel}) {\n${guarded}}\n` : guarded
  })
  try {
    return new Function('slots', `'use strict'\nreturn function writeContexts(c, level, out) {\nlet v, t\n${body}}`)(
      slots,
    ) as ContextWriter
  } catch (e) {
    // Only a refusal to generate code; anything else would be a bug here and should surface.
    if (e instanceof EvalError) return loopWriter(slots)
    throw e
  }
}

/** The same writer without code generation. @internal exported for tests */
export function loopWriter(slots: readonly ContextSlot[]): ContextWriter {
  return (c, level, out) => {
    for (let s = 0; s < slots.length; s++) {
      const slot = slots[s] as ContextSlot
      if (level < slot.minLevel) continue
      const from = slot.from as readonly string[]
      const to = slot.to as readonly string[]
      try {
        for (let i = 0; i < from.length; i++) {
          const v = c[from[i] as string]
          const t = typeof v
          if (t === 'string' || t === 'number' || t === 'boolean') out[to[i] as string] = v
        }
      } catch {
        slot.errors++
      }
    }
  }
}

const noop: ContextWriter = () => {}
