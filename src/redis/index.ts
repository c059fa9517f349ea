// pino-enrich/redis: the shared tier behind every SmartCache of a fleet.
// The user's ioredis client is used as given (only its type is imported): no
// runtime dependency on ioredis, which is an optional peer of this entry.
export type { CacheStore, Invalidation, StoreRecord } from '../cache/store.js'
export type { RedisClient, RedisStoreOptions } from './options.js'
export { RECOMMENDED_CLIENT_OPTIONS, RECOMMENDED_CLUSTER_OPTIONS, REDIS_STORE_DEFAULTS } from './options.js'
export type { RedisStore, RedisStoreStats } from './redis-store.js'
export { redisStore } from './redis-store.js'
