// What the store reads back from Redis, decoded as hostile input: anyone who
// can write the store's keys or publish on its channel can plant a value or a
// message. Bounded in size and depth before use, keys that could reach a
// prototype removed, signatures checked before anything is parsed.
import type { Invalidation, StoreRecord } from '../cache/store.js'
import { UNSAFE_KEYS } from '../util/keys.js'
import { SIGNATURE_LENGTH, type Signer } from './signing.js'

/** Bound on the nesting of a value read back. */
const MAX_DEPTH = 64

/**
 * A value as stored: the JSON under its value key, prefixed by its signature
 * when values are signed. The key's PTTL is the remaining fresh plus stale
 * lifetime.
 */
export interface ValuePayload {
  /** Stale lifetime in ms: what the PTTL holds beyond it is the fresh lifetime left. */
  s: number
  /** The value; absent for `undefined`. */
  v?: unknown
  /** 1 for an `undefined` value, which JSON cannot hold. */
  u?: 1
  /** The value's tags. */
  t?: readonly string[]
  /** Signed values only: the `Date.now()` time its life ends, whatever PX the key has since. */
  e?: number
}

/** An invalidation message: the JSON published on the channel, prefixed by its signature when signed. */
export interface MessageBody {
  /** The sending store's origin: a store ignores its own messages. */
  o: string
  /** Keys to forget, as stored (long keys hashed). */
  k?: readonly string[]
  /** Tags whose keys to forget. */
  t?: readonly string[]
  /** A SmartCache glob of keys to forget. */
  p?: string
  /** Signed messages only: the `Date.now()` time it was sent, for the age bound and the replay guard. */
  ts?: number
}

/** What {@link decodeValue} returns for a value unsigned or signed with another secret. */
export const FORGED: unique symbol = Symbol('forged')

/**
 * The record of the value `stored` under the key `name`, with `remainingMs`
 * of its PTTL left. `undefined` when it is malformed, larger than
 * `maxValueBytes` or nested deeper than {@link MAX_DEPTH}; {@link FORGED}
 * when `signer` is given and refuses its signature. Keys that could reach a
 * prototype are removed from the value, at any depth, in place.
 */
export function decodeValue(
  name: string,
  stored: string,
  remainingMs: number,
  maxValueBytes: number,
  signer: Signer | undefined,
): StoreRecord | typeof FORGED | undefined {
  let pttl = remainingMs
  // The signature and its dot may come on top of the value's own bytes.
  if (stored.length > maxValueBytes + SIGNATURE_LENGTH + 1) return undefined
  let text = stored
  if (signer !== undefined) {
    // Checked before parsing: a planted value is never parsed, let alone used.
    const opened = signer.open(name, stored)
    if (typeof opened !== 'string') return FORGED
    text = opened
  }
  if (text.length > maxValueBytes) return undefined
  let parsed: unknown
  try {
    // No reviver: a reviver would see every value before it is checked.
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined
  const { s, v, u, t, e } = parsed as { [K in keyof ValuePayload]?: unknown }
  if (typeof s !== 'number' || !(s >= 0)) return undefined
  if (signer !== undefined) {
    // A signed value lives no longer than it was written for, whatever PX the key now has.
    if (typeof e !== 'number') return undefined
    pttl = Math.min(pttl, e - Date.now())
    if (!(pttl > 0)) return undefined
  }
  if (t !== undefined && !isStringArray(t)) return undefined
  if (!scrub(v, 0)) return undefined
  const freshMs = Math.max(0, pttl - s)
  const record: StoreRecord = { value: u === 1 ? undefined : v, freshMs, staleMs: pttl - freshMs }
  if (t !== undefined) record.tags = t
  return record
}

/** What {@link parseMessage} returns for a body that is not JSON. */
export const NOT_JSON: unique symbol = Symbol('not JSON')

/** The fields of a message body as parsed, each still to be checked. */
export type MessageFields = { readonly [K in keyof MessageBody]?: unknown }

/** The fields of an opened message `body`: {@link NOT_JSON} when it does not parse, `undefined` when it is not an object. */
export function parseMessage(body: string): MessageFields | typeof NOT_JSON | undefined {
  let m: unknown
  try {
    m = JSON.parse(body)
  } catch {
    return NOT_JSON
  }
  if (typeof m !== 'object' || m === null) return undefined
  const { o, k, t, p, ts } = m as MessageFields
  return { o, k, t, p, ts }
}

/** What a message asks to forget, or `undefined` when it names nothing valid. */
export function invalidationOf(m: MessageFields): Invalidation | undefined {
  if (isStringArray(m.k)) return { keys: m.k }
  if (isStringArray(m.t)) return { tags: m.t }
  if (typeof m.p === 'string') return { pattern: m.p }
  return undefined
}

/**
 * Removes every key of {@link UNSAFE_KEYS} from a value just parsed from JSON, in
 * place. False when it nests deeper than {@link MAX_DEPTH}.
 */
function scrub(v: unknown, depth: number): boolean {
  if (typeof v !== 'object' || v === null) return true
  if (depth >= MAX_DEPTH) return false
  if (Array.isArray(v)) {
    for (const x of v) if (!scrub(x, depth + 1)) return false
    return true
  }
  const o = v as Record<string, unknown>
  for (const k of Object.keys(o)) {
    if (UNSAFE_KEYS.has(k)) {
      delete o[k]
      continue
    }
    if (!scrub(o[k], depth + 1)) return false
  }
  return true
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.length <= 10_000 && v.every((x) => typeof x === 'string')
}
