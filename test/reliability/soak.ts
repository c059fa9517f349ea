// `npm run soak`: a flapping backend for SOAK_MS (default 120000, 2 minutes;
// longer on demand: SOAK_MS=3600000 npm run soak). Exits 1 when the RSS slope
// after warm-up (SOAK_WARMUP_MS, default a third of the run) reaches 1 MB/min,
// handles grow, a MaxListenersExceededWarning or an unhandled rejection is seen,
// or the application does not exit by itself after close().
import { runSoak, type SoakSample } from '../helpers/soak.js'

const durationMs = Number(process.env.SOAK_MS ?? 120_000)
const warmupMs = process.env.SOAK_WARMUP_MS === undefined ? undefined : Number(process.env.SOAK_WARMUP_MS)
const MB = 2 ** 20

process.stdout.write(`soak: ${durationMs / 1000} s, backend phases of 10 s (healthy, then failing)\n`)
const result = await runSoak({
  durationMs,
  ...(warmupMs === undefined ? {} : { warmupMs }),
  onLine: (line) => {
    if (!line.startsWith('SAMPLE ')) return
    const s = JSON.parse(line.slice(7)) as SoakSample
    if (Math.round(s.t / 1000) % 10 !== 0) return
    const handles = Object.values(s.resources).reduce((a, b) => a + b, 0)
    process.stdout.write(
      `  t=${(s.t / 1000).toFixed(0)}s rss=${(s.rss / MB).toFixed(1)}MB heap=${(s.heap / MB).toFixed(1)}MB handles=${handles} lines=${s.lines} breakers=${s.breaker}\n`,
    )
  },
})

const rows: Array<[string, string, boolean]> = [
  ['RSS slope after warm-up', `${result.rssSlopeMBPerMin.toFixed(3)} MB/min (limit < 1)`, result.rssSlopeMBPerMin < 1],
  ['heap slope after warm-up', `${result.heapSlopeMBPerMin.toFixed(3)} MB/min`, true],
  [
    'active handles',
    `${result.handlesMin}..${result.handlesMax}, median ${result.handlesEarlyMedian} early and ${result.handlesLateMedian} late, after close ${result.handlesAfterClose} (baseline ${result.handlesBaseline})`,
    !result.failures.some((f) => f.startsWith('handles')),
  ],
  [
    'MaxListenersExceededWarning',
    result.warnings.join(', ') || 'none',
    !result.warnings.includes('MaxListenersExceededWarning'),
  ],
  ['unhandled rejections', String(result.unhandled), result.unhandled === 0],
  [
    'exits by itself after close()',
    result.exitAfterCloseMs === null ? 'no' : `${result.exitAfterCloseMs.toFixed(1)} ms`,
    result.exitAfterCloseMs !== null && result.exitAfterCloseMs <= 1_000,
  ],
  ['lines logged', String(result.lines), result.lines > 0],
  ['backend requests', `${result.backendRequests} ${JSON.stringify(result.backendByMode)}`, true],
  ['pipeline events', JSON.stringify(result.events), true],
]
process.stdout.write('\n| check | measured | result |\n|---|---|---|\n')
for (const [check, measured, ok] of rows) process.stdout.write(`| ${check} | ${measured} | ${ok ? 'PASS' : 'FAIL'} |\n`)
if (result.failures.length > 0) {
  process.stdout.write(`\nsoak FAILED:\n${result.failures.map((f) => `  - ${f}`).join('\n')}\n`)
  process.exit(1)
}
process.stdout.write('\nsoak passed\n')
