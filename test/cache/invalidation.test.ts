import { describe, expect, it } from 'vitest'
import { SmartCache } from '../../src/index.js'
import { deferred, manualClock } from '../helpers/deferred.js'

function setup(options: { maxKeyLength?: number } = {}) {
  const clock = manualClock()
  const cache = new SmartCache<string>({ clock, ttlMs: 1_000, jitter: 0, breaker: false, ...options })
  return { clock, cache }
}

const notCalled = (): string => {
  throw new Error('compute must not run')
}

describe('SmartCache set, delete and clear', () => {
  it('set() stores a fresh value that lookups return without computing', async () => {
    const { clock, cache } = setup()
    cache.set('k', 'v')
    expect(await cache.getOrCompute('k', notCalled)).toBe('v')
    expect(cache.peek('k')).toEqual({ state: 'fresh', value: 'v', until: clock.now() + 1_000 })
  })

  it('set() honours its own ttlMs', () => {
    const { clock, cache } = setup()
    cache.set('k', 'v', { ttlMs: 10 })
    expect(cache.peek('k').until).toBe(clock.now() + 10)
  })

  it('set() replaces a remembered failure', async () => {
    const { cache } = setup()
    await cache.getOrCompute('k', () => Promise.reject(new Error('down'))).catch(() => {})
    cache.set('k', 'v')
    expect(await cache.getOrCompute('k', notCalled)).toBe('v')
  })

  it('set() rejects a bad ttlMs with a RangeError quoting it', () => {
    const { cache } = setup()
    expect(() => cache.set('k', 'v', { ttlMs: -1 })).toThrow(
      new RangeError('ttlMs must be an integer >= 0, received -1'),
    )
  })

  it('delete() forgets a key and reports whether it held one', async () => {
    const { cache } = setup()
    cache.set('k', 'v')
    expect(cache.delete('k')).toBe(true)
    expect(cache.delete('k')).toBe(false)
    expect(cache.peek('k').state).toBe('miss')
    expect(await cache.getOrCompute('k', () => 'again')).toBe('again')
  })

  it('clear() forgets every key', () => {
    const { cache } = setup()
    cache.set('a', 'A')
    cache.set('b', 'B')
    cache.clear()
    expect(cache.stats().totalEntries).toBe(0)
    expect(cache.peek('a').state).toBe('miss')
  })

  it('does not store the result of a compute whose key was deleted while it ran, but still delivers it', async () => {
    const { cache } = setup()
    const gate = deferred<string>()
    const caller = cache.getOrCompute('k', () => gate.promise)
    expect(cache.delete('k')).toBe(true)
    gate.resolve('late')
    expect(await caller).toBe('late')
    expect(cache.peek('k').state).toBe('miss')
  })

  it('starts a new compute for a key deleted while its first compute runs', async () => {
    const { cache } = setup()
    const first = deferred<string>()
    const a = cache.getOrCompute('k', () => first.promise)
    cache.delete('k')
    const b = cache.getOrCompute('k', () => 'second')
    first.resolve('first')
    expect(await Promise.all([a, b])).toEqual(['first', 'second'])
    expect(cache.peek('k')).toMatchObject({ value: 'second' })
  })

  it('does not store the result of a compute that was running when clear() was called', async () => {
    const { cache } = setup()
    const gate = deferred<string>()
    const caller = cache.getOrCompute('k', () => gate.promise)
    cache.clear()
    gate.resolve('late')
    expect(await caller).toBe('late')
    expect(cache.peek('k').state).toBe('miss')
  })
})

describe('SmartCache tags and patterns', () => {
  it('invalidateTags() drops exactly the keys carrying any of the tags', () => {
    const { cache } = setup()
    cache.set('a', 'A', { tags: ['t1'] })
    cache.set('b', 'B', { tags: ['t1', 't2'] })
    cache.set('c', 'C', { tags: ['t2'] })
    cache.set('d', 'D')
    expect(cache.invalidateTags(['t1'])).toBe(2)
    expect(['a', 'b', 'c', 'd'].map((k) => cache.peek(k).state)).toEqual(['miss', 'miss', 'fresh', 'fresh'])
    expect(cache.invalidateTags(['t1', 't2'])).toBe(1)
    expect(cache.peek('c').state).toBe('miss')
  })

  it('tags computed values through the getOrCompute options', async () => {
    const { cache } = setup()
    await cache.getOrCompute('a', () => 'A', { tags: ['user'] })
    expect(cache.invalidateTags(['user'])).toBe(1)
    expect(cache.peek('a').state).toBe('miss')
  })

  it('keeps the tags of a key when its value is refreshed without tags', async () => {
    const { clock, cache } = setup()
    cache.set('a', 'A', { tags: ['t'] })
    clock.advance(1_000)
    await cache.getOrCompute('a', () => 'A2')
    expect(cache.peek('a')).toMatchObject({ state: 'fresh', value: 'A2' })
    expect(cache.invalidateTags(['t'])).toBe(1)
  })

  it('replaces the tags of a key set again with other tags', () => {
    const { cache } = setup()
    cache.set('a', 'A', { tags: ['old'] })
    cache.set('a', 'A2', { tags: ['new'] })
    expect(cache.invalidateTags(['old'])).toBe(0)
    expect(cache.invalidateTags(['new'])).toBe(1)
  })

  it('forgets the tags of an evicted key', () => {
    const cache = new SmartCache<string>({ max: 1, breaker: false })
    cache.set('a', 'A', { tags: ['t'] })
    cache.set('b', 'B')
    cache.set('a', 'A2')
    expect(cache.invalidateTags(['t'])).toBe(0)
    expect(cache.peek('a').state).toBe('fresh')
  })

  it('invalidatePattern() matches * against any run of characters', () => {
    const { cache } = setup()
    for (const k of ['user:1', 'user:22', 'user:', 'order:1', 'xuser:1']) cache.set(k, k)
    expect(cache.invalidatePattern('user:*')).toBe(3)
    expect(['user:1', 'user:22', 'user:', 'order:1', 'xuser:1'].map((k) => cache.peek(k).state)).toEqual([
      'miss',
      'miss',
      'miss',
      'fresh',
      'fresh',
    ])
  })

  it('invalidatePattern() matches ? against exactly one character', () => {
    const { cache } = setup()
    for (const k of ['user:1', 'user:22', 'user:']) cache.set(k, k)
    expect(cache.invalidatePattern('user:?')).toBe(1)
    expect(['user:1', 'user:22', 'user:'].map((k) => cache.peek(k).state)).toEqual(['miss', 'fresh', 'fresh'])
  })

  it('invalidatePattern() takes every other character literally', () => {
    const { cache } = setup()
    for (const k of ['a.b', 'axb', 'a+b', 'aab', '(x)', 'x']) cache.set(k, k)
    expect(cache.invalidatePattern('a.b')).toBe(1)
    expect(cache.invalidatePattern('a+b')).toBe(1)
    expect(cache.invalidatePattern('(x)')).toBe(1)
    expect(['a.b', 'axb', 'a+b', 'aab', '(x)', 'x'].map((k) => cache.peek(k).state)).toEqual([
      'miss',
      'fresh',
      'miss',
      'fresh',
      'miss',
      'fresh',
    ])
  })

  it('invalidatePattern() stops a matching running compute from storing its result', async () => {
    const { cache } = setup()
    const gate = deferred<string>()
    const caller = cache.getOrCompute('user:1', () => gate.promise)
    expect(cache.invalidatePattern('user:*')).toBe(1)
    gate.resolve('late')
    expect(await caller).toBe('late')
    expect(cache.peek('user:1').state).toBe('miss')
  })
})

describe('SmartCache long keys', () => {
  const prefix = 'x'.repeat(300)

  it('keeps two long keys with a common prefix apart', async () => {
    const { cache } = setup()
    await cache.getOrCompute(`${prefix}a`, () => 'A')
    await cache.getOrCompute(`${prefix}b`, () => 'B')
    expect(cache.peek(`${prefix}a`)).toMatchObject({ state: 'fresh', value: 'A' })
    expect(cache.peek(`${prefix}b`)).toMatchObject({ state: 'fresh', value: 'B' })
    expect(cache.stats().totalEntries).toBe(2)
  })

  it('hands the compute the hashed key, not the long one', async () => {
    const { cache } = setup()
    let seen = ''
    await cache.getOrCompute(`${prefix}a`, (key) => {
      seen = key
      return 'A'
    })
    expect(seen).toMatch(/^sha256:[\w-]{43}$/)
  })

  it('set(), delete() and peek() find a long key under its hash', () => {
    const { cache } = setup({ maxKeyLength: 16 })
    const long = `${prefix}a`
    cache.set(long, 'A')
    expect(cache.peek(long)).toMatchObject({ state: 'fresh', value: 'A' })
    expect(cache.delete(long)).toBe(true)
    expect(cache.peek(long).state).toBe('miss')
  })

  it('invalidateTags() drops a long key even when maxKeyLength is shorter than its hash', () => {
    const { cache } = setup({ maxKeyLength: 16 })
    cache.set(`${prefix}a`, 'A', { tags: ['t'] })
    expect(cache.invalidateTags(['t'])).toBe(1)
    expect(cache.peek(`${prefix}a`).state).toBe('miss')
  })

  it('invalidatePattern() drops a long key by its hash even when maxKeyLength is shorter than it', () => {
    const { cache } = setup({ maxKeyLength: 16 })
    cache.set(`${prefix}a`, 'A')
    expect(cache.invalidatePattern('sha256:*')).toBe(1)
    expect(cache.peek(`${prefix}a`).state).toBe('miss')
  })
})
