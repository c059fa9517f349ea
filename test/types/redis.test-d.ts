import type { Cluster, Redis } from 'ioredis'
import { describe, expectTypeOf, it } from 'vitest'
import { type CacheStore, defineEnricher, SmartCache, type StoreStats } from '../../src/index.js'
import { type RedisStore, type RedisStoreOptions, redisStore } from '../../src/redis/index.js'

describe('shared tier types', () => {
  it('redisStore takes an ioredis client or cluster and gives a CacheStore', () => {
    expectTypeOf<RedisStoreOptions['client']>().toEqualTypeOf<Redis | Cluster>()
    expectTypeOf(redisStore).returns.toEqualTypeOf<RedisStore>()
    expectTypeOf<RedisStore>().toMatchTypeOf<CacheStore>()
  })

  it('plugs into SmartCache and an enricher cache as `store`', () => {
    const store = {} as RedisStore
    expectTypeOf(new SmartCache<string>({ store })).toEqualTypeOf<SmartCache<string>>()
    defineEnricher<string>({ name: 'user', key: () => 'k', compute: () => ({}), cache: { store } })
    // @ts-expect-error: a store is an object with the CacheStore methods
    void new SmartCache<string>({ store: 'redis://localhost' })
  })

  it('reports the store counters only when there is a store', () => {
    expectTypeOf(new SmartCache<string>().stats().store).toEqualTypeOf<StoreStats | undefined>()
  })
})
