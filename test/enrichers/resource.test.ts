import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type ResourceSource, resourceEnricher } from '../../enrichers/index.js'
import { createPipeline, type Pipeline } from '../../src/index.js'
import { sink } from '../helpers/sink.js'

let pipelines: Pipeline[] = []
function pipeline(...args: Parameters<typeof createPipeline>): Pipeline {
  const p = createPipeline(...args)
  pipelines.push(p)
  return p
}

async function closeAll(): Promise<void> {
  const closing = Promise.all(pipelines.map((p) => p.close()))
  if (vi.isFakeTimers()) await vi.runAllTimersAsync()
  await closing
  pipelines = []
}

afterEach(async () => {
  await closeAll()
  vi.useRealTimers()
  vi.restoreAllMocks()
})

/** A systeminformation stand-in whose figures change with each sample. */
function fakeSource() {
  const calls = { load: 0, mem: 0 }
  const source: ResourceSource = {
    currentLoad: async () => {
      calls.load++
      return { currentLoad: 10 * calls.load + 0.123456 }
    },
    mem: async () => {
      calls.mem++
      return { total: 8_000_000_000, active: 1_000_000_000 * calls.mem }
    },
  }
  return { source, calls }
}

describe('resourceEnricher', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
  })

  it('writes cpu and memory utilization, memory used and total, and the process RSS', async () => {
    const rss = vi.spyOn(process.memoryUsage, 'rss').mockReturnValue(123_456_789)
    const { source } = fakeSource()
    const p = pipeline({ enrichers: [resourceEnricher({ source })] })
    await p.ready()
    expect(p.snapshot()).toEqual({
      system: {
        cpu: { utilization: 0.1012 },
        memory: { usage: 1_000_000_000, limit: 8_000_000_000, utilization: 0.125 },
        process: { memory: { rss: 123_456_789 } },
      },
    })
    expect(rss).toHaveBeenCalledTimes(1)
  })

  it('samples every refreshMs in the background and never on a log call', async () => {
    const rss = vi.spyOn(process.memoryUsage, 'rss')
    const { source, calls } = fakeSource()
    const p = pipeline({ enrichers: [resourceEnricher({ source, refreshMs: 5_000 })] })
    await p.ready()
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    for (let i = 0; i < 1_000; i++) log.info('busy')
    expect(calls).toEqual({ load: 1, mem: 1 })
    expect(rss).toHaveBeenCalledTimes(1)

    await vi.advanceTimersByTimeAsync(5_000)
    expect(calls).toEqual({ load: 2, mem: 2 })
    log.info('after one period')
    expect(out.lines().at(-1)).toMatchObject({ system: { cpu: { utilization: 0.2012 } } })
    expect(out.lines().at(-1)?.enrich).toBeUndefined()

    await vi.advanceTimersByTimeAsync(15_000)
    expect(calls).toEqual({ load: 5, mem: 5 })
  })

  it('stops sampling when the pipeline closes', async () => {
    const { source, calls } = fakeSource()
    const p = pipeline({ enrichers: [resourceEnricher({ source, refreshMs: 1_000 })] })
    await p.ready()
    await p.close()
    await vi.advanceTimersByTimeAsync(10_000)
    expect(calls.load).toBe(1)
  })

  it('writes what one source gave when the other fails', async () => {
    const source: ResourceSource = {
      currentLoad: () => Promise.reject(new Error('no /proc/stat')),
      mem: async () => ({ total: 4_000, active: 1_000 }),
    }
    const p = pipeline({ enrichers: [resourceEnricher({ source })] })
    await p.ready()
    expect(p.snapshot()).toEqual({
      system: {
        memory: { usage: 1_000, limit: 4_000, utilization: 0.25 },
        process: { memory: { rss: expect.any(Number) } },
      },
    })
  })

  it('keeps serving the last sample while sampling fails', async () => {
    let fail = false
    const source: ResourceSource = {
      currentLoad: async () => (fail ? Promise.reject(new Error('boom')) : { currentLoad: 50 }),
      mem: async () => (fail ? Promise.reject(new Error('boom')) : { total: 2, active: 1 }),
    }
    const p = pipeline({ enrichers: [resourceEnricher({ source, refreshMs: 1_000 })] })
    await p.ready()
    fail = true
    await vi.advanceTimersByTimeAsync(1_000)
    expect(p.stats().enrichers[0]?.errors).toBe(1)
    expect(p.snapshot()).toMatchObject({ system: { cpu: { utilization: 0.5 } } })
  })
})

describe('resourceEnricher with systeminformation', () => {
  it('loads systeminformation on the first sample and reads real figures', async () => {
    // Real I/O: systeminformation's first currentLoad() measures for about 500 ms.
    const p = pipeline({ enrichers: [resourceEnricher()] })
    expect(await p.ready({ timeoutMs: 5_000 })).toMatchObject({ ready: ['resource'] })
    const { system } = p.snapshot() as {
      system: { cpu?: { utilization: number }; memory: { usage: number; limit: number; utilization: number } }
    }
    expect(system.memory.limit).toBeGreaterThan(system.memory.usage)
    expect(system.memory.utilization).toBeGreaterThan(0)
    expect(system.memory.utilization).toBeLessThan(1)
    if (system.cpu !== undefined) expect(system.cpu.utilization).toBeGreaterThanOrEqual(0)
  })
})
