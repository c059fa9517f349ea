import { type Clock, monotonicClock, systemClock } from '../clock.js'
import { type ContextHelpers, type ContextSource, createContext, type RequestContext } from '../context/als.js'
import type { AnyEnricher, EnrichContext, Fields } from '../enricher.js'
import { type Disposer, Emitter } from '../events.js'
import { within } from '../util/async.js'
import { EMPTY } from '../util/constants.js'
import { Collector } from './collect.js'
import { Globals } from './globals.js'
import { Line } from './line.js'
import type { LineCounters } from './metrics.js'
import type { ActiveQueue, QueueHost } from './ordered-queue.js'
import { type PipelineEvent, Registry } from './registry.js'

/** A pipeline's options, resolved and checked: what its {@link Enrichment} is made with. */
export interface EnrichmentSettings {
  readonly deadlineMs: number
  readonly errorKey: string
  readonly closeTimeoutMs: number
  readonly maxPending: number
  readonly timeoutMs: number
  readonly maxFieldBytes: number
  readonly maxKeyLength: number
  /** The injected clock, if any: then used for deadlines too. */
  readonly clock: Clock | undefined
  readonly context: ContextSource | undefined
  /** The helpers already made from `context` by the owner, which checked it at its own construction. */
  readonly helpers?: ContextHelpers<RequestContext>
}

/** Each pipeline's enrichment, by the pipeline: reachable by the layers that hold the pipeline, not through it. */
const byOwner = new WeakMap<object, Enrichment | (() => Enrichment)>()

/**
 * The working part of a pipeline, as the pino layer and the transport worker
 * receive it: the registry of enrichers, their global values, the log path's
 * read ({@link Collector}), the line counters, the deferred queues with lines
 * waiting, and the lifecycle. The Pipeline facade holds one and delegates to
 * it; nothing here is public API. The pino layer takes the parts it reads per
 * line from here once, when a logger is made.
 */
export class Enrichment implements QueueHost<Line> {
  readonly deadlineMs: number
  readonly errorKey: string
  readonly closeTimeoutMs: number
  readonly maxPending: number
  /** Line times and cache lifetimes. */
  readonly clock: Clock
  /** Deadlines and added delays are measured on this: the injected clock, else a monotonic one. */
  readonly ticks: Clock
  /** The request context that `ctx.context` holds: the pipeline's own AsyncLocalStorage, or the `context` option's. */
  readonly context: ContextHelpers<RequestContext>
  readonly events = new Emitter<PipelineEvent>()
  readonly registry: Registry
  readonly globals: Globals
  /** The read of keyed and function enrichers, and the gathering of lines that may wait. */
  readonly collect: Collector
  readonly counters: LineCounters = { enriched: 0, timedOut: 0, dropped: 0, afterClose: 0, maxAddedDelayMs: 0 }
  /**
   * Deferred queues with lines waiting. A queue is here only while it holds
   * lines, so a dropped logger with nothing pending is not kept alive.
   */
  readonly queues = new Set<ActiveQueue>()
  /** Set once `close()` has written what was pending: later lines are written with what is left. */
  closed = false
  #closing: Promise<void> | undefined

  /** @throws TypeError for a `context` that is neither an AsyncLocalStorage nor a getter */
  constructor(owner: object, settings: EnrichmentSettings) {
    this.deadlineMs = settings.deadlineMs
    this.errorKey = settings.errorKey
    this.closeTimeoutMs = settings.closeTimeoutMs
    this.maxPending = settings.maxPending
    this.clock = settings.clock ?? systemClock
    this.ticks = settings.clock ?? monotonicClock
    this.registry = new Registry({
      clock: this.clock,
      timeoutMs: settings.timeoutMs,
      maxFieldBytes: settings.maxFieldBytes,
      maxKeyLength: settings.maxKeyLength,
      errorKey: settings.errorKey,
      events: this.events,
    })
    this.globals = new Globals(this.registry, this.clock)
    this.registry.onChange = () => this.globals.prepare()
    this.collect = new Collector(this.registry, this.counters)
    this.context = settings.helpers ?? createContext<RequestContext>(settings.context)
    byOwner.set(owner, this)
  }

  /**
   * Adds an enricher; a global one starts computing in the background at once.
   * @returns a function that removes it again
   * @throws TypeError when an enricher of the same name is registered, or the enricher is malformed
   */
  register(enricher: AnyEnricher): Disposer {
    const slot = this.registry.add(enricher)
    if (slot.global) this.globals.start(slot)
    return () => this.registry.remove(slot)
  }

  /** For the queues: a line past its deadline is written with what is ready. */
  timeOut(line: Line): void {
    this.collect.timeOut(line)
  }

  /**
   * Everything ready now for a record, synchronously: global values, keyed
   * values from their caches, function enrichers, and problems under
   * `errorKey`. Starts background refreshes for what is missing or stale;
   * never waits.
   */
  snapshot(ctx: Partial<EnrichContext>): Fields {
    const full = this.#fullContext(ctx)
    const now = this.clock.now()
    const globals = this.globals
    if (now >= globals.nextCheck) globals.prepare()
    const out: Fields = {}
    globals.assign(full.level, out)
    const problems = globals.problemsFor(this.collect.collectNow(full, out, undefined, now))
    if (problems !== undefined) out[this.errorKey] = problems
    return out
  }

  /**
   * Runs every enricher concurrently and resolves with what is ready by
   * `deadlineMs` at the latest. Never rejects: problems are under `errorKey`.
   */
  enrich(ctx: Partial<EnrichContext>): Promise<Fields> {
    const full = this.#fullContext(ctx)
    const now = this.clock.now()
    const globals = this.globals
    if (now >= globals.nextCheck) globals.prepare()
    // The deadline counts from here: gathering runs each compute it starts up to its first await.
    const since = this.ticks.now()
    const line = new Line(full, now, this.deadlineMs)
    this.collect.gather(line)
    const finish = (): Fields => {
      line.done = true
      const out: Fields = {}
      globals.assign(full.level, out)
      line.mergeInto(out)
      const problems = globals.problemsFor(line.problems)
      if (problems !== undefined) out[this.errorKey] = problems
      return out
    }
    if (line.waiting === undefined) return Promise.resolve(finish())
    return new Promise<Fields>((resolve) => {
      const timer = setTimeout(
        () => {
          this.collect.timeOut(line)
          resolve(finish())
        },
        // At most deadlineMs: a clock that stepped back during the gather must not stretch it.
        Math.min(this.deadlineMs, Math.max(0, since + this.deadlineMs - this.ticks.now())),
      )
      // Not unref'd: an awaited enrich() resolves by deadlineMs even when nothing else is alive.
      line.onReady = () => {
        clearTimeout(timer)
        resolve(finish())
      }
    })
  }

  #fullContext(ctx: Partial<EnrichContext>): EnrichContext {
    return {
      level: ctx.level ?? 30,
      time: ctx.time ?? this.clock.now(),
      record: ctx.record ?? EMPTY,
      context: ctx.context ?? this.context.get(),
    }
  }

  /** Writes every pending deferred line, waiting at most their deadlines. */
  async flush(): Promise<void> {
    if (this.queues.size !== 0) await Promise.all(Array.from(this.queues, (q) => q.whenEmpty()))
  }

  /**
   * Stops refresh timers, writes pending lines and aborts running computes,
   * taking at most `closeTimeoutMs`; once, however often it is called.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    for (const slot of this.registry.slots) if (slot.timer !== undefined) clearInterval(slot.timer)
    // A close() under way holds the process (closeTimeoutMs at most), so that
    // an awaited close() returns rather than the process exiting under it.
    await within(this.flush(), this.closeTimeoutMs, true)
    this.closed = true
    this.globals.close()
    // Only queues with lines left are here: bounded by the lines, not the loggers.
    for (const q of Array.from(this.queues)) q.close()
    for (const slot of this.registry.slots) slot.dispose()
  }

  /** Deferred lines waiting now, in every queue. */
  pendingCount(): number {
    let n = 0
    for (const q of this.queues) n += q.size
    return n
  }
}

/**
 * The enrichment of a pipeline, for the layers that are handed the pipeline
 * itself (the transport worker's loader, tests).
 * @throws TypeError for anything that is not a pipeline
 */
export function enrichmentOf(owner: object): Enrichment {
  const e = byOwner.get(owner)
  if (e === undefined) throw new TypeError('not a pipeline made by createPipeline()')
  return typeof e === 'function' ? e() : e
}

/**
 * Makes `owner` known to {@link enrichmentOf} before its enrichment exists:
 * `make` builds it on the first call (and registers it in its place).
 */
export function deferEnrichment(owner: object, make: () => Enrichment): void {
  byOwner.set(owner, make)
}
