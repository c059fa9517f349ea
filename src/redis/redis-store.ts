// The Redis store: a CacheStore on the user's ioredis client, with its key
// layout, commands bounded and gated by a breaker, and the invalidation
// channel. Lua scripts in scripts.ts, the decoding of what is read back in
// decode.ts, signatures in signing.ts and the replay guard of signed messages
// in replay-guard.ts; subscriber-hub.ts shares one subscriber between stores.
import { randomBytes } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { CircuitBreaker, Permit } from '../breaker/circuit-breaker.js'
import type { CacheStore, Invalidation, StoreRecord } from '../cache/store.js'
import { StoreUnavailableError, TimeoutError } from '../errors.js'
import type { Disposer } from '../events.js'
import { storedKey } from '../util/keys.js'
import { checkInteger, checkMs } from '../util/validate.js'
import {
  decodeValue,
  FORGED,
  invalidationOf,
  type MessageBody,
  NOT_JSON,
  parseMessage,
  type ValuePayload,
} from './decode.js'
import { REDIS_STORE_DEFAULTS, type RedisClient, type RedisStoreOptions } from './options.js'
import { ReplayGuard, Verdict } from './replay-guard.js'
import { DEL, DEL_TAGS, evalScript, GET, SET, UNLOCK } from './scripts.js'
import { SIGNATURE_LENGTH, Signer } from './signing.js'
import { hubOf, type SubscriberHooks } from './subscriber-hub.js'

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

/** Bound on an invalidation message read from the channel. */
const MAX_MESSAGE_BYTES = 65_536

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
  /** Signatures of the messages received lately, by timestamp: a replay is refused. */
  readonly #guard: ReplayGuard
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
    const maxAgeMs = options.maxMessageAgeMs ?? REDIS_STORE_DEFAULTS.maxMessageAgeMs
    checkMs('maxMessageAgeMs', maxAgeMs, 1)
    this.#guard = new ReplayGuard(maxAgeMs)
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
    const record = decodeValue(name, text, pttl, this.#maxValueBytes, this.#valueSigner)
    if (record === FORGED) this.#forgedValues++
    if (record === undefined || record === FORGED) {
      this.#dropped++
      return undefined
    }
    return record
  }

  async set(key: string, record: StoreRecord, options?: { broadcast?: boolean }): Promise<void> {
    const ttl = Math.round(Math.max(0, record.freshMs) + Math.max(0, record.staleMs))
    if (!(ttl >= 1)) return
    const payload: ValuePayload = { s: Math.max(0, record.staleMs) }
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
    const m = parseMessage(body)
    if (m === NOT_JSON) {
      if (this.#signer !== undefined) this.#forged++
      return
    }
    if (m === undefined) return
    if (this.#signer !== undefined && !this.#fresh(m.ts, message)) return
    if (m.o === this.#origin) return
    const invalidation = invalidationOf(m)
    if (invalidation === undefined) return
    this.#received++
    try {
      listener(invalidation)
    } catch {
      // The cache's own business; the subscriber goes on.
    }
  }

  /** Whether a validly signed message is recent and new, counting it as stale or replayed if not. */
  #fresh(ts: unknown, message: string): boolean {
    const verdict = this.#guard.check(ts, message.slice(0, SIGNATURE_LENGTH), Date.now())
    if (verdict === Verdict.Stale) this.#stale++
    else if (verdict === Verdict.Replayed) this.#replayed++
    return verdict === Verdict.New
  }

  #message(invalidation: Invalidation): string {
    const m: MessageBody = { o: this.#origin }
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
