import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { runtimeEnricher } from '../../enrichers/index.js'
import { trackPipelines } from '../helpers/pipelines.js'

/** A stand-in for monitorEventLoopDelay's histogram: values in ns, calls recorded. */
interface FakeHistogram {
  resolution: number
  enabled: boolean
  count: number
  values: { p50: number; p99: number; max: number }
  calls: string[]
  enable(): boolean
  disable(): boolean
  reset(): void
  percentile(p: number): number
  readonly max: number
}

const made = vi.hoisted(() => [] as FakeHistogram[])
vi.mock('node:perf_hooks', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:perf_hooks')>()
  const monitorEventLoopDelay = (options?: { resolution?: number }) => {
    const h: FakeHistogram = {
      resolution: options?.resolution ?? 10,
      enabled: false,
      count: 0,
      values: { p50: 0, p99: 0, max: 0 },
      calls: [],
      enable() {
        h.calls.push('enable')
        h.enabled = true
        return true
      },
      disable() {
        h.calls.push('disable')
        h.enabled = false
        return true
      },
      reset() {
        h.calls.push('reset')
        h.count = 0
      },
      percentile: (p: number) => (p === 50 ? h.values.p50 : h.values.p99),
      get max() {
        return h.values.max
      },
    }
    made.push(h)
    return h
  }
  return { ...real, monitorEventLoopDelay, default: { ...real, monitorEventLoopDelay } }
})

const { pipeline, closePipelines } = trackPipelines()

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
  made.length = 0
})

afterEach(async () => {
  await closePipelines()
  vi.useRealTimers()
})

const MS = 1e6

describe('runtimeEnricher', () => {
  it('writes the heap at once, then event loop delay and utilization per period', async () => {
    const p = pipeline({ enrichers: [runtimeEnricher({ refreshMs: 1_000, resolutionMs: 20 })] })
    await p.ready()
    expect(p.snapshot()).toEqual({
      v8js: { memory: { heap: { used: expect.any(Number), limit: expect.any(Number) } } },
    })
    const [h] = made
    expect(made).toHaveLength(1)
    expect(h?.resolution).toBe(20)
    expect(h?.enabled).toBe(true)

    Object.assign(h as FakeHistogram, { count: 50, values: { p50: 20.25 * MS, p99: 31.5 * MS, max: 120 * MS } })
    await vi.advanceTimersByTimeAsync(1_000)
    const s = p.snapshot() as { nodejs: { eventloop: { delay: unknown; utilization: number } } }
    // The histogram counts its own resolution; the delay is what exceeds it.
    expect(s.nodejs.eventloop.delay).toEqual({ p50: 0.25, p99: 11.5, max: 100 })
    expect(s.nodejs.eventloop.utilization).toBeGreaterThanOrEqual(0)
    expect(s.nodejs.eventloop.utilization).toBeLessThanOrEqual(1)
    expect(h?.calls).toEqual(['enable', 'reset'])
  })

  it('resets the histogram each period so each sample covers its own period', async () => {
    const p = pipeline({ enrichers: [runtimeEnricher({ refreshMs: 1_000 })] })
    await p.ready()
    const h = made[0] as FakeHistogram
    Object.assign(h, { count: 10, values: { p50: 60 * MS, p99: 60 * MS, max: 60 * MS } })
    await vi.advanceTimersByTimeAsync(1_000)
    expect((p.snapshot() as { nodejs: { eventloop: { delay: { max: number } } } }).nodejs.eventloop.delay.max).toBe(50)
    // Nothing recorded in the next period: no delay figures rather than the old ones.
    await vi.advanceTimersByTimeAsync(1_000)
    expect((p.snapshot() as { nodejs: { eventloop: Record<string, unknown> } }).nodejs.eventloop).not.toHaveProperty(
      'delay',
    )
    expect(h.calls.filter((c) => c === 'reset')).toHaveLength(2)
  })

  it('disables the histogram when the pipeline closes', async () => {
    const p = pipeline({ enrichers: [runtimeEnricher({ refreshMs: 1_000 })] })
    await p.ready()
    await vi.advanceTimersByTimeAsync(5_000)
    const h = made[0] as FakeHistogram
    expect(h.enabled).toBe(true)
    await p.close()
    expect(h.enabled).toBe(false)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('disables the histogram after the enricher is unregistered, and enables a new one if registered again', async () => {
    const p = pipeline()
    const enricher = runtimeEnricher({ refreshMs: 1_000 })
    const off = p.register(enricher)
    await p.ready()
    off()
    expect(made[0]?.enabled).toBe(false)
    p.register(enricher)
    await p.ready()
    expect(made).toHaveLength(2)
    expect(made[1]?.enabled).toBe(true)
  })

  it('rejects a bad resolution, quoting it', () => {
    expect(() => runtimeEnricher({ resolutionMs: 0 })).toThrow(/resolutionMs .*received 0/)
    expect(() => runtimeEnricher({ refreshMs: -5 })).toThrow(RangeError)
  })
})
