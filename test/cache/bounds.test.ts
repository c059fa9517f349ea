import { LRUCache } from 'lru-cache'
import { describe, expect, it, vi } from 'vitest'
import { InflightLimitError, SmartCache, TimeoutError } from '../../src/index.js'
import { deferred, manualClock } from '../helpers/deferred.js'
import { flush, track } from '../helpers/track.js'

describe('SmartCache bounds', () => {
  // 5-10 s alone; under coverage on a loaded 2-core machine past 30 s.
  it('never holds more than max entries while 1,000,000 distinct keys pass through', { timeout: 120_000 }, async () => {
    const cache = new SmartCache<string>({ max: 10_000, breaker: false })
    const identity = (key: string): string => key
    let largest = 0
    for (let i = 0; i < 1_000_000; i++) {
      await cache.getOrCompute(`key:${i}`, identity)
      if (i % 50_000 === 49_999) largest = Math.max(largest, cache.stats().totalEntries)
    }
    const stats = cache.stats()
    expect(largest).toBe(10_000)
    expect(stats).toMatchObject({ totalEntries: 10_000, computes: 1_000_000, evictions: 990_000, inflight: 0 })
  })

  it('rejects a new-key lookup with InflightLimitError without calling its compute when maxInflight computes run and maxQueue is 0', async () => {
    const cache = new SmartCache<string>({ maxInflight: 2, maxQueue: 0, breaker: false })
    void cache.getOrCompute('a', () => deferred<string>().promise)
    void cache.getOrCompute('b', () => deferred<string>().promise)
    let called = false
    const e = await cache
      .getOrCompute('c', () => {
        called = true
        return 'c'
      })
      .catch((error: unknown) => error)
    expect(e).toBeInstanceOf(InflightLimitError)
    expect((e as InflightLimitError).code).toBe('ENRICH_INFLIGHT_FULL')
    expect(called).toBe(false)
    expect(cache.stats()).toMatchObject({ inflight: 2, inflightRejections: 1 })
  })

  it('computes 500 distinct keys asked for at once under the defaults, never more than maxInflight at a time', async () => {
    const cache = new SmartCache<string>({ breaker: false })
    let running = 0
    let most = 0
    const compute = async (k: string): Promise<string> => {
      running++
      most = Math.max(most, running)
      await Promise.resolve()
      running--
      return `v:${k}`
    }
    const keys = Array.from({ length: 500 }, (_, i) => `k${i}`)
    const values = await Promise.all(keys.map((k) => cache.getOrCompute(k, compute)))
    expect(values).toEqual(keys.map((k) => `v:${k}`))
    expect(most).toBe(100)
    expect(cache.stats()).toMatchObject({ computes: 500, inflightRejections: 0, queued: 0, inflight: 0 })
  })

  it('makes getOrCompute wait for a slot in arrival order, one place per key, and rejects only past maxQueue', async () => {
    const cache = new SmartCache<string>({ maxInflight: 1, maxQueue: 2, breaker: false })
    const order: string[] = []
    const gate = deferred<string>()
    const first = track(cache.getOrCompute('a', () => gate.promise))
    const compute = (k: string): string => {
      order.push(k)
      return k.toUpperCase()
    }
    const b = track(cache.getOrCompute('b', compute))
    const c = track(cache.getOrCompute('c', compute))
    const b2 = track(cache.getOrCompute('b', () => 'not called'))
    const d = await cache.getOrCompute('d', compute).catch((e: unknown) => e)
    expect(d).toBeInstanceOf(InflightLimitError)
    expect(cache.stats()).toMatchObject({ queued: 2, inflight: 1, inflightRejections: 1, dedupes: 1 })
    await flush()
    expect([b.status, c.status]).toEqual(['pending', 'pending'])
    gate.resolve('A')
    await flush()
    expect(order).toEqual(['b', 'c'])
    expect([first.value, b.value, b2.value, c.value]).toEqual(['A', 'B', 'B', 'C'])
    expect(cache.stats()).toMatchObject({ queued: 0, inflight: 0, computes: 3 })
  })

  it('settles 20,000 waiting keys whose computes answer synchronously once a slot frees', async () => {
    const n = 20_000
    const cache = new SmartCache<number>({ maxInflight: 1, maxQueue: n, breaker: false })
    const gate = deferred<number>()
    const first = cache.getOrCompute('first', () => gate.promise)
    const waiting = Array.from({ length: n }, (_, i) => track(cache.getOrCompute(`k${i}`, () => i)))
    gate.resolve(-1)
    await first
    await flush()
    expect(waiting.filter((w) => w.status !== 'fulfilled')).toHaveLength(0)
    expect(waiting[n - 1]?.value).toBe(n - 1)
    expect(cache.stats()).toMatchObject({ queued: 0, inflight: 0, computes: n + 1 })
  })

  it('rejects a waiting key with TimeoutError once its timeoutMs passes in the queue, behind computes that hang', async () => {
    vi.useFakeTimers()
    try {
      const cache = new SmartCache<string>({ maxInflight: 1, breaker: false })
      void cache.getOrCompute('hung', () => new Promise<string>(() => {})).catch(() => {})
      let called = false
      const waiting = track(
        cache.getOrCompute(
          'b',
          () => {
            called = true
            return 'B'
          },
          { timeoutMs: 50 },
        ),
      )
      await vi.advanceTimersByTimeAsync(49)
      expect(waiting.status).toBe('pending')
      await vi.advanceTimersByTimeAsync(1)
      expect(waiting.status).toBe('rejected')
      expect(waiting.error).toBeInstanceOf(TimeoutError)
      expect(called).toBe(false)
      expect(cache.stats()).toMatchObject({ queued: 0, inflight: 1, timeouts: 1 })
      cache.close()
    } finally {
      vi.useRealTimers()
    }
  })

  it('answers a waiting key from a value set() meanwhile, without computing it', async () => {
    const cache = new SmartCache<string>({ maxInflight: 1, breaker: false })
    const gate = deferred<string>()
    void cache.getOrCompute('a', () => gate.promise)
    const b = track(cache.getOrCompute('b', () => 'computed'))
    cache.set('b', 'set')
    gate.resolve('A')
    await flush()
    expect(b.value).toBe('set')
    expect(cache.stats().computes).toBe(1)
  })

  it('never makes load() or refresh() wait for a slot: load rejects at once, refresh is skipped', async () => {
    const cache = new SmartCache<string>({ maxInflight: 1, breaker: false })
    const gate = deferred<string>()
    void cache.getOrCompute('a', () => gate.promise)
    let called = false
    const compute = (): string => {
      called = true
      return 'x'
    }
    await expect(cache.load('b', compute)).rejects.toBeInstanceOf(InflightLimitError)
    await cache.refresh('c', compute)
    gate.resolve('A')
    await flush()
    expect(called).toBe(false)
    expect(cache.stats()).toMatchObject({ queued: 0, computes: 1 })
  })

  it('rejects waiting callers with ClosedError on close()', async () => {
    const cache = new SmartCache<string>({ maxInflight: 1, breaker: false })
    void cache.getOrCompute('a', () => new Promise<string>(() => {})).catch(() => {})
    const waiting = cache.getOrCompute('b', () => 'B')
    cache.close()
    await expect(waiting).rejects.toMatchObject({ code: 'ENRICH_CLOSED' })
  })

  it('serves a stale value instead of refreshing it when maxInflight computes run', async () => {
    const clock = manualClock()
    const cache = new SmartCache<string>({ clock, maxInflight: 1, ttlMs: 100, jitter: 0, breaker: false })
    await cache.getOrCompute('s', () => 'old')
    void cache.getOrCompute('a', () => deferred<string>().promise)
    clock.advance(100)
    let called = false
    const value = await cache.getOrCompute('s', () => {
      called = true
      return 'new'
    })
    expect(value).toBe('old')
    expect(called).toBe(false)
    expect(cache.stats()).toMatchObject({ staleHits: 1, inflightRejections: 0 })
  })

  it('lets lookups join a running compute when maxInflight computes run', async () => {
    const cache = new SmartCache<string>({ maxInflight: 1, breaker: false })
    const gate = deferred<string>()
    const first = cache.getOrCompute('a', () => gate.promise)
    const joined = cache.getOrCompute('a', () => 'not called')
    gate.resolve('A')
    expect(await Promise.all([first, joined])).toEqual(['A', 'A'])
    expect(cache.stats()).toMatchObject({ dedupes: 1, inflightRejections: 0 })
  })

  it('frees the inflight slot once a compute settles', async () => {
    const cache = new SmartCache<string>({ maxInflight: 1, breaker: false })
    const gate = deferred<string>()
    const a = cache.getOrCompute('a', () => gate.promise)
    gate.reject(new Error('down'))
    await a.catch(() => {})
    expect(await cache.getOrCompute('b', () => 'B')).toBe('B')
  })

  it('keeps running, and delivers and stores the result of, a compute whose key was evicted meanwhile', async () => {
    const clock = manualClock()
    const cache = new SmartCache<string>({ clock, max: 2, ttlMs: 100, staleMs: 0, jitter: 0, breaker: false })
    await cache.getOrCompute('x', () => 'old')
    clock.advance(100)
    const gate = deferred<string>()
    let signal: AbortSignal | undefined
    const caller = track(
      cache.getOrCompute('x', (_key, ctx) => {
        signal = ctx.signal
        return gate.promise
      }),
    )
    cache.set('a', 'A')
    cache.set('b', 'B')
    expect(cache.peek('x').state).toBe('miss')
    expect(cache.stats().evictions).toBe(1)

    gate.resolve('new')
    await flush()
    expect(signal?.aborted).toBe(false)
    expect(caller).toMatchObject({ status: 'fulfilled', value: 'new' })
    expect(cache.peek('x')).toMatchObject({ state: 'fresh', value: 'new' })
  })

  it('contrast: lru-cache fetch() aborts an in-flight fetch whose key it evicts', async () => {
    const gate = deferred<string>()
    let signal: AbortSignal | undefined
    const lru = new LRUCache<string, string>({
      max: 2,
      fetchMethod: (_key, _stale, { signal: s }) => {
        signal = s
        return gate.promise
      },
    })
    const caller = track(lru.fetch('x'))
    lru.set('a', 'A')
    lru.set('b', 'B')
    gate.resolve('new')
    await flush()
    expect(signal?.aborted).toBe(true)
    expect(caller.status).toBe('rejected')
    expect(lru.has('x')).toBe(false)
  })
})
