/** Counts failures in a row; any success resets the count. */
export class ConsecutiveFailures {
  readonly threshold: number
  #count = 0

  constructor(threshold: number) {
    this.threshold = threshold
  }

  /** Records one outcome; returns true when the breaker should open. */
  record(success: boolean): boolean {
    if (success) {
      this.#count = 0
      return false
    }
    this.#count++
    return this.#count >= this.threshold
  }

  reset(): void {
    this.#count = 0
  }
}
