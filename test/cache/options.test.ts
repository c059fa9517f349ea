import { describe, expect, it } from 'vitest'
import { SmartCache, type SmartCacheOptions } from '../../src/index.js'

describe('SmartCache options', () => {
  it.each([
    [{ max: 0 }, 'max must be an integer >= 1, received 0'],
    [{ max: 1.5 }, 'max must be an integer >= 1, received 1.5'],
    [{ max: Number.POSITIVE_INFINITY }, 'max must be an integer >= 1, received Infinity'],
    [{ maxInflight: 0 }, 'maxInflight must be an integer >= 1, received 0'],
    [{ ttlMs: -1 }, 'ttlMs must be an integer >= 0, received -1'],
    [{ staleMs: Number.NaN }, 'staleMs must be an integer >= 0, received NaN'],
    [{ retryMs: -5 }, 'retryMs must be an integer >= 0, received -5'],
    [{ maxRetryMs: 0.5 }, 'maxRetryMs must be an integer >= 0, received 0.5'],
    [{ maxKeyLength: 15 }, 'maxKeyLength must be an integer >= 16, received 15'],
    [{ jitter: 1.5 }, 'jitter must be between 0 and 1, received 1.5'],
    [{ jitter: -0.1 }, 'jitter must be between 0 and 1, received -0.1'],
    [{ negativeTtlMs: -1 }, 'negativeTtlMs must be an integer >= 0, received -1'],
    [{ timeoutMs: 0 }, 'timeoutMs must be an integer >= 1, received 0'],
    [{ breaker: { failureThreshold: -1 } }, 'failureThreshold must be an integer >= 0, received -1'],
  ] as [SmartCacheOptions, string][])('rejects %o with a RangeError quoting the value', (options, message) => {
    expect(() => new SmartCache(options)).toThrow(new RangeError(message))
  })

  it('takes a max of 2 ** 31 without allocating for it up front, and still bounds a large max', () => {
    const before = process.memoryUsage().heapUsed
    const huge = new SmartCache<string>({ max: 2 ** 31, breaker: false })
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 1024 * 1024)
    huge.set('a', 'v')
    expect(huge.peek('a').value).toBe('v')
    const large = new SmartCache<string>({ max: 100_000, breaker: false })
    for (let i = 0; i < 100_005; i++) large.set(`k${i}`, 'v')
    expect(large.stats()).toMatchObject({ totalEntries: 100_000, evictions: 5 })
    expect(large.peek('k0').state).toBe('miss')
    expect(large.peek('k100004').value).toBe('v')
  })

  it('ignores options given as undefined and keeps the defaults', () => {
    const options = { max: undefined, name: undefined } as unknown as SmartCacheOptions
    const cache = new SmartCache<string>(options)
    expect(cache.name).toBe('cache')
    for (let i = 0; i < 1_001; i++) cache.set(`k${i}`, 'v')
    expect(cache.stats().totalEntries).toBe(1_000)
  })

  it('refuses options that are not an object with a TypeError quoting them', () => {
    expect(() => new SmartCache(null as never)).toThrow(
      new TypeError('SmartCache expects an options object, received null'),
    )
    expect(() => new SmartCache(5 as never)).toThrow(new TypeError('SmartCache expects an options object, received 5'))
    expect(() => new SmartCache([] as never)).toThrow(/received an array/)
  })

  it('uses its name in stats', () => {
    expect(new SmartCache<string>({ name: 'geo' }).stats().name).toBe('geo')
  })
})
