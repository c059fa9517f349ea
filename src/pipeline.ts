import type { LoggerOptions } from 'pino'
import { type Clock, monotonicClock, systemClock } from './clock.js'
import { type ContextHelpers, type ContextSource, createContext, type RequestContext } from './context/als.js'
import { deferEnrichment, Enrichment, type EnrichmentSettings } from './core/enrichment.js'
import type { ReadyResult } from './core/globals.js'
import { formatMetrics, type PipelineStats, statsOf } from './core/metrics.js'
import { CORE_KEYS, type PipelineEvent } from './core/registry.js'
import { type HandleSignalsOptions, handleSignals } from './core/signals.js'
import type { AnyEnricher, EnrichContext, Fields } from './enricher.js'
import type { Disposer, EventSource } from './events.js'
import { buildPinoOptions, type EnrichPinoOptions } from './pino/options.js'
import { UNSAFE_KEYS } from './util/keys.js'
import { checkMs, definedOnly } from './util/validate.js'

export type { ReadyResult } from './core/globals.js'
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
  readonly #settings: EnrichmentSettings
  #made: Enrichment | undefined

  /** @throws RangeError or TypeError for bad options, quoting the value. */
  constructor(options: PipelineOptions = {}) {
    const o = { ...PIPELINE_DEFAULTS, ...definedOnly(options, 'createPipeline') }
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
    // Written beside pino's own keys, one of them would appear twice in the line (and
    // JSON readers keep the last); on an object, `__proto__` would set its prototype.
    if (CORE_KEYS.includes(o.errorKey) || UNSAFE_KEYS.has(o.errorKey)) {
      throw new TypeError(
        `errorKey must not be one of pino's own keys (${CORE_KEYS.join(', ')}) or ${Array.from(UNSAFE_KEYS).join(', ')}, received ${JSON.stringify(o.errorKey)}`,
      )
    }
    this.deadlineMs = o.deadlineMs
    this.errorKey = o.errorKey
    this.closeTimeoutMs = o.closeTimeoutMs
    this.maxPending = o.maxPending
    this.context = createContext<RequestContext>(options.context)
    this.#settings = {
      deadlineMs: o.deadlineMs,
      errorKey: o.errorKey,
      closeTimeoutMs: o.closeTimeoutMs,
      maxPending: o.maxPending,
      timeoutMs: o.timeoutMs,
      maxFieldBytes: o.maxFieldBytes,
      maxKeyLength: o.maxKeyLength,
      clock: options.clock,
      context: options.context,
      helpers: this.context,
    }
    deferEnrichment(this, () => this.#e)
    for (const e of options.enrichers ?? []) this.register(e)
  }

  /**
   * The working part, made on first use rather than here: `defaultPipeline` is
   * constructed when the package is imported, and making its registry, global
   * values and collector then was about half of the core entry's top-level run
   * (docs/architecture.md, "Import time"). Options are checked above, at
   * construction, as before; the cost moves to the first `register()`,
   * `pinoOptions()` or other call, never to a log line.
   */
  get #e(): Enrichment {
    if (this.#made === undefined) this.#made = new Enrichment(this, this.#settings)
    return this.#made
  }

  /**
   * Adds an enricher. Global enrichers start computing in the background at once.
   *
   * @returns a function that removes it again
   * @throws TypeError when an enricher of the same name is registered, or the enricher is malformed
   */
  register(enricher: AnyEnricher): Disposer {
    return this.#e.register(enricher)
  }

  /**
   * Everything ready now for a record, synchronously: global values, keyed
   * values from their caches, function enrichers, and problems under
   * `errorKey`. Starts background refreshes for what is missing or stale;
   * never waits.
   */
  snapshot(ctx: Partial<EnrichContext> = {}): Fields {
    return this.#e.snapshot(ctx)
  }

  /**
   * Runs every enricher concurrently and resolves with what is ready by
   * `deadlineMs` at the latest. Never rejects: problems are under `errorKey`.
   * While it waits it keeps the process alive (`deadlineMs` at most).
   */
  enrich(ctx: Partial<EnrichContext> = {}): Promise<Fields> {
    return this.#e.enrich(ctx)
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
    return this.#e.globals.warm(timeoutMs)
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
  readonly onEvent: EventSource<PipelineEvent> = (listener) => this.#e.events.on(listener)

  /** Breaker transitions of any enricher. A breaker opening is reported once per open period. */
  onBreakerChange(listener: (e: Extract<PipelineEvent, { type: 'breaker' }>) => void): Disposer {
    return this.#e.events.on((e) => e.type === 'breaker' && listener(e))
  }

  /** Enricher compute failures (one per failed compute, not per line). */
  onEnricherError(listener: (e: Extract<PipelineEvent, { type: 'error' }>) => void): Disposer {
    return this.#e.events.on((e) => e.type === 'error' && listener(e))
  }

  /** Enricher computes that passed their `timeoutMs`. */
  onTimeout(listener: (e: Extract<PipelineEvent, { type: 'timeout' }>) => void): Disposer {
    return this.#e.events.on((e) => e.type === 'timeout' && listener(e))
  }

  /** Figures per enricher and per line. Walks the caches: not for a hot path. */
  stats(): PipelineStats {
    const e = this.#e
    return statsOf(e.registry.slots, e.counters, e.pendingCount())
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
