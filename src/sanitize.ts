import type { Fields } from './enricher.js'
import { isThenable } from './util/async.js'
import { UNSAFE_KEYS } from './util/keys.js'

const MAX_DEPTH = 8

/** What {@link sanitizeFields} made of an enricher's output. */
export interface Sanitized {
  /** JSON-safe, deeply frozen copy; undefined when nothing was left. */
  fields: Fields | undefined
  /** Set when something was dropped or the output was refused. */
  problem: 'invalid' | 'too-large' | undefined
}

/**
 * Copies an enricher's output into plain, deeply frozen, JSON-safe data:
 * circular references become "[Circular]", bigints strings; functions,
 * symbols, thenables and prototype keys are dropped; `drop` keys (pino's core
 * keys) and keys outside `allow` are removed. Output larger than `maxBytes`
 * (counted as it is copied, so a huge object is never walked whole) is
 * refused whole. Never throws: a getter that throws is dropped as invalid.
 *
 * Values that are not plain data follow `JSON.stringify` where it gives
 * something: a `toJSON()` is honoured (a `Date` or `URL` becomes its string).
 * Where it would silently give `{}` or a byte-by-byte dump, the value is
 * dropped and the output recorded as invalid instead: binary data (`Buffer`,
 * typed arrays, `DataView`, `ArrayBuffer`, refused at once, whatever their
 * size, without reading a byte), `Map`, `Set`, `WeakMap`, `WeakSet`, and any
 * other non-plain object without an own enumerable key (a `RegExp`, an `Error`,
 * an empty class instance).
 */
export function sanitizeFields(
  value: unknown,
  maxBytes: number,
  drop: ReadonlySet<string>,
  allow: ReadonlySet<string> | undefined,
): Sanitized {
  if (value === undefined || value === null) return { fields: undefined, problem: undefined }
  if (typeof value !== 'object' || Array.isArray(value) || isThenable(value)) {
    return { fields: undefined, problem: 'invalid' }
  }
  const state = { budget: maxBytes, invalid: false, seen: new Set<object>() }
  const out: Fields = {}
  try {
    if (isOpaque(value)) return { fields: undefined, problem: 'invalid' }
    const keys = Object.keys(value)
    if (keys.length === 0 && !isPlain(value)) return { fields: undefined, problem: 'invalid' }
    state.seen.add(value)
    for (const key of keys) {
      if (drop.has(key) || (allow !== undefined && !allow.has(key))) continue
      if (UNSAFE_KEYS.has(key)) {
        state.invalid = true
        continue
      }
      const v = copy((value as Record<string, unknown>)[key], state, 1)
      state.budget -= key.length + 4
      if (v !== undefined) out[key] = v
      if (state.budget < 0) return { fields: undefined, problem: 'too-large' }
    }
  } catch {
    return { fields: undefined, problem: 'invalid' }
  }
  Object.freeze(out)
  const empty = Object.keys(out).length === 0
  return { fields: empty ? undefined : out, problem: state.invalid ? 'invalid' : undefined }
}

interface State {
  budget: number
  invalid: boolean
  seen: Set<object>
}

function copy(v: unknown, state: State, depth: number): unknown {
  switch (typeof v) {
    case 'string':
      state.budget -= v.length + 2
      return v
    case 'number':
      state.budget -= 8
      return Number.isFinite(v) ? v : null
    case 'boolean':
      state.budget -= 5
      return v
    case 'bigint':
      state.budget -= 20
      return v.toString()
    case 'undefined':
      return undefined
    case 'function':
    case 'symbol':
      state.invalid = true
      return undefined
  }
  if (v === null) {
    state.budget -= 4
    return null
  }
  const obj = v as object
  if (state.seen.has(obj)) return '[Circular]'
  if (depth >= MAX_DEPTH) return '[Object]'
  if (isThenable(obj)) {
    state.invalid = true
    return undefined
  }
  if (obj instanceof Date) {
    state.budget -= 26
    return Number.isNaN(obj.getTime()) ? null : obj.toISOString()
  }
  // Before any key is read: Object.keys of an 8 MB Buffer alone takes over a second.
  if (isOpaque(obj)) {
    state.invalid = true
    return undefined
  }
  const toJSON = (obj as { toJSON?: unknown }).toJSON
  if (typeof toJSON === 'function') {
    // As JSON.stringify (and so pino) would write it: URL and the like become strings.
    state.seen.add(obj)
    const json: unknown = toJSON.call(obj, '')
    const out = json === obj ? undefined : copy(json, state, depth + 1)
    state.seen.delete(obj)
    if (out === undefined) state.invalid = true
    return out
  }
  state.seen.add(obj)
  let out: unknown
  if (Array.isArray(obj)) {
    const arr: unknown[] = []
    for (let i = 0; i < obj.length && state.budget >= 0; i++) {
      const item = copy(obj[i], state, depth + 1)
      arr.push(item === undefined ? null : item)
      state.budget -= 1
    }
    out = Object.freeze(arr)
  } else {
    const rec: Record<string, unknown> = {}
    const keys = Object.keys(obj)
    if (keys.length === 0 && !isPlain(obj)) {
      // JSON.stringify would write `{}`: nothing of the value would reach the line, and nothing would say so.
      state.seen.delete(obj)
      state.invalid = true
      return undefined
    }
    for (const key of keys) {
      if (state.budget < 0) break
      if (UNSAFE_KEYS.has(key)) {
        state.invalid = true
        continue
      }
      const item = copy((obj as Record<string, unknown>)[key], state, depth + 1)
      state.budget -= key.length + 4
      if (item !== undefined) rec[key] = item
    }
    out = Object.freeze(rec)
  }
  state.seen.delete(obj)
  return out
}

/**
 * Binary data and keyed collections: JSON has no form for them (a Buffer's
 * `toJSON` is an array of every byte). Checked by brand, in constant time.
 */
function isOpaque(v: object): boolean {
  return (
    ArrayBuffer.isView(v) ||
    v instanceof ArrayBuffer ||
    (typeof SharedArrayBuffer === 'function' && v instanceof SharedArrayBuffer) ||
    v instanceof Map ||
    v instanceof Set ||
    v instanceof WeakMap ||
    v instanceof WeakSet
  )
}

function isPlain(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}
