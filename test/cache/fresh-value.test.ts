import { describe, expect, it } from 'vitest'
import { freshValue, NOT_FRESH, SmartCache } from '../../src/cache/smart-cache.js'
import { manualClock } from '../helpers/deferred.js'

// freshValue is the log path's read: a fresh hit without lookup()'s result
// object, answered from the key last read while nothing else was read or written.

function setup(max = 1_000) {
  const clock = manualClock()
  const cache = new SmartCache<string>({
    clock,
    max,
    ttlMs: 100,
    staleMs: 1_000,
    retryMs: 500,
    jitter: 0,
    breaker: false,
  })
  return { clock, cache }
}

const counts = (cache: SmartCache<string>) => {
  const { hits, staleHits, misses, errorHits } = cache.stats()
  return { hits, staleHits, misses, errorHits }
}

describe('freshValue(cache, key, now)', () => {
  it('answers a fresh hit with its value and counts it as lookup() does', () => {
    const { clock, cache } = setup()
    cache.set('k', 'v')
    expect(freshValue(cache, 'k', clock.now())).toBe('v')
    expect(freshValue(cache, 'k', clock.now())).toBe('v')
    expect(counts(cache)).toEqual({ hits: 2, staleHits: 0, misses: 0, errorHits: 0 })
    expect(cache.lookup('k')).toEqual({ state: 'fresh', value: 'v', until: clock.now() + 100 })
    expect(counts(cache)).toEqual({ hits: 3, staleHits: 0, misses: 0, errorHits: 0 })
  })

  it('answers a value that turned stale on the clock since the last read as not fresh, uncounted, and lookup() serves it stale', () => {
    const { clock, cache } = setup()
    cache.set('k', 'v')
    expect(freshValue(cache, 'k', clock.now())).toBe('v')
    clock.advance(99)
    expect(freshValue(cache, 'k', clock.now())).toBe('v')
    clock.advance(1)
    expect(freshValue(cache, 'k', clock.now())).toBe(NOT_FRESH)
    expect(counts(cache)).toEqual({ hits: 2, staleHits: 0, misses: 0, errorHits: 0 })
    expect(cache.lookup('k', clock.now())).toMatchObject({ state: 'stale', value: 'v' })
    clock.advance(1_000)
    expect(freshValue(cache, 'k', clock.now())).toBe(NOT_FRESH)
    expect(cache.lookup('k', clock.now())).toEqual({ state: 'miss' })
    expect(counts(cache)).toEqual({ hits: 2, staleHits: 1, misses: 1, errorHits: 0 })
  })

  it('answers a miss and a key in its error tier as not fresh, uncounted', async () => {
    const { clock, cache } = setup()
    expect(freshValue(cache, 'k', clock.now())).toBe(NOT_FRESH)
    await cache.getOrCompute('k', () => Promise.reject(new Error('down'))).catch(() => {})
    const before = counts(cache)
    expect(freshValue(cache, 'k', clock.now())).toBe(NOT_FRESH)
    expect(counts(cache)).toEqual(before)
  })

  it('never answers from the key last read once set(), delete(), clear(), an invalidation or a failure replaced its entry', async () => {
    const { clock, cache } = setup()
    cache.set('k', 'v1', { tags: ['t'] })
    expect(freshValue(cache, 'k', clock.now())).toBe('v1')
    cache.set('k', 'v2', { tags: ['t'] })
    expect(freshValue(cache, 'k', clock.now())).toBe('v2')
    cache.delete('k')
    expect(freshValue(cache, 'k', clock.now())).toBe(NOT_FRESH)
    cache.set('k', 'v3', { tags: ['t'] })
    expect(freshValue(cache, 'k', clock.now())).toBe('v3')
    cache.invalidateTags(['t'])
    expect(freshValue(cache, 'k', clock.now())).toBe(NOT_FRESH)
    cache.set('k', 'v4')
    expect(freshValue(cache, 'k', clock.now())).toBe('v4')
    cache.invalidatePattern('k*')
    expect(freshValue(cache, 'k', clock.now())).toBe(NOT_FRESH)
    cache.set('k', 'v5')
    expect(freshValue(cache, 'k', clock.now())).toBe('v5')
    cache.clear()
    expect(freshValue(cache, 'k', clock.now())).toBe(NOT_FRESH)
    // A value past its ttl fails its refresh: the failure is remembered, the value still served stale.
    cache.set('k', 'v6')
    expect(freshValue(cache, 'k', clock.now())).toBe('v6')
    clock.advance(100)
    await cache.refresh('k', () => Promise.reject(new Error('down')))
    expect(freshValue(cache, 'k', clock.now())).toBe(NOT_FRESH)
    expect(cache.lookup('k', clock.now())).toMatchObject({ state: 'stale', value: 'v6', error: new Error('down') })
  })

  it('keeps least-recently-used eviction: a key read again after another was read is made the most recent again', () => {
    const { clock, cache } = setup(2)
    cache.set('a', 'A')
    cache.set('b', 'B')
    expect(freshValue(cache, 'a', clock.now())).toBe('A')
    expect(cache.lookup('b', clock.now()).value).toBe('B')
    // b was the most recent: reading a again must make it so, although a was read last but one.
    expect(freshValue(cache, 'a', clock.now())).toBe('A')
    cache.set('c', 'C')
    expect(cache.peek('a').value).toBe('A')
    expect(cache.peek('b')).toEqual({ state: 'miss' })
    // And the other way round, through getOrCompute's read.
    void cache.getOrCompute('c', () => 'C')
    expect(freshValue(cache, 'a', clock.now())).toBe('A')
    expect(freshValue(cache, 'c', clock.now())).toBe('C')
    cache.set('d', 'D')
    expect(cache.peek('a')).toEqual({ state: 'miss' })
    expect(cache.peek('c').value).toBe('C')
  })

  it('reads a key longer than maxKeyLength as lookup() does: by its digest', () => {
    const { clock, cache } = setup()
    const long = 'x'.repeat(300)
    cache.set(long, 'v')
    expect(freshValue(cache, long, clock.now())).toBe('v')
    expect(freshValue(cache, 'x'.repeat(299), clock.now())).toBe(NOT_FRESH)
  })
})
