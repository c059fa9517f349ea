import { describe, expectTypeOf, it } from 'vitest'
import {
  type CachedError,
  type EnrichError,
  type EntryState,
  type ErrorCode,
  isEnrichError,
  type PeekResult,
  SmartCache,
  type SmartCacheStats,
} from '../../src/index.js'

interface Geo {
  country: string
}

describe('SmartCache types', () => {
  const cache = new SmartCache<Geo>()

  it('getOrCompute returns Promise<V> for a sync or an async compute', () => {
    expectTypeOf(cache.getOrCompute('k', () => ({ country: 'FR' }))).toEqualTypeOf<Promise<Geo>>()
    expectTypeOf(cache.getOrCompute('k', async () => ({ country: 'FR' }))).toEqualTypeOf<Promise<Geo>>()
  })

  it('getOrCompute refuses a compute of another type', () => {
    // @ts-expect-error: a number is not a Geo
    void cache.getOrCompute('k', () => 42)
  })

  it('gives the compute its key and an AbortSignal', () => {
    void cache.getOrCompute('k', (key, ctx) => {
      expectTypeOf(key).toEqualTypeOf<string>()
      expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>()
      return { country: 'FR' }
    })
  })

  it('peek is synchronous and its value is V | undefined', () => {
    expectTypeOf(cache.peek('k')).toEqualTypeOf<PeekResult<Geo>>()
    expectTypeOf(cache.peek('k').value).toEqualTypeOf<Geo | undefined>()
    expectTypeOf(cache.peek('k').state).toEqualTypeOf<EntryState>()
    expectTypeOf<EntryState>().toEqualTypeOf<'fresh' | 'stale' | 'error' | 'miss'>()
  })

  it('stats() reports the breaker state as a union', () => {
    expectTypeOf(cache.stats()).toEqualTypeOf<SmartCacheStats>()
    expectTypeOf(cache.stats().breaker).toEqualTypeOf<'closed' | 'open' | 'half-open' | 'none'>()
  })

  it('isEnrichError narrows unknown to EnrichError with its code', () => {
    const e: unknown = new Error('x')
    if (isEnrichError(e)) {
      expectTypeOf(e).toEqualTypeOf<EnrichError>()
      expectTypeOf(e.code).toEqualTypeOf<ErrorCode>()
    } else {
      expectTypeOf(e).toEqualTypeOf<unknown>()
    }
  })

  it('CachedError carries retryAt and its key', () => {
    expectTypeOf<CachedError['retryAt']>().toEqualTypeOf<number>()
    expectTypeOf<CachedError['key']>().toEqualTypeOf<string>()
    expectTypeOf<CachedError>().toExtend<EnrichError>()
  })
})
