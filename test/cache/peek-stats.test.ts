import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { SmartCache } from '../../src/index.js'
import { deferred, manualClock } from '../helpers/deferred.js'

function setup() {
  const clock = manualClock()
  const cache = new SmartCache<string>({ clock, ttlMs: 100, staleMs: 1_000, retryMs: 500, jitter: 0, breaker: false })
  return { clock, cache }
}

const down = (): Promise<string> => Promise.reject(new Error('down'))

describe('SmartCache peek()', () => {
  it('answers synchronously and never computes', () => {
    const { cache } = setup()
    const result = cache.peek('k')
    expect(result).not.toBeInstanceOf(Promise)
    expect(result).toEqual({ state: 'miss' })
    expect(cache.stats()).toMatchObject({ computes: 0, misses: 0, hits: 0 })
  })

  it('reports a fresh value and when it turns stale', async () => {
    const { clock, cache } = setup()
    await cache.getOrCompute('k', () => 'v')
    expect(cache.peek('k')).toEqual({ state: 'fresh', value: 'v', until: clock.now() + 100 })
  })

  it('reports a stale value and when it is gone', async () => {
    const { clock, cache } = setup()
    await cache.getOrCompute('k', () => 'v')
    const storedAt = clock.now()
    clock.advance(100)
    expect(cache.peek('k')).toEqual({ state: 'stale', value: 'v', until: storedAt + 1_100 })
  })

  it('reports a failing key as error, with the error and when it may be retried', async () => {
    const { clock, cache } = setup()
    const original = new Error('down')
    await cache.getOrCompute('k', () => Promise.reject(original)).catch(() => {})
    expect(cache.peek('k')).toEqual({ state: 'error', error: original, until: clock.now() + 500 })
  })

  it('reports miss for a value past its stale window and for a failure past its retry time', async () => {
    const { clock, cache } = setup()
    await cache.getOrCompute('v', () => 'v')
    await cache.getOrCompute('e', down).catch(() => {})
    clock.advance(1_100)
    expect(cache.peek('v')).toEqual({ state: 'miss' })
    expect(cache.peek('e')).toEqual({ state: 'miss' })
  })

  it('does not change recency, unlike a lookup', async () => {
    const clock = manualClock()
    const cache = new SmartCache<string>({ clock, max: 2, breaker: false })
    cache.set('a', 'A')
    cache.set('b', 'B')
    cache.peek('a')
    cache.set('c', 'C')
    expect(cache.peek('a').state).toBe('miss')

    await cache.getOrCompute('b', () => 'not called')
    cache.set('d', 'D')
    expect(cache.peek('b').state).toBe('fresh')
    expect(cache.peek('c').state).toBe('miss')
  })
})

describe('SmartCache stats()', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('reports a hit rate of 0 before the first lookup', () => {
    expect(new SmartCache<string>().stats().hitRate).toBe(0)
  })

  it('computes hitRate as (hits + staleHits) / lookups on a scripted sequence', async () => {
    const cache = new SmartCache<string>({ ttlMs: 100, retryMs: 1_000, jitter: 0, breaker: false })
    await cache.getOrCompute('a', () => 'A') // miss
    for (let i = 0; i < 3; i++) await cache.getOrCompute('a', () => 'A') // 3 hits
    vi.advanceTimersByTime(100)
    await cache.getOrCompute('a', () => deferred<string>().promise) // stale hit, refresh left running
    await cache.getOrCompute('a', () => 'A') // stale hit
    await cache.getOrCompute('b', down).catch(() => {}) // miss
    await cache.getOrCompute('b', down).catch(() => {}) // error hit
    await cache.getOrCompute('b', down).catch(() => {}) // error hit
    const stats = cache.stats()
    expect(stats).toMatchObject({ hits: 3, staleHits: 2, misses: 2, errorHits: 2 })
    expect(stats.hitRate).toBe(5 / 9)
  })

  it('counts every outcome of a scripted sequence', async () => {
    const cache = new SmartCache<string>({
      name: 'scripted',
      max: 4,
      maxInflight: 1,
      maxQueue: 0,
      ttlMs: 100,
      staleMs: 1_000,
      retryMs: 1_000,
      jitter: 0,
      breaker: { failureThreshold: 2 },
    })
    await cache.getOrCompute('a', () => 'A') // miss, compute
    await cache.getOrCompute('a', () => 'A') // hit
    await cache.getOrCompute('a', () => 'A') // hit
    vi.advanceTimersByTime(100)
    await cache.getOrCompute('a', () => 'A2') // stale hit, background compute
    await cache.getOrCompute('b', down).catch(() => {}) // miss, compute error
    await cache.getOrCompute('b', down).catch(() => {}) // error hit
    const gate = deferred<string>()
    const c = cache.getOrCompute('c', () => gate.promise) // miss, compute
    const joined = cache.getOrCompute('c', () => 'C') // miss, dedupe
    await cache.getOrCompute('d', () => 'D').catch(() => {}) // miss, inflight rejection
    gate.resolve('C')
    await Promise.all([c, joined])
    const t = cache.getOrCompute('t', () => new Promise<string>(() => {}), { timeoutMs: 10 }).catch(() => {}) // miss, compute
    await vi.advanceTimersByTimeAsync(10) // timeout, compute error
    await t
    await cache.getOrCompute('e', down).catch(() => {}) // miss, compute error: the breaker opens
    await cache.getOrCompute('f', () => 'F').catch(() => {}) // miss, breaker rejection

    expect(cache.stats()).toEqual({
      name: 'scripted',
      totalEntries: 4,
      successEntries: 1,
      errorEntries: 3,
      staleEntries: 0,
      hits: 2,
      staleHits: 1,
      misses: 8,
      errorHits: 1,
      computes: 6,
      computeErrors: 3,
      timeouts: 1,
      dedupes: 1,
      inflight: 0,
      evictions: 1,
      breakerRejections: 1,
      inflightRejections: 1,
      queued: 0,
      hitRate: 3 / 12,
      breaker: 'open',
    })
  })

  it('counts stale entries among the success entries', async () => {
    const clock = manualClock()
    const cache = new SmartCache<string>({ clock, ttlMs: 100, staleMs: 1_000, jitter: 0 })
    cache.set('a', 'A')
    clock.advance(50)
    cache.set('b', 'B')
    clock.advance(50)
    expect(cache.stats()).toMatchObject({ totalEntries: 2, successEntries: 2, staleEntries: 1, errorEntries: 0 })
  })
})
