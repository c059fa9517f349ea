import { type Clock, monotonicClock, systemClock } from '../clock.js'
import { type ContextHelpers, type ContextSource, createContext, type RequestContext } from '../context/als.js'
import type { ContextWriter } from '../context/writer.js'
import type { EnrichContext, Fields } from '../enricher.js'
import { Emitter } from '../events.js'
import { within } from '../util/async.js'
import { Globals } from './globals.js'
import type { Gathering } from './line.js'
import type { LineCounters } from './metrics.js'
import type { ActiveQueue, QueueHost } from './ordered-queue.js'
import type { Problems } from './problems.js'
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
}

/**
 * The log path's read of keyed and function enrichers, and what becomes of
 * a line's gathering: what the pino layer and the transport call per line.
 */
export interface LinePath {
  /**
   * Above 0 while a line's keyed and function enrichers run: a log call made
   * from inside one (a `key()` or a function that logs) is written without
   * enrichment, once, instead of re-entering it line after line.
   */
  readonly enriching: number
  /**
   * Adds what keyed and function enrichers have ready now to `out`, starting
   * background refreshes for what is missing or stale. Never waits. Returns the
   * problems met, or undefined.
   */
  collectNow(
    ctx: EnrichContext,
    out: Fields,
    into: Problems | undefined,
    now: number,
    writeContexts?: ContextWriter<Problems>,
  ): Problems | undefined
  /**
   * Gathers a line's enrichment: what is ready now synchronously, the rest as
   * it arrives until `done` is set. `onReady` runs once nothing is awaited.
   */
  gather(g: Gathering, writeContexts?: ContextWriter<Problems>): void
  /** Marks what a gathering still waits for as timed out. */
  timeOut(g: Gathering): void
  /** Merges a gathering's parts into `out` in registration order. */
  mergeParts(g: Gathering, out: Fields): void
}

/** Each pipeline's enrichment, by the pipeline: reachable by the layers that hold the pipeline, not through it. */
const byOwner = new WeakMap<object, Enrichment>()

/**
 * The working part of a pipeline, as the pino layer and the transport worker
 * receive it: the registry, the counters, the deferred queues with lines
 * waiting, and the lifecycle state. The Pipeline facade holds one and
 * delegates to it; nothing here is public API.
 */
export class Enrichment implements QueueHost<Gathering> {
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
  /** The read of keyed and function enrichers and the gathering of lines. */
  readonly collect: LinePath
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
  constructor(owner: object, settings: EnrichmentSettings, collect: LinePath) {
    this.collect = collect
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
    this.context = createContext<RequestContext>(settings.context)
    byOwner.set(owner, this)
  }

  /** For the queues: a line past its deadline is written with what is ready. */
  timeOut(line: Gathering): void {
    this.collect.timeOut(line)
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
  return e
}
