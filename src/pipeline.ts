import type { LoggerOptions } from 'pino'
import { EntryState, type SmartCache } from './cache/smart-cache.js'
import { type Clock, monotonicClock, systemClock } from './clock.js'
import type { ContextHelpers, ContextSource, RequestContext } from './context/als.js'
import { beginLine, endLine } from './context/line-scope.js'
import type { ContextWriter } from './context/writer.js'
import { Enrichment } from './core/enrichment.js'
import type { Globals, ReadyResult } from './core/globals.js'
import type { Gathering, Waiter } from './core/line.js'
import { formatMetrics, type LineCounters, type PipelineStats, statsOf } from './core/metrics.js'
import { addProblem, mergeProblems, ProblemKind, type Problems, problemOf, slotProblem } from './core/problems.js'
import type { PipelineEvent, Prepared, Registry, Slot } from './core/registry.js'
import { type HandleSignalsOptions, handleSignals } from './core/signals.js'
import type { AnyEnricher, EnrichContext, Enricher, EnricherFn, Fields } from './enricher.js'
import { errorKind } from './errors.js'
import type { Disposer, Emitter, EventSource } from './events.js'
import { buildPinoOptions, type EnrichPinoOptions } from './pino/options.js'
import { sanitizeFields } from './sanitize.js'
import { checkMs } from './util/validate.js'

export type { ReadyResult, View } from './core/globals.js'
export type { Gathering } from './core/line.js'
export type { EnricherStats, PipelineStats } from './core/metrics.js'
export { ProblemKind, type Problems } from './core/problems.js'
export type { PipelineEvent } from './core/registry.js'
export type { HandleSignalsOptions } from './core/signals.js'

/** Options of {@link createPipeline}. */
export interface PipelineOptions {
  /** Enrichers to register at once. */
  enrichers?: readonly AnyEnricher[]
  /** Longest delay enrichment may add to a line, in ms (deferred mode and `enrich()`). Default 10. */
  deadlineMs?: number
  /** Compute deadline of enrichers that set none, in ms. Default 1 000. */
  timeoutMs?: number
  /** Key under which problems are recorded on a line. Default `'enrich'`. */
  errorKey?: string
  /** Longest `close()` waits for pending lines and computes, in ms. Default 2 000. */
  closeTimeoutMs?: number
  /** Largest JSON size of one enricher's output, in bytes; larger output is refused. Default 16 384. */
  maxFieldBytes?: number
  /** Cache keys longer than this are hashed. Default 256. */
  maxKeyLength?: number
  /** Most deferred lines waiting at once; beyond it the oldest is written with what is ready. Default 10 000. */
  maxPending?: number
  /**
   * Time source, for tests. Default: {@link systemClock} for line times and
   * cache lifetimes, {@link monotonicClock} for deadlines and the added delay,
   * so a step of the system time never holds a line. An injected clock is
   * used for both.
   */
  clock?: Clock
  /**
   * A request context the application already keeps, read instead of a new
   * AsyncLocalStorage of the pipeline's own: your AsyncLocalStorage (its store
   * an object), or a getter of the current context object such as
   * `@fastify/request-context`'s `requestContext.getStore`. Snapshot,
   * deferred and transport modes all read it; its own keys are what
   * `ctx.context` and `requestEnricher()` see. You fill it: `expressContext`
   * and `fastifyContext` refuse such a pipeline, and with a getter
   * `context.run()` throws. Default: a new AsyncLocalStorage.
   * @throws TypeError (from {@link createPipeline}) for anything else, quoting it
   */
  context?: ContextSource
}

export const PIPELINE_DEFAULTS = {
  deadlineMs: 10,
  timeoutMs: 1_000,
  errorKey: 'enrich',
  closeTimeoutMs: 2_000,
  maxFieldBytes: 16_384,
  maxKeyLength: 256,
  maxPending: 10_000,
} as const

const KEY_FAILED = Symbol('key failed')
const EMPTY: Readonly<Record<string, unknown>> = Object.freeze({})
const noop = (): void => {}

/**
 * A set of enrichers with their caches and breakers, and the ways to put their
 * fields on pino lines. Create with {@link createPipeline}.
 */
export class Pipeline {
  readonly deadlineMs: number
  readonly errorKey: string
  readonly closeTimeoutMs: number
  readonly maxPending: number
  /** The request context that `ctx.context` holds: the pipeline's own AsyncLocalStorage, or the `context` option's. */
  readonly context: ContextHelpers<RequestContext>
  readonly #e: Enrichment
  readonly #registry: Registry
  /** @internal */
  get clock(): Clock {
    return this.#e.clock
  }
  /** @internal */
  get counters(): LineCounters {
    return this.#e.counters
  }
  /** @internal */
  get coreKeys(): Set<string> {
    return this.#registry.coreKeys
  }
  /** @internal */
  get coreGen(): number {
    return this.#registry.coreGen
  }
  /** @internal */
  get keyed(): Slot[] {
    return this.#registry.keyed
  }
  /** @internal */
  get fns(): Slot[] {
    return this.#registry.fns
  }
  /** @internal */
  get contexts(): Slot[] {
    return this.#registry.contexts
  }
  /** @internal */
  get writeContexts(): ContextWriter<Problems> {
    return this.#registry.writeContexts
  }
  readonly #globals: Globals
  /** @internal */
  get nextCheck(): number {
    return this.#globals.nextCheck
  }
  /**
   * Above 0 while a line's keyed and function enrichers run: a log call made
   * from inside one (a `key()` or a function that logs) is written without
   * enrichment, once, instead of re-entering it line after line.
   * @internal
   */
  enriching = 0
  readonly #maxFieldBytes: number
  readonly #events: Emitter<PipelineEvent>
  /** Lines waiting on each running compute. */
  readonly #waiters = new WeakMap<Promise<Prepared | undefined>, Set<Waiter>>()

  /** @throws RangeError or TypeError for bad options, quoting the value. */
  constructor(options: PipelineOptions = {}) {
    const o = { ...PIPELINE_DEFAULTS, ...options }
    for (const k of ['deadlineMs', 'timeoutMs', 'closeTimeoutMs'] as const) checkMs(k, o[k], 1)
    for (const k of ['maxFieldBytes', 'maxKeyLength', 'maxPending'] as const) {
      const v = o[k]
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
        throw new RangeError(`${k} must be a positive integer, received ${String(v)}`)
      }
    }
    if (typeof o.errorKey !== 'string' || o.errorKey.length === 0) {
      throw new TypeError(`errorKey must be a non-empty string, received ${String(o.errorKey)}`)
    }
    this.deadlineMs = o.deadlineMs
    this.errorKey = o.errorKey
    this.closeTimeoutMs = o.closeTimeoutMs
    this.maxPending = o.maxPending
    this.#maxFieldBytes = o.maxFieldBytes
    this.#e = new Enrichment(
      this,
      {
        deadlineMs: o.deadlineMs,
        errorKey: o.errorKey,
        closeTimeoutMs: o.closeTimeoutMs,
        maxPending: o.maxPending,
        timeoutMs: o.timeoutMs,
        maxFieldBytes: o.maxFieldBytes,
        maxKeyLength: o.maxKeyLength,
        clock: options.clock,
        context: options.context,
      },
      this,
    )
    this.context = this.#e.context
    this.#events = this.#e.events
    this.#registry = this.#e.registry
    this.#globals = this.#e.globals
    for (const e of options.enrichers ?? []) this.register(e)
  }

  /**
   * Adds an enricher. Global enrichers start computing in the background at once.
   *
   * @returns a function that removes it again
   * @throws TypeError when an enricher of the same name is registered, or the enricher is malformed
   */
  register(enricher: AnyEnricher): Disposer {
    const slot = this.#registry.add(enricher)
    if (slot.global) this.#globals.start(slot)
    return () => this.#registry.remove(slot)
  }

  /** A cached value's fields, without core keys added since it was sanitized. @internal */
  fieldsOf(v: Prepared | undefined): Fields | undefined {
    return this.#registry.fieldsOf(v)
  }

  /** @internal */
  prepareGlobals(): void {
    this.#globals.prepare()
  }

  /** Runs an enricher's compute and sanitizes its output. @internal */
  compute(slot: Slot, key: unknown, ctx: EnrichContext, signal: AbortSignal): Promise<Prepared | undefined> {
    return this.#registry.compute(slot, key, ctx, signal)
  }

  /**
   * Adds what keyed and function enrichers have ready now to `out`, starting
   * background refreshes for what is missing or stale. Never waits. Returns the
   * problems met, or undefined.
   * @internal
   */
  collectNow(
    ctx: EnrichContext,
    out: Fields,
    into: Problems | undefined,
    now: number,
    writeContexts: ContextWriter<Problems> = this.writeContexts,
  ): Problems | undefined {
    const outer = beginLine()
    this.enriching++
    try {
      return this.#collectNow(ctx, out, into, now, writeContexts)
    } finally {
      this.enriching--
      endLine(outer)
    }
  }

  #collectNow(
    ctx: EnrichContext,
    out: Fields,
    into: Problems | undefined,
    now: number,
    writeContexts: ContextWriter<Problems>,
  ): Problems | undefined {
    let problems = into
    const level = ctx.level
    for (const slot of this.keyed) {
      if (level < slot.minLevel) continue
      const raw = this.#rawKey(slot, ctx)
      const k = toKey(raw)
      if (k === undefined) continue
      if (k === null) {
        problems = addProblem(problems, ProblemKind.Invalid, slot.name)
        continue
      }
      const cache = slot.cache as SmartCache<Prepared | undefined>
      const p = cache.lookup(k, now)
      if (p.state === EntryState.Fresh || p.state === EntryState.Stale) {
        const v = p.value
        const fields = v === undefined || v.gen === this.coreGen ? v?.fields : this.fieldsOf(v)
        if (fields !== undefined) Object.assign(out, fields)
        if (v?.invalid) problems = addProblem(problems, ProblemKind.Invalid, slot.name)
        if (p.state === EntryState.Stale) {
          problems = addProblem(problems, ProblemKind.Stale, slot.name)
          if (p.error === undefined) this.#refreshKeyed(slot, k, raw, ctx)
        }
        continue
      }
      if (slot.fallback !== undefined) Object.assign(out, slot.fallback)
      if (p.state === EntryState.Error) {
        problems = slotProblem(problems, problemOf(p.error), slot)
      } else {
        const open = cache.breaker?.state === 'open'
        problems = slotProblem(problems, open ? ProblemKind.Open : ProblemKind.Pending, slot)
        if (!open) this.#refreshKeyed(slot, k, raw, ctx)
      }
    }
    const fns = this.fns
    for (let i = 0; i < fns.length; i++) {
      const slot = fns[i] as Slot
      if (level < slot.minLevel) continue
      // A throw from the enricher or from reading its result (a getter, a Proxy trap) is its failure.
      try {
        const r: unknown = (slot.fn as EnricherFn)(ctx)
        if (r === undefined || r === null) continue
        // The usual result, a fresh flat object of primitives, is copied in one pass.
        if (
          typeof r === 'object' &&
          Object.getPrototypeOf(r) === Object.prototype &&
          copyFlat(r as Fields, out, this.coreKeys, slot, this.#maxFieldBytes)
        ) {
          continue
        }
        if (isThenableValue(r)) {
          // A snapshot cannot wait; the promise's outcome is only observed.
          Promise.resolve(r).catch(noop)
          problems = addProblem(problems, ProblemKind.Pending, slot.name)
          continue
        }
        problems = this.#assignFnResult(slot, r, out, problems, false)
      } catch (e) {
        problems = this.#fnFailed(slot, e, problems)
      }
    }
    const c = ctx.context
    if (c !== undefined) {
      const refused = writeContexts(c, level, out)
      if (refused !== undefined) problems = mergeProblems(problems, refused)
    }
    return problems
  }

  /**
   * Gathers a line's enrichment: what is ready now synchronously, the rest as
   * it arrives until `done` is set. `onReady` runs once nothing is awaited.
   * @internal
   */
  gather(g: Gathering, writeContexts: ContextWriter<Problems> = this.writeContexts): void {
    const outer = beginLine()
    this.enriching++
    try {
      this.#gather(g, writeContexts)
    } finally {
      this.enriching--
      endLine(outer)
    }
  }

  #gather(g: Gathering, writeContexts: ContextWriter<Problems>): void {
    const ctx = g.ctx
    const keyed = this.keyed
    const fns = this.fns
    for (let i = 0; i < keyed.length; i++) {
      const slot = keyed[i] as Slot
      if (ctx.level < slot.minLevel) continue
      const raw = this.#rawKey(slot, ctx)
      const k = toKey(raw)
      if (k === undefined) continue
      if (k === null) {
        g.problems = addProblem(g.problems, ProblemKind.Invalid, slot.name)
        continue
      }
      const cache = slot.cache as SmartCache<Prepared | undefined>
      const p = cache.lookup(k, g.now)
      if (p.state === EntryState.Fresh || p.state === EntryState.Stale) {
        this.#gathered(g, i, slot, p.value, p.state === EntryState.Stale)
        if (p.state === EntryState.Stale && p.error === undefined) this.#refreshKeyed(slot, k, raw, ctx)
        continue
      }
      // The error tier and an open breaker are known now: nothing to wait for.
      const open = p.state === EntryState.Miss && cache.breaker?.state === 'open'
      if (p.state === EntryState.Error || open) {
        g.parts[i] = slot.fallback
        g.problems = slotProblem(g.problems, open ? ProblemKind.Open : problemOf(p.error), slot)
        continue
      }
      this.#wait(
        g,
        i,
        slot,
        cache.load(k, (_k, { signal }) => this.compute(slot, raw, ctx, signal)),
        false,
      )
    }
    for (let j = 0; j < fns.length; j++) {
      const slot = fns[j] as Slot
      const i = keyed.length + j
      if (ctx.level < slot.minLevel) continue
      // A throw from the enricher or from reading its result (a getter, a Proxy trap) is its failure.
      try {
        const r: unknown = (slot.fn as EnricherFn)(ctx)
        if (r === undefined || r === null) continue
        if (isThenableValue(r)) {
          this.#wait(
            g,
            i,
            slot,
            Promise.resolve(r).then((v) => {
              const s = sanitizeFields(v, this.#maxFieldBytes, this.coreKeys, undefined)
              if (s.problem !== undefined) slot.invalid++
              const prepared: Prepared = { fields: s.fields, invalid: s.problem !== undefined, gen: this.coreGen }
              return prepared
            }),
            false,
          )
          continue
        }
        const out: Fields = {}
        g.problems = this.#assignFnResult(slot, r, out, g.problems, true)
        g.parts[i] = out
      } catch (e) {
        g.problems = this.#fnFailed(slot, e, g.problems)
      }
    }
    const c = ctx.context
    if (c !== undefined && this.contexts.length !== 0) {
      const out: Fields = {}
      const refused = writeContexts(c, ctx.level, out)
      if (refused !== undefined) g.problems = mergeProblems(g.problems, refused)
      g.parts[keyed.length + fns.length] = out
    }
  }

  /** Copies every global value for a record of `level` into `out`. @internal */
  assignGlobals(level: number, out: Fields): void {
    this.#globals.assign(level, out)
  }

  /** Merges a gathering's parts into `out` in registration order. @internal */
  mergeParts(g: Gathering, out: Fields): void {
    const parts = g.parts
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]
      if (part !== undefined) Object.assign(out, part)
    }
  }

  #wait(g: Gathering, i: number, slot: Slot, promise: Promise<Prepared | undefined>, stale: boolean): void {
    // One reaction per compute, however many lines wait on it (single flight).
    let set = this.#waiters.get(promise)
    if (set === undefined) {
      const s = new Set<Waiter>()
      set = s
      this.#waiters.set(promise, s)
      promise.then(
        (v) => {
          for (const w of s) this.#settled(w, v, undefined, true)
          s.clear()
        },
        (e: unknown) => {
          for (const w of s) this.#settled(w, undefined, e, false)
          s.clear()
        },
      )
    }
    const w: Waiter = { slot, i, g, stale, set }
    set.add(w)
    g.waiting = g.waiting === undefined ? [w] : [...g.waiting, w]
  }

  #settled(w: Waiter, v: Prepared | undefined, e: unknown, ok: boolean): void {
    const { g, slot, i } = w
    if (g.done || g.waiting === undefined) return
    if (ok) {
      this.#gathered(g, i, slot, v, w.stale)
    } else {
      g.parts[i] = slot.fallback
      if (slot.fn !== undefined) {
        slot.errors++
        this.#emitError(slot, e)
      }
      const kind = problemOf(e)
      if (kind === ProblemKind.Busy) slot.busy++
      g.problems = addProblem(g.problems, kind, slot.name)
    }
    g.waiting = g.waiting.filter((x) => x !== w)
    if (g.waiting.length === 0) {
      g.waiting = undefined
      g.onReady?.()
    }
  }

  #gathered(g: Gathering, i: number, slot: Slot, v: Prepared | undefined, stale: boolean): void {
    g.parts[i] = this.fieldsOf(v)
    if (v?.invalid) g.problems = addProblem(g.problems, ProblemKind.Invalid, slot.name)
    if (stale) g.problems = addProblem(g.problems, ProblemKind.Stale, slot.name)
  }

  /** Marks what a gathering still waits for as timed out. @internal */
  timeOut(g: Gathering): void {
    g.done = true
    if (g.waiting === undefined) return
    for (const w of g.waiting) {
      w.set.delete(w)
      const { slot, i } = w
      slot.lineTimeouts++
      if (slot.fallback !== undefined) g.parts[i] = slot.fallback
      g.problems = addProblem(g.problems, ProblemKind.Timeout, slot.name)
    }
    g.waiting = undefined
    this.counters.timedOut++
  }

  #refreshKeyed(slot: Slot, k: string, raw: unknown, ctx: EnrichContext): void {
    ;(slot.cache as SmartCache<Prepared | undefined>).refresh(k, (_k, { signal }) =>
      this.compute(slot, raw, ctx, signal),
    )
  }

  /** The key function's raw result, or {@link KEY_FAILED} when it threw. */
  #rawKey(slot: Slot, ctx: EnrichContext): unknown {
    try {
      return (slot.def as Enricher).key?.(ctx)
    } catch {
      return KEY_FAILED
    }
  }

  #fnFailed(slot: Slot, e: unknown, problems: Problems | undefined): Problems {
    slot.errors++
    this.#emitError(slot, e)
    return addProblem(problems, ProblemKind.Error, slot.name)
  }

  #emitError(slot: Slot, e: unknown): void {
    if (this.#events.hasListeners)
      this.#events.emit({ type: 'error', enricher: slot.name, code: errorKind(e), error: e })
  }

  /**
   * Copies a function enricher's output. Flat objects of primitives (the usual
   * request fields) are copied directly, unless `tryFlat` is false because the
   * caller just tried; anything else is sanitized.
   */
  #assignFnResult(
    slot: Slot,
    r: unknown,
    out: Fields,
    problems: Problems | undefined,
    tryFlat: boolean,
  ): Problems | undefined {
    if (typeof r !== 'object' || r === null || Array.isArray(r)) {
      slot.invalid++
      return addProblem(problems, ProblemKind.Invalid, slot.name)
    }
    if (
      tryFlat &&
      Object.getPrototypeOf(r) === Object.prototype &&
      copyFlat(r as Fields, out, this.coreKeys, slot, this.#maxFieldBytes)
    ) {
      return problems
    }
    const s = sanitizeFields(r, this.#maxFieldBytes, this.coreKeys, undefined)
    if (s.fields !== undefined) Object.assign(out, s.fields)
    if (s.problem !== undefined) {
      slot.invalid++
      return addProblem(problems, ProblemKind.Invalid, slot.name)
    }
    return problems
  }

  /** The record's problems merged with the global ones, or undefined when there are none. @internal */
  problemsFor(local: Problems | undefined): Problems | undefined {
    return this.#globals.problemsFor(local)
  }

  /**
   * Everything ready now for a record, synchronously: global values, keyed
   * values from their caches, function enrichers, and problems under
   * `errorKey`. Starts background refreshes for what is missing or stale;
   * never waits.
   */
  snapshot(ctx: Partial<EnrichContext> = {}): Fields {
    const full = fullContext(ctx, this)
    const now = this.clock.now()
    if (now >= this.nextCheck) this.prepareGlobals()
    const out: Fields = {}
    this.assignGlobals(full.level, out)
    const problems = this.problemsFor(this.collectNow(full, out, undefined, now))
    if (problems !== undefined) out[this.errorKey] = problems
    return out
  }

  /**
   * Runs every enricher concurrently and resolves with what is ready by
   * `deadlineMs` at the latest. Never rejects: problems are under `errorKey`.
   * While it waits it keeps the process alive (`deadlineMs` at most).
   */
  enrich(ctx: Partial<EnrichContext> = {}): Promise<Fields> {
    const full = fullContext(ctx, this)
    const now = this.clock.now()
    if (now >= this.nextCheck) this.prepareGlobals()
    const g: Gathering = {
      ctx: full,
      now,
      parts: [],
      problems: undefined,
      waiting: undefined,
      done: false,
      onReady: undefined,
    }
    this.gather(g)
    const finish = (): Fields => {
      g.done = true
      const out: Fields = {}
      this.assignGlobals(full.level, out)
      this.mergeParts(g, out)
      const problems = this.problemsFor(g.problems)
      if (problems !== undefined) out[this.errorKey] = problems
      return out
    }
    if (g.waiting === undefined) return Promise.resolve(finish())
    return new Promise<Fields>((resolve) => {
      const timer = setTimeout(() => {
        this.timeOut(g)
        resolve(finish())
      }, this.deadlineMs)
      // Not unref'd: an awaited enrich() resolves by deadlineMs even when nothing else is alive.
      g.onReady = () => {
        clearTimeout(timer)
        resolve(finish())
      }
    })
  }

  /**
   * Computes every global enricher now, so the first lines carry their values.
   * Resolves when all have settled or after `timeoutMs` (default 1 000); rejects only for a bad `timeoutMs`.
   * While it waits it keeps the process alive (`timeoutMs` at most).
   *
   * @throws RangeError (as a rejection) for a `timeoutMs` that is not an integer from 0 to 2^31 - 1
   */
  async ready(options: { timeoutMs?: number } = {}): Promise<ReadyResult> {
    const timeoutMs = options.timeoutMs ?? 1_000
    checkMs('timeoutMs', timeoutMs)
    return this.#globals.warm(timeoutMs)
  }

  /**
   * Options to pass to `pino()`: your own pino options in, enriched options
   * out. See {@link EnrichPinoOptions}.
   *
   * @throws TypeError for an unknown `mode`
   */
  pinoOptions(options?: EnrichPinoOptions): LoggerOptions {
    return buildPinoOptions(this.#e, options)
  }

  /**
   * Writes every pending deferred line, waiting at most their deadlines
   * (`deadlineMs` after the last call). While it waits it keeps the process alive.
   */
  flush(): Promise<void> {
    return this.#e.flush()
  }

  /**
   * Stops refresh timers, writes pending lines and aborts running computes,
   * taking at most `closeTimeoutMs`. Afterwards nothing of the pipeline keeps
   * the process alive; lines logged later are written with what was left.
   */
  close(): Promise<void> {
    return this.#e.close()
  }

  /**
   * Opt-in shutdown: on SIGTERM or SIGINT, close (writing pending lines) and
   * flush pino's destinations. Further signals while that close runs are
   * absorbed: Node's default action would kill the process with its lines
   * unwritten. Once the close has finished, or `closeTimeoutMs` plus 1 s has
   * passed:
   *
   * - with no other listener for the signal, it exits with 128 + the signal
   *   number (143 for SIGTERM, 130 for SIGINT);
   * - beside the application's own listener for it (an HTTP server draining on
   *   SIGTERM), it leaves the exit to that listener, whose drain and exit code
   *   stand. Lines logged after the close are written at once, with what is ready.
   *
   * `options.exit` overrides that choice: `true` always exits, `false` never does.
   *
   * @param signals the signals handled. Default `['SIGTERM', 'SIGINT']`.
   * @returns a disposer that removes the handlers
   * @throws TypeError for a signal Node does not know or an `exit` that is not a boolean, quoting the value
   */
  handleSignals(
    signals: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'],
    options: HandleSignalsOptions = {},
  ): Disposer {
    return handleSignals(() => this.close(), this.closeTimeoutMs, signals, options)
  }

  /** Listens to every pipeline event; returns a disposer. */
  readonly onEvent: EventSource<PipelineEvent> = (listener) => this.#events.on(listener)

  /** Breaker transitions of any enricher. A breaker opening is reported once per open period. */
  onBreakerChange(listener: (e: Extract<PipelineEvent, { type: 'breaker' }>) => void): Disposer {
    return this.#events.on((e) => e.type === 'breaker' && listener(e))
  }

  /** Enricher compute failures (one per failed compute, not per line). */
  onEnricherError(listener: (e: Extract<PipelineEvent, { type: 'error' }>) => void): Disposer {
    return this.#events.on((e) => e.type === 'error' && listener(e))
  }

  /** Enricher computes that passed their `timeoutMs`. */
  onTimeout(listener: (e: Extract<PipelineEvent, { type: 'timeout' }>) => void): Disposer {
    return this.#events.on((e) => e.type === 'timeout' && listener(e))
  }

  /** Figures per enricher and per line. Walks the caches: not for a hot path. */
  stats(): PipelineStats {
    return statsOf(this.#registry.slots, this.#e.counters, this.#e.pendingCount())
  }

  /** {@link stats} in the Prometheus text exposition format (0.0.4). */
  metrics(): string {
    return formatMetrics(this.stats())
  }
}

/** Creates a pipeline. */
export function createPipeline(options?: PipelineOptions): Pipeline {
  return new Pipeline(options)
}

/** The shared pipeline that {@link registerEnricher} registers into. */
export const defaultPipeline: Pipeline = new Pipeline()

/** Registers an enricher into {@link defaultPipeline}; returns its unregister function. */
export function registerEnricher(enricher: AnyEnricher): Disposer {
  return defaultPipeline.register(enricher)
}

function fullContext(ctx: Partial<EnrichContext>, p: Pipeline): EnrichContext {
  return {
    level: ctx.level ?? 30,
    time: ctx.time ?? p.clock.now(),
    record: ctx.record ?? EMPTY,
    context: ctx.context ?? p.context.get(),
  }
}

/** A cache key from a key function's result: undefined to skip, null when unusable. */
function toKey(raw: unknown): string | undefined | null {
  if (raw === undefined || raw === null) return undefined
  if (typeof raw === 'string') return raw
  if (typeof raw === 'number' || typeof raw === 'bigint' || typeof raw === 'boolean') return String(raw)
  return null
}

/**
 * Copies a flat object of primitives into `out` and returns true; returns
 * false, having written nothing, at the first key or value that needs the
 * sanitizer, or when the output is over `maxBytes`. Each value is read once.
 */
function copyFlat(r: Fields, out: Fields, drop: ReadonlySet<string>, slot: Slot, maxBytes: number): boolean {
  const keys = Object.keys(r)
  // Keys are checked once per shape: a function returns the same keys line after line.
  const last = slot.flatKeys
  let known = last !== undefined && last.length === keys.length
  if (known) {
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== (last as string[])[i]) {
        known = false
        break
      }
    }
  }
  let budget = maxBytes
  const values: unknown[] = new Array(keys.length)
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string
    const v = r[key]
    const t = typeof v
    if (t === 'string') {
      if ((v as string).length > 1024) return false
      budget -= (v as string).length
    } else if (t !== 'number' && t !== 'boolean' && t !== 'undefined') {
      return false
    }
    budget -= key.length + 8
    if (budget < 0) return false
    if (!known && (drop.has(key) || UNSAFE_FLAT_KEYS.has(key))) return false
    values[i] = v
  }
  for (let i = 0; i < keys.length; i++) if (values[i] !== undefined) out[keys[i] as string] = values[i]
  if (!known) slot.flatKeys = keys
  return true
}

const UNSAFE_FLAT_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype', 'then'])

function isThenableValue(v: unknown): v is PromiseLike<unknown> {
  if (typeof v !== 'object' && typeof v !== 'function') return false
  try {
    return typeof (v as { then?: unknown }).then === 'function'
  } catch {
    return false
  }
}
