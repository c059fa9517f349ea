import { EntryState, type SmartCache } from '../cache/smart-cache.js'
import type { Clock } from '../clock.js'
import type { EnrichContext, Fields } from '../enricher.js'
import { within } from '../util/async.js'
import { EMPTY } from '../util/constants.js'
import { addProblem, ProblemKind, type Problems, problemOf, withGlobal } from './problems.js'
import { type Prepared, type Registry, type Slot, touches } from './registry.js'

/** What {@link Pipeline.ready} reports. */
export interface ReadyResult {
  ready: string[]
  failed: string[]
  pending: string[]
}

/** The cache key of a global enricher's one value. */
const GLOBAL_KEY = 'global'

/** A global value as last prepared, with the enricher it came from. */
export interface GlobalValue {
  readonly slot: Slot
  readonly fields: Fields
}

/** Globals that go through pino's object path, with their enricher's `minLevel`. */
export interface MixinGlobal {
  readonly minLevel: number
  readonly fields: Fields
}

/**
 * One way of writing prepared globals for a logger's options. Built on first
 * use after the global values change, not when they change: a change costs
 * the same with one logger or a hundred thousand, and each view rebuilds
 * once, on its next line.
 */
export class View {
  /** Top-level keys that must go through pino's object path (redact, serializers); `true` for all. */
  readonly routed: ReadonlySet<string> | true
  /** The user's `base` fields other than pid and hostname: written beneath the enrichers. */
  readonly base: Fields | undefined
  readonly #globals: Globals
  #gen = -1
  #fragment = ''
  #fragmentFields: Fields = {}
  #mixinGlobals: MixinGlobal[] = []

  constructor(globals: Globals, routed: ReadonlySet<string> | true, base: Fields | undefined) {
    this.#globals = globals
    this.routed = routed
    this.base = base
  }

  /** The globals written as JSON text, `,"key":value` each. */
  get fragment(): string {
    if (this.#gen !== this.#globals.gen) this.#build()
    return this.#fragment
  }

  /** The fields serialized in `fragment`, for a line that must carry them as objects instead. */
  get fragmentFields(): Fields {
    if (this.#gen !== this.#globals.gen) this.#build()
    return this.#fragmentFields
  }

  /** Globals that go through pino's object path, each with its enricher's `minLevel`. */
  get mixinGlobals(): MixinGlobal[] {
    if (this.#gen !== this.#globals.gen) this.#build()
    return this.#mixinGlobals
  }

  #build(): void {
    this.#gen = this.#globals.gen
    // Base first, enrichers over it, objects merged (host.arch from one, host.id
    // from another): one key each.
    const merged: Fields = this.base === undefined ? {} : mergeDeep({}, this.base)
    const always: Fields = {}
    const mixinGlobals: MixinGlobal[] = [{ minLevel: Number.NEGATIVE_INFINITY, fields: always }]
    const routed = this.routed
    for (const { slot, fields } of this.#globals.values) {
      if (slot.minLevel !== Number.NEGATIVE_INFINITY) mixinGlobals.push({ minLevel: slot.minLevel, fields })
      else if (routed !== true && !touches(fields, routed)) mergeDeep(merged, fields)
      else mergeDeep(always, fields)
    }
    if (Object.keys(always).length === 0) mixinGlobals.shift()
    let fragment = ''
    for (const key of Object.keys(merged)) fragment += `,${JSON.stringify(key)}:${JSON.stringify(merged[key])}`
    this.#fragment = fragment
    this.#fragmentFields = merged
    this.#mixinGlobals = mixinGlobals
  }
}

/**
 * The values of global enrichers: refreshed in the background, prepared once
 * per change into what every line gets (values, problems, the time they must
 * be looked at again), and written per logger through a {@link View}.
 */
export class Globals {
  /** Global values as last prepared, in registration order. */
  values: readonly GlobalValue[] = []
  /** Changes whenever {@link values} is prepared again; views rebuild when it moved. */
  gen = 0
  /** The problems of global enrichers, recorded on every line; frozen, or undefined for none. */
  problems: Problems | undefined
  /** The cache clock's time at which the values must be prepared again (a stale or missing one may have changed). */
  nextCheck = 0
  readonly #registry: Registry
  readonly #clock: Clock
  #closed = false
  // Views are shared by signature but held weakly: a per-tenant logger's view
  // goes with the logger.
  readonly #viewsBySignature = new Map<string, WeakRef<View>>()
  readonly #viewsGone = new FinalizationRegistry<string>((signature) => {
    if (this.#viewsBySignature.get(signature)?.deref() === undefined) this.#viewsBySignature.delete(signature)
  })
  readonly #all: View = new View(this, true, undefined)

  constructor(registry: Registry, clock: Clock) {
    this.#registry = registry
    this.#clock = clock
  }

  /** The view for these options, made and prepared on first use. */
  view(routed: ReadonlySet<string> | true, base?: Fields): View {
    // A view is what its routed keys and base make it: loggers with the same options share one.
    const signature = `${routed === true ? '*' : [...routed].sort().join('\u0000')}|${JSON.stringify(base ?? null)}`
    const existing = this.#viewsBySignature.get(signature)?.deref()
    if (existing !== undefined) return existing
    const view = new View(this, routed, base)
    this.#viewsBySignature.set(signature, new WeakRef(view))
    this.#viewsGone.register(view, signature)
    return view
  }

  /** Views held now (shared by signature). */
  get viewCount(): number {
    return this.#viewsBySignature.size
  }

  /** Copies every global value for a record of `level` into `out`. */
  assign(level: number, out: Fields): void {
    for (const g of this.#all.mixinGlobals) if (level >= g.minLevel) Object.assign(out, g.fields)
  }

  /** The line's own problems merged with the global ones, or undefined when there are none. */
  problemsFor(local: Problems | undefined): Problems | undefined {
    return withGlobal(this.problems, local)
  }

  /** Starts a newly registered global enricher: a first compute now, and one every `refreshMs`. */
  start(slot: Slot): void {
    if (this.#closed) return
    this.kick(slot)
    const every = slot.def?.refreshMs
    if (every !== undefined) {
      slot.timer = setInterval(() => this.kick(slot, true), every)
      slot.timer.unref()
    }
  }

  /** No compute starts from now on (the pipeline has closed). */
  close(): void {
    this.#closed = true
  }

  /**
   * Starts a background compute of a global enricher; when one actually ran,
   * the prepared globals are rebuilt. `force` recomputes a fresh value too.
   */
  kick(slot: Slot, force = false): void {
    const cache = slot.cache
    if (cache === undefined || this.#closed) return
    if (!force && cache.peek(GLOBAL_KEY).state === EntryState.Fresh) return
    // One rebuild per refresh, however many lines or loggers asked for it meanwhile.
    if (slot.kicked) return
    slot.kicked = true
    const before = slot.runs
    const ctx: EnrichContext = { level: 30, time: this.#clock.now(), record: EMPTY, context: undefined }
    cache
      .refresh(GLOBAL_KEY, (_k, { signal }) => this.#registry.compute(slot, undefined, ctx, signal))
      .then(() => {
        slot.kicked = false
        if (slot.runs !== before) this.prepare()
      })
  }

  /**
   * Rebuilds what every line gets from global enrichers: the values, and the
   * global problems. Runs when a global value changes or its state may have
   * (at `nextCheck`), never per line.
   */
  prepare(): void {
    const now = this.#clock.now()
    let next = now + 60_000
    let problems: Problems | undefined
    const values: GlobalValue[] = []
    for (const slot of this.#registry.globals) {
      const cache = slot.cache as SmartCache<Prepared | undefined>
      const p = cache.peek(GLOBAL_KEY)
      let fields: Fields | undefined
      if (p.state === EntryState.Fresh || p.state === EntryState.Stale) {
        fields = this.#registry.fieldsOf(p.value)
        if (p.value?.invalid) problems = addProblem(problems, ProblemKind.Invalid, slot.name)
        if (p.state === EntryState.Stale) {
          problems = addProblem(problems, ProblemKind.Stale, slot.name)
          if (p.error === undefined) this.kick(slot)
        }
      } else {
        fields = slot.fallback
        if (p.state === EntryState.Error) {
          problems = addProblem(problems, problemOf(p.error), slot.name)
        } else {
          const open = cache.breaker?.state === 'open'
          problems = addProblem(problems, open ? ProblemKind.Open : ProblemKind.Pending, slot.name)
          if (!open) this.kick(slot)
          next = Math.min(next, open ? (cache.breaker?.retryAt ?? now + 1000) : now + 1000)
        }
      }
      if (p.until !== undefined) next = Math.min(next, p.until)
      if (fields !== undefined) values.push({ slot, fields })
    }
    if (problems !== undefined) Object.freeze(problems)
    this.problems = problems
    this.nextCheck = next
    this.values = values
    this.gen++
  }

  /**
   * Computes every global enricher now; resolves when all have settled or
   * after `timeoutMs`, with what became of each.
   */
  async warm(timeoutMs: number): Promise<ReadyResult> {
    const ctx: EnrichContext = { level: 30, time: this.#clock.now(), record: EMPTY, context: undefined }
    const registry = this.#registry
    const outcome = new Map<string, 'ready' | 'failed'>()
    const all = Promise.all(
      registry.globals.map((slot) =>
        (slot.cache as SmartCache<Prepared | undefined>)
          .getOrCompute(GLOBAL_KEY, (_k, { signal }) => registry.compute(slot, undefined, ctx, signal))
          .then(
            () => outcome.set(slot.name, 'ready'),
            () => outcome.set(slot.name, 'failed'),
          ),
      ),
    )
    // Held on a ref'd timer: an awaited ready() returns rather than the process exiting under it.
    await within(all, timeoutMs, true)
    this.prepare()
    const result: ReadyResult = { ready: [], failed: [], pending: [] }
    for (const slot of registry.globals) {
      const o = outcome.get(slot.name)
      result[o ?? 'pending'].push(slot.name)
    }
    return result
  }
}

/** Merges plain objects key by key (arrays and other values replace); returns `target`. */
function mergeDeep(target: Fields, source: Fields): Fields {
  for (const key of Object.keys(source)) {
    const v = source[key]
    const t = target[key]
    if (isPlainObject(v) && isPlainObject(t)) target[key] = mergeDeep(mergeDeep({}, t), v)
    else target[key] = isPlainObject(v) ? mergeDeep({}, v) : v
  }
  return target
}

function isPlainObject(v: unknown): v is Fields {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
