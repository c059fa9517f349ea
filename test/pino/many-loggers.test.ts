import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import pino from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { enrichmentOf } from '../../src/core/enrichment.js'
import { defineEnricher, type Fields } from '../../src/index.js'
import { deferred, manualClock } from '../helpers/deferred.js'
import { trackPipelines } from '../helpers/pipelines.js'

const { pipeline, closePipelines } = trackPipelines()

afterEach(async () => {
  await closePipelines()
  vi.useRealTimers()
})

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** Collects until the heap stops shrinking; finalizers get a turn in between. */
async function settledHeap(): Promise<number> {
  let last = Number.POSITIVE_INFINITY
  for (let i = 0; i < 10; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
    const used = process.memoryUsage().heapUsed
    if (used > last - 64 * 1024) return used
    last = used
  }
  return last
}

const nowhere: pino.DestinationStream = { write() {} }
const host = (compute: () => Fields | Promise<Fields> = () => ({ host: 'box' }), ttlMs = 60_000) =>
  defineEnricher({ name: 'host', cache: { ttlMs, staleMs: 600_000 }, compute })
const user = (compute: (id: string) => Fields | Promise<Fields> = (id) => ({ user: id })) =>
  defineEnricher({ name: 'user', key: (ctx) => ctx.record.user as string | undefined, compute })

describe('many loggers from one pipeline', () => {
  it.for(['snapshot', 'deferred'] as const)(
    'writes the lines of a child whose parent was frozen after it logged, as pino does (%s)',
    async (mode) => {
      const p = pipeline({ enrichers: [host()] })
      await p.ready()
      const lines: string[] = []
      const root = pino(p.pinoOptions({ mode }), { write: (s: string) => lines.push(s) })
      const kid = root.child({ b: 2 })
      root.info('root line')
      // The parent's kept state is now its own read-only property, which the child reads through its prototype.
      Object.freeze(root)
      for (let i = 0; i < 3; i++) expect(() => kid.info(`kid line ${i}`)).not.toThrow()
      await p.flush()
      expect(lines.map((l) => JSON.parse(l) as Fields).map((l) => [l.msg, l.b, l.host])).toEqual([
        ['root line', undefined, 'box'],
        ['kid line 0', 2, 'box'],
        ['kid line 1', 2, 'box'],
        ['kid line 2', 2, 'box'],
      ])
    },
  )

  // Under coverage on a loaded 2-core machine past 30 s.
  it("reclaims a dropped deferred logger's memory: 20,000 per-tenant loggers leave the heap as it was", {
    timeout: 120_000,
  }, async () => {
    const p = pipeline({ enrichers: [host(), user()] })
    await p.ready()
    await p.enrich({ record: { user: 'u1' } })
    const make = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const log = pino(p.pinoOptions({ mode: 'deferred', base: { tenant: `t${i}` } }), nowhere)
        log.info({ user: 'u1' }, 'cached')
        log.info({ user: `new${i % 10}` }, 'waits')
      }
    }
    // A first round, so that what is made once (code, caches) is not counted.
    make(2_000)
    await p.flush()
    const before = await settledHeap()
    make(20_000)
    await p.flush()
    expect(p.stats().records.pending).toBe(0)
    const after = await settledHeap()
    // About 1 KB each was kept before: 20 MB. Allow 100 bytes a logger for noise.
    expect(after - before).toBeLessThan(20_000 * 100)
    // The views of dropped loggers go too.
    expect(enrichmentOf(p).globals.viewCount).toBeLessThan(2_000)
  })

  it('creates loggers in constant time each: 4x the loggers with distinct bases take about 4x the time', async () => {
    const p = pipeline({ enrichers: [host()] })
    await p.ready()
    const keep: pino.Logger[] = []
    const make = (n: number): number => {
      const started = performance.now()
      for (let i = 0; i < n; i++) {
        const log = pino(p.pinoOptions({ mode: 'deferred', base: { tenant: `t${keep.length}` } }), nowhere)
        log.info('one line')
        keep.push(log)
      }
      return performance.now() - started
    }
    make(1_000)
    const small = make(2_500)
    const large = make(10_000)
    // Linear is 4; quadratic would be 16 and more.
    expect(large / small).toBeLessThan(8)
    expect(keep).toHaveLength(13_500)
  })

  it('rebuilds the global values once per change, however many loggers exist or are made while one is stale', async () => {
    const clock = manualClock()
    const next = deferred<Fields>()
    let computes = 0
    const p = pipeline({
      clock,
      enrichers: [
        host(() => {
          computes++
          return computes === 1 ? { host: 'old' } : next.promise
        }, 1_000),
      ],
    })
    await p.ready()
    clock.advance(1_500)
    const rebuild = vi.spyOn(enrichmentOf(p).globals, 'prepare')
    const lines: string[] = []
    const into: pino.DestinationStream = { write: (s) => lines.push(s) }
    const loggers: pino.Logger[] = []
    for (let i = 0; i < 4_000; i++) {
      const log = pino(p.pinoOptions({ mode: 'deferred', base: { tenant: `t${i}` } }), into)
      log.info('while stale')
      loggers.push(log)
    }
    await Promise.resolve()
    expect(computes).toBe(2)
    expect(rebuild.mock.calls.length).toBeLessThanOrEqual(2)
    const calls = rebuild.mock.calls.length
    const started = performance.now()
    next.resolve({ host: 'new' })
    await new Promise((resolve) => setImmediate(resolve))
    expect(rebuild.mock.calls.length).toBe(calls + 1)
    // The change itself costs nothing per logger: each view is rebuilt on its next line.
    expect(performance.now() - started).toBeLessThan(500)
    for (const log of loggers) log.info('after')
    const after = lines.slice(4_000).map((l) => JSON.parse(l) as { host: string; tenant: string })
    expect(after).toHaveLength(4_000)
    expect(after.every((l, i) => l.host === 'new' && l.tenant === `t${i}`)).toBe(true)
    expect(JSON.parse(lines[0] as string)).toMatchObject({ host: 'old', enrich: { stale: ['host'] } })
  })

  it('stats(), metrics() and close() stay bounded with 20,000 loggers each holding a waiting line', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const clock = manualClock()
    const p = pipeline({
      clock,
      deadlineMs: 1_000,
      closeTimeoutMs: 2_000,
      enrichers: [user(() => new Promise<Fields>(() => {}))],
    })
    const lines: string[] = []
    const into: pino.DestinationStream = { write: (s) => lines.push(s) }
    for (let i = 0; i < 20_000; i++) pino(p.pinoOptions({ mode: 'deferred' }), into).info({ user: 'u' }, String(i))
    expect(p.stats().records.pending).toBe(20_000)
    expect(p.metrics()).toContain('pino_enrich_records_pending 20000\n')
    let closed = false
    void p.close().then(() => {
      closed = true
    })
    // Closed at the lines' deadline, within closeTimeoutMs, on the pipeline's own clock and timers.
    clock.advance(999)
    await vi.advanceTimersByTimeAsync(999)
    expect(closed).toBe(false)
    clock.advance(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(closed).toBe(true)
    expect(lines).toHaveLength(20_000)
    expect(p.stats().records.pending).toBe(0)
  })
})
