import type { Clock } from '../clock.js'

const BUCKETS = 10

/**
 * Failure rate over a sliding window of `windowMs`, kept in ten fixed buckets
 * so memory stays constant however many calls arrive.
 */
export class FailureRate {
  readonly rate: number
  readonly windowMs: number
  readonly minimumCalls: number
  readonly #clock: Clock
  readonly #bucketMs: number
  readonly #calls = new Array<number>(BUCKETS).fill(0)
  readonly #failures = new Array<number>(BUCKETS).fill(0)
  #bucketStart = new Array<number>(BUCKETS).fill(Number.NEGATIVE_INFINITY)

  constructor(rate: number, windowMs: number, minimumCalls: number, clock: Clock) {
    this.rate = rate
    this.windowMs = windowMs
    this.minimumCalls = minimumCalls
    this.#clock = clock
    this.#bucketMs = windowMs / BUCKETS
  }

  /** Records one outcome; returns true when the breaker should open. */
  record(success: boolean): boolean {
    const now = this.#clock.now()
    const slot = Math.floor(now / this.#bucketMs)
    const i = ((slot % BUCKETS) + BUCKETS) % BUCKETS
    const start = slot * this.#bucketMs
    if (this.#bucketStart[i] !== start) {
      this.#bucketStart[i] = start
      this.#calls[i] = 0
      this.#failures[i] = 0
    }
    this.#calls[i] = (this.#calls[i] ?? 0) + 1
    if (!success) this.#failures[i] = (this.#failures[i] ?? 0) + 1

    let calls = 0
    let failures = 0
    const oldest = now - this.windowMs
    for (let b = 0; b < BUCKETS; b++) {
      if ((this.#bucketStart[b] ?? Number.NEGATIVE_INFINITY) > oldest - this.#bucketMs) {
        calls += this.#calls[b] ?? 0
        failures += this.#failures[b] ?? 0
      }
    }
    return !success && calls >= this.minimumCalls && failures / calls > this.rate
  }

  reset(): void {
    this.#bucketStart = new Array<number>(BUCKETS).fill(Number.NEGATIVE_INFINITY)
  }
}
