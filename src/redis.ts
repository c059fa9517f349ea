// pino-enrich/redis: the shared tier behind every SmartCache of a fleet.
// The user's ioredis client is used as given (only its type is imported): no
// runtime dependency on ioredis, which is an optional peer of this entry.
import { createHash, randomBytes } from 'node:crypto'
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis'
import { type BreakerOptions, CircuitBreaker, Permit } from './breaker/circuit-breaker.js'
import type { CacheStore, Invalidation, StoreRecord } from './cache/store.js'
import { StoreUnavailableError, TimeoutError } from './errors.js'
import type { Disposer } from './events.js'
import { Signer } from './redis/signing.js'
import { storedKey, UNSAFE_KEYS } from './util/keys.js'
import { checkInteger, checkMs } from './util/validate.js'

/** An ioredis client the store accepts: a `Redis` (standalone or Sentinel) or a `Cluster`. */
export type RedisClient = Redis | Cluster

export type { CacheStore, Invalidation, StoreRecord } from './cache/store.js'

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

/** Counters of a {@link RedisStore}. */
export interface RedisStoreStats {
  /** Commands sent. */
  commands: number
  /** Commands that failed or timed out. */
  failures: number
  /** Of the failures, those that passed `commandTimeoutMs`. */
  timeouts: number
  /** Operations refused without a command: not connected, or the breaker open. */
  rejected: number
  /** Records read back that were malformed, too large or unsafe, and treated as misses. */
  dropped: number
  /** Invalidations received from other instances. */
  received: number
  /** With a `secret`: messages dropped for carrying no signature. */
  unsignedMessages: number
  /** With a `secret`: messages dropped for a wrong signature (or a signed body that is not a message). */
  forgedMessages: number
  /** With a `secret`: validly signed messages dropped for a timestamp beyond `maxMessageAgeMs`. */
  staleMessages: number
  /** With a `secret`: validly signed messages dropped because the same one was received before. */
  replayedMessages: number
  /** With signed values: values read back unsigned or badly signed (also counted in `dropped`). */
  forgedValues: number
  /** Whether the subscriber is subscribed now (false while Redis is away). */
  listening: boolean
  breaker: CircuitBreaker['state'] | 'none'
  /** The command client's ioredis status (`ready`, `reconnecting`, ...). */
  status: string
}

/** A {@link CacheStore} on Redis, made by {@link redisStore}. */
export interface RedisStore extends CacheStore {
  /** The store's breaker, if any: its `onStateChange` reports Redis going away and coming back. */
  readonly breaker: CircuitBreaker | undefined
  stats(): RedisStoreStats
  /** Stops listening and closes the subscriber the store created. The command client is yours. Idempotent. */
  close(): void
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

// GET and PTTL in one round trip, atomically: the remaining lifetime is Redis's, not a clock's.
const GET = script(`local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}`)

// KEYS: value key, then tag sets. ARGV: payload, ttl ms, channel ('' for none), message.
const SET = script(`redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1`)

// KEYS: value keys. ARGV: channel ('' for none), message. Deleted before published, so a reader told to drop finds nothing old.
const DEL = script(`if #KEYS > 0 then redis.call('DEL', unpack(KEYS)) end
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return 1`)

// KEYS: tag sets. ARGV: channel ('' for none), message. Deletes every member of each set, then the set.
const DEL_TAGS = script(`local n = 0
for i = 1, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #members, 500 do
    redis.call('DEL', unpack(members, j, math.min(j + 499, #members)))
  end
  n = n + #members
  redis.call('DEL', KEYS[i])
end
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return n`)

const UNLOCK = script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

/** Bound on an invalidation message read from the channel. */
const MAX_MESSAGE_BYTES = 65_536
/** Bound on the nesting of a value read back. */
const MAX_DEPTH = 64
/** Signatures of messages received within `maxMessageAgeMs`, kept to refuse a replay: at most this many. */
const MAX_SEEN = 10_000

/**
 * A {@link CacheStore} on Redis for `SmartCache`'s `store` option (and an
 * enricher's `cache.store`). One store serves one cache: give each enricher
 * its own, with its own `prefix`.
 *
 * Redis being slow, away or hung never reaches a log call: each command is
 * bounded by `commandTimeoutMs`, nothing is sent (so nothing is queued) while
 * the client is not ready, the store's breaker fails every operation at once
 * after repeated failures, and the caches keep serving and computing in
 * process meanwhile. It recovers by itself when Redis answers again.
 *
 * Layout: values at `<prefix>:<version>:v:<key>` with a PX ttl of their
 * remaining fresh plus stale lifetime, tag sets at `:t:<tag>`, compute locks
 * at `:l:<key>`, invalidations on the channel `<prefix>:<version>:invalidate`.
 * With a `Cluster` client the namespace is a hash tag, `{<prefix>:<version>}`
 * (or `{<prefix>:<version>:<n>}` with `slots`), so each script touches one slot.
 *
 * @throws TypeError when `client` is missing, `prefix` is empty (or holds a
 *   brace, with a Cluster), `secret` is empty or not a string or Buffer, or a
 *   Cluster-only option is given a standalone client
 * @throws RangeError for a bad bound
 */
export function redisStore(options: RedisStoreOptions): RedisStore {
  return new RedisCacheStore(options)
}

class RedisCacheStore implements RedisStore {
  readonly breaker: CircuitBreaker | undefined
  readonly lockTtlMs: number
  readonly #client: RedisClient
  readonly #cluster: boolean
  readonly #sharded: boolean
  readonly #ownSubscriber: boolean
  #subscriber: RedisClient | undefined
  readonly #name: string
  /** Per slot: the namespace every key name starts with (a hash tag on a Cluster). */
  readonly #tags: readonly string[]
  readonly #channel: string
  readonly #origin = randomBytes(9).toString('base64url')
  readonly #timeoutMs: number
  readonly #maxKeyLength: number
  readonly #maxValueBytes: number
  readonly #signer: Signer | undefined
  readonly #valueSigner: Signer | undefined
  readonly #maxAgeMs: number
  /** Signatures of the messages received lately, by timestamp: a replay is refused. */
  readonly #seen = new SeenSignatures()
  #listener: ((invalidation: Invalidation) => void) | undefined
  #hooks: SubscriberHooks | undefined
  #listening = false
  #subscribed = false
  #closed = false
  #connecting = false
  #commands = 0
  #failures = 0
  #timeouts = 0
  #rejected = 0
  #dropped = 0
  #received = 0
  #unsigned = 0
  #forged = 0
  #stale = 0
  #replayed = 0
  #forgedValues = 0

  constructor(options: RedisStoreOptions) {
    if (options === null || typeof options !== 'object' || typeof options.client?.evalsha !== 'function') {
      throw new TypeError(`redisStore needs an ioredis client, received ${describeValue(options?.client)}`)
    }
    this.#cluster = isCluster(options.client)
    const prefix = options.prefix ?? REDIS_STORE_DEFAULTS.prefix
    if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > 128) {
      throw new TypeError(`prefix must be a string of 1 to 128 characters, received ${describeValue(prefix)}`)
    }
    const version = String(options.version ?? REDIS_STORE_DEFAULTS.version)
    // A brace would end or open the hash tag early and scatter the store's keys over slots.
    if (this.#cluster && /[{}]/.test(prefix + version)) {
      throw new TypeError(
        `prefix and version must not contain { or } with a Cluster client, received ${describeValue(`${prefix}:${version}`)}`,
      )
    }
    this.#timeoutMs = options.commandTimeoutMs ?? REDIS_STORE_DEFAULTS.commandTimeoutMs
    checkMs('commandTimeoutMs', this.#timeoutMs, 1)
    this.lockTtlMs = options.lockTtlMs ?? REDIS_STORE_DEFAULTS.lockTtlMs
    checkMs('lockTtlMs', this.lockTtlMs, 1)
    this.#maxKeyLength = options.maxKeyLength ?? REDIS_STORE_DEFAULTS.maxKeyLength
    checkInteger('maxKeyLength', this.#maxKeyLength, 16)
    this.#maxValueBytes = options.maxValueBytes ?? REDIS_STORE_DEFAULTS.maxValueBytes
    checkInteger('maxValueBytes', this.#maxValueBytes, 1)
    const slots = options.slots ?? REDIS_STORE_DEFAULTS.slots
    checkInteger('slots', slots, 1)
    if (slots > 1_024) throw new RangeError(`slots must be an integer from 1 to 1024, received ${slots}`)
    if (!this.#cluster && (slots !== 1 || options.shardedPubSub !== undefined)) {
      throw new TypeError('slots and shardedPubSub apply to a Cluster client only')
    }
    this.#sharded = this.#cluster && (options.shardedPubSub ?? REDIS_STORE_DEFAULTS.shardedPubSub)
    if (typeof options.shardedPubSub !== 'undefined' && typeof options.shardedPubSub !== 'boolean') {
      throw new TypeError(`shardedPubSub must be a boolean, received ${describeValue(options.shardedPubSub)}`)
    }
    if (
      this.#sharded &&
      options.subscriber !== undefined &&
      (options.subscriber as { options?: { shardedSubscribers?: unknown } }).options?.shardedSubscribers !== true
    ) {
      throw new TypeError('with shardedPubSub, subscriber must be a Cluster created with shardedSubscribers: true')
    }
    if (options.secret !== undefined) {
      this.#signer = new Signer(options.secret)
      if (options.signValues !== undefined && typeof options.signValues !== 'boolean') {
        throw new TypeError(`signValues must be a boolean, received ${describeValue(options.signValues)}`)
      }
      if (options.signValues !== false) this.#valueSigner = this.#signer
    } else if (options.signValues === true) {
      throw new TypeError('signValues needs a secret')
    }
    this.#maxAgeMs = options.maxMessageAgeMs ?? REDIS_STORE_DEFAULTS.maxMessageAgeMs
    checkMs('maxMessageAgeMs', this.#maxAgeMs, 1)
    this.#client = options.client
    this.#subscriber = options.subscriber
    this.#ownSubscriber = options.subscriber === undefined
    const ns = `${prefix}:${version}`
    this.#tags = this.#cluster
      ? Array.from({ length: slots }, (_, i) => (slots === 1 ? `{${ns}}` : `{${ns}:${i}}`))
      : [ns]
    this.#channel = this.#cluster ? `{${ns}}:invalidate` : `${ns}:invalidate`
    this.#name = `redis ${ns}`
    this.breaker =
      options.breaker === false
        ? undefined
        : new CircuitBreaker(this.#name, { ...REDIS_STORE_DEFAULTS.breaker, ...(options.breaker ?? {}) })
  }

  async get(key: string): Promise<StoreRecord | undefined> {
    const stored = this.#stored(key)
    const name = this.#name_('v', this.#slot(stored), stored)
    const reply = await this.#run('GET', (c) => evalScript(c, GET, [name], []))
    if (!Array.isArray(reply)) return undefined
    const [text, pttl] = reply as [unknown, unknown]
    if (typeof text !== 'string' || typeof pttl !== 'number' || pttl <= 0) return undefined
    const record = this.#decode(name, text, pttl)
    if (record === undefined) this.#dropped++
    return record
  }

  async set(key: string, record: StoreRecord, options?: { broadcast?: boolean }): Promise<void> {
    const ttl = Math.round(Math.max(0, record.freshMs) + Math.max(0, record.staleMs))
    if (!(ttl >= 1)) return
    const payload: { s: number; v?: unknown; u?: 1; t?: readonly string[]; e?: number } = {
      s: Math.max(0, record.staleMs),
    }
    if (record.value === undefined) payload.u = 1
    else payload.v = record.value
    if (record.tags !== undefined && record.tags.length > 0) payload.t = record.tags
    // Signed, the end of its life: whoever can write keys cannot lengthen it with their own PX.
    if (this.#valueSigner !== undefined) payload.e = Date.now() + ttl
    const json = JSON.stringify(payload)
    if (Buffer.byteLength(json) > this.#maxValueBytes) {
      throw new RangeError(`value of ${key} exceeds maxValueBytes (${this.#maxValueBytes})`)
    }
    const stored = this.#stored(key)
    const slot = this.#slot(stored)
    const name = this.#name_('v', slot, stored)
    // A tag's set lives in the slot of the values it lists: one script, one slot.
    const keys = [name, ...(payload.t ?? []).map((t) => this.#name_('t', slot, this.#stored(t)))]
    const text = this.#valueSigner === undefined ? json : this.#valueSigner.sign(name, json)
    const broadcast = options?.broadcast === true
    const message = broadcast ? this.#message({ keys: [key] }) : ''
    const inScript = broadcast && !this.#cluster
    await this.#run('SET', (c) => evalScript(c, SET, keys, [text, String(ttl), inScript ? this.#channel : '', message]))
    if (broadcast && this.#cluster) await this.#publish(message)
  }

  async invalidate(invalidation: Invalidation): Promise<void> {
    const message = this.#message(invalidation)
    // Standalone: one script deletes and publishes. Cluster: a script per slot, then one publish.
    const channel = this.#cluster ? '' : this.#channel
    if ('keys' in invalidation) {
      const bySlot = this.#bySlot(invalidation.keys.map((k) => this.#stored(k)))
      await Promise.all(
        [...bySlot].map(([slot, stored]) => {
          const keys = stored.map((k) => this.#name_('v', slot, k))
          return this.#run('DEL', (c) => evalScript(c, DEL, keys, [channel, message]))
        }),
      )
    } else if ('tags' in invalidation) {
      const tags = invalidation.tags.map((t) => this.#stored(t))
      await Promise.all(
        this.#tags.map((_, slot) => {
          const keys = tags.map((t) => this.#name_('t', slot, t))
          return this.#run('DEL', (c) => evalScript(c, DEL_TAGS, keys, [channel, message]))
        }),
      )
    } else {
      const pattern = escapeGlob(invalidation.pattern, true)
      try {
        if (this.#cluster) await this.#scanCluster(pattern)
        else await this.#scanDelete(this.#client, `${escapeGlob(this.#tags[0] as string)}:v:${pattern}`, undefined)
      } finally {
        // The other instances drop their copies even when Redis's could not all be found.
        await this.#publish(message)
      }
      return
    }
    if (this.#cluster) await this.#publish(message)
  }

  /** SCAN in steps on every master, each step its own bounded command. */
  async #scanCluster(pattern: string): Promise<void> {
    const cluster = this.#client as Cluster
    const ours = new Set(this.#tags)
    const first = this.#tags[0] as string
    // With several slots, `{<prefix>:<version>:*}`; keys of another namespace that match are left out by `ours`.
    const tag = this.#tags.length === 1 ? escapeGlob(first) : `${escapeGlob(first.slice(0, first.lastIndexOf(':')))}:*}`
    for (const node of cluster.nodes('master')) await this.#scanDelete(node, `${tag}:v:${pattern}`, ours)
  }

  /** Deletes the keys `node` holds that match `match` (and, with `ours`, whose hash tag is one of them). */
  async #scanDelete(node: RedisClient, match: string, ours: Set<string> | undefined): Promise<void> {
    let cursor = '0'
    do {
      const [next, found] = await this.#run('SCAN', () => (node as Redis).scan(cursor, 'MATCH', match, 'COUNT', 1_000))
      cursor = next
      if (found.length === 0) continue
      if (ours === undefined) {
        await this.#run('UNLINK', (c) => c.unlink(...found))
        continue
      }
      // Through the cluster client, a slot at a time: it routes each to the slot's master now.
      const bySlot = new Map<string, string[]>()
      for (const k of found) {
        const t = k.slice(0, k.indexOf('}') + 1)
        if (!ours.has(t)) continue
        const list = bySlot.get(t)
        if (list === undefined) bySlot.set(t, [k])
        else list.push(k)
      }
      for (const keys of bySlot.values()) await this.#run('UNLINK', (c) => c.unlink(...keys))
    } while (cursor !== '0')
  }

  #publish(message: string): Promise<unknown> {
    return this.#sharded
      ? this.#run('SPUBLISH', (c) => c.spublish(this.#channel, message))
      : this.#run('PUBLISH', (c) => c.publish(this.#channel, message))
  }

  async lock(key: string, ttlMs: number): Promise<string | undefined> {
    const token = randomBytes(12).toString('base64url')
    const stored = this.#stored(key)
    const name = this.#name_('l', this.#slot(stored), stored)
    const ok = await this.#run('SET', (c) => c.set(name, token, 'PX', Math.max(1, ttlMs), 'NX'))
    return ok === 'OK' ? token : undefined
  }

  async unlock(key: string, token: string): Promise<void> {
    const stored = this.#stored(key)
    const name = this.#name_('l', this.#slot(stored), stored)
    await this.#run('UNLOCK', (c) => evalScript(c, UNLOCK, [name], [token]))
  }

  subscribe(listener: (invalidation: Invalidation) => void): Disposer {
    if (this.#closed) throw new TypeError(`${this.#name} is closed`)
    if (this.#listener !== undefined) {
      throw new TypeError(`${this.#name} already serves a cache: give each cache its own redisStore`)
    }
    this.#listener = listener
    let sub = this.#subscriber
    if (sub === undefined) {
      // Subscriber mode only sends SUBSCRIBE; its offline queue holds that one command until connected.
      sub = isCluster(this.#client)
        ? this.#client.duplicate([], {
            enableOfflineQueue: true,
            lazyConnect: false,
            shardedSubscribers: this.#sharded,
          })
        : this.#client.duplicate({ enableOfflineQueue: true, lazyConnect: false })
      // ioredis reports connection errors as events; unheard, they print. They are the breaker's business.
      sub.on('error', () => {})
      this.#subscriber = sub
    }
    const onMessage = (channel: string, message: string): void => this.#receive(channel, message)
    // ioredis resubscribes after a reconnect, but only to channels whose SUBSCRIBE succeeded:
    // subscribing again on every ready (idempotent in Redis) covers a first attempt that failed.
    // Sharded subscriptions are kept by ioredis per slot once taken: only a failed one is sent again.
    const onReady = (): void => {
      if (!this.#sharded || !this.#subscribed) this.#subscribeChannel(sub)
    }
    const onClose = (): void => {
      this.#listening = false
    }
    const hooks: SubscriberHooks = { channel: this.#channel, sharded: this.#sharded, onMessage, onReady, onClose }
    this.#hooks = hooks
    hubOf(sub).add(hooks)
    this.#subscribeChannel(sub)
    let active = true
    return () => {
      if (!active) return
      active = false
      this.#unsubscribe()
    }
  }

  #subscribeChannel(sub: RedisClient): void {
    const pending = this.#sharded ? sub.ssubscribe(this.#channel) : sub.subscribe(this.#channel)
    pending.then(
      () => {
        this.#subscribed = true
        if (this.#listener !== undefined) this.#listening = true
      },
      () => {
        this.#failures++
      },
    )
  }

  stats(): RedisStoreStats {
    return {
      commands: this.#commands,
      failures: this.#failures,
      timeouts: this.#timeouts,
      rejected: this.#rejected,
      dropped: this.#dropped,
      received: this.#received,
      unsignedMessages: this.#unsigned,
      forgedMessages: this.#forged,
      staleMessages: this.#stale,
      replayedMessages: this.#replayed,
      forgedValues: this.#forgedValues,
      listening: this.#listening,
      breaker: this.breaker?.state ?? 'none',
      status: this.#client.status,
    }
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#unsubscribe()
  }

  #unsubscribe(): void {
    const sub = this.#subscriber
    this.#listener = undefined
    if (sub === undefined) return
    const hooks = this.#hooks
    this.#hooks = undefined
    this.#listening = false
    // Another store on the same subscriber may listen on the same channel: it stays subscribed.
    const lastOnChannel = hooks === undefined || hubOf(sub).remove(hooks)
    if (this.#ownSubscriber) {
      // disconnect(), not quit(): quit waits for a reply a hung Redis never sends.
      sub.disconnect()
      this.#subscriber = undefined
    } else if (hooks === undefined || !lastOnChannel) {
      return
    } else if (this.#sharded) {
      sub.sunsubscribe(this.#channel).catch(() => {})
    } else {
      sub.unsubscribe(this.#channel).catch(() => {})
    }
  }

  #receive(channel: string, message: string): void {
    const listener = this.#listener
    if (channel !== this.#channel || listener === undefined || message.length > MAX_MESSAGE_BYTES) return
    let body = message
    if (this.#signer !== undefined) {
      const opened = this.#signer.open(channel, message)
      if (opened === undefined) {
        this.#unsigned++
        return
      }
      if (opened === false) {
        this.#forged++
        return
      }
      body = opened
    }
    let m: unknown
    try {
      m = JSON.parse(body)
    } catch {
      if (this.#signer !== undefined) this.#forged++
      return
    }
    if (typeof m !== 'object' || m === null) return
    const { o, k, t, p, ts } = m as { o?: unknown; k?: unknown; t?: unknown; p?: unknown; ts?: unknown }
    if (this.#signer !== undefined && !this.#fresh(ts, message)) return
    if (o === this.#origin) return
    let invalidation: Invalidation
    if (isStringArray(k)) invalidation = { keys: k }
    else if (isStringArray(t)) invalidation = { tags: t }
    else if (typeof p === 'string') invalidation = { pattern: p }
    else return
    this.#received++
    try {
      listener(invalidation)
    } catch {
      // The cache's own business; the subscriber goes on.
    }
  }

  /**
   * Whether a validly signed message is recent and new: its timestamp within
   * `maxMessageAgeMs` of this clock either way, and its signature not seen
   * within that window (so a captured message cannot be sent again).
   */
  #fresh(ts: unknown, message: string): boolean {
    const now = Date.now()
    if (typeof ts !== 'number' || !(Math.abs(now - ts) <= this.#maxAgeMs)) {
      this.#stale++
      return false
    }
    const seen = this.#seen
    // Kept until the message itself goes stale, when the age check refuses it anyway.
    seen.expire(now - this.#maxAgeMs)
    const sig = message.slice(0, 43)
    if (seen.has(sig)) {
      this.#replayed++
      return false
    }
    // Past MAX_SEEN, the earliest timestamps are forgotten before they go stale: from then on
    // a message no later than one forgotten may be a replay, and is refused as stale.
    if (ts <= seen.floor) {
      this.#stale++
      return false
    }
    seen.add(sig, ts)
    return true
  }

  #message(invalidation: Invalidation): string {
    const m: { o: string; k?: readonly string[]; t?: readonly string[]; p?: string; ts?: number } = { o: this.#origin }
    if ('keys' in invalidation) m.k = invalidation.keys
    else if ('tags' in invalidation) m.t = invalidation.tags
    else m.p = invalidation.pattern
    if (this.#signer === undefined) return JSON.stringify(m)
    m.ts = Date.now()
    return this.#signer.sign(this.#channel, JSON.stringify(m))
  }

  /** A cache key or tag as it appears in key names: itself, or its digest when long. */
  #stored(key: string): string {
    return storedKey(key, this.#maxKeyLength)
  }

  /** The slot of a stored key among the store's `slots`: FNV-1a of its name, so every instance agrees. */
  #slot(stored: string): number {
    const n = this.#tags.length
    if (n === 1) return 0
    let h = 0x811c9dc5
    for (let i = 0; i < stored.length; i++) h = Math.imul(h ^ stored.charCodeAt(i), 0x01000193)
    return (h >>> 0) % n
  }

  #name_(kind: 'v' | 't' | 'l', slot: number, stored: string): string {
    return `${this.#tags[slot]}:${kind}:${stored}`
  }

  #bySlot(stored: readonly string[]): Map<number, string[]> {
    const out = new Map<number, string[]>()
    for (const k of stored) {
      const slot = this.#slot(k)
      const list = out.get(slot)
      if (list === undefined) out.set(slot, [k])
      else list.push(k)
    }
    return out
  }

  #decode(name: string, stored: string, remainingMs: number): StoreRecord | undefined {
    let pttl = remainingMs
    if (stored.length > this.#maxValueBytes + 44) return undefined
    let text = stored
    if (this.#valueSigner !== undefined) {
      // Checked before parsing: a planted value is never parsed, let alone used.
      const opened = this.#valueSigner.open(name, stored)
      if (typeof opened !== 'string') {
        this.#forgedValues++
        return undefined
      }
      text = opened
    }
    if (text.length > this.#maxValueBytes) return undefined
    let parsed: unknown
    try {
      // No reviver: a reviver would see every value before it is checked.
      parsed = JSON.parse(text)
    } catch {
      return undefined
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined
    const { s, v, u, t, e } = parsed as { s?: unknown; v?: unknown; u?: unknown; t?: unknown; e?: unknown }
    if (typeof s !== 'number' || !(s >= 0)) return undefined
    if (this.#valueSigner !== undefined) {
      // A signed value lives no longer than it was written for, whatever PX the key now has.
      if (typeof e !== 'number') return undefined
      pttl = Math.min(pttl, e - Date.now())
      if (!(pttl > 0)) return undefined
    }
    if (t !== undefined && !isStringArray(t)) return undefined
    if (!scrub(v, 0)) return undefined
    const freshMs = Math.max(0, pttl - s)
    const record: StoreRecord = { value: u === 1 ? undefined : v, freshMs, staleMs: pttl - freshMs }
    if (t !== undefined) record.tags = t
    return record
  }

  /**
   * Runs one command: refused at once while the client is not ready or the
   * breaker is open (nothing is queued), failed after `commandTimeoutMs`
   * whether or not ioredis times it out too.
   */
  #run<T>(what: string, op: (client: RedisClient) => Promise<T>): Promise<T> {
    if (this.#closed) return this.#refuse('closed')
    const client = this.#client
    if (client.status !== 'ready') {
      if (client.status === 'wait' && !this.#connecting) {
        // A lazyConnect client: connect it once; until then, refuse.
        this.#connecting = true
        client.connect().catch(() => {})
      }
      return this.#refuse(client.status)
    }
    let permit: Permit = Permit.Call
    if (this.breaker !== undefined) {
      permit = this.breaker.acquire()
      if (permit === Permit.Denied) return this.#refuse('breaker open')
    }
    const probe = permit === Permit.Probe
    this.#commands++
    return new Promise<T>((resolve, reject) => {
      let settled = false
      const timer = setTimeout(() => {
        if (settled) return
        settled = true
        this.#failures++
        this.#timeouts++
        this.breaker?.failure(probe)
        reject(new TimeoutError(`${this.#name} ${what}`, this.#timeoutMs))
      }, this.#timeoutMs)
      timer.unref()
      let pending: Promise<T>
      try {
        pending = op(client)
      } catch (e) {
        pending = Promise.reject(e)
      }
      pending.then(
        (v) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          this.breaker?.success(probe)
          resolve(v)
        },
        (e: unknown) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          this.#failures++
          this.breaker?.failure(probe)
          reject(e)
        },
      )
    })
  }

  #refuse(why: string): Promise<never> {
    this.#rejected++
    return Promise.reject(new StoreUnavailableError(this.#name, why))
  }
}

/**
 * The signatures of the messages received within the age bound, each with
 * its timestamp, at most `MAX_SEEN`: a min-heap on the timestamp, so the
 * earliest go first, whether they expire or make room.
 */
interface Seen {
  readonly ts: number
  readonly sig: string
}

class SeenSignatures {
  readonly #sigs = new Set<string>()
  readonly #heap: Array<Seen> = []
  /** The latest timestamp forgotten to make room: no message at or before it is known new. */
  floor = Number.NEGATIVE_INFINITY

  has(sig: string): boolean {
    return this.#sigs.has(sig)
  }

  /** Forgets the signatures of messages timestamped before `oldest`. */
  expire(oldest: number): void {
    while (this.#heap.length > 0 && (this.#heap[0] as Seen).ts < oldest) this.#pop()
  }

  add(sig: string, ts: number): void {
    while (this.#heap.length >= MAX_SEEN) {
      const top = this.#pop()
      if (top.ts > this.floor) this.floor = top.ts
    }
    this.#sigs.add(sig)
    const h = this.#heap
    let i = h.push({ ts, sig }) - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if ((h[parent] as Seen).ts <= ts) break
      ;[h[i], h[parent]] = [h[parent] as Seen, h[i] as Seen]
      i = parent
    }
  }

  #pop(): Seen {
    const h = this.#heap
    const top = h[0] as Seen
    const last = h.pop() as Seen
    this.#sigs.delete(top.sig)
    if (h.length === 0) return top
    h[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < h.length && (h[l] as Seen).ts < (h[m] as Seen).ts) m = l
      if (r < h.length && (h[r] as Seen).ts < (h[m] as Seen).ts) m = r
      if (m === i) break
      ;[h[i], h[m]] = [h[m] as Seen, h[i] as Seen]
      i = m
    }
    return top
  }
}

/** What one store listens for on a subscriber. */
interface SubscriberHooks {
  readonly channel: string
  readonly sharded: boolean
  readonly onMessage: (channel: string, message: string) => void
  readonly onReady: () => void
  readonly onClose: () => void
}

/**
 * The stores listening on one subscriber client, behind one listener per
 * event: any number of stores can share a subscriber without adding a
 * listener each (which past ten warns, and would run every store's handler
 * for every message of every channel).
 */
class SubscriberHub {
  readonly #sub: RedisClient
  /** Per event (`message` or `smessage`), per channel, the stores listening. */
  readonly #byChannel = {
    message: new Map<string, Set<SubscriberHooks>>(),
    smessage: new Map<string, Set<SubscriberHooks>>(),
  }
  readonly #all = new Set<SubscriberHooks>()
  readonly #onMessage = (channel: string, message: string): void => this.#dispatch('message', channel, message)
  readonly #onSMessage = (channel: string, message: string): void => this.#dispatch('smessage', channel, message)
  readonly #onReady = (): void => {
    for (const h of [...this.#all]) h.onReady()
  }
  readonly #onClose = (): void => {
    for (const h of [...this.#all]) h.onClose()
  }

  constructor(sub: RedisClient) {
    this.#sub = sub
  }

  add(hooks: SubscriberHooks): void {
    if (this.#all.size === 0) {
      this.#sub.on('message', this.#onMessage)
      this.#sub.on('smessage', this.#onSMessage)
      this.#sub.on('ready', this.#onReady)
      this.#sub.on('close', this.#onClose)
    }
    this.#all.add(hooks)
    const byChannel = this.#byChannel[hooks.sharded ? 'smessage' : 'message']
    const set = byChannel.get(hooks.channel)
    if (set === undefined) byChannel.set(hooks.channel, new Set([hooks]))
    else set.add(hooks)
  }

  /** Removes `hooks`; true when no other store listens on its channel. */
  remove(hooks: SubscriberHooks): boolean {
    if (!this.#all.delete(hooks)) return false
    const byChannel = this.#byChannel[hooks.sharded ? 'smessage' : 'message']
    const set = byChannel.get(hooks.channel)
    set?.delete(hooks)
    const last = set === undefined || set.size === 0
    if (last) byChannel.delete(hooks.channel)
    if (this.#all.size === 0) {
      this.#sub.off('message', this.#onMessage)
      this.#sub.off('smessage', this.#onSMessage)
      this.#sub.off('ready', this.#onReady)
      this.#sub.off('close', this.#onClose)
      hubs.delete(this.#sub)
    }
    return last
  }

  #dispatch(event: 'message' | 'smessage', channel: string, message: string): void {
    const set = this.#byChannel[event].get(channel)
    if (set === undefined) return
    for (const h of [...set]) h.onMessage(channel, message)
  }
}

const hubs = new WeakMap<RedisClient, SubscriberHub>()

function hubOf(sub: RedisClient): SubscriberHub {
  const found = hubs.get(sub)
  if (found !== undefined) return found
  const hub = new SubscriberHub(sub)
  hubs.set(sub, hub)
  return hub
}

interface Script {
  readonly source: string
  readonly sha: string
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') }
}

/** EVALSHA, falling back to EVAL when Redis does not know the script yet (first use, or after a restart). */
function evalScript(
  client: RedisClient,
  s: Script,
  keys: readonly string[],
  args: readonly string[],
): Promise<unknown> {
  return client.evalsha(s.sha, keys.length, ...keys, ...args).catch((e: unknown) => {
    if (e instanceof Error && e.message.startsWith('NOSCRIPT'))
      return client.eval(s.source, keys.length, ...keys, ...args)
    throw e
  })
}

/**
 * Removes every key of `UNSAFE_KEYS` from a value just parsed from JSON, in
 * place. False when it nests deeper than `MAX_DEPTH`.
 */
function scrub(v: unknown, depth: number): boolean {
  if (typeof v !== 'object' || v === null) return true
  if (depth >= MAX_DEPTH) return false
  if (Array.isArray(v)) {
    for (const x of v) if (!scrub(x, depth + 1)) return false
    return true
  }
  const o = v as Record<string, unknown>
  for (const k of Object.keys(o)) {
    if (UNSAFE_KEYS.has(k)) {
      delete o[k]
      continue
    }
    if (!scrub(o[k], depth + 1)) return false
  }
  return true
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.length <= 10_000 && v.every((x) => typeof x === 'string')
}

/** Escapes Redis glob specials; with `keepWildcards`, `*` and `?` stay wildcards (SmartCache's glob). */
function escapeGlob(s: string, keepWildcards = false): string {
  return s.replace(keepWildcards ? /[[\]\\^]/g : /[[\]\\^*?]/g, '\\$&')
}

function isCluster(client: RedisClient): client is Cluster {
  return (client as { isCluster?: unknown }).isCluster === true
}

function describeValue(v: unknown): string {
  if (v === null) return 'null'
  if (typeof v === 'object' || typeof v === 'function') return typeof v
  return JSON.stringify(v) ?? String(v)
}
