import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { CachedError, SmartCache, type SmartCacheOptions, TimeoutError } from '../../src/index.js'
import { deferred, manualClock } from '../helpers/deferred.js'
import { flush, track } from '../helpers/track.js'

const RETRY = 1_000
const MAX_RETRY = 5_000

function setup(options: SmartCacheOptions = {}) {
  const clock = manualClock()
  const cache = new SmartCache<string>({
    clock,
    jitter: 0,
    retryMs: RETRY,
    maxRetryMs: MAX_RETRY,
    breaker: false,
    ...options,
  })
  return { clock, cache }
}

function failing(error: unknown) {
  const fn = Object.assign(
    (): Promise<string> => {
      fn.calls++
      return Promise.reject(error)
    },
    { calls: 0 },
  )
  return fn
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection')
    },
    (e: unknown) => e,
  )
}

describe('SmartCache error tier', () => {
  it('rejects every caller of a failing compute with the original error object', async () => {
    const { cache } = setup()
    const gate = deferred<string>()
    const callers = [1, 2, 3].map(() => rejection(cache.getOrCompute('k', () => gate.promise)))
    const original = new Error('backend down')
    gate.reject(original)
    for (const e of await Promise.all(callers)) expect(e).toBe(original)
  })

  it('rejects later callers within retryMs with a CachedError wrapping the original error', async () => {
    const { clock, cache } = setup()
    const original = new Error('backend down')
    const failedAt = clock.now()
    await rejection(cache.getOrCompute('user:1', failing(original)))
    clock.advance(RETRY / 2)

    const e = await rejection(cache.getOrCompute('user:1', failing(new Error('other'))))
    expect(e).toBeInstanceOf(CachedError)
    const cached = e as CachedError
    expect(cached.cause).toBe(original)
    expect(cached.retryAt).toBe(failedAt + RETRY)
    expect(cached.code).toBe('ENRICH_CACHED_ERROR')
    expect(cached.message.startsWith('Cached error for user:1')).toBe(true)
    expect(cache.stats()).toMatchObject({ errorHits: 1, computeErrors: 1 })
  })

  it('does not call the compute again before retryAt, and does at retryAt', async () => {
    const { clock, cache } = setup()
    const compute = failing(new Error('down'))
    await rejection(cache.getOrCompute('k', compute))
    clock.advance(RETRY - 1)
    expect(await rejection(cache.getOrCompute('k', compute))).toBeInstanceOf(CachedError)
    expect(compute.calls).toBe(1)
    clock.advance(1)
    expect(await cache.getOrCompute('k', () => 'back')).toBe('back')
  })

  it('doubles the retry interval on each consecutive failure, up to maxRetryMs', async () => {
    const { clock, cache } = setup()
    const intervals: number[] = []
    for (let i = 0; i < 5; i++) {
      const failedAt = clock.now()
      await rejection(cache.getOrCompute('k', failing(new Error(`down ${i}`))))
      const retryAt = cache.peek('k').until ?? 0
      intervals.push(retryAt - failedAt)
      clock.set(retryAt)
    }
    expect(intervals).toEqual([1_000, 2_000, 4_000, 5_000, 5_000])
  })

  it('resets the retry interval after a success', async () => {
    const { clock, cache } = setup({ ttlMs: 100, staleMs: 0 })
    await rejection(cache.getOrCompute('k', failing(new Error('1'))))
    clock.advance(RETRY)
    await rejection(cache.getOrCompute('k', failing(new Error('2'))))
    clock.advance(2 * RETRY)
    await cache.getOrCompute('k', () => 'ok')
    clock.advance(100)

    const failedAt = clock.now()
    await rejection(cache.getOrCompute('k', failing(new Error('3'))))
    expect(cache.peek('k')).toMatchObject({ state: 'error', until: failedAt + RETRY })
  })

  it('serves the stale value, without computing, while its key is in the error tier', async () => {
    const { clock, cache } = setup({ ttlMs: 100, staleMs: 60_000 })
    await cache.getOrCompute('k', () => 'v1')
    clock.advance(100)
    const original = new Error('refresh failed')
    expect(await cache.getOrCompute('k', failing(original))).toBe('v1')
    await flush()
    expect(cache.peek('k')).toMatchObject({ state: 'stale', value: 'v1', error: original })

    const compute = failing(new Error('not called'))
    expect(await cache.getOrCompute('k', compute)).toBe('v1')
    expect(compute.calls).toBe(0)
    clock.advance(RETRY)
    expect(await cache.getOrCompute('k', compute)).toBe('v1')
    expect(compute.calls).toBe(1)
    expect(cache.stats()).toMatchObject({ staleHits: 3, errorHits: 0 })
  })

  it('turns a synchronous throw of the compute into a rejection', async () => {
    const { cache } = setup()
    const original = new Error('sync')
    let result: Promise<string> | undefined
    expect(() => {
      result = cache.getOrCompute('k', () => {
        throw original
      })
    }).not.toThrow()
    expect(await rejection(result as Promise<string>)).toBe(original)
    expect(cache.peek('k')).toMatchObject({ state: 'error', error: original })
  })

  it('reports the cache own refusals as rejections, never as synchronous throws', async () => {
    const { cache } = setup()
    await rejection(cache.getOrCompute('k', failing(new Error('down'))))
    let result: Promise<string> | undefined
    expect(() => {
      result = cache.getOrCompute('k', () => 'v')
    }).not.toThrow()
    expect(await rejection(result as Promise<string>)).toBeInstanceOf(CachedError)
  })
})

describe('SmartCache timeouts', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('aborts the compute signal and rejects with TimeoutError after timeoutMs', async () => {
    const cache = new SmartCache<string>({ timeoutMs: 100, breaker: false })
    let signal: AbortSignal | undefined
    const caller = track(
      cache.getOrCompute('k', (_key, ctx) => {
        signal = ctx.signal
        return new Promise<string>(() => {})
      }),
    )
    await vi.advanceTimersByTimeAsync(99)
    expect(signal?.aborted).toBe(false)
    expect(caller.status).toBe('pending')

    await vi.advanceTimersByTimeAsync(1)
    expect(signal?.aborted).toBe(true)
    expect(signal?.reason).toBeInstanceOf(TimeoutError)
    expect(caller.status).toBe('rejected')
    expect(caller.error).toBeInstanceOf(TimeoutError)
    expect((caller.error as TimeoutError).code).toBe('ENRICH_TIMEOUT')
    expect(cache.stats()).toMatchObject({ timeouts: 1, computeErrors: 1, inflight: 0 })
  })

  it('uses the per-call timeoutMs over the cache one', async () => {
    const cache = new SmartCache<string>({ timeoutMs: 10_000, breaker: false })
    const caller = track(cache.getOrCompute('k', () => new Promise<string>(() => {}), { timeoutMs: 20 }))
    await vi.advanceTimersByTimeAsync(20)
    expect(caller.error).toBeInstanceOf(TimeoutError)
  })

  it('puts a timed-out key in the error tier and ignores the compute late result', async () => {
    const cache = new SmartCache<string>({ timeoutMs: 100, retryMs: 1_000, breaker: false })
    const gate = deferred<string>()
    const caller = track(cache.getOrCompute('k', () => gate.promise))
    await vi.advanceTimersByTimeAsync(100)
    gate.resolve('late')
    await vi.advanceTimersByTimeAsync(0)
    expect(caller.error).toBeInstanceOf(TimeoutError)
    expect(cache.peek('k').state).toBe('error')
    expect(cache.stats().timeouts).toBe(1)
  })

  it('clears the deadline timer when the compute settles in time', async () => {
    const cache = new SmartCache<string>({ timeoutMs: 100, breaker: false })
    expect(await cache.getOrCompute('k', async () => 'v')).toBe('v')
    expect(vi.getTimerCount()).toBe(0)
  })
})

describe('a compute result whose then getter throws', () => {
  it('is a failed compute, held in the error tier, not a value stored and served', async () => {
    const { cache } = setup()
    const hostile = Object.defineProperty({}, 'then', {
      get() {
        throw new Error('then getter')
      },
    })
    let calls = 0
    const compute = () => {
      calls++
      return hostile as unknown as string
    }
    const e = await rejection(cache.getOrCompute('k', compute))
    expect((e as Error).message).toBe('then getter')
    expect(cache.peek('k')?.state).toBe('error')
    // Served from the error tier, not computed again and not a fresh hit.
    const again = await rejection(cache.getOrCompute('k', compute))
    expect(again).toBeInstanceOf(CachedError)
    expect(calls).toBe(1)
  })
})
