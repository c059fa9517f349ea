import type { BreakerState } from '../breaker/circuit-breaker.js'
import { SmartCache } from '../cache/smart-cache.js'
import type { Clock } from '../clock.js'
import { type ContextSlot, type ContextWriter, ContextWriters, compileContextWriter } from '../context/writer.js'
import {
  type AnyEnricher,
  contextFieldsOf,
  type EnrichContext,
  type Enricher,
  type EnricherFn,
  type Fields,
  isEnricher,
  levelNumber,
} from '../enricher.js'
import { errorKind, TimeoutError } from '../errors.js'
import type { Disposer, Emitter } from '../events.js'
import { LatencyWindow } from '../latency.js'
import { sanitizeFields } from '../sanitize.js'
import { ProblemKind, type Problems, slotProblem } from './problems.js'

/** Events of a pipeline. */
export type PipelineEvent =
  | { type: 'breaker'; enricher: string; from: BreakerState; to: BreakerState; at: number }
  | { type: 'error'; enricher: string; code: string; error: unknown }
  | { type: 'timeout'; enricher: string; timeoutMs: number }

/** pino's own keys: enricher output never overrides them. */
export const CORE_KEYS: readonly string[] = ['level', 'time', 'msg', 'pid', 'hostname']

/** A cached value: sanitized fields plus whether something was dropped. */
export interface Prepared {
  readonly fields: Fields | undefined
  readonly invalid: boolean
  /** The registry's {@link Registry.coreGen} when sanitized: a core key added since is filtered on read. */
  readonly gen?: number
}

/** What a line gets in place of a store value that was refused: no fields, the `invalid` problem. */
const REFUSED_FROM_STORE: Prepared = Object.freeze({ fields: undefined, invalid: true })

/** One registered enricher: its definition, its cache and its figures. */
export class Slot {
  readonly name: string
  readonly def: Enricher | undefined
  readonly fn: EnricherFn | undefined
  readonly cache: SmartCache<Prepared | undefined> | undefined
  readonly global: boolean
  readonly minLevel: number
  readonly allow: ReadonlySet<string> | undefined
  fallback: Fields | undefined
  /** A defineContextFields enricher: context keys and the output keys they are written under. */
  readonly from: readonly string[] | undefined
  readonly to: readonly string[] | undefined
  readonly latency = new LatencyWindow()
  readonly disposers: Disposer[] = []
  /** A global enricher's `refreshMs` timer. */
  timer: NodeJS.Timeout | undefined
  /** One frozen `{ kind: [name] }` per kind, reused so a repeated problem costs no allocation. */
  readonly memo: Partial<Record<ProblemKind, Problems>> = {}
  /** The last key list a function enricher's flat result was checked with. */
  flatKeys: string[] | undefined
  disposed = false
  /** A background refresh of this global is under way. */
  kicked = false
  runs = 0
  errors = 0
  timeouts = 0
  lineTimeouts = 0
  invalid = 0
  busy = 0

  constructor(
    name: string,
    def: Enricher | undefined,
    fn: EnricherFn | undefined,
    cache: SmartCache<Prepared | undefined> | undefined,
    fallback: Fields | undefined,
  ) {
    this.name = name
    this.def = def
    this.fn = fn
    this.cache = cache
    this.global = def !== undefined && def.key === undefined
    this.minLevel = def?.minLevel === undefined ? Number.NEGATIVE_INFINITY : levelNumber(def.minLevel)
    this.allow = def?.fields === undefined ? undefined : new Set(def.fields)
    this.fallback = fallback
    const map = contextFieldsOf(fn)
    this.from = map?.from
    this.to = map?.to
  }

  /** Stops its timer and listeners, closes its cache and calls the enricher's own `dispose` (once). */
  dispose(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    for (const d of this.disposers) d()
    this.cache?.close()
    const dispose = this.def?.dispose
    if (dispose === undefined || this.disposed) return
    this.disposed = true
    try {
      dispose()
    } catch {
      // Nothing a log pipeline could do about it.
    }
  }
}

/** What a {@link Registry} is made with: the pipeline's resolved options and its event emitter. */
export interface RegistrySettings {
  readonly clock: Clock
  readonly timeoutMs: number
  readonly maxFieldBytes: number
  readonly maxKeyLength: number
  readonly errorKey: string
  readonly events: Emitter<PipelineEvent>
}

/**
 * The registered enrichers, indexed by kind for the log path, and the rules
 * their output is held to: the core keys it never writes and `maxFieldBytes`.
 * The index arrays are replaced, never changed in place, when an enricher is
 * added or removed: a line being enriched keeps the arrays it started with.
 */
export class Registry {
  /** Every enricher, in registration order. */
  slots: Slot[] = []
  /** Keyed enrichers (defineEnricher with a `key`). */
  keyed: Slot[] = []
  /** Function enrichers, run on every line. */
  fns: Slot[] = []
  /** defineContextFields enrichers. */
  contexts: Slot[] = []
  /** Global enrichers (defineEnricher without a `key`). */
  globals: Slot[] = []
  /**
   * Writes every defineContextFields enricher's keys from the request context
   * into `out`; returns the problems of values it refused, or undefined.
   */
  writeContexts: ContextWriter<Problems> = compileContextWriter([], refusedContext)
  /** The context writer of each logger: leaves out keys the logger's bindings carry. */
  contextWriters: ContextWriters<Problems> = new ContextWriters([], refusedContext)
  readonly coreKeys = new Set<string>(CORE_KEYS)
  /** Counts core keys added after construction (a logger's `messageKey`). */
  coreGen = 0
  readonly maxFieldBytes: number
  readonly events: Emitter<PipelineEvent>
  /** Called once the enrichers or the core keys have changed: what is prepared from them is stale. */
  onChange: () => void = () => {}
  readonly #clock: Clock
  readonly #timeoutMs: number
  readonly #maxKeyLength: number
  readonly #byName = new Map<string, Slot>()
  /** A value sanitized before the current core keys, filtered again: for the generation it was filtered at. */
  readonly #refiltered = new WeakMap<Prepared, { gen: number; fields: Fields | undefined }>()
  #fnCount = 0

  constructor(settings: RegistrySettings) {
    this.#clock = settings.clock
    this.#timeoutMs = settings.timeoutMs
    this.maxFieldBytes = settings.maxFieldBytes
    this.#maxKeyLength = settings.maxKeyLength
    this.events = settings.events
    this.coreKeys.add(settings.errorKey)
  }

  /**
   * Adds an enricher, with its cache and breaker.
   * @throws TypeError when an enricher of the same name is registered, or the enricher is malformed
   */
  add(enricher: AnyEnricher): Slot {
    let slot: Slot
    if (isEnricher(enricher)) {
      if (this.#byName.has(enricher.name))
        throw new TypeError(`an enricher named ${JSON.stringify(enricher.name)} is already registered`)
      const cache = new SmartCache<Prepared | undefined>({
        ...refreshTtl(enricher, this.#timeoutMs),
        ...(enricher.cache ?? {}),
        name: enricher.name,
        clock: this.#clock,
        breaker: enricher.breaker ?? {},
        timeoutMs: enricher.timeoutMs ?? this.#timeoutMs,
        maxKeyLength: enricher.cache?.maxKeyLength ?? this.#maxKeyLength,
        // Only with a store: anyone who can write to it can plant a value.
        ...(enricher.cache?.store === undefined ? {} : { fromStore: (v: unknown) => this.#fromStore(slot, v) }),
      })
      const fallback =
        enricher.fallback === undefined
          ? undefined
          : sanitizeFields(enricher.fallback, this.maxFieldBytes, this.coreKeys, undefined).fields
      slot = new Slot(enricher.name, enricher, undefined, cache, fallback)
      const breaker = cache.breaker
      if (breaker !== undefined) {
        const events = this.events
        slot.disposers.push(
          breaker.onStateChange((c) => {
            if (events.hasListeners)
              events.emit({ type: 'breaker', enricher: slot.name, from: c.from, to: c.to, at: c.at })
          }),
        )
      }
    } else if (typeof enricher === 'function') {
      const given = (enricher as { enricherName?: unknown }).enricherName
      const name = typeof given === 'string' && given.length > 0 ? given : enricher.name || `fn${++this.#fnCount}`
      if (this.#byName.has(name)) throw new TypeError(`an enricher named ${JSON.stringify(name)} is already registered`)
      slot = new Slot(name, undefined, enricher as EnricherFn, undefined, undefined)
    } else {
      throw new TypeError(`an enricher must be made by defineEnricher() or be a function, received ${String(enricher)}`)
    }
    this.#byName.set(slot.name, slot)
    this.slots = [...this.slots, slot]
    this.#reindex()
    return slot
  }

  /** Removes an enricher and disposes of it; nothing when it is no longer registered. */
  remove(slot: Slot): void {
    if (this.#byName.get(slot.name) !== slot) return
    this.#byName.delete(slot.name)
    this.slots = this.slots.filter((s) => s !== slot)
    slot.dispose()
    this.#reindex()
  }

  #reindex(): void {
    this.keyed = this.slots.filter((s) => s.def !== undefined && !s.global)
    this.fns = this.slots.filter((s) => s.fn !== undefined && s.from === undefined)
    this.contexts = this.slots.filter((s) => s.from !== undefined)
    this.contextWriters = new ContextWriters(this.contexts, refusedContext)
    this.writeContexts = this.contextWriters.all
    this.globals = this.slots.filter((s) => s.global)
    this.onChange()
  }

  /**
   * Adds a key enrichers never write (a logger's `messageKey`). Values cached
   * before are filtered when next read, whatever the order of calls.
   */
  addCoreKey(key: string): void {
    if (this.coreKeys.has(key)) return
    this.coreKeys.add(key)
    this.coreGen++
    for (const slot of this.slots) {
      slot.flatKeys = undefined
      if (slot.fallback !== undefined && key in slot.fallback) slot.fallback = withoutCore(slot.fallback, this.coreKeys)
    }
    this.onChange()
  }

  /** A cached value's fields, without core keys added since it was sanitized. */
  fieldsOf(v: Prepared | undefined): Fields | undefined {
    if (v === undefined || (v.gen ?? 0) === this.coreGen || v.fields === undefined) return v?.fields
    // Filtered at an earlier generation, it may still hold a key made core since (another logger's messageKey).
    const known = this.#refiltered.get(v)
    if (known !== undefined && known.gen === this.coreGen) return known.fields
    const fields = withoutCore(v.fields, this.coreKeys)
    this.#refiltered.set(v, { gen: this.coreGen, fields })
    return fields
  }

  /** Runs an enricher's compute and sanitizes its output. */
  async compute(slot: Slot, key: unknown, ctx: EnrichContext, signal: AbortSignal): Promise<Prepared | undefined> {
    const def = slot.def as Enricher
    const events = this.events
    slot.runs++
    const started = performance.now()
    const onAbort = (): void => {
      const reason: unknown = signal.reason
      if (reason instanceof TimeoutError) {
        slot.timeouts++
        if (events.hasListeners) events.emit({ type: 'timeout', enricher: slot.name, timeoutMs: reason.timeoutMs })
      }
    }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      const result = await def.compute(key, ctx, { signal })
      const s = sanitizeFields(result, this.maxFieldBytes, this.coreKeys, slot.allow)
      if (s.problem !== undefined) {
        slot.invalid++
        if (events.hasListeners)
          events.emit({ type: 'error', enricher: slot.name, code: 'ENRICH_BAD_RESULT', error: s.problem })
      }
      // No fields at all is a negative result: cached for negativeTtlMs.
      if (s.fields === undefined && s.problem === undefined) return undefined
      return { fields: s.fields, invalid: s.problem !== undefined, gen: this.coreGen }
    } catch (e) {
      slot.errors++
      if (events.hasListeners && !signal.aborted) {
        events.emit({ type: 'error', enricher: slot.name, code: errorKind(e), error: e })
      }
      throw e
    } finally {
      signal.removeEventListener('abort', onAbort)
      slot.latency.record(performance.now() - started)
    }
  }

  /**
   * Checks a value read from a shared store as a computed one is checked. A
   * peer only writes what it sanitized, so anything the sanitizer would
   * change (a core or `errorKey` key, a key outside `fields`, an unsafe key, a
   * field over `maxFieldBytes`, another shape) was not written by a peer: it
   * is refused whole, counted as invalid and served as no fields with the
   * `invalid` problem, while the key is recomputed here.
   */
  #fromStore(slot: Slot, v: unknown): { value: Prepared | undefined; refused?: boolean } {
    if (v === undefined || v === null) return { value: undefined }
    if (typeof v === 'object' && !Array.isArray(v)) {
      const { fields, invalid, gen } = v as { fields?: unknown; invalid?: unknown; gen?: unknown }
      // A peer's value carries its own `gen` (its core-key generation), meaningless here:
      // the value is checked against this pipeline's core keys below and stamped with its own.
      const members = 1 + (fields === undefined ? 0 : 1) + (gen === undefined ? 0 : 1)
      let shaped =
        typeof invalid === 'boolean' &&
        (gen === undefined || Number.isSafeInteger(gen)) &&
        Object.keys(v).length === members
      if (shaped && fields !== undefined) {
        shaped = typeof fields === 'object' && fields !== null && !Array.isArray(fields)
        for (const key of shaped ? Object.keys(fields as object) : []) {
          if (this.coreKeys.has(key) || (slot.allow !== undefined && !slot.allow.has(key))) shaped = false
        }
      }
      if (shaped) {
        const s = sanitizeFields(fields, this.maxFieldBytes, this.coreKeys, slot.allow)
        if (s.problem === undefined) {
          return { value: Object.freeze({ fields: s.fields, invalid: invalid === true, gen: this.coreGen }) }
        }
      }
    }
    slot.invalid++
    if (this.events.hasListeners) {
      const error = new TypeError('a value read from the shared store was refused')
      this.events.emit({ type: 'error', enricher: slot.name, code: 'ENRICH_BAD_RESULT', error })
    }
    return { value: REFUSED_FROM_STORE, refused: true }
  }
}

/** A context value refused by the writer (too long): counted, and the enricher recorded as invalid. */
function refusedContext(slot: ContextSlot, so: Problems | undefined): Problems {
  const s = slot as Slot
  s.invalid++
  return slotProblem(so, ProblemKind.Invalid, s)
}

/** An enricher refreshed every `refreshMs` stays fresh until the refresh after next could have landed. */
function refreshTtl(e: Enricher, timeoutMs: number): { ttlMs?: number } {
  return e.refreshMs === undefined ? {} : { ttlMs: 2 * e.refreshMs + (e.timeoutMs ?? timeoutMs) }
}

/** `fields` without `keys`, the same object when it has none of them; undefined when nothing is left. */
function withoutCore(fields: Fields, keys: ReadonlySet<string>): Fields | undefined {
  if (!touches(fields, keys)) return fields
  const out: Fields = {}
  for (const k of Object.keys(fields)) if (!keys.has(k)) out[k] = fields[k]
  return Object.keys(out).length === 0 ? undefined : Object.freeze(out)
}

/** Whether `fields` has one of `keys` at its top level. */
export function touches(fields: Fields, keys: ReadonlySet<string>): boolean {
  for (const k of Object.keys(fields)) if (keys.has(k)) return true
  return false
}
