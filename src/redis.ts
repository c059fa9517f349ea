// pino-enrich/redis: the shared tier behind every SmartCache of a fleet.
// The user's ioredis client is used as given (only its type is imported): no
// runtime dependency on ioredis, which is an optional peer of this entry.
import { createHash, randomBytes } from 'node:crypto'
import type { Redis, RedisOptions } from 'ioredis'
import { type BreakerOptions, CircuitBreaker, checkInteger, Permit } from './breaker/circuit-breaker.js'
import type { CacheStore, Invalidation, StoreRecord } from './cache/store.js'
import { StoreUnavailableError, TimeoutError } from './errors.js'
import type { Disposer } from './events.js'
import { checkMs } from './util/validate.js'

export type { CacheStore, Invalidation, StoreRecord } from './cache/store.js'

/** Options of {@link redisStore}. */
export interface RedisStoreOptions {
  /**
   * The ioredis client for commands. The store never queues a command while
   * it is not connected, whatever its options, but create it with
   * {@link RECOMMENDED_CLIENT_OPTIONS} (`enableOfflineQueue: false`, a short
   * `commandTimeout`) so ioredis itself holds nothing either. Yours to close.
   */
  client: Redis
  /**
   * A client for pub/sub (it enters subscriber mode). Yours to close.
   * Default: `client.duplicate()`, created on first use and closed with the store.
   */
  subscriber?: Redis
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

export const REDIS_STORE_DEFAULTS = {
  prefix: 'pino-enrich',
  version: '1',
  commandTimeoutMs: 100,
  breaker: { failureThreshold: 3, halfOpenAfterMs: 1_000 },
  lockTtlMs: 5_000,
  maxKeyLength: 256,
  maxValueBytes: 1_048_576,
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

// KEYS: value keys. ARGV: channel, message. Deleted before published, so a reader told to drop finds nothing old.
const DEL = script(`if #KEYS > 0 then redis.call('DEL', unpack(KEYS)) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`)

// KEYS: tag sets. ARGV: channel, message. Deletes every member of each set, then the set.
const DEL_TAGS = script(`local n = 0
for i = 1, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #members, 500 do
    redis.call('DEL', unpack(members, j, math.min(j + 499, #members)))
  end
  n = n + #members
  redis.call('DEL', KEYS[i])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n`)

const UNLOCK = script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

/** Bound on an invalidation message read from the channel. */
const MAX_MESSAGE_BYTES = 65_536
/** Bound on the nesting of a value read back. */
const MAX_DEPTH = 64
/** Keys dropped from every object read back: what `Object.assign` or a merge could turn into a prototype change. */
const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype'])

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
 * Standalone Redis or Sentinel; scripts touch several keys, so not Cluster.
 *
 * @throws TypeError when `client` is missing or `prefix` is empty
 * @throws RangeError for a bad bound
 */
export function redisStore(options: RedisStoreOptions): RedisStore {
  return new RedisCacheStore(options)
}

class RedisCacheStore implements RedisStore {
  readonly breaker: CircuitBreaker | undefined
  readonly lockTtlMs: number
  readonly #client: Redis
  readonly #ownSubscriber: boolean
  #subscriber: Redis | undefined
  readonly #name: string
  readonly #ns: string
  readonly #channel: string
  readonly #origin = randomBytes(9).toString('base64url')
  readonly #timeoutMs: number
  readonly #maxKeyLength: number
  readonly #maxValueBytes: number
  #listener: ((invalidation: Invalidation) => void) | undefined
  #onMessage: ((channel: string, message: string) => void) | undefined
  #onReady: (() => void) | undefined
  #onClose: (() => void) | undefined
  #listening = false
  #closed = false
  #connecting = false
  #commands = 0
  #failures = 0
  #timeouts = 0
  #rejected = 0
  #dropped = 0
  #received = 0

  constructor(options: RedisStoreOptions) {
    if (options === null || typeof options !== 'object' || typeof options.client?.evalsha !== 'function') {
      throw new TypeError(`redisStore needs an ioredis client, received ${describeValue(options?.client)}`)
    }
    const prefix = options.prefix ?? REDIS_STORE_DEFAULTS.prefix
    if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > 128) {
      throw new TypeError(`prefix must be a string of 1 to 128 characters, received ${describeValue(prefix)}`)
    }
    const version = String(options.version ?? REDIS_STORE_DEFAULTS.version)
    this.#timeoutMs = options.commandTimeoutMs ?? REDIS_STORE_DEFAULTS.commandTimeoutMs
    checkMs('commandTimeoutMs', this.#timeoutMs, 1)
    this.lockTtlMs = options.lockTtlMs ?? REDIS_STORE_DEFAULTS.lockTtlMs
    checkMs('lockTtlMs', this.lockTtlMs, 1)
    this.#maxKeyLength = options.maxKeyLength ?? REDIS_STORE_DEFAULTS.maxKeyLength
    checkInteger('maxKeyLength', this.#maxKeyLength, 16)
    this.#maxValueBytes = options.maxValueBytes ?? REDIS_STORE_DEFAULTS.maxValueBytes
    checkInteger('maxValueBytes', this.#maxValueBytes, 1)
    this.#client = options.client
    this.#subscriber = options.subscriber
    this.#ownSubscriber = options.subscriber === undefined
    this.#ns = `${prefix}:${version}:`
    this.#channel = `${this.#ns}invalidate`
    this.#name = `redis ${prefix}:${version}`
    this.breaker =
      options.breaker === false
        ? undefined
        : new CircuitBreaker(this.#name, { ...REDIS_STORE_DEFAULTS.breaker, ...(options.breaker ?? {}) })
  }

  async get(key: string): Promise<StoreRecord | undefined> {
    const reply = await this.#run('GET', (c) => evalScript(c, GET, [this.#key('v', key)], []))
    if (!Array.isArray(reply)) return undefined
    const [text, pttl] = reply as [unknown, unknown]
    if (typeof text !== 'string' || typeof pttl !== 'number' || pttl <= 0) return undefined
    const record = this.#decode(text, pttl)
    if (record === undefined) this.#dropped++
    return record
  }

  async set(key: string, record: StoreRecord, options?: { broadcast?: boolean }): Promise<void> {
    const ttl = Math.round(Math.max(0, record.freshMs) + Math.max(0, record.staleMs))
    if (!(ttl >= 1)) return
    const payload: { s: number; v?: unknown; u?: 1; t?: readonly string[] } = { s: Math.max(0, record.staleMs) }
    if (record.value === undefined) payload.u = 1
    else payload.v = record.value
    if (record.tags !== undefined && record.tags.length > 0) payload.t = record.tags
    const text = JSON.stringify(payload)
    if (Buffer.byteLength(text) > this.#maxValueBytes) {
      throw new RangeError(`value of ${key} exceeds maxValueBytes (${this.#maxValueBytes})`)
    }
    const keys = [this.#key('v', key), ...(payload.t ?? []).map((t) => this.#key('t', t))]
    const broadcast = options?.broadcast === true
    const message = broadcast ? this.#message({ keys: [key] }) : ''
    await this.#run('SET', (c) =>
      evalScript(c, SET, keys, [text, String(ttl), broadcast ? this.#channel : '', message]),
    )
  }

  async invalidate(invalidation: Invalidation): Promise<void> {
    const message = this.#message(invalidation)
    if ('keys' in invalidation) {
      const keys = invalidation.keys.map((k) => this.#key('v', k))
      await this.#run('DEL', (c) => evalScript(c, DEL, keys, [this.#channel, message]))
    } else if ('tags' in invalidation) {
      const keys = invalidation.tags.map((t) => this.#key('t', t))
      await this.#run('DEL', (c) => evalScript(c, DEL_TAGS, keys, [this.#channel, message]))
    } else {
      // SCAN in steps, each its own bounded command; then one publish.
      const match = `${escapeGlob(this.#ns)}v:${escapeGlob(invalidation.pattern, true)}`
      let cursor = '0'
      do {
        const [next, keys] = await this.#run('SCAN', (c) => c.scan(cursor, 'MATCH', match, 'COUNT', 1_000))
        cursor = next
        if (keys.length > 0) await this.#run('UNLINK', (c) => c.unlink(...keys))
      } while (cursor !== '0')
      await this.#run('PUBLISH', (c) => c.publish(this.#channel, message))
    }
  }

  async lock(key: string, ttlMs: number): Promise<string | undefined> {
    const token = randomBytes(12).toString('base64url')
    const ok = await this.#run('SET', (c) => c.set(this.#key('l', key), token, 'PX', Math.max(1, ttlMs), 'NX'))
    return ok === 'OK' ? token : undefined
  }

  async unlock(key: string, token: string): Promise<void> {
    await this.#run('UNLOCK', (c) => evalScript(c, UNLOCK, [this.#key('l', key)], [token]))
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
      sub = this.#client.duplicate({ enableOfflineQueue: true, lazyConnect: false })
      // ioredis reports connection errors as events; unheard, they print. They are the breaker's business.
      sub.on('error', () => {})
      this.#subscriber = sub
    }
    const onMessage = (channel: string, message: string): void => this.#receive(channel, message)
    // ioredis resubscribes after a reconnect, but only to channels whose SUBSCRIBE succeeded:
    // subscribing again on every ready (idempotent in Redis) covers a first attempt that failed.
    const onReady = (): void => this.#subscribeChannel(sub)
    const onClose = (): void => {
      this.#listening = false
    }
    this.#onMessage = onMessage
    this.#onReady = onReady
    this.#onClose = onClose
    sub.on('message', onMessage)
    sub.on('ready', onReady)
    sub.on('close', onClose)
    this.#subscribeChannel(sub)
    let active = true
    return () => {
      if (!active) return
      active = false
      this.#unsubscribe()
    }
  }

  #subscribeChannel(sub: Redis): void {
    sub.subscribe(this.#channel).then(
      () => {
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
    if (this.#onMessage !== undefined) sub.off('message', this.#onMessage)
    if (this.#onReady !== undefined) sub.off('ready', this.#onReady)
    if (this.#onClose !== undefined) sub.off('close', this.#onClose)
    this.#onMessage = undefined
    this.#onReady = undefined
    this.#onClose = undefined
    this.#listening = false
    if (this.#ownSubscriber) {
      // disconnect(), not quit(): quit waits for a reply a hung Redis never sends.
      sub.disconnect()
      this.#subscriber = undefined
    } else {
      sub.unsubscribe(this.#channel).catch(() => {})
    }
  }

  #receive(channel: string, message: string): void {
    const listener = this.#listener
    if (channel !== this.#channel || listener === undefined || message.length > MAX_MESSAGE_BYTES) return
    let m: unknown
    try {
      m = JSON.parse(message)
    } catch {
      return
    }
    if (typeof m !== 'object' || m === null) return
    const { o, k, t, p } = m as { o?: unknown; k?: unknown; t?: unknown; p?: unknown }
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

  #message(invalidation: Invalidation): string {
    if ('keys' in invalidation) return JSON.stringify({ o: this.#origin, k: invalidation.keys })
    if ('tags' in invalidation) return JSON.stringify({ o: this.#origin, t: invalidation.tags })
    return JSON.stringify({ o: this.#origin, p: invalidation.pattern })
  }

  #key(kind: 'v' | 't' | 'l', key: string): string {
    return `${this.#ns}${kind}:${key.length > this.#maxKeyLength ? digest(key) : key}`
  }

  #decode(text: string, pttl: number): StoreRecord | undefined {
    if (text.length > this.#maxValueBytes) return undefined
    let parsed: unknown
    try {
      // No reviver: a reviver would see every value before it is checked.
      parsed = JSON.parse(text)
    } catch {
      return undefined
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined
    const { s, v, u, t } = parsed as { s?: unknown; v?: unknown; u?: unknown; t?: unknown }
    if (typeof s !== 'number' || !(s >= 0)) return undefined
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
  #run<T>(what: string, op: (client: Redis) => Promise<T>): Promise<T> {
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

interface Script {
  readonly source: string
  readonly sha: string
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') }
}

/** EVALSHA, falling back to EVAL when Redis does not know the script yet (first use, or after a restart). */
function evalScript(client: Redis, s: Script, keys: readonly string[], args: readonly string[]): Promise<unknown> {
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

function digest(key: string): string {
  return `sha256:${createHash('sha256').update(key).digest('base64url')}`
}

function describeValue(v: unknown): string {
  if (v === null) return 'null'
  if (typeof v === 'object' || typeof v === 'function') return typeof v
  return JSON.stringify(v) ?? String(v)
}
