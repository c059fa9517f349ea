// The logging part of `npm run bench`: each scenario in a fresh process per
// round, rounds interleaved (the order reversed every other round) so drift
// hits every scenario alike; per-round ratios against the hand-written
// reference, then their median, in wall time and in CPU time, with the
// spread of the rounds. On a shared 2-core machine a neighbour's burst
// lengthens one process's wall time but not its CPU time, so the verdict
// asks both medians to meet the target: steadier, and no easier.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { median } from './measure.js'
import type { Row } from './table.js'

const worker = fileURLToPath(new URL('./logging-worker.ts', import.meta.url))
// More, shorter rounds than before (5 of 200k lines): a median of 9 moves less
// for one disturbed round, for about the same run time.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9)
const ROUND_LINES = Number(process.env.BENCH_LINES ?? 100_000)
// BENCH_SCENARIOS=keyed-snapshot,keyed-reference runs only those (and the rows they make).
const ONLY = process.env.BENCH_SCENARIOS?.split(',')
const wanted = (s: string): boolean => ONLY === undefined || ONLY.includes(s)
// Transport runs are short and share 2 cores with a worker thread: more rounds for a steadier median.
const TRANSPORT_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9)

interface Sample {
  ms: number
  totalMs?: number
  cpuMs?: number
  maxAddedDelayMs?: number
}

function once(scenario: string, dest: string, lines = LINES): Sample {
  const out = execFileSync(process.execPath, ['--import', 'tsx', worker, scenario, dest], {
    encoding: 'utf8',
    env: { ...process.env, BENCH_LINES: String(lines) },
  })
  return JSON.parse(out.trim().split('\n').pop() as string) as Sample
}

interface Target {
  scenario: string
  against: string
  max?: number
  label: string
}

const TARGETS: Target[] = [
  { scenario: 'bare', against: 'reference', label: 'bare pino (for reference)' },
  {
    scenario: 'snapshot',
    against: 'reference',
    max: 1.0,
    label: 'snapshot: 4 global enrichers (8 fields) + 2 request fields',
  },
  { scenario: 'deferred', against: 'reference', max: 1.1, label: 'deferred, every value cached' },
  {
    scenario: 'keyed-snapshot',
    against: 'keyed-reference',
    max: 1.05,
    label: 'snapshot, keyed enricher value cached vs a hand-written mixin reading lru-cache',
  },
  {
    scenario: 'deferred-failing',
    against: 'deferred-healthy',
    max: 1.05,
    label: 'deferred, one keyed backend failing (breaker open) vs the same enrichers all healthy',
  },
  {
    scenario: 'deferred-failing',
    against: 'deferred',
    label: 'deferred, one keyed backend failing vs deferred without that enricher (for reference)',
  },
  { scenario: 'winston', against: 'reference', label: 'winston, same fields (for reference)' },
  {
    scenario: 'builtins',
    against: 'builtins-reference',
    max: 1.05,
    label: 'built-in host/process/resource/runtime/container/deployment vs the same fields by hand',
  },
  {
    scenario: 'transport-enrich',
    against: 'transport-file',
    max: 1.1,
    label: 'main thread: enrichment transport vs plain pino/file transport',
  },
]

export async function runLoggingBench(): Promise<Row[]> {
  const rows: Row[] = []
  const scenarios = [
    'reference',
    'bare',
    'snapshot',
    'deferred',
    'deferred-failing',
    'deferred-healthy',
    'keyed-snapshot',
    'keyed-reference',
    'winston',
    'builtins-reference',
    'builtins',
  ].filter(wanted)
  for (const dest of ['sync', 'async']) {
    const samples = new Map<string, Sample[]>(scenarios.map((s) => [s, []]))
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? scenarios : [...scenarios].reverse()
      for (const s of order) samples.get(s)?.push(once(s, dest, ROUND_LINES))
    }
    const ms = (s: string): number[] => (samples.get(s) ?? []).map((x) => x.ms)
    const cpu = (s: string): number[] => (samples.get(s) ?? []).map((x) => x.cpuMs ?? Number.NaN)
    const ref = ms('reference')
    if (ref.length > 0) {
      rows.push({
        bench: `logging (${dest}) hand-written reference`,
        value: `${median(ref).toFixed(0)} ms (CPU ${median(cpu('reference')).toFixed(0)} ms) / ${fmt(ROUND_LINES)} lines`,
        ratio: '1.00x',
        target: '',
        verdict: '',
      })
    }
    for (const t of TARGETS) {
      if (!samples.has(t.scenario) || !samples.has(t.against)) continue
      const a = ms(t.scenario)
      const wall = ratios(a, ms(t.against))
      const time = ratios(cpu(t.scenario), cpu(t.against))
      const delay = Math.max(...(samples.get(t.scenario) ?? []).map((x) => x.maxAddedDelayMs ?? 0))
      rows.push({
        bench: `logging (${dest}) ${t.label}`,
        value: `${median(a).toFixed(0)} ms${t.scenario.startsWith('deferred') ? `, max added delay ${delay} ms` : ''}`,
        ratio: `${wall.text}, CPU ${time.text} vs ${t.against}`,
        target: t.max === undefined ? '' : `<= ${t.max.toFixed(2)}x`,
        verdict: t.max === undefined ? '' : wall.median <= t.max && time.median <= t.max ? 'ok' : 'MISSED',
      })
    }
  }
  // Transports write through a worker to /dev/null: one destination kind. BENCH_SCENARIOS may name some of them
  // (say transport-step-keyed,transport-step,bare): only those run, and only the rows whose scenarios ran are made.
  const transport = new Map<string, Sample[]>(
    ['transport-file', 'transport-enrich', 'transport-step', 'transport-step-keyed', 'transport-step-file', 'bare']
      .filter(wanted)
      .map((s) => [s, []]),
  )
  if (![...transport.keys()].some((s) => s.startsWith('transport'))) return rows
  for (let r = 0; r < TRANSPORT_ROUNDS; r++) for (const [s, list] of transport) list.push(once(s, 'async'))
  const tms = (s: string): number[] => (transport.get(s) ?? []).map((x) => x.ms)
  const ran = (s: string): boolean => transport.has(s)
  for (const t of TARGETS.filter((x) => x.scenario.startsWith('transport') && ran(x.scenario) && ran(x.against))) {
    const a = tms(t.scenario)
    const b = tms(t.against)
    const ratio = median(a.map((x, i) => x / (b[i] as number)))
    rows.push({
      bench: `transport ${t.label}`,
      value: `${median(a).toFixed(0)} ms vs ${median(b).toFixed(0)} ms`,
      ratio: `${ratio.toFixed(2)}x`,
      target: `<= ${(t.max as number).toFixed(2)}x`,
      verdict: ratio <= (t.max as number) ? 'ok' : 'MISSED',
    })
  }
  const cpu = (s: string): number[] => (transport.get(s) ?? []).map((x) => x.cpuMs ?? Number.NaN)
  const cpuRatio = median(cpu('transport-enrich').map((x, i) => x / (cpu('transport-file')[i] as number)))
  if (Number.isFinite(cpuRatio)) {
    rows.push({
      bench: 'transport main thread CPU time alone (10 ms ticks), enrichment vs plain pino/file (for reference)',
      value: `${median(cpu('transport-enrich')).toFixed(0)} ms vs ${median(cpu('transport-file')).toFixed(0)} ms`,
      ratio: `${cpuRatio.toFixed(2)}x`,
      target: '',
      verdict: '',
    })
  }
  const rate = (ms: number): number => LINES / (ms / 1000)
  // Against bare pino round by round (the two ran one after the other), then the median: drift hits both alike.
  const vsBare = (s: string): number => median(tms('bare').map((b, i) => b / (tms(s)[i] as number)))
  const stepRow = (s: string, label: string, target: number | undefined): void => {
    if (!ran(s) || !ran('bare')) return
    const ratio = vsBare(s)
    rows.push({
      bench: `transport worker step alone, ${label}: lines/s (vs bare pino main-thread lines/s)`,
      value: `${fmt(median(tms(s).map(rate)))}/s vs ${fmt(median(tms('bare').map(rate)))}/s, step CPU ${median(cpu(s)).toFixed(0)} ms`,
      ratio: `${ratio.toFixed(2)}x`,
      target: target === undefined ? 'report' : `>= ${target.toFixed(2)}x`,
      verdict: target === undefined ? '' : ratio >= target ? 'ok' : 'MISSED',
    })
  }
  stepRow('transport-step', 'every value cached', undefined)
  stepRow('transport-step-keyed', 'plus one keyed enricher, every value cached', 1)
  if (ran('transport-step-file')) {
    rows.push({
      bench: 'transport worker step alone: plain pino/file lines/s, for reference',
      value: `${fmt(median(tms('transport-step-file').map(rate)))}/s`,
      ratio: '',
      target: '',
      verdict: '',
    })
  }
  if (ran('transport-enrich')) {
    // Bounded by how fast the main thread hands lines to thread-stream, not by the worker.
    const endToEnd = median((transport.get('transport-enrich') ?? []).map((x) => rate(x.totalMs ?? x.ms)))
    rows.push({
      bench: 'transport end to end: first line logged to last line written, lines/s (for reference)',
      value: `${fmt(endToEnd)}/s`,
      ratio: '',
      target: '',
      verdict: '',
    })
  }
  return rows
}

/**
 * The per-round ratios a[i] / b[i]: their median, and as text the median with
 * the middle half of the rounds (the 25th to 75th percentile) beside it.
 */
function ratios(a: number[], b: number[]): { median: number; text: string } {
  const r = a.map((x, i) => x / (b[i] as number)).sort((x, y) => x - y)
  const m = median(r)
  if (!Number.isFinite(m)) return { median: m, text: 'n/a' }
  const at = (q: number): number => r[Math.round(q * (r.length - 1))] as number
  return { median: m, text: `${m.toFixed(2)}x (${at(0.25).toFixed(2)}-${at(0.75).toFixed(2)})` }
}

// The transport scenarios' lines per process; the others take ROUND_LINES.
const LINES = Number(process.env.BENCH_LINES ?? 200_000)
const fmt = (n: number): string => `${Math.round(n / 1000)}k`
