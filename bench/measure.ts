// Shared by the benchmark sections: medians, and paired rounds of two contenders.

/** Median of `xs`. */
export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

/** Two contenders measured in the same rounds. */
export interface Paired {
  a: number
  b: number
  /** Median of the per-round a / b: steadier than the ratio of the medians. */
  ratio: number
  /** Median of the per-round a - b. */
  diff: number
}

/** Runs `a` and `b` once per round after `warmup` rounds, alternating which goes first. */
export async function paired(
  a: () => Promise<number> | number,
  b: () => Promise<number> | number,
  warmup: number,
  rounds: number,
): Promise<Paired> {
  const as: number[] = []
  const bs: number[] = []
  for (let r = 0; r < warmup + rounds; r++) {
    const first = r % 2 === 0
    const x = first ? await a() : await b()
    const y = first ? await b() : await a()
    if (r < warmup) continue
    as.push(first ? x : y)
    bs.push(first ? y : x)
  }
  return {
    a: median(as),
    b: median(bs),
    ratio: median(as.map((x, i) => x / (bs[i] as number))),
    diff: median(as.map((x, i) => x - (bs[i] as number))),
  }
}
