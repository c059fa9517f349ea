import type { BreakerOptions } from './breaker/circuit-breaker.js'
import type { SmartCacheOptions } from './cache/smart-cache.js'

/** Fields an enricher adds to a line: top-level keys of the JSON record. */
export type Fields = Record<string, unknown>

/** What an enricher sees of one log call. */
export interface EnrichContext<C = Record<string, unknown>> {
  /** pino's numeric level of the call. */
  level: number
  /** Epoch ms of the call. */
  time: number
  /** The call's merge object, read only. Empty when the call had none. */
  record: Readonly<Record<string, unknown>>
  /** The request context active at the call ({@link Pipeline.context}), if any. */
  context: C | undefined
}

/** What a compute receives beside its key and context. */
export interface EnricherComputeOptions {
  /** Aborted when `timeoutMs` passes or the pipeline closes. */
  signal: AbortSignal
}

/** pino's default level labels, usable as `minLevel`. */
export const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const
export type LevelLabel = keyof typeof LEVELS

/** Cache options an enricher may set; name, clock, breaker and timeout come from the enricher. */
export type EnricherCacheOptions = Omit<SmartCacheOptions, 'name' | 'clock' | 'breaker' | 'timeoutMs'>

/** The definition given to {@link defineEnricher}. */
export interface EnricherDefinition<K = unknown, C = Record<string, unknown>> {
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
  /** Global enrichers only: recompute every `refreshMs` in the background so the value is always warm. */
  refreshMs?: number
  /** Fields written when no value can be had (error, timeout, breaker open). Default: none. */
  fallback?: Fields
  /** Skip records below this level (a number or a pino label). Default: every level. */
  minLevel?: number | LevelLabel
  /** Allowlist of top-level output keys; others are dropped. Default: all. */
  fields?: readonly string[]
  /** Called once when the enricher is unregistered or its pipeline closes: release what it holds. */
  dispose?: () => void
}

/** A plain per-record enricher: called on every line, uncached. Keep it cheap and synchronous. */
export type EnricherFn<C = Record<string, unknown>> = (
  ctx: EnrichContext<C>,
) => Fields | undefined | Promise<Fields | undefined>

const kEnricher = Symbol.for('pino-enrich.enricher')

/** A cached enricher, made by {@link defineEnricher}. */
export interface Enricher<K = unknown, C = Record<string, unknown>> extends Readonly<EnricherDefinition<K, C>> {
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
export function defineEnricher<K = unknown, C = Record<string, unknown>>(
  definition: EnricherDefinition<K, C>,
): Enricher<K, C> {
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
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v > 0)) {
      throw new RangeError(`enricher ${definition.name}: ${opt} must be a positive integer, received ${String(v)}`)
    }
  }
  if (definition.refreshMs !== undefined && definition.key !== undefined) {
    throw new TypeError(`enricher ${definition.name}: refreshMs applies to global enrichers only (no key)`)
  }
  return Object.freeze({ ...definition, [kEnricher]: true as const })
}

/** True for an enricher made by {@link defineEnricher}. */
export function isEnricher(e: unknown): e is Enricher {
  return typeof e === 'object' && e !== null && (e as { [kEnricher]?: unknown })[kEnricher] === true
}

/** @internal */
export function levelNumber(level: number | LevelLabel): number {
  if (typeof level === 'number' && Number.isFinite(level)) return level
  if (typeof level === 'string' && Object.hasOwn(LEVELS, level)) return LEVELS[level]
  throw new RangeError(
    `minLevel must be a number or one of ${Object.keys(LEVELS).join(', ')}, received ${String(level)}`,
  )
}
