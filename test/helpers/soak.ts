import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Fault, faultServer } from './fault-server.js'

/** Options of {@link runSoak}. */
export interface SoakOptions {
  /** How long the application logs, in ms. */
  durationMs: number
  /** Samples before this are warm-up and left out of the slopes, in ms. Default a third of `durationMs`. */
  warmupMs?: number
  /** Default 1 000. */
  sampleMs?: number
  /** Length of each backend phase, in ms. Default 10 000. */
  phaseMs?: number
  /** Fail at an RSS slope after warm-up of this many MB/min or more. Default {@link RSS_SLOPE_LIMIT_MB_PER_MIN}. */
  rssSlopeLimit?: number
  /** Fail at a heap (after GC) slope after warm-up of this many MB/min or more. Default: not checked. */
  heapSlopeLimit?: number
  /** Fail when the heap after GC grows by this many MB or more from the first to the last sample after warm-up. Default: not checked. */
  heapGrowthLimitMB?: number
  /** Lines per 10 ms tick, per logger. Default 10 (2,000 lines/s in all). */
  linesPerTick?: number
  /** Called with each line the application prints, for progress. */
  onLine?: (line: string) => void
}

export interface SoakSample {
  t: number
  rss: number
  heap: number
  resources: Record<string, number>
  lines: number
  pending: number
  breaker: string
  entries: number
  inflight: number
  exitListeners: number
}

/** What a soak measured and whether it passed. */
export interface SoakResult {
  samples: number
  /** Samples in the regression: whole backend cycles after warm-up. */
  steadySamples: number
  lines: number
  backendRequests: number
  backendByMode: Record<string, number>
  rssSlopeMBPerMin: number
  heapSlopeMBPerMin: number
  /** Heap after GC, last sample after warm-up minus the first. */
  heapGrowthMB: number
  rssFirstMB: number
  rssLastMB: number
  handlesMin: number
  handlesMax: number
  handlesSlopePerMin: number
  /** Median handles in the first and the last third of the samples after warm-up. */
  handlesEarlyMedian: number
  handlesLateMedian: number
  handlesBaseline: number
  handlesAfterClose: number
  warnings: string[]
  unhandled: number
  events: Record<string, number>
  exitAfterCloseMs: number | null
  code: number | null
  failures: string[]
}

export const RSS_SLOPE_LIMIT_MB_PER_MIN = 1
/** The median of handles may move by this many between the early and late samples. */
export const HANDLE_SLACK = 2
/**
 * Most handles the application can hold at once while healthy: up to 17
 * lookups in flight (16 users, 1 config), each a socket and perhaps a pending
 * connect, plus its timers, the destination and stdio. A sample is a moment:
 * it may catch a burst of requests, so the ceiling is on that bound, and the
 * trend is judged on medians.
 */
export const HANDLE_CEILING = 50

/** Least-squares slope of `ys` over `xs`. */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length
  if (n < 2) return 0
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += ((xs[i] as number) - mx) * ((ys[i] as number) - my)
    den += ((xs[i] as number) - mx) ** 2
  }
  return den === 0 ? 0 : num / den
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}

const total = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0)

/**
 * Runs the soak: a loopback backend that flaps (phases of `phaseMs`, healthy
 * then failing, the failing phase rotating through 500, reset, never-respond,
 * trickle and invalid JSON: errors half of the time), and the application
 * (test/fixtures/reliability/soak-app.ts) in a child process against it.
 * Fails on an RSS slope after warm-up of 1 MB/min or more, handles that grow,
 * a MaxListenersExceededWarning, an unhandled rejection, or a process that
 * does not exit by itself after close().
 */
export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const phaseMs = options.phaseMs ?? 10_000
  const warmupMs = options.warmupMs ?? options.durationMs / 3
  const failing = [Fault.Status500, Fault.Reset, Fault.NeverRespond, Fault.Trickle, Fault.InvalidJson]
  const started = Date.now()
  const backend = await faultServer({
    trickleMs: 30,
    pick: () => {
      const phase = Math.floor((Date.now() - started) / phaseMs)
      if (phase % 2 === 0) return Fault.Ok
      return failing[Math.floor(phase / 2) % failing.length] as Fault
    },
  })
  const samples: SoakSample[] = []
  const warnings: string[] = []
  let final: Record<string, unknown> | undefined
  let exitAt: number | undefined
  const script = fileURLToPath(new URL('../fixtures/reliability/soak-app.ts', import.meta.url))
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', script], {
    env: {
      ...process.env,
      BACKEND_URL: backend.url,
      SOAK_MS: String(options.durationMs),
      SAMPLE_MS: String(options.sampleMs ?? 1_000),
      LINES_PER_TICK: String(options.linesPerTick ?? 10),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let buffered = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    let i = buffered.indexOf('\n')
    while (i >= 0) {
      const line = buffered.slice(0, i)
      buffered = buffered.slice(i + 1)
      options.onLine?.(line)
      const space = line.indexOf(' ')
      const kind = line.slice(0, space)
      const data = line.slice(space + 1)
      if (kind === 'SAMPLE') samples.push(JSON.parse(data) as SoakSample)
      else if (kind === 'WARNING') warnings.push((JSON.parse(data) as { name: string }).name)
      else if (kind === 'FINAL') final = JSON.parse(data) as Record<string, unknown>
      else if (kind === 'EXIT') exitAt = (JSON.parse(data) as { at: number }).at
      i = buffered.indexOf('\n')
    }
  })
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c
  })
  const killer = setTimeout(() => child.kill('SIGKILL'), options.durationMs + 30_000)
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
  clearTimeout(killer)
  await backend.close()

  // The backend's phases make RSS rise and fall: the regression covers whole
  // healthy-failing cycles after warm-up, ending at the last sample, so the
  // cycle does not read as a trend.
  const cycleMs = 2 * phaseMs
  const lastT = samples[samples.length - 1]?.t ?? 0
  const span = lastT - warmupMs
  const from = span >= cycleMs ? lastT - Math.floor(span / cycleMs) * cycleMs : warmupMs
  const steady = samples.filter((s) => s.t >= from - 1)
  const minutes = steady.map((s) => s.t / 60_000)
  const handles = steady.map((s) => total(s.resources))
  const third = Math.max(1, Math.floor(steady.length / 3))
  const MB = 2 ** 20
  const result: SoakResult = {
    samples: samples.length,
    steadySamples: steady.length,
    lines: (final?.lines as number) ?? 0,
    backendRequests: backend.requests,
    backendByMode: { ...backend.byMode },
    rssSlopeMBPerMin: slope(
      minutes,
      steady.map((s) => s.rss / MB),
    ),
    heapSlopeMBPerMin: slope(
      minutes,
      steady.map((s) => s.heap / MB),
    ),
    heapGrowthMB: ((steady[steady.length - 1]?.heap ?? 0) - (steady[0]?.heap ?? 0)) / MB,
    rssFirstMB: (steady[0]?.rss ?? 0) / MB,
    rssLastMB: (steady[steady.length - 1]?.rss ?? 0) / MB,
    handlesMin: Math.min(...handles),
    handlesMax: Math.max(...handles),
    handlesSlopePerMin: slope(minutes, handles),
    handlesEarlyMedian: median(handles.slice(0, third)),
    handlesLateMedian: median(handles.slice(-third)),
    handlesBaseline: total((final?.baseline as Record<string, number>) ?? {}),
    handlesAfterClose: total((final?.afterClose as Record<string, number>) ?? {}),
    warnings,
    unhandled: (final?.unhandled as number) ?? -1,
    events: (final?.events as Record<string, number>) ?? {},
    exitAfterCloseMs: exitAt !== undefined && final !== undefined ? exitAt - (final.closedAt as number) : null,
    code,
    failures: [],
  }
  const f = result.failures
  if (code !== 0) f.push(`exit code ${code}: ${stderr.slice(0, 500)}`)
  if (final === undefined) f.push('no FINAL line')
  if (steady.length < 5) f.push(`only ${steady.length} samples after warm-up`)
  const rssLimit = options.rssSlopeLimit ?? RSS_SLOPE_LIMIT_MB_PER_MIN
  if (!(result.rssSlopeMBPerMin < rssLimit)) {
    f.push(`RSS slope ${result.rssSlopeMBPerMin.toFixed(2)} MB/min >= ${rssLimit}`)
  }
  const growthLimit = options.heapGrowthLimitMB ?? Number.POSITIVE_INFINITY
  if (!(result.heapGrowthMB < growthLimit)) {
    f.push(`heap grew ${result.heapGrowthMB.toFixed(2)} MB after warm-up (limit ${growthLimit})`)
  }
  const heapLimit = options.heapSlopeLimit ?? Number.POSITIVE_INFINITY
  if (!(result.heapSlopeMBPerMin < heapLimit)) {
    f.push(`heap slope ${result.heapSlopeMBPerMin.toFixed(2)} MB/min >= ${heapLimit}`)
  }
  if (result.handlesLateMedian > result.handlesEarlyMedian + HANDLE_SLACK) {
    f.push(`handles grew: median ${result.handlesEarlyMedian} early, ${result.handlesLateMedian} late`)
  }
  if (result.handlesMax > HANDLE_CEILING) f.push(`${result.handlesMax} handles at once (ceiling ${HANDLE_CEILING})`)
  if (result.handlesAfterClose > result.handlesBaseline) {
    f.push(`handles after close ${result.handlesAfterClose} > baseline ${result.handlesBaseline}`)
  }
  if (warnings.includes('MaxListenersExceededWarning')) f.push('MaxListenersExceededWarning')
  if (result.unhandled !== 0) f.push(`${result.unhandled} unhandled rejections`)
  if (result.exitAfterCloseMs === null || result.exitAfterCloseMs > 1_000) {
    f.push(`process did not exit by itself after close (${result.exitAfterCloseMs} ms)`)
  }
  return result
}
