// The burst part of `npm run bench`: the enrichment transport with a keyed
// enricher in the worker under a burst, each round in a fresh process. What
// counts is how many lines go out without a value their key has cached.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { median } from './measure.js'
import type { Row } from './table.js'

const worker = fileURLToPath(new URL('./burst-worker.ts', import.meta.url))
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)

interface Sample {
  ms: number
  lines: number
  withoutAfterFirst: number
  timedOut: number
}

export async function runBurstBench(): Promise<Row[]> {
  const samples: Sample[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const text = execFileSync(process.execPath, ['--import', 'tsx', worker], { encoding: 'utf8' })
    samples.push(JSON.parse(text.trim().split('\n').pop() as string) as Sample)
  }
  const lines = samples[0]?.lines ?? 0
  const pct = samples.map((s) => (100 * s.withoutAfterFirst) / s.lines)
  const worst = Math.max(...pct)
  return [
    {
      bench: `transport burst: ${lines} lines of 300 users, keyed lookup in the worker; lines without their user after the first line of each key`,
      value: `median ${median(pct).toFixed(2)}%, worst ${worst.toFixed(2)}% of ${ROUNDS} runs; ${median(samples.map((s) => s.timedOut))} timed out`,
      ratio: '',
      target: '< 1%',
      verdict: worst < 1 ? 'ok' : 'MISSED',
    },
    {
      bench: 'transport burst: first line logged to last line written (for reference)',
      value: `${median(samples.map((s) => s.ms)).toFixed(0)} ms`,
      ratio: '',
      target: '',
      verdict: '',
    },
  ]
}
