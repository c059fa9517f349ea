import type { Fields } from './enricher.js'

/** Keys that could reach an object's prototype; dropped from enricher output. */
const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype'])
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
    state.seen.add(value)
    for (const key of Object.keys(value)) {
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
    for (const key of Object.keys(obj)) {
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

function isThenable(v: object): boolean {
  try {
    return typeof (v as { then?: unknown }).then === 'function'
  } catch {
    return true
  }
}
