import { type Clock, systemClock } from '../clock.js'
import { Emitter, type EventSource } from '../events.js'
import { checkInteger, checkMs } from '../util/validate.js'
import { ConsecutiveFailures } from './consecutive.js'
import { FailureRate } from './failure-rate.js'

/** The breaker's states. */
export const BreakerState = {
  Closed: 'closed',
  Open: 'open',
  HalfOpen: 'half-open',
} as const
/** `'closed'`, `'open'` or `'half-open'`. */
export type BreakerState = (typeof BreakerState)[keyof typeof BreakerState]

/** Options of {@link CircuitBreaker}. Both strategies may be active at once. */
export interface BreakerOptions {
  /** Consecutive failures that open the breaker. Default 5; `0` turns this strategy off. */
  failureThreshold?: number
  /**
   * Failure rate (0..1, exclusive) over `windowMs` above which the breaker opens,
   * once `minimumCalls` calls were seen in the window. Default: off.
   */
  failureRate?: number
  /** Sliding window of the failure-rate strategy, in ms. Default 10 000. */
  windowMs?: number
  /** Calls needed in the window before the failure rate counts. Default 20. */
  minimumCalls?: number
  /** How long the breaker stays open before one probe may run, in ms. Default 10 000. */
  halfOpenAfterMs?: number
  /** Time source. Default {@link systemClock}. */
  clock?: Clock
}

/** Emitted on every state change. */
export interface BreakerChange {
  /** The breaker's name (its cache's or enricher's). */
  name: string
  /** State before the change. */
  from: BreakerState
  /** State after the change. */
  to: BreakerState
  /** Clock time of the change. */
  at: number
}

/** What {@link CircuitBreaker.acquire} granted. */
export const Permit = {
  /** Closed: run the call. */
  Call: 1,
  /** Half-open: run the one probe; report its outcome with `probe = true`. */
  Probe: 2,
  /** Open, or half-open with the probe already out: fail fast. */
  Denied: 0,
} as const
/** One of the {@link Permit} values. */
export type Permit = (typeof Permit)[keyof typeof Permit]

/** Defaults of {@link BreakerOptions}. */
export const BREAKER_DEFAULTS = {
  failureThreshold: 5,
  windowMs: 10_000,
  minimumCalls: 20,
  halfOpenAfterMs: 10_000,
} as const

/**
 * A small circuit breaker. Unlike cockatiel's, a half-open breaker never makes
 * callers wait for the probe: exactly one caller gets the probe permit and every
 * other caller is denied at once. It owns no timers: the open-to-half-open
 * transition happens on the first read after `halfOpenAfterMs`, by the clock.
 */
export class CircuitBreaker {
  /** Name used in events and errors. */
  readonly name: string
  /** How long the breaker stays open before a probe, in ms. */
  readonly halfOpenAfterMs: number
  readonly #clock: Clock
  readonly #consecutive: ConsecutiveFailures | undefined
  readonly #rate: FailureRate | undefined
  readonly #changes = new Emitter<BreakerChange>()
  #state: BreakerState = BreakerState.Closed
  #openedAt = 0
  #probeSince = Number.NaN
  #opens = 0

  /** @throws RangeError for a bad threshold, rate, window or delay, quoting the value. */
  constructor(name: string, options: BreakerOptions = {}) {
    this.name = name
    const threshold = options.failureThreshold ?? BREAKER_DEFAULTS.failureThreshold
    checkInteger('failureThreshold', threshold, 0)
    const halfOpenAfterMs = options.halfOpenAfterMs ?? BREAKER_DEFAULTS.halfOpenAfterMs
    checkMs('halfOpenAfterMs', halfOpenAfterMs, 0)
    this.halfOpenAfterMs = halfOpenAfterMs
    this.#clock = options.clock ?? systemClock
    this.#consecutive = threshold > 0 ? new ConsecutiveFailures(threshold) : undefined
    if (options.failureRate !== undefined) {
      const { failureRate } = options
      if (!(failureRate > 0 && failureRate < 1)) {
        throw new RangeError(`failureRate must be between 0 and 1 exclusive, received ${String(failureRate)}`)
      }
      const windowMs = options.windowMs ?? BREAKER_DEFAULTS.windowMs
      checkMs('windowMs', windowMs, 10)
      const minimumCalls = options.minimumCalls ?? BREAKER_DEFAULTS.minimumCalls
      checkInteger('minimumCalls', minimumCalls, 1)
      this.#rate = new FailureRate(failureRate, windowMs, minimumCalls, this.#clock)
    }
  }

  /** Current state; an open breaker past `halfOpenAfterMs` reads as half-open. */
  get state(): BreakerState {
    if (this.#state === BreakerState.Open && this.#clock.now() - this.#openedAt >= this.halfOpenAfterMs) {
      this.#transition(BreakerState.HalfOpen)
    }
    return this.#state
  }

  /** How many times the breaker has opened. */
  get opens(): number {
    return this.#opens
  }

  /** Clock time after which an open breaker admits a probe. */
  get retryAt(): number {
    return this.#openedAt + this.halfOpenAfterMs
  }

  /** Listen to state changes; returns a disposer. */
  readonly onStateChange: EventSource<BreakerChange> = (listener) => this.#changes.on(listener)

  /**
   * Asks to run a call. A probe that never reports back (a caller that lost
   * it) is given up after another `halfOpenAfterMs`, so the breaker cannot
   * stay half-open forever.
   */
  acquire(): Permit {
    const state = this.state
    if (state === BreakerState.Closed) return Permit.Call
    if (state === BreakerState.Open) return Permit.Denied
    const now = this.#clock.now()
    if (Number.isNaN(this.#probeSince) || now - this.#probeSince >= this.halfOpenAfterMs) {
      this.#probeSince = now
      return Permit.Probe
    }
    return Permit.Denied
  }

  /** Reports a success. */
  success(probe = false): void {
    if (probe) {
      this.#probeSince = Number.NaN
      this.#consecutive?.reset()
      this.#rate?.reset()
      if (this.#state !== BreakerState.Closed) this.#transition(BreakerState.Closed)
      return
    }
    this.#consecutive?.record(true)
    this.#rate?.record(true)
  }

  /** Reports a failure (a timeout is a failure). */
  failure(probe = false): void {
    if (probe) {
      this.#probeSince = Number.NaN
      this.#open()
      return
    }
    if (this.#state !== BreakerState.Closed) return
    const byCount = this.#consecutive?.record(false) ?? false
    const byRate = this.#rate?.record(false) ?? false
    if (byCount || byRate) this.#open()
  }

  /** Gives back a probe permit that was never used; the next caller may probe. */
  releaseProbe(): void {
    this.#probeSince = Number.NaN
  }

  /** Back to closed, counters cleared. */
  reset(): void {
    this.#consecutive?.reset()
    this.#rate?.reset()
    this.#probeSince = Number.NaN
    if (this.#state !== BreakerState.Closed) this.#transition(BreakerState.Closed)
  }

  #open(): void {
    this.#openedAt = this.#clock.now()
    this.#opens++
    this.#consecutive?.reset()
    this.#rate?.reset()
    this.#transition(BreakerState.Open)
  }

  #transition(to: BreakerState): void {
    const from = this.#state
    if (from === to) return
    this.#state = to
    if (this.#changes.hasListeners) {
      this.#changes.emit({ name: this.name, from, to, at: this.#clock.now() })
    }
  }
}
