/** An in-memory pino destination: every write is kept, parsed on demand. */
export interface Sink {
  write(chunk: string): void
  /** Raw chunks as written. */
  readonly chunks: string[]
  /** Every line parsed; fails the test on a line that is not JSON. */
  lines(): Array<Record<string, unknown>>
}

export function sink(): Sink {
  const chunks: string[] = []
  return {
    chunks,
    write(chunk: string) {
      chunks.push(chunk)
    },
    lines() {
      return chunks
        .join('')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
    },
  }
}
