import { type EventLoopUtilization, type IntervalHistogram, monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import { defineEnricher, type Enricher, type Fields } from '../src/index.js'
import { round } from './shared.js'

/** Options of {@link runtimeEnricher}. */
export interface RuntimeEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'runtime'`. */
  name?: string
  /** Sampling period, in ms. Each sample covers the time since the previous one. Default 5 000. */
  refreshMs?: number
  /** Event loop delay sampling resolution, in ms (`monitorEventLoopDelay`'s `resolution`). Default 10. */
  resolutionMs?: number
}

const DEFAULTS = { name: 'runtime', refreshMs: 5_000, resolutionMs: 10 } as const
const NS_PER_MS = 1e6

/**
 * Node.js runtime health, sampled in the background every `refreshMs` (never
 * on a log call), under OpenTelemetry's runtime metric names:
 * `nodejs.eventloop.delay.{p50,p99,max}` (ms beyond the sampling resolution,
 * over the last period, from `monitorEventLoopDelay`), `nodejs.eventloop.utilization` (0..1, over the last
 * period) and `v8js.memory.heap.{used,limit}` (bytes). The first sample, taken
 * when the enricher is registered, has the heap only.
 *
 * The delay histogram is enabled on the first sample and disabled when the
 * enricher is unregistered or its pipeline closes (its `dispose`), or when no
 * sample came for three periods. It never keeps the process alive. The
 * histogram belongs to the enricher object: register each one in one pipeline only.
 */
export function runtimeEnricher(options: RuntimeEnricherOptions = {}): Enricher {
  const o = { ...DEFAULTS, ...options }
  if (!Number.isInteger(o.resolutionMs) || o.resolutionMs < 1) {
    throw new RangeError(`resolutionMs must be a positive integer, received ${String(o.resolutionMs)}`)
  }
  let histogram: IntervalHistogram | undefined
  let lastElu: EventLoopUtilization | undefined
  let idle: NodeJS.Timeout | undefined
  const stop = (): void => {
    histogram?.disable()
    histogram = undefined
    lastElu = undefined
    if (idle !== undefined) clearTimeout(idle)
    idle = undefined
  }
  return defineEnricher({
    name: o.name,
    dispose: stop,
    refreshMs: o.refreshMs,
    cache: { ttlMs: 2 * o.refreshMs + 1_000, jitter: 0 },
    compute: () => {
      const heap = getHeapStatistics()
      const out: Fields = { v8js: { memory: { heap: { used: heap.used_heap_size, limit: heap.heap_size_limit } } } }
      if (histogram === undefined) {
        histogram = monitorEventLoopDelay({ resolution: o.resolutionMs })
        histogram.enable()
        lastElu = performance.eventLoopUtilization()
      } else {
        const eventloop: Record<string, unknown> = {}
        // A period in which the histogram saw no tick has nothing to say about delay.
        if (histogram.count > 0) {
          eventloop.delay = {
            p50: delayMs(histogram.percentile(50), o.resolutionMs),
            p99: delayMs(histogram.percentile(99), o.resolutionMs),
            max: delayMs(histogram.max, o.resolutionMs),
          }
        }
        histogram.reset()
        const elu = performance.eventLoopUtilization()
        if (lastElu !== undefined) {
          eventloop.utilization = round(performance.eventLoopUtilization(elu, lastElu).utilization, 4)
        }
        lastElu = elu
        if (Object.keys(eventloop).length > 0) out.nodejs = { eventloop }
      }
      if (idle === undefined) {
        idle = setTimeout(stop, 3 * o.refreshMs)
        idle.unref()
      } else {
        idle.refresh()
      }
      return out
    },
  })
}

/**
 * The histogram records the time between its timer's ticks, resolution
 * included (Node 20: about 10.1 ms at rest with a 10 ms resolution); the
 * event loop's delay is what exceeds the resolution.
 */
function delayMs(ns: number, resolutionMs: number): number {
  return round(Math.max(0, ns / NS_PER_MS - resolutionMs), 3)
}
