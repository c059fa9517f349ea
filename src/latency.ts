const SIZE = 1024

/** The last 1 024 durations of something, for p50 and p99 without unbounded memory. */
export class LatencyWindow {
  readonly #samples = new Float64Array(SIZE)
  #count = 0

  record(ms: number): void {
    this.#samples[this.#count % SIZE] = ms
    this.#count++
  }

  /** `{ p50, p99 }` in ms over the window; 0 before the first sample. */
  quantiles(): { p50: number; p99: number } {
    const n = Math.min(this.#count, SIZE)
    if (n === 0) return { p50: 0, p99: 0 }
    const sorted = this.#samples.slice(0, n).sort()
    const at = (q: number): number => sorted[Math.min(n - 1, Math.floor(q * n))] ?? 0
    return { p50: at(0.5), p99: at(0.99) }
  }
}
