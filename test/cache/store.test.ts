import { afterEach, describe, expect, it, vi } from 'vitest'
import { SmartCache, type SmartCacheOptions } from '../../src/index.js'
import { deferred, manualClock } from '../helpers/deferred.js'
import { MemoryServer, MemoryStore } from '../helpers/memory-store.js'
import { flush } from '../helpers/track.js'

/** A fleet of `n` caches sharing one in-memory store server, on one manual clock. */
function fleet(n: number, options: SmartCacheOptions = {}, lockTtlMs?: number) {
  const clock = manualClock()
  const server = new MemoryServer(clock)
  const stores = Array.from({ length: n }, () => new MemoryStore(server, lockTtlMs === undefined ? {} : { lockTtlMs }))
  const caches = stores.map(
    (store, i) =>
      new SmartCache<unknown>({
        name: `i${i}`,
        clock,
        ttlMs: 1_000,
        staleMs: 500,
        jitter: 0,
        breaker: false,
        store,
        ...options,
      }),
  )
  return { clock, server, stores, caches }
}

const notCalled = (): never => {
  throw new Error('compute must not run')
}

afterEach(() => {
  vi.useRealTimers()
})

describe('SmartCache with a shared store: lookup order', () => {
  it('answers an in-process miss from the store without computing, keeping the remaining lifetime', async () => {
    const { clock, caches } = fleet(2)
    const [a, b] = caches as [SmartCache<unknown>, SmartCache<unknown>]
    expect(await a.getOrCompute('u1', () => ({ name: 'Ada' }))).toEqual({ name: 'Ada' })
    await flush()
    clock.advance(400)

    expect(await b.getOrCompute('u1', notCalled)).toEqual({ name: 'Ada' })
    expect(b.peek('u1')).toEqual({ state: 'fresh', value: { name: 'Ada' }, until: clock.now() + 600 })
    expect(b.stats()).toMatchObject({ computes: 0, misses: 1, store: { hits: 1, misses: 0 } })
  })

  it('never consults the store on a fresh in-process hit', async () => {
    const { stores, caches } = fleet(1)
    const cache = caches[0] as SmartCache<unknown>
    await cache.getOrCompute('k', () => 'v')
    await flush()
    const before = stores[0]?.calls.length
    for (let i = 0; i < 100; i++) await cache.getOrCompute('k', notCalled)
    expect(stores[0]?.calls.length).toBe(before)
  })

  it('computes on a miss everywhere and writes the value with its fresh plus stale lifetime and tags', async () => {
    const { clock, server, caches } = fleet(1)
    await caches[0]?.getOrCompute('k', () => 'v', { tags: ['t1'] })
    await flush()
    expect(server.values.get('k')).toMatchObject({ staleMs: 500, expiresAt: clock.now() + 1_500, tags: ['t1'] })
    expect(caches[0]?.stats().store).toMatchObject({ misses: 1, writes: 1 })
  })

  it('shares negative results', async () => {
    const { caches } = fleet(2)
    expect(await caches[0]?.getOrCompute('nobody', () => undefined)).toBeUndefined()
    await flush()
    expect(await caches[1]?.getOrCompute('nobody', notCalled)).toBeUndefined()
    expect(caches[1]?.peek('nobody').state).toBe('fresh')
  })

  it('keeps errors local: a failure is not written, another instance computes for itself', async () => {
    const { server, caches } = fleet(2)
    await expect(caches[0]?.getOrCompute('k', () => Promise.reject(new Error('down')))).rejects.toThrow('down')
    await flush()
    expect(server.values.has('k')).toBe(false)
    expect(server.locks.has('k')).toBe(false)
    expect(await caches[1]?.getOrCompute('k', () => 'fine')).toBe('fine')
    expect(caches[0]?.peek('k').state).toBe('error')
  })

  it('serves a stale store value at once on an in-process miss and refreshes it behind', async () => {
    const { clock, caches } = fleet(2)
    await caches[0]?.getOrCompute('k', () => 'old')
    await flush()
    clock.advance(1_200)
    const refreshed = deferred<string>()
    expect(await caches[1]?.getOrCompute('k', () => refreshed.promise)).toBe('old')
    expect(caches[1]?.peek('k')).toMatchObject({ state: 'stale', value: 'old' })
    refreshed.resolve('new')
    await flush()
    expect(caches[1]?.peek('k')).toMatchObject({ state: 'fresh', value: 'new' })
    expect(await caches[0]?.getOrCompute('k', notCalled)).toBe('old') // stale in process: served, refreshed from the store
    await flush()
    expect(caches[0]?.peek('k')).toMatchObject({ state: 'fresh', value: 'new' })
  })
})

describe('SmartCache with a shared store: a store that fails', () => {
  it('computes locally when every store call rejects, and counts the failures', async () => {
    const { stores, caches } = fleet(1)
    ;(stores[0] as MemoryStore).fault = 'reject'
    expect(await caches[0]?.getOrCompute('k', () => 'v')).toBe('v')
    await flush()
    expect(caches[0]?.peek('k')).toMatchObject({ state: 'fresh', value: 'v' })
    expect(caches[0]?.stats()).toMatchObject({ computes: 1, computeErrors: 0, errorEntries: 0 })
    expect(caches[0]?.stats().store?.errors).toBeGreaterThanOrEqual(2) // the read, the write
  })

  it('still answers from process and invalidates locally when the store hangs', async () => {
    const { stores, caches } = fleet(1)
    const cache = caches[0] as SmartCache<unknown>
    cache.set('k', 'v', { tags: ['t'] })
    ;(stores[0] as MemoryStore).fault = 'hang'
    expect(await cache.getOrCompute('k', notCalled)).toBe('v')
    expect(cache.invalidateTags(['t'])).toBe(1)
    expect(cache.delete('k')).toBe(false)
    expect(cache.invalidatePattern('*')).toBe(0)
  })

  it('turns a store failure into neither a cached error nor a breaker failure', async () => {
    const { stores, caches } = fleet(1, { breaker: { failureThreshold: 1 } })
    ;(stores[0] as MemoryStore).fault = 'reject'
    for (let i = 0; i < 5; i++) await caches[0]?.getOrCompute(`k${i}`, () => i)
    expect(caches[0]?.stats()).toMatchObject({ errorEntries: 0, breaker: 'closed' })
  })
})

describe('SmartCache with a shared store: fleet-wide single flight', () => {
  it('computes once for 1,000 callers spread over two instances', async () => {
    vi.useFakeTimers()
    const { caches } = fleet(2)
    const gate = deferred<string>()
    let calls = 0
    const compute = (): Promise<string> => {
      calls++
      return gate.promise
    }
    const callers = Array.from({ length: 1_000 }, (_, i) => caches[i % 2]?.getOrCompute('cold', compute))
    await vi.advanceTimersByTimeAsync(30)
    expect(calls).toBe(1)
    gate.resolve('v')
    await vi.advanceTimersByTimeAsync(100)
    expect(new Set(await Promise.all(callers))).toEqual(new Set(['v']))
    expect(calls).toBe(1)
    expect(caches[1]?.stats().store).toMatchObject({ waits: 1, hits: 1 })
  })

  it('takes over the lock when its holder fails, so a waiter computes', async () => {
    vi.useFakeTimers()
    const { caches } = fleet(2)
    const gate = deferred<string>()
    const holder = caches[0]?.getOrCompute('k', () => gate.promise)
    await vi.advanceTimersByTimeAsync(1)
    const waiter = caches[1]?.getOrCompute('k', () => 'second')
    await vi.advanceTimersByTimeAsync(20)
    gate.reject(new Error('down'))
    await expect(holder).rejects.toThrow('down')
    await vi.advanceTimersByTimeAsync(100)
    expect(await waiter).toBe('second')
  })

  it('waits at most the compute deadline for a lock holder that died, then computes itself', async () => {
    vi.useFakeTimers()
    const { server, clock, caches } = fleet(1, { timeoutMs: 200 })
    server.locks.set('k', { token: 'dead', expiresAt: clock.now() + 60_000 })
    let settled = false
    const waiter = caches[0]
      ?.getOrCompute('k', () => 'mine')
      .finally(() => {
        settled = true
      })
    await vi.advanceTimersByTimeAsync(150)
    expect(settled).toBe(false)
    await vi.advanceTimersByTimeAsync(100)
    expect(await waiter).toBe('mine')
    expect(caches[0]?.stats().store).toMatchObject({ waits: 1 })
  })

  it('uses the store lockTtlMs as the wait when the compute has no deadline', async () => {
    vi.useFakeTimers()
    const { server, clock, caches } = fleet(1, {}, 80)
    server.locks.set('k', { token: 'dead', expiresAt: clock.now() + 60_000 })
    const waiter = caches[0]?.getOrCompute('k', () => 'mine')
    await vi.advanceTimersByTimeAsync(150)
    expect(await waiter).toBe('mine')
  })

  it('rejects callers waiting on another instance with ClosedError when the cache closes', async () => {
    vi.useFakeTimers()
    const { server, clock, caches } = fleet(1)
    server.locks.set('k', { token: 'other', expiresAt: clock.now() + 60_000 })
    const waiter = caches[0]?.getOrCompute('k', notCalled)
    await vi.advanceTimersByTimeAsync(10)
    caches[0]?.close()
    await expect(waiter).rejects.toMatchObject({ code: 'ENRICH_CLOSED' })
    await vi.advanceTimersByTimeAsync(10_000)
  })
})

describe('SmartCache with a shared store: invalidation across the fleet', () => {
  async function warm(caches: SmartCache<unknown>[]) {
    for (const c of caches) {
      await c.getOrCompute('user:1', () => 'one', { tags: ['team:a'] })
      await c.getOrCompute('user:2', () => 'two', { tags: ['team:b'] })
      await flush()
    }
  }

  it('delete() drops the key in the store and on every other instance', async () => {
    const { server, caches } = fleet(3)
    await warm(caches)
    caches[0]?.delete('user:1')
    await flush()
    expect(server.values.has('user:1')).toBe(false)
    for (const c of caches) expect(c.peek('user:1').state).toBe('miss')
    expect(caches[1]?.peek('user:2').state).toBe('fresh')
    expect(caches[1]?.stats().store?.invalidations).toBe(1)
    expect(caches[0]?.stats().store?.invalidations).toBe(0)
  })

  it('invalidateTags() reaches every instance, including ones that read the value from the store', async () => {
    const { caches } = fleet(2)
    await caches[0]?.getOrCompute('user:1', () => 'one', { tags: ['team:a'] })
    await flush()
    expect(await caches[1]?.getOrCompute('user:1', notCalled)).toBe('one') // tags came with the record
    caches[0]?.invalidateTags(['team:a'])
    await flush()
    expect(caches[1]?.peek('user:1').state).toBe('miss')
  })

  it('invalidatePattern() reaches every instance', async () => {
    const { caches } = fleet(2)
    await warm(caches)
    caches[1]?.invalidatePattern('user:*')
    await flush()
    for (const c of caches) expect(c.stats().totalEntries).toBe(0)
  })

  it('set() writes through and makes the others drop their copy for the new one', async () => {
    const { caches } = fleet(2)
    await warm(caches)
    caches[0]?.set('user:1', 'ONE')
    await flush()
    expect(caches[1]?.peek('user:1').state).toBe('miss')
    expect(await caches[1]?.getOrCompute('user:1', notCalled)).toBe('ONE')
  })

  it('does not write a value whose key was invalidated by another instance while it computed', async () => {
    const { server, caches } = fleet(2)
    const gate = deferred<string>()
    const running = caches[0]?.getOrCompute('k', () => gate.promise)
    await flush()
    caches[1]?.delete('k')
    gate.resolve('outdated')
    expect(await running).toBe('outdated')
    await flush()
    expect(server.values.has('k')).toBe(false)
    expect(caches[0]?.peek('k').state).toBe('miss')
  })

  it('clear() stays in process, and close() stops listening', async () => {
    const { server, caches } = fleet(2)
    await warm(caches)
    caches[0]?.clear()
    expect(server.values.size).toBe(2)
    caches[1]?.close()
    expect(server.listeners.size).toBe(1)
  })
})

describe('SmartCache with a shared store: values planted in it', () => {
  const plant = (server: MemoryServer, clock: { now(): number }, key: string, value: unknown): void => {
    server.values.set(key, {
      text: JSON.stringify({ v: value }),
      staleMs: 0,
      expiresAt: clock.now() + 60_000,
      tags: undefined,
    })
  }
  const check = (v: unknown): { value: unknown; refused?: boolean } =>
    typeof v === 'string' ? { value: v } : { value: 'replacement', refused: true }

  it('serves the replacement of a value fromStore refuses, counts it and recomputes the key, overwriting the store', async () => {
    const { clock, server, caches } = fleet(1, { fromStore: check })
    const cache = caches[0] as SmartCache<unknown>
    plant(server, clock, 'k', { planted: true })
    let computes = 0
    const compute = (): string => {
      computes++
      return 'computed'
    }
    expect(await cache.getOrCompute('k', compute)).toBe('replacement')
    await flush()
    await flush()
    expect(computes).toBe(1)
    expect(cache.peek('k')).toMatchObject({ state: 'fresh', value: 'computed' })
    expect(JSON.parse(server.values.get('k')?.text ?? 'null')).toEqual({ v: 'computed' })
    expect(cache.stats().store).toMatchObject({ refused: 1 })
  })

  it('takes a value fromStore accepts as read, without computing', async () => {
    const { clock, server, caches } = fleet(1, { fromStore: check })
    const cache = caches[0] as SmartCache<unknown>
    plant(server, clock, 'k', 'shared')
    expect(await cache.getOrCompute('k', notCalled)).toBe('shared')
    expect(cache.stats().store).toMatchObject({ refused: 0, hits: 1 })
  })
})
