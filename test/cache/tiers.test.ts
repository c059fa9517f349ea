import { afterEach, describe, expect, it, vi } from 'vitest'
import { type Compute, SmartCache, type SmartCacheOptions } from '../../src/index.js'
import { deferred, manualClock } from '../helpers/deferred.js'
import { flush, track } from '../helpers/track.js'

const TTL = 1_000
const STALE = 5_000

function setup(options: SmartCacheOptions = {}) {
  const clock = manualClock()
  const cache = new SmartCache<string>({ clock, ttlMs: TTL, staleMs: STALE, jitter: 0, breaker: false, ...options })
  return { clock, cache }
}

/** A compute that counts its calls and returns the next of `values`. */
function counting(...values: string[]): Compute<string> & { calls: number } {
  const fn = Object.assign(
    (): string => {
      const v = values[Math.min(fn.calls, values.length - 1)] as string
      fn.calls++
      return v
    },
    { calls: 0 },
  )
  return fn
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe('SmartCache fast and slow tiers', () => {
  it('returns a fresh value without calling the compute again until ttlMs has passed', async () => {
    const { clock, cache } = setup()
    const compute = counting('v1', 'v2')
    expect(await cache.getOrCompute('k', compute)).toBe('v1')
    clock.advance(TTL - 1)
    expect(await cache.getOrCompute('k', compute)).toBe('v1')
    expect(compute.calls).toBe(1)
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, staleHits: 0 })
  })

  it('serves a stale value at once to every caller while exactly one background refresh runs, then the new value', async () => {
    const { clock, cache } = setup()
    await cache.getOrCompute('k', () => 'v1')
    clock.advance(TTL)

    const gate = deferred<string>()
    let refreshes = 0
    const refresh = (): Promise<string> => {
      refreshes++
      return gate.promise
    }
    const served = await Promise.all(Array.from({ length: 100 }, () => cache.getOrCompute('k', refresh)))
    expect(served.every((v) => v === 'v1')).toBe(true)
    expect(refreshes).toBe(1)
    expect(cache.stats()).toMatchObject({ staleHits: 100, inflight: 1 })

    gate.resolve('v2')
    await flush()
    expect(await cache.getOrCompute('k', refresh)).toBe('v2')
    expect(refreshes).toBe(1)
    expect(cache.peek('k').state).toBe('fresh')
  })

  it('makes the caller wait for a new compute once a value is older than ttlMs + staleMs', async () => {
    const { clock, cache } = setup()
    await cache.getOrCompute('k', () => 'v1')
    clock.advance(TTL + STALE - 1)
    expect(cache.peek('k').state).toBe('stale')
    clock.advance(1)

    const gate = deferred<string>()
    const caller = track(cache.getOrCompute('k', () => gate.promise))
    await flush()
    expect(caller.status).toBe('pending')
    gate.resolve('v2')
    await flush()
    expect(caller).toMatchObject({ status: 'fulfilled', value: 'v2' })
    expect(cache.stats()).toMatchObject({ misses: 2, staleHits: 0 })
  })

  it('caches an undefined result for negativeTtlMs', async () => {
    const clock = manualClock()
    const cache = new SmartCache<string | undefined>({
      clock,
      ttlMs: 60_000,
      negativeTtlMs: 100,
      staleMs: 0,
      jitter: 0,
    })
    let calls = 0
    const compute = (): undefined => {
      calls++
      return undefined
    }
    expect(await cache.getOrCompute('k', compute)).toBeUndefined()
    clock.advance(99)
    expect(cache.peek('k')).toMatchObject({ state: 'fresh', value: undefined })
    expect(await cache.getOrCompute('k', compute)).toBeUndefined()
    expect(calls).toBe(1)
    clock.advance(1)
    await cache.getOrCompute('k', compute)
    expect(calls).toBe(2)
  })

  it('caches a null result for negativeTtlMs', async () => {
    const clock = manualClock()
    const cache = new SmartCache<string | null>({ clock, ttlMs: 60_000, negativeTtlMs: 100, staleMs: 0, jitter: 0 })
    let calls = 0
    const compute = (): null => {
      calls++
      return null
    }
    expect(await cache.getOrCompute('k', compute)).toBeNull()
    clock.advance(99)
    expect(await cache.getOrCompute('k', compute)).toBeNull()
    expect(calls).toBe(1)
    clock.advance(1)
    await cache.getOrCompute('k', compute)
    expect(calls).toBe(2)
  })

  it('caches a negative result for ttlMs when negativeTtlMs is not set', async () => {
    const clock = manualClock()
    const cache = new SmartCache<null>({ clock, ttlMs: 500, staleMs: 0, jitter: 0 })
    await cache.getOrCompute('k', () => null)
    expect(cache.peek('k').until).toBe(clock.now() + 500)
  })

  it('stores exact ttls when jitter is 0', async () => {
    const { clock, cache } = setup({ max: 1_000 })
    for (let i = 0; i < 500; i++) await cache.getOrCompute(`k${i}`, () => 'v')
    const lifetimes = new Set(Array.from({ length: 500 }, (_, i) => (cache.peek(`k${i}`).until ?? 0) - clock.now()))
    expect([...lifetimes]).toEqual([TTL])
  })

  it('spreads ttls by at most plus or minus the jitter fraction', async () => {
    const { clock, cache } = setup({ jitter: 0.1 })
    const random = vi.spyOn(Math, 'random')
    random.mockReturnValueOnce(0)
    await cache.getOrCompute('low', () => 'v')
    random.mockReturnValueOnce(0.5)
    await cache.getOrCompute('mid', () => 'v')
    random.mockReturnValueOnce(1 - Number.EPSILON)
    await cache.getOrCompute('high', () => 'v')
    expect(cache.peek('low').until).toBe(clock.now() + 900)
    expect(cache.peek('mid').until).toBe(clock.now() + 1_000)
    expect(cache.peek('high').until).toBe(clock.now() + 1_100)
  })

  it('spreads the ttls of many keys across the whole jitter band', async () => {
    const { clock, cache } = setup({ jitter: 0.1, max: 2_000 })
    for (let i = 0; i < 2_000; i++) await cache.getOrCompute(`k${i}`, () => 'v')
    const lifetimes = Array.from({ length: 2_000 }, (_, i) => (cache.peek(`k${i}`).until ?? 0) - clock.now())
    expect(Math.min(...lifetimes)).toBeGreaterThanOrEqual(900)
    expect(Math.max(...lifetimes)).toBeLessThanOrEqual(1_100)
    // 2,000 uniform draws over 201 integers: both ends of the band are reached within 20 ms.
    expect(Math.min(...lifetimes)).toBeLessThan(920)
    expect(Math.max(...lifetimes)).toBeGreaterThan(1_080)
  })

  it('applies the per-call ttlMs instead of the cache ttlMs', async () => {
    const { clock, cache } = setup()
    await cache.getOrCompute('k', () => 'v', { ttlMs: 50 })
    expect(cache.peek('k').until).toBe(clock.now() + 50)
  })
})
