import pino, { type LoggerOptions } from 'pino'
import type { Fields } from '../enricher.js'

// What the user's pino options imply for enrichment: the keys pino must see
// as objects, the keys it writes as bindings, and the time part of a line.

type PinoSymbol = 'serializersSym' | 'stringifiersSym' | 'wildcardFirstSym'
const { serializersSym, stringifiersSym, wildcardFirstSym } = pino.symbols as unknown as Record<PinoSymbol, symbol>

/** Keys pino keeps in the logger's base (and `name`): they rank beneath enrichers, unlike a child's bindings. */
export function baseKeysOf(user: LoggerOptions): Set<string> {
  const baseKeys = new Set(Object.keys((user.base as Fields | null | undefined) ?? {}))
  if (user.name !== undefined) baseKeys.add('name')
  return baseKeys
}

/** `routed` plus the keys pino writes as bindings: `base` (but pid and hostname, which enrichers never set) and `name`. */
export function withBindingKeys(routed: ReadonlySet<string> | true, user: LoggerOptions): ReadonlySet<string> | true {
  if (routed === true) return true
  const keys = new Set(routed)
  const base = user.base
  if (typeof base === 'object' && base !== null) {
    for (const k of Object.keys(base)) if (k !== 'pid' && k !== 'hostname') keys.add(k)
  }
  if (user.name !== undefined) keys.add('name')
  return keys
}

/** The routed keys of a child logger made with its own serializers, redact or formatters.log. */
export function childRouted(
  parent: ReadonlySet<string> | true,
  child: Record<symbol, unknown>,
  hasLog: boolean,
): ReadonlySet<string> | true {
  const stringifiers = child[stringifiersSym] as Record<string | symbol, unknown> | undefined
  if (parent === true || hasLog || stringifiers?.[wildcardFirstSym] !== undefined) return true
  const keys = new Set(parent)
  for (const k of Object.keys((child[serializersSym] as object | undefined) ?? {})) keys.add(k)
  for (const k of Object.keys(stringifiers ?? {})) keys.add(k)
  return keys
}

/** Top-level keys pino must see as objects for the user's options to apply, or `true` for all. */
export function routedKeys(user: LoggerOptions): ReadonlySet<string> | true {
  if (user.formatters?.log !== undefined) return true
  const keys = new Set<string>(Object.keys(user.serializers ?? {}))
  const redact = user.redact
  const paths = Array.isArray(redact) ? redact : (redact?.paths ?? [])
  for (const path of paths) {
    const first = firstSegment(path)
    if (first === '*') return true
    keys.add(first)
  }
  return keys
}

function firstSegment(path: string): string {
  const m = /^\s*\[\s*(["'])((?:\\.|(?!\1).)*)\1\s*\]/.exec(path)
  if (m !== null) return m[2] as string
  const end = path.search(/[.[]/)
  return (end === -1 ? path : path.slice(0, end)).trim()
}

/** The time part of a line (`,"time":...`) as the user's `timestamp` writes it, for a call at `now`. */
export function timeFormatter(t: LoggerOptions['timestamp']): (now: number) => string {
  // As pino: a function is called, any other truthy value is epoch time, a falsy one none.
  if (typeof t !== 'function') return t || t === undefined ? (now) => `,"time":${now}` : () => ''
  if (t === pino.stdTimeFunctions.nullTime) return () => ''
  if (t === pino.stdTimeFunctions.epochTime) return (now) => `,"time":${now}`
  if (t === pino.stdTimeFunctions.unixTime) return (now) => `,"time":${Math.round(now / 1000)}`
  if (t === pino.stdTimeFunctions.isoTime) return (now) => `,"time":"${new Date(now).toISOString()}"`
  // A custom function cannot be told the call time: it is called when the line is written.
  return () => t()
}
