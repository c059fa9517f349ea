import type { BreakerOptions } from './breaker/circuit-breaker.js'
import type { SmartCacheOptions } from './cache/smart-cache.js'
import type { RequestContext } from './context/als.js'
import { MAX_TIMER_MS } from './util/validate.js'

/** Fields an enricher adds to a line: top-level keys of the JSON record. */
export type Fields = Record<string, unknown>

/** What an enricher sees of one log call. */
export interface EnrichContext<C = RequestContext> {
  /** pino's numeric level of the call. */
  level: number
  /** Epoch ms of the call. */
  time: number
  /** The call's merge object, read only. Empty when the call had none. */
  record: Readonly<Record<string, unknown>>
  /** The request context active at the call ({@link Pipeline.context}), if any. */
  context: C | undefined
  /**
   * In the transport worker: the span that was active at the call on the
   * main thread, captured with the request context (lowercase hex ids, W3C
   * trace flags). Absent in process, where the active context is at hand.
   */
  trace?: SpanIds | undefined
}

/** A span's ids, as `@opentelemetry/api`'s `SpanContext` has them. */
export interface SpanIds {
  /** 32 lowercase hex digits. */
  traceId: string
  /** 16 lowercase hex digits. */
  spanId: string
  /** W3C trace flags, a byte (1: sampled). */
  traceFlags: number
}

/** What a compute receives beside its key and context. */
export interface EnricherComputeOptions {
  /** Aborted when `timeoutMs` passes or the pipeline closes. */
  signal: AbortSignal
}

/** pino's default level labels, usable as `minLevel`. */
export const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const
/** One of pino's default level labels, a key of {@link LEVELS}. */
export type LevelLabel = keyof typeof LEVELS

/**
 * Cache options an enricher may set; name, clock, breaker and timeout come
 * from the enricher, and values read from a `store` are checked as computed
 * output is (the pipeline's own `fromStore`).
 */
export type EnricherCacheOptions = Omit<SmartCacheOptions, 'name' | 'clock' | 'breaker' | 'timeoutMs' | 'fromStore'>

/** The definition given to {@link defineEnricher}. */
export interface EnricherDefinition<K = unknown, C = RequestContext> {
  /** Unique within a pipeline; used in stats, events and problem records. */
  name: string
  /**
   * The cache key of a record. Return `undefined` (or `null`) to skip this
   * enricher for the record. Omit for a global value (one for the process),
   * which is prepared once and costs nothing per line.
   */
  key?: (ctx: EnrichContext<C>) => K | undefined | null
  /** Computes the fields of a key. Runs concurrently with other enrichers, behind the cache and breaker. */
  compute: (
    key: K,
    ctx: EnrichContext<C>,
    options: EnricherComputeOptions,
  ) => Fields | undefined | Promise<Fields | undefined>
  /** Cache tiers and bounds. Defaults are {@link SmartCache}'s. */
  cache?: EnricherCacheOptions
  /** Compute deadline in ms; a timeout is a failure. Default: the pipeline's `timeoutMs` (1 000). */
  timeoutMs?: number
  /** Breaker options, or `false` for none. Default: a breaker with its defaults. */
  breaker?: BreakerOptions | false
  /**
   * Global enrichers only: recompute every `refreshMs` in the background so the
   * value is always warm. Default: none, no background refresh.
   */
  refreshMs?: number
  /** Fields written when no value can be had (error, timeout, breaker open). Default: none. */
  fallback?: Fields
  /** Skip records below this level (a number or a pino label). Default: every level. */
  minLevel?: number | LevelLabel
  /** Allowlist of top-level output keys; others are dropped. Default: all. */
  fields?: readonly string[]
  /** Called once when the enricher is unregistered or its pipeline closes: release what it holds. Default: none. */
  dispose?: () => void
}

/** A plain per-record enricher: called on every line, uncached. Keep it cheap and synchronous. */
export type EnricherFn<C = RequestContext> = (ctx: EnrichContext<C>) => Fields | undefined | Promise<Fields | undefined>

const kEnricher = Symbol.for('pino-enrich.enricher')

/** A cached enricher, made by {@link defineEnricher}. */
export interface Enricher<K = unknown, C = RequestContext> extends Readonly<EnricherDefinition<K, C>> {
  /** The brand {@link isEnricher} checks; a global symbol, so it works across package copies. */
  readonly [kEnricher]: true
}

/** Anything a pipeline accepts as an enricher. */
// biome-ignore lint/suspicious/noExplicitAny: the key type is the enricher's own business
export type AnyEnricher = Enricher<any, any> | EnricherFn<any> | (EnricherFn<any> & { enricherName?: string })

/**
 * Defines a cached enricher.
 *
 * @throws TypeError when `name` is empty or `compute` is not a function
 * @throws RangeError for a bad `minLevel`, `timeoutMs` or `refreshMs`
 */
export function defineEnricher<K = unknown, C = RequestContext>(definition: EnricherDefinition<K, C>): Enricher<K, C> {
  if (typeof definition !== 'object' || definition === null) {
    throw new TypeError(`defineEnricher expects an object, received ${String(definition)}`)
  }
  if (typeof definition.name !== 'string' || definition.name.length === 0 || definition.name.length > 64) {
    throw new TypeError(
      `enricher name must be a non-empty string of at most 64 characters, received ${JSON.stringify(definition.name)}`,
    )
  }
  if (typeof definition.compute !== 'function') {
    throw new TypeError(
      `enricher ${definition.name}: compute must be a function, received ${typeof definition.compute}`,
    )
  }
  if (definition.key !== undefined && typeof definition.key !== 'function') {
    throw new TypeError(`enricher ${definition.name}: key must be a function, received ${typeof definition.key}`)
  }
  if (definition.minLevel !== undefined) levelNumber(definition.minLevel)
  for (const opt of ['timeoutMs', 'refreshMs'] as const) {
    const v = definition[opt]
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= MAX_TIMER_MS)) {
      throw new RangeError(
        `enricher ${definition.name}: ${opt} must be a positive integer of at most ${MAX_TIMER_MS}, received ${String(v)}`,
      )
    }
  }
  if (definition.refreshMs !== undefined && definition.key !== undefined) {
    throw new TypeError(`enricher ${definition.name}: refreshMs applies to global enrichers only (no key)`)
  }
  return Object.freeze({ ...definition, [kEnricher]: true as const })
}

const kContextFields = Symbol.for('pino-enrich.context-fields')

/** What {@link defineContextFields} takes. */
export interface ContextFieldsDefinition {
  /** Unique within a pipeline. */
  name: string
  /**
   * Output key of each request-context key (`{ requestId: 'reqId' }`); `false`
   * leaves a key out. Only string, number and boolean values are copied.
   */
  keys: Readonly<Record<string, string | false>>
}

/** A per-record enricher copying request-context keys onto the line, made by {@link defineContextFields}. */
export interface ContextFieldsEnricher extends EnricherFn {
  /** The definition's `name`: how the pipeline registers it. */
  readonly enricherName: string
  /** The compiled mapping, on a global symbol: not a property a user sets. */
  readonly [kContextFields]: { readonly from: readonly string[]; readonly to: readonly string[] }
}

/**
 * A per-record enricher that copies request-context keys onto every line,
 * renamed. Declarative, so the pipeline writes them straight into the line:
 * no object per line beyond pino's own. It is also a plain {@link EnricherFn}.
 *
 * @throws TypeError for an empty output key or one of pino's core keys
 */
export function defineContextFields(definition: ContextFieldsDefinition): ContextFieldsEnricher {
  const name = definition?.name
  if (typeof name !== 'string' || name.length === 0 || name.length > 64) {
    throw new TypeError(
      `enricher name must be a non-empty string of at most 64 characters, received ${JSON.stringify(name)}`,
    )
  }
  const from: string[] = []
  const to: string[] = []
  for (const [key, out] of Object.entries(definition.keys ?? {})) {
    if (out === false) continue
    if (typeof out !== 'string' || out.length === 0) {
      throw new TypeError(`${name}: keys.${key} must be a non-empty string or false, received ${String(out)}`)
    }
    if (CORE.has(out) || out === '__proto__' || out === 'constructor' || out === 'prototype') {
      throw new TypeError(`${name}: keys.${key} may not write ${JSON.stringify(out)}, a reserved key`)
    }
    from.push(key)
    to.push(out)
  }
  const n = from.length
  const fn = (ctx: EnrichContext): Fields | undefined => {
    const c = ctx.context as Record<string, unknown> | undefined
    if (c === undefined) return undefined
    let out: Fields | undefined
    for (let i = 0; i < n; i++) {
      const v = c[from[i] as string]
      const t = typeof v
      if (t === 'string' || t === 'number' || t === 'boolean') {
        out ??= {}
        out[to[i] as string] = v
      }
    }
    return out
  }
  return Object.assign(fn, { enricherName: name, [kContextFields]: Object.freeze({ from, to }) })
}

/** The compiled mapping of a {@link defineContextFields} enricher. */
export function contextFieldsOf(
  e: unknown,
): { readonly from: readonly string[]; readonly to: readonly string[] } | undefined {
  return typeof e === 'function' ? (e as Partial<ContextFieldsEnricher>)[kContextFields] : undefined
}

const CORE: ReadonlySet<string> = new Set(['level', 'time', 'msg', 'pid', 'hostname'])

/** True for an enricher made by {@link defineEnricher}. */
export function isEnricher(e: unknown): e is Enricher {
  return typeof e === 'object' && e !== null && (e as { [kEnricher]?: unknown })[kEnricher] === true
}

/** A level label or number as its number; a RangeError for anything else. */
export function levelNumber(level: number | LevelLabel): number {
  if (typeof level === 'number' && Number.isFinite(level)) return level
  if (typeof level === 'string' && Object.hasOwn(LEVELS, level)) return LEVELS[level]
  throw new RangeError(
    `minLevel must be a number or one of ${Object.keys(LEVELS).join(', ')}, received ${String(level)}`,
  )
}
