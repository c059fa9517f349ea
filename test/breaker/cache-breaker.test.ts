import { describe, expect, it, vi } from 'vitest'
import {
  BreakerOpenError,
  type BreakerState,
  InflightLimitError,
  SmartCache,
  type SmartCacheOptions,
} from '../../src/index.js'
import { deferred, manualClock } from '../helpers/deferred.js'
import { flush, type Tracked, track } from '../helpers/track.js'

const HALF_OPEN = 1_000

function setup(options: SmartCacheOptions = {}) {
  const clock = manualClock()
  const cache = new SmartCache<string>({
    clock,
    ttlMs: 100,
    staleMs: 60_000,
    jitter: 0,
    breaker: { halfOpenAfterMs: HALF_OPEN },
    ...options,
  })
  return { clock, cache }
}

const down = (): Promise<string> => Promise.reject(new Error('down'))

/** Fails `n` computes of distinct keys, so that the error tier does not get in the way. */
async function failDistinct(cache: SmartCache<string>, n: number, prefix = 'fail'): Promise<void> {
  for (let i = 0; i < n; i++) await cache.getOrCompute(`${prefix}:${i}`, down).catch(() => {})
}

function counting(value: string) {
  const fn = Object.assign(
    (): string => {
      fn.calls++
      return value
    },
    { calls: 0 },
  )
  return fn
}

describe('SmartCache breaker', () => {
  it('opens after five consecutive compute failures by default', async () => {
    const { cache } = setup({ breaker: {} })
    await failDistinct(cache, 4)
    expect(cache.stats().breaker).toBe('closed')
    await failDistinct(cache, 1, 'last')
    expect(cache.stats().breaker).toBe('open')
  })

  it('opens on the failure-rate strategy when configured', async () => {
    const { cache } = setup({
      breaker: { failureThreshold: 0, failureRate: 0.5, windowMs: 1_000, minimumCalls: 4, halfOpenAfterMs: HALF_OPEN },
    })
    await cache.getOrCompute('ok:1', () => 'v')
    await failDistinct(cache, 2)
    expect(cache.stats().breaker).toBe('closed') // 2/3 failed, below minimumCalls
    await failDistinct(cache, 1, 'last')
    expect(cache.stats().breaker).toBe('open') // 3/4 > 0.5
  })

  it('rejects a key without a value at once with BreakerOpenError while open, without computing', async () => {
    const { clock, cache } = setup()
    await failDistinct(cache, 5)
    const openedAt = clock.now()
    const compute = counting('v')
    const e = await cache.getOrCompute('k', compute).catch((error: unknown) => error)
    expect(e).toBeInstanceOf(BreakerOpenError)
    expect(e).toMatchObject({ code: 'ENRICH_BREAKER_OPEN', retryAt: openedAt + HALF_OPEN })
    expect(compute.calls).toBe(0)
    expect(cache.stats().breakerRejections).toBe(1)
  })

  it('serves the stale value while the breaker is open, without computing', async () => {
    const { clock, cache } = setup()
    await cache.getOrCompute('k', () => 'old')
    await failDistinct(cache, 5)
    clock.advance(100)
    const compute = counting('new')
    expect(await cache.getOrCompute('k', compute)).toBe('old')
    expect(compute.calls).toBe(0)
    expect(cache.stats()).toMatchObject({ staleHits: 1, breakerRejections: 0 })
  })

  it('counts a timeout as a failure', async () => {
    vi.useFakeTimers()
    try {
      const cache = new SmartCache<string>({ timeoutMs: 10, breaker: { failureThreshold: 2 } })
      const hang = (): Promise<string> => new Promise<string>(() => {})
      const calls = [cache.getOrCompute('a', hang).catch(() => {}), cache.getOrCompute('b', hang).catch(() => {})]
      await vi.advanceTimersByTimeAsync(10)
      await Promise.all(calls)
      expect(cache.stats()).toMatchObject({ timeouts: 2, breaker: 'open' })
    } finally {
      vi.useRealTimers()
    }
  })

  it('has no breaker with breaker: false', async () => {
    const { cache } = setup({ breaker: false })
    await failDistinct(cache, 50)
    expect(cache.breaker).toBeUndefined()
    expect(cache.stats().breaker).toBe('none')
    expect(await cache.getOrCompute('k', () => 'v')).toBe('v')
  })
})

describe('SmartCache breaker half-open probe', () => {
  /** Opens the breaker and waits until it admits a probe. */
  async function halfOpen() {
    const s = setup()
    await failDistinct(s.cache, 5)
    s.clock.advance(HALF_OPEN)
    return s
  }

  function probeAndCallers(cache: SmartCache<string>, keys: (i: number) => string) {
    const gate = deferred<string>()
    let computes = 0
    const compute = (): Promise<string> => {
      computes++
      return gate.promise
    }
    const callers: Tracked<string>[] = Array.from({ length: 1_000 }, (_, i) =>
      track(cache.getOrCompute(keys(i), compute)),
    )
    return { gate, callers, computes: () => computes }
  }

  it.each([
    ['distinct keys', 'the others fail fast without waiting', (i: number) => `k${i}`],
    ['one key', 'the others fail fast instead of joining it', () => 'k'],
  ])('lets exactly one of 1,000 concurrent callers of %s probe; %s', async (_keys, _others, keyOf) => {
    const { cache } = await halfOpen()
    const { gate, callers, computes } = probeAndCallers(cache, keyOf)
    await flush()
    expect(computes()).toBe(1)
    const [probe, ...others] = callers
    expect(probe?.status).toBe('pending')
    expect(others.every((c) => c.status === 'rejected' && c.error instanceof BreakerOpenError)).toBe(true)
    gate.resolve('v')
    await flush()
    expect(probe).toMatchObject({ status: 'fulfilled', value: 'v' })
  })

  it('serves a stale value to the callers of a key whose refresh is the probe', async () => {
    const { clock, cache } = setup()
    await cache.getOrCompute('k', () => 'old')
    await failDistinct(cache, 5)
    clock.advance(HALF_OPEN)
    const gate = deferred<string>()
    const served = await Promise.all(Array.from({ length: 10 }, () => cache.getOrCompute('k', () => gate.promise)))
    expect(served.every((v) => v === 'old')).toBe(true)
    expect(cache.stats().inflight).toBe(1)
    gate.resolve('new')
    await flush()
    expect(cache.stats().breaker).toBe('closed')
    expect(cache.peek('k')).toMatchObject({ state: 'fresh', value: 'new' })
  })

  it('closes the breaker when the probe succeeds', async () => {
    const { cache } = await halfOpen()
    expect(await cache.getOrCompute('probe', () => 'v')).toBe('v')
    expect(cache.stats().breaker).toBe('closed')
    expect(await cache.getOrCompute('next', () => 'w')).toBe('w')
  })

  it('reopens the breaker when the probe fails', async () => {
    const { clock, cache } = await halfOpen()
    await cache.getOrCompute('probe', down).catch(() => {})
    expect(cache.stats().breaker).toBe('open')
    await expect(cache.getOrCompute('next', () => 'w')).rejects.toMatchObject({
      code: 'ENRICH_BREAKER_OPEN',
      retryAt: clock.now() + HALF_OPEN,
    })
  })

  it('gives the probe back when maxInflight stops it, so the next caller may probe', async () => {
    const { clock, cache } = setup({ maxInflight: 1, maxQueue: 0 })
    const running = deferred<string>()
    const held = cache.getOrCompute('held', () => running.promise)
    for (let i = 0; i < 5; i++) cache.breaker?.failure()
    clock.advance(HALF_OPEN)
    await expect(cache.getOrCompute('x', () => 'x')).rejects.toBeInstanceOf(InflightLimitError)
    running.resolve('h')
    await held
    const compute = counting('y')
    expect(await cache.getOrCompute('y', compute)).toBe('y')
    expect(compute.calls).toBe(1)
    expect(cache.stats().breaker).toBe('closed')
  })
})

describe('SmartCache breaker events', () => {
  it('emits each transition through breaker.onStateChange and shows it in stats()', async () => {
    const { clock, cache } = setup({ name: 'geo' })
    const seen: string[] = []
    const states: BreakerState[] = []
    cache.breaker?.onStateChange((c) => {
      seen.push(`${c.name}: ${c.from} -> ${c.to}`)
    })
    await failDistinct(cache, 5)
    states.push(cache.stats().breaker as BreakerState)
    clock.advance(HALF_OPEN)
    states.push(cache.stats().breaker as BreakerState)
    await cache.getOrCompute('probe', () => 'v')
    states.push(cache.stats().breaker as BreakerState)
    expect(seen).toEqual(['geo: closed -> open', 'geo: open -> half-open', 'geo: half-open -> closed'])
    expect(states).toEqual(['open', 'half-open', 'closed'])
  })

  it('stops delivering transitions once the disposer ran', async () => {
    const { cache } = setup()
    const seen: string[] = []
    const dispose = cache.breaker?.onStateChange((c) => seen.push(c.to))
    dispose?.()
    await failDistinct(cache, 5)
    expect(cache.stats().breaker).toBe('open')
    expect(seen).toEqual([])
  })
})
