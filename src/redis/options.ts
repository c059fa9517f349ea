import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis'
import type { BreakerOptions } from '../breaker/circuit-breaker.js'

/** An ioredis client the store accepts: a `Redis` (standalone or Sentinel) or a `Cluster`. */
export type RedisClient = Redis | Cluster

/** Options of {@link redisStore}. */
export interface RedisStoreOptions {
  /**
   * The ioredis client for commands. The store never queues a command while
   * it is not connected, whatever its options, but create it with
   * {@link RECOMMENDED_CLIENT_OPTIONS} (`enableOfflineQueue: false`, a short
   * `commandTimeout`) so ioredis itself holds nothing either. A `Cluster`
   * is accepted too (with {@link RECOMMENDED_CLUSTER_OPTIONS}): the store's
   * keys then share a hash tag. Yours to close.
   */
  client: RedisClient
  /**
   * A client for pub/sub (it enters subscriber mode). Yours to close. With a
   * `Cluster` and `shardedPubSub`, it must be a `Cluster` created with
   * `shardedSubscribers: true`.
   * Default: `client.duplicate()`, created on first use and closed with the store.
   */
  subscriber?: RedisClient
  /** Namespace of every key and of the invalidation channel, per service. Default `'pino-enrich'`. */
  prefix?: string
  /** Second namespace level, per deployment or value shape: bump it when the cached value's shape changes. Default `'1'`. */
  version?: string | number
  /** Longest a command may take before it counts as failed, in ms. Default 100. */
  commandTimeoutMs?: number
  /**
   * The store's own circuit breaker, or `false` for none. While it is open
   * every operation fails at once and the caches compute locally. Default:
   * opens after 3 consecutive failures, probes after 1 000 ms.
   */
  breaker?: BreakerOptions | false
  /** Longest a fleet-wide compute lock is held, and waited for, when the compute has no `timeoutMs`, in ms. Default 5 000. */
  lockTtlMs?: number
  /** Cache keys and tags longer than this many characters are stored as their SHA-256 digest. Default 256. */
  maxKeyLength?: number
  /** Values whose JSON is larger than this many bytes are neither written nor read. Default 1 048 576. */
  maxValueBytes?: number
  /**
   * Cluster only: how many hash slots one store's keys spread over, each
   * key to one of them by a hash of its name. `delete` then runs one script
   * per slot its keys fall in, `invalidateTags` one per slot (a tag's set is
   * kept per slot). Default 1: every key of the store on one slot, one shard.
   */
  slots?: number
  /**
   * Cluster only: invalidations over sharded pub/sub (`SPUBLISH` /
   * `SSUBSCRIBE`, Redis 7.0 and later): a message goes to the shard of the
   * store's slot only, not over the whole cluster bus. `false` for classic
   * `PUBLISH`, which Redis 6 clusters need. Default `true`.
   */
  shardedPubSub?: boolean
  /**
   * A secret shared by every instance (a string or Buffer, at least one byte):
   * invalidation messages are signed with HMAC-SHA256 over the channel, the
   * message and its timestamp, and messages unsigned, badly signed, older than
   * `maxMessageAgeMs` or seen before are dropped and counted. Default: none,
   * messages are plain JSON and anyone who can publish is believed.
   */
  secret?: string | Buffer
  /** With a `secret`: messages whose timestamp is further than this from the receiver's clock are dropped, in ms. Default 30 000. */
  maxMessageAgeMs?: number
  /**
   * With a `secret`: values are signed too (over the key name and the value),
   * and a value read back unsigned or badly signed is a miss. Default `true`
   * when a `secret` is given.
   */
  signValues?: boolean
}

/**
 * ioredis options for a client given to {@link redisStore}: no offline queue
 * (a command while disconnected fails at once instead of waiting in memory),
 * a short command timeout, one retry per command, and a reconnect that keeps
 * trying every second at most.
 */
export const RECOMMENDED_CLIENT_OPTIONS = {
  enableOfflineQueue: false,
  commandTimeout: 100,
  maxRetriesPerRequest: 1,
  retryStrategy: (times: number): number => Math.min(50 * 2 ** times, 1_000),
} as const satisfies RedisOptions

/**
 * ioredis `Cluster` options for a client given to {@link redisStore}: the
 * same as {@link RECOMMENDED_CLIENT_OPTIONS} per node, and redirections
 * retried sooner than the command timeout (a `TRYAGAIN` during resharding
 * after 10 ms, a failover after 50 ms instead of 100 each).
 */
export const RECOMMENDED_CLUSTER_OPTIONS = {
  enableOfflineQueue: false,
  clusterRetryStrategy: (times: number): number => Math.min(50 * 2 ** times, 1_000),
  retryDelayOnTryAgain: 10,
  retryDelayOnFailover: 50,
  retryDelayOnClusterDown: 50,
  redisOptions: { commandTimeout: 100, maxRetriesPerRequest: 1 },
} as const satisfies ClusterOptions

/** Defaults of {@link RedisStoreOptions}, merged once per store. */
export const REDIS_STORE_DEFAULTS = {
  prefix: 'pino-enrich',
  version: '1',
  commandTimeoutMs: 100,
  breaker: { failureThreshold: 3, halfOpenAfterMs: 1_000 },
  lockTtlMs: 5_000,
  maxKeyLength: 256,
  maxValueBytes: 1_048_576,
  slots: 1,
  shardedPubSub: true,
  maxMessageAgeMs: 30_000,
} as const
