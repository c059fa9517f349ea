import { LRUCache } from 'lru-cache'
import {
  BREAKER_DEFAULTS,
  type BreakerOptions,
  type BreakerState,
  CircuitBreaker,
  Permit,
} from '../breaker/circuit-breaker.js'
import { type Clock, systemClock } from '../clock.js'
import { BreakerOpenError, CachedError, ClosedError, InflightLimitError, TimeoutError } from '../errors.js'
import { isThenableOrThrow } from '../util/async.js'
import { coarseClock } from '../util/coarse-clock.js'
import { noop } from '../util/constants.js'
import { storedKey } from '../util/keys.js'
import { checkInteger, checkMs, definedOnly } from '../util/validate.js'
import {
  classify,
  type Entry,
  EntryState,
  failedEntry,
  isFailing,
  type PeekResult,
  peekResult,
  valueEntry,
} from './entry.js'
import { compileGlob, MAX_PATTERN_LENGTH } from './glob.js'
import { LOCAL, SharedTier, type StoreStats } from './shared-tier.js'
import type { CacheStore, StoreRecord } from './store.js'
import { TagIndex } from './tag-index.js'

export type { PeekResult } from './entry.js'
export type { StoreStats } from './shared-tier.js'
export { EntryState }

/** Options of {@link SmartCache}. Per-call options override these. */
export interface SmartCacheOptions {
  /** Name used in stats, events and error messages. Default `'cache'`. */
  name?: string
  /** Most entries kept; the least recently used is evicted beyond it. Default 1 000. */
  max?: number
  /**
   * Most computes running at once. When full, a lookup that would start a new
   * compute serves its stale value if it has one; otherwise a
   * {@link SmartCache.getOrCompute} waits in a queue of `maxQueue` keys for a
   * slot, and {@link SmartCache.load} (the log path) rejects at once with
   * {@link InflightLimitError} without calling the compute; a background
   * refresh is skipped. Lookups that join a running compute are not limited.
   * Default 100.
   */
  maxInflight?: number
  /**
   * Most keys whose {@link SmartCache.getOrCompute} callers wait for a compute
   * slot while `maxInflight` computes run, served first come, first served;
   * callers of a key already waiting share its place. Beyond it,
   * `getOrCompute` rejects with {@link InflightLimitError}; `0` rejects at
   * once. A place waits at most its `timeoutMs` (per call, else the cache's),
   * then rejects with {@link TimeoutError}. Default 1 000 (with `maxInflight`
   * 100, a batch of 1 100 distinct keys at once is computed without a rejection).
   */
  maxQueue?: number
  /** Fast tier: how long a computed value is fresh, in ms. Default 60 000. */
  ttlMs?: number
  /**
   * Slow tier: how long after `ttlMs` a value may still be served while it is
   * refreshed (stale-while-revalidate) or while its key is failing
   * (stale-if-error), in ms. Default 300 000.
   */
  staleMs?: number
  /** Each stored ttl is spread by plus or minus this fraction (0..1). Default 0.1; 0 gives exact ttls. */
  jitter?: number
  /** Error tier: how long a failure is remembered, in ms. Doubles per consecutive failure. Default 5 000. */
  retryMs?: number
  /** Upper bound of the doubled `retryMs`, in ms. Default 300 000. */
  maxRetryMs?: number
  /** How long an `undefined` or `null` result is cached, in ms. Default `ttlMs`. */
  negativeTtlMs?: number
  /** Compute deadline in ms; the compute's `signal` aborts then and the call fails with {@link TimeoutError}. Default: none. */
  timeoutMs?: number
  /** Circuit breaker options, or `false` for none. Default: a breaker with {@link BreakerOptions} defaults. */
  breaker?: BreakerOptions | false
  /**
   * Time source for ttls, retries and the breaker, read exactly each time.
   * Default: the system time (epoch ms), read for the entries' lifetimes at
   * most once per millisecond for the whole process and reused in between,
   * so a lifetime is its ttl give or take 1 ms, or within one long
   * synchronous turn of the event loop the time 1 024 reads took; exact
   * while fake timers are installed. The breaker reads `Date.now()`.
   */
  clock?: Clock
  /** Keys longer than this many characters are replaced by their SHA-256 digest. Default 256. */
  maxKeyLength?: number
  /**
   * A shared tier behind the in-process one (`redisStore()` from
   * `pino-enrich/redis`), used only when the in-process tier cannot answer
   * fresh: lookup order is in process, then the store, then the compute.
   * Computed values and negative results are written to it; failures stay
   * local. Computes of a key are single-flight across every instance sharing
   * the store, and `delete`, `invalidateTags` and `invalidatePattern` reach
   * every instance. Values must survive JSON. One store serves one cache.
   * Default: none.
   */
  store?: CacheStore
  /**
   * Checks each value read from the {@link store} before it is kept or
   * served: the store is shared, and anyone who can write to it can plant a
   * value. Return `{ value }` to take it (or a checked copy of it). Return
   * `{ value, refused: true }` to refuse it: `value` is served in its place
   * to the lookups waiting, kept as stale, and the key is recomputed here in
   * the background, overwriting the store's copy; a refused value is counted
   * in `stats().store.refused` and never answers a refresh. The value given
   * back is taken to be of the cache's type. Default: values are taken as read.
   */
  fromStore?: (value: unknown) => { value: unknown; refused?: boolean }
}

/** Options of {@link SmartCache.set}. */
export interface SetOptions {
  /** Fresh lifetime of this value in ms, instead of `ttlMs` (or `negativeTtlMs`). */
  ttlMs?: number
  /** Tags for {@link SmartCache.invalidateTags}. */
  tags?: readonly string[]
}

/** Options of {@link SmartCache.getOrCompute} and {@link SmartCache.refresh}. */
export interface ComputeOptions extends SetOptions {
  /** Compute deadline in ms, instead of the cache's `timeoutMs`. */
  timeoutMs?: number
}

/** What a compute receives beside its key. */
export interface ComputeContext {
  /** Aborted when the compute times out or the cache is closed. */
  signal: AbortSignal
}

/** Produces the value of a key. A synchronous throw is treated as a rejection. */
export type Compute<V> = (key: string, context: ComputeContext) => V | Promise<V>

/** Counters and gauges of one cache. */
export interface SmartCacheStats {
  name: string
  totalEntries: number
  successEntries: number
  errorEntries: number
  staleEntries: number
  hits: number
  staleHits: number
  misses: number
  errorHits: number
  computes: number
  computeErrors: number
  timeouts: number
  dedupes: number
  inflight: number
  evictions: number
  /** Lookups refused because the breaker was open. */
  breakerRejections: number
  /** Computes not started because `maxInflight` were running (and, for `getOrCompute`, `maxQueue` keys waited). */
  inflightRejections: number
  /** Keys whose `getOrCompute` callers wait for a compute slot now. */
  queued: number
  /** `(hits + staleHits) / lookups`. 0 before the first lookup. */
  hitRate: number
  breaker: BreakerState | 'none'
  /** The shared tier's counters; only with a {@link SmartCacheOptions.store}. */
  store?: StoreStats
}

/** A key whose getOrCompute callers wait for a compute slot. */
interface Queued<V> {
  readonly promise: Promise<V>
  readonly resolve: (v: V) => void
  readonly reject: (e: unknown) => void
  readonly compute: Compute<V>
  readonly options: ComputeOptions | undefined
  /** Rejects the place with a TimeoutError once `timeoutMs` passes in the queue. */
  timer?: NodeJS.Timeout
}

interface Flight<V> {
  readonly promise: Promise<V>
  /** Fires the compute's signal with `reason` and settles its callers with it. */
  readonly abort: (reason: unknown) => void
  /** The half-open breaker's one probe: nobody may queue behind it. */
  readonly probe: boolean
}

/** What {@link freshValue} returns for a key with no fresh value. */
export const NOT_FRESH: unique symbol = Symbol('not fresh')

// Set by SmartCache's static block: the log path's read of a fresh value, kept off the class's public surface.
let readFresh: <V>(cache: SmartCache<V>, key: string, now: number) => V | typeof NOT_FRESH

/**
 * The fresh value of `key` at `now`, or {@link NOT_FRESH}: a
 * {@link SmartCache.lookup} that answers a fresh hit without building a
 * result, for the log path, where nearly every lookup is one. A fresh hit is
 * counted and marks the key recently used, as `lookup` does; anything else is
 * neither counted nor touched, and the caller asks `lookup`.
 */
export function freshValue<V>(cache: SmartCache<V>, key: string, now: number): V | typeof NOT_FRESH {
  return readFresh(cache, key, now)
}

/** Defaults of {@link SmartCacheOptions}, merged once per cache. */
export const CACHE_DEFAULTS = {
  name: 'cache',
  max: 1000,
  maxInflight: 100,
  maxQueue: 1_000,
  ttlMs: 60_000,
  staleMs: 300_000,
  jitter: 0.1,
  retryMs: 5_000,
  maxRetryMs: 300_000,
  maxKeyLength: 256,
  /** How long another instance's compute is waited for, and locked for, when there is no `timeoutMs`. */
  lockTtlMs: 5_000,
} as const

/**
 * An async get-or-compute cache with three tiers, on lru-cache for storage:
 * fast (fresh values), slow (stale values served while they refresh or while
 * their key fails) and error (failures remembered with exponential backoff).
 * Computes are single-flight per key and never wait on other keys; a circuit
 * breaker guards them. Always bounded by `max` entries and `maxInflight`
 * computes. Owns no timers except each compute's unref'd deadline (the
 * default clock's one unref'd timer serves every cache).
 *
 * @typeParam V - the cached value type
 */
export class SmartCache<V> {
  readonly name: string
  readonly #lru: LRUCache<string, Entry<V>>
  readonly #inflight = new Map<string, Flight<V>>()
  readonly #clock: Clock
  readonly #breaker: CircuitBreaker | undefined
  readonly #maxInflight: number
  readonly #maxQueue: number
  /** In arrival order: a Map keeps insertion order, and a key waits once. */
  readonly #queue = new Map<string, Queued<V>>()
  #pumping = false
  readonly #ttlMs: number
  readonly #staleMs: number
  readonly #jitter: number
  readonly #retryMs: number
  readonly #maxRetryMs: number
  readonly #negativeTtlMs: number
  readonly #timeoutMs: number | undefined
  readonly #maxKeyLength: number
  readonly #tags = new TagIndex()
  readonly #shared: SharedTier | undefined
  #running = 0
  #closed = false
  #hits = 0
  #staleHits = 0
  #misses = 0
  #errorHits = 0
  #computes = 0
  #computeErrors = 0
  #timeouts = 0
  #dedupes = 0
  #evictions = 0
  #breakerRejections = 0
  #inflightRejections = 0
  /**
   * The key last read through {@link #get}, the most recently used one, and
   * its entry: read again before anything else is read or written, it is
   * answered from here, being the most recent already. Forgotten on every
   * write, delete and clear of the storage.
   */
  #lastKey: string | undefined = undefined
  #lastEntry: Entry<V> | undefined = undefined

  static {
    readFresh = (cache, key, now) => cache.#fresh(key, now)
  }

  /** @throws RangeError for a negative, fractional or non-numeric bound. */
  constructor(options: SmartCacheOptions = {}) {
    const o = { ...CACHE_DEFAULTS, ...definedOnly(options, 'SmartCache') }
    this.name = o.name
    for (const [k, min] of [
      ['max', 1],
      ['maxInflight', 1],
      ['maxQueue', 0],
      ['maxKeyLength', 16],
    ] as const) {
      checkInteger(k, o[k], min)
    }
    // Lifetimes are read off the clock, never set as timers: any safe integer is fine (2 ** 40 means "once").
    for (const k of ['ttlMs', 'staleMs', 'retryMs', 'maxRetryMs'] as const) checkInteger(k, o[k], 0)
    if (typeof o.jitter !== 'number' || !(o.jitter >= 0 && o.jitter <= 1)) {
      throw new RangeError(`jitter must be between 0 and 1, received ${String(o.jitter)}`)
    }
    if (options.negativeTtlMs !== undefined) checkInteger('negativeTtlMs', options.negativeTtlMs, 0)
    if (options.timeoutMs !== undefined) checkMs('timeoutMs', options.timeoutMs, 1)
    // Entry lifetimes, written and read, are on one clock, so a value written with
    // `ttlMs: 0` is never fresh, even while the coarse clock keeps an older time.
    this.#clock = options.clock ?? coarseClock
    this.#maxInflight = o.maxInflight
    this.#maxQueue = o.maxQueue
    this.#ttlMs = o.ttlMs
    this.#staleMs = o.staleMs
    this.#jitter = o.jitter
    this.#retryMs = o.retryMs
    this.#maxRetryMs = Math.max(o.maxRetryMs, o.retryMs)
    this.#negativeTtlMs = options.negativeTtlMs ?? o.ttlMs
    this.#timeoutMs = options.timeoutMs
    this.#maxKeyLength = o.maxKeyLength
    // The breaker's few reads are on its cold path: its retryAt stays exact epoch ms.
    this.#breaker =
      options.breaker === false
        ? undefined
        : new CircuitBreaker(this.name, { clock: options.clock ?? systemClock, ...(options.breaker ?? {}) })
    // Storage only: expiry is ours (three tiers, one clock), so lru-cache's ttl
    // is off, and so is fetch(), which aborts in-flight fetches it evicts.
    this.#lru = new LRUCache<string, Entry<V>>({
      // lru-cache allocates `max` slots up front: a max of 10 ** 8 or 2 ** 31 ran the
      // process out of memory at construction. Past PREALLOCATED_MAX the same bound is
      // kept as a total size of one per entry, whose storage grows with the entries.
      ...(o.max <= PREALLOCATED_MAX ? { max: o.max } : { maxSize: o.max, sizeCalculation: () => 1 }),
      dispose: (entry, key, reason) => {
        if (reason === 'evict') this.#evictions++
        if (entry.tags !== undefined) this.#tags.remove(key, entry.tags)
      },
    })
    if (options.store !== undefined) {
      this.#shared = new SharedTier(
        options.store,
        {
          usable: (k) => this.#usable(k),
          keep: (k, record) => this.#keep(k, record),
          forget: (k) => this.#forget(k),
          dropTags: (tags) => this.#dropTags(tags),
          dropPattern: (matches) => this.#dropPattern(matches),
        },
        this.#clock,
        this.#staleMs,
        options.fromStore,
      )
    }
  }

  /** The entry of stored key `k`, marked most recently used. */
  #get(k: string): Entry<V> | undefined {
    if (k === this.#lastKey) return this.#lastEntry
    const entry = this.#lru.get(k)
    // A miss changes no recency: the last key found is still the most recent.
    if (entry !== undefined) {
      this.#lastKey = k
      this.#lastEntry = entry
    }
    return entry
  }

  #fresh(key: string, now: number): V | typeof NOT_FRESH {
    const entry = this.#get(storedKey(key, this.#maxKeyLength))
    // classify()'s Fresh, without the states the caller leaves to lookup().
    if (entry === undefined || !entry.has || now >= entry.freshUntil) return NOT_FRESH
    this.#hits++
    return entry.value as V
  }

  /** The breaker guarding this cache's computes, if any. */
  get breaker(): CircuitBreaker | undefined {
    return this.#breaker
  }

  /**
   * Returns the value of `key`, computing it at most once however many callers
   * wait. See the class notes for the tiers.
   *
   * @throws the compute's own error to the callers of a failing compute
   * @throws {@link CachedError} while `key` is in the error tier with no stale value
   * @throws {@link BreakerOpenError} while the breaker is open with no stale value
   * @throws {@link InflightLimitError} when `maxInflight` computes are running and `maxQueue` keys wait for a slot
   * @throws {@link TimeoutError} when the compute passes `timeoutMs`
   */
  async getOrCompute(key: string, compute: Compute<V>, options?: ComputeOptions): Promise<V> {
    if (options !== undefined) checkCallOptions(options)
    const k = storedKey(key, this.#maxKeyLength)
    const entry = this.#get(k)
    const now = this.#clock.now()
    const state = classify(entry, now)
    if (state === EntryState.Fresh) {
      this.#hits++
      return (entry as Entry<V>).value as V
    }
    return this.#slowPath(k, entry, state, now, compute, options)
  }

  #slowPath(
    k: string,
    entry: Entry<V> | undefined,
    state: EntryState,
    now: number,
    compute: Compute<V>,
    options?: ComputeOptions,
  ): V | Promise<V> {
    if (this.#closed) throw new ClosedError(this.name)
    if (state === EntryState.Stale) {
      const stale = entry as Entry<V>
      this.#staleHits++
      // A failing key is not refreshed: its error tier decides when it is tried again.
      if (!isFailing(stale, now) && !this.#inflight.has(k)) this.#start(k, compute, options, true)
      return stale.value as V
    }
    if (state === EntryState.Error) {
      const failed = entry as Entry<V>
      this.#errorHits++
      throw new CachedError(k, failed.error, failed.errorUntil)
    }
    this.#misses++
    const flight = this.#inflight.get(k)
    if (flight !== undefined) {
      // Section 3: while half-open every caller but the probe's fails fast, even on the probe's key.
      if (flight.probe && this.#breaker !== undefined) {
        this.#breakerRejections++
        throw new BreakerOpenError(this.name, this.#breaker.retryAt)
      }
      this.#dedupes++
      return flight.promise
    }
    if (this.#running >= this.#maxInflight) return this.#enqueue(k, compute, options)
    const started = this.#start(k, compute, options, false)
    if (started instanceof Error) throw started
    return started.promise
  }

  /** Waits for a compute slot, sharing the place of a key already waiting; rejects when `maxQueue` keys wait. */
  #enqueue(k: string, compute: Compute<V>, options: ComputeOptions | undefined): Promise<V> {
    const waiting = this.#queue.get(k)
    if (waiting !== undefined) {
      this.#dedupes++
      return waiting.promise
    }
    // An open breaker refuses now: waiting would only delay the same answer.
    if (this.#breaker !== undefined && this.#breaker.state === 'open') {
      this.#breakerRejections++
      throw new BreakerOpenError(this.name, this.#breaker.retryAt)
    }
    if (this.#queue.size >= this.#maxQueue) {
      this.#inflightRejections++
      throw new InflightLimitError(this.name, this.#maxInflight)
    }
    let resolve!: (v: V) => void
    let reject!: (e: unknown) => void
    const promise = new Promise<V>((res, rej) => {
      resolve = res
      reject = rej
    })
    const q: Queued<V> = { promise, resolve, reject, compute, options }
    // A compute deadline bounds the wait for a slot too: behind computes that hang it would be none.
    const timeoutMs = options?.timeoutMs ?? this.#timeoutMs
    if (timeoutMs !== undefined) {
      q.timer = setTimeout(() => {
        if (this.#queue.get(k) !== q) return
        this.#queue.delete(k)
        this.#timeouts++
        reject(new TimeoutError(`${this.name} compute`, timeoutMs))
      }, timeoutMs)
      q.timer.unref()
    }
    this.#queue.set(k, q)
    return promise
  }

  /** Gives free compute slots to waiting keys, oldest first. */
  #pump(): void {
    // A compute that answers synchronously frees its slot inside #start: the loop
    // below takes the next key, rather than a nested pump (one stack frame per key,
    // until the stack overflows and leaves the remaining callers unsettled).
    if (this.#pumping) return
    this.#pumping = true
    try {
      this.#pumpLoop()
    } finally {
      this.#pumping = false
    }
  }

  #pumpLoop(): void {
    while (this.#running < this.#maxInflight && this.#queue.size > 0 && !this.#closed) {
      const [k, q] = this.#queue.entries().next().value as [string, Queued<V>]
      this.#queue.delete(k)
      if (q.timer !== undefined) clearTimeout(q.timer)
      // The key may have been answered meanwhile: by set(), another caller's compute, a failure.
      const entry = this.#lru.peek(k)
      const now = this.#clock.now()
      const state = classify(entry, now)
      // A stale value answers a failing key; a key merely stale is computed, as a miss is.
      if (state === EntryState.Fresh || (state === EntryState.Stale && isFailing(entry as Entry<V>, now))) {
        q.resolve((entry as Entry<V>).value as V)
        continue
      }
      if (state === EntryState.Error) {
        const failed = entry as Entry<V>
        q.reject(new CachedError(k, failed.error, failed.errorUntil))
        continue
      }
      const flight = this.#inflight.get(k)
      if (flight !== undefined && !flight.probe) {
        flight.promise.then(q.resolve, q.reject)
        continue
      }
      const started =
        flight === undefined
          ? this.#start(k, q.compute, q.options, false)
          : new BreakerOpenError(this.name, this.#breaker?.retryAt ?? now)
      if (started instanceof Error) q.reject(started)
      else started.promise.then(q.resolve, q.reject)
    }
  }

  /**
   * Synchronous look at `key`: never computes, never counts as a lookup,
   * never changes recency.
   */
  peek(key: string): PeekResult<V> {
    const k = storedKey(key, this.#maxKeyLength)
    const entry = this.#lru.peek(k)
    if (entry === undefined) return { state: EntryState.Miss }
    const now = this.#clock.now()
    return peekResult(entry, classify(entry, now), now)
  }

  /**
   * {@link peek} that counts as a lookup in {@link stats} (hit, stale hit,
   * error hit or miss) and marks the key recently used, still never
   * computing: for readers that take what is there and refresh in the
   * background, such as a log line's snapshot. `now`, when the caller has
   * just read the cache's clock, saves reading it again.
   */
  lookup(key: string, now?: number): PeekResult<V> {
    const k = storedKey(key, this.#maxKeyLength)
    const entry = this.#get(k)
    if (entry === undefined) {
      this.#misses++
      return { state: EntryState.Miss }
    }
    now ??= this.#clock.now()
    const state = classify(entry, now)
    if (state === EntryState.Fresh) this.#hits++
    else if (state === EntryState.Stale) this.#staleHits++
    else if (state === EntryState.Error) this.#errorHits++
    else this.#misses++
    return peekResult(entry, state, now)
  }

  /**
   * Joins the running compute of `key` or starts one, without consulting or
   * counting the tiers: for a caller that has just seen a miss through
   * {@link lookup}. Rejects like {@link getOrCompute} when the breaker or
   * `maxInflight` refuses.
   */
  load(key: string, compute: Compute<V>, options?: ComputeOptions): Promise<V> {
    if (this.#closed) return Promise.reject(new ClosedError(this.name))
    if (options !== undefined) checkCallOptions(options)
    const k = storedKey(key, this.#maxKeyLength)
    const flight = this.#inflight.get(k)
    if (flight !== undefined) {
      if (flight.probe && this.#breaker !== undefined) {
        this.#breakerRejections++
        return Promise.reject(new BreakerOpenError(this.name, this.#breaker.retryAt))
      }
      this.#dedupes++
      return flight.promise
    }
    const started = this.#start(k, compute, options, false)
    return started instanceof Error ? Promise.reject(started) : started.promise
  }

  /**
   * Starts a background compute of `key` unless one is running, the key is in
   * its error tier, the breaker denies it or `maxInflight` is reached.
   * Resolves when that compute (or the one already running) settles; never rejects.
   *
   * @throws RangeError at once for a per-call `ttlMs` or `timeoutMs` past 2^31 - 1 ms
   */
  refresh(key: string, compute: Compute<V>, options?: ComputeOptions): Promise<void> {
    if (this.#closed) return Promise.resolve()
    if (options !== undefined) checkCallOptions(options)
    const k = storedKey(key, this.#maxKeyLength)
    const running = this.#inflight.get(k)
    if (running !== undefined) return running.promise.then(noop, noop)
    const entry = this.#lru.peek(k)
    if (entry !== undefined && isFailing(entry, this.#clock.now())) return Promise.resolve()
    const started = this.#start(k, compute, options, true)
    return started instanceof Error ? Promise.resolve() : started.promise.then(noop, noop)
  }

  /**
   * Starts a compute, or returns why it could not start. `background` starts
   * are not counted as rejections when refused: the caller was served already.
   * `local` skips the store: it just gave a value that was refused.
   */
  #start(
    k: string,
    compute: Compute<V>,
    options: ComputeOptions | undefined,
    background: boolean,
    local = false,
  ): Flight<V> | Error {
    let permit: Permit = Permit.Call
    if (this.#breaker !== undefined) {
      permit = this.#breaker.acquire()
      if (permit === Permit.Denied) {
        if (!background) this.#breakerRejections++
        return new BreakerOpenError(this.name, this.#breaker.retryAt)
      }
    }
    if (this.#running >= this.#maxInflight) {
      if (!background) this.#inflightRejections++
      // A probe that could not run must not hold the half-open slot.
      if (permit === Permit.Probe) this.#breaker?.releaseProbe()
      return new InflightLimitError(this.name, this.#maxInflight)
    }
    const probe = permit === Permit.Probe
    const controller = new AbortController()
    let resolve!: (v: V) => void
    let reject!: (e: unknown) => void
    const promise = new Promise<V>((res, rej) => {
      resolve = res
      reject = rej
    })
    // Nobody may await a background refresh; its failure is recorded, not thrown.
    promise.catch(noop)
    const flight: Flight<V> = {
      promise,
      probe,
      abort: (reason) => {
        controller.abort(reason)
        done(false, reason)
      },
    }
    this.#inflight.set(k, flight)
    this.#running++

    let settled = false
    let timer: NodeJS.Timeout | undefined
    let lock: string | undefined
    const timeoutMs = options?.timeoutMs ?? this.#timeoutMs
    const done = (ok: boolean, result: unknown): void => {
      if (settled) return
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      this.#running--
      const current = this.#inflight.get(k) === flight
      if (current) this.#inflight.delete(k)
      if (ok) {
        this.#breaker?.success(probe)
        // A delete() or clear() during the compute wins: its result is not stored.
        if (current) {
          const entry = this.#store(k, result as V, options)
          this.#shared?.write(k, entry, lock)
        }
        resolve(result as V)
      } else {
        // close() settles its callers this way; that is no failure of the compute.
        if (!this.#closed) {
          this.#computeErrors++
          if (result instanceof TimeoutError) this.#timeouts++
          this.#breaker?.failure(probe)
        }
        if (current) this.#fail(k, result)
        reject(result)
      }
      // Written values are unlocked after their write (SharedTier.write); others here.
      if (lock !== undefined && !(ok && current)) this.#shared?.unlock(k, lock)
      if (this.#queue.size > 0) this.#pump()
    }
    const run = (): void => {
      this.#computes++
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => flight.abort(new TimeoutError(`${this.name} compute`, timeoutMs)), timeoutMs)
        timer.unref()
      }
      try {
        const r = compute(k, { signal: controller.signal })
        // Inside the try: a result whose `then` getter throws is a failed compute.
        if (isThenableOrThrow(r)) {
          Promise.resolve(r).then(
            (v) => done(true, v),
            (e: unknown) => done(false, e),
          )
        } else {
          done(true, r)
        }
      } catch (e) {
        done(false, e)
      }
    }
    const tier = this.#shared
    if (tier === undefined || local) {
      // Nobody waits on a background compute: it starts after the caller (a log
      // call's snapshot) has returned, not inside it, up to its first await.
      if (background) queueMicrotask(() => settled || run())
      else run()
      return flight
    }
    // The shared tier first: only an in-process miss or stale value gets here. Started
    // from a microtask, so the caller (a log call's snapshot) never pays for the store's I/O.
    const waitMs = timeoutMs ?? tier.lockTtlMs ?? CACHE_DEFAULTS.lockTtlMs
    const signal = controller.signal
    Promise.resolve()
      .then(() => tier.read(k, signal, background, waitMs))
      .catch(() => LOCAL)
      .then((shared) => {
        if (settled || this.#closed) {
          if (shared.token !== undefined) tier.unlock(k, shared.token)
          // close() settled this flight while the store answered, or forgot it (clear()) first.
          done(false, new ClosedError(this.name))
          return
        }
        if (shared.record === undefined) {
          lock = shared.token
          run()
          return
        }
        settled = true
        this.#running--
        const current = this.#inflight.get(k) === flight
        if (current) {
          this.#inflight.delete(k)
          this.#keep(k, shared.record)
        }
        // The value came from another instance: nothing learnt about this one's backend.
        if (probe) this.#breaker?.releaseProbe()
        resolve(shared.record.value as V)
        // A stale value is served at once and refreshed behind it (the refresh will not serve stale).
        if (current && shared.record.freshMs <= 0 && !this.#closed) {
          this.#start(k, compute, options, true, shared.refused === true)
        }
        if (this.#queue.size > 0) this.#pump()
      })
    return flight
  }

  /** Whether `k` has a value to serve in process, fresh or stale. */
  #usable(k: string): boolean {
    const e = this.#lru.peek(k)
    if (e === undefined) return false
    const state = classify(e, this.#clock.now())
    return state === EntryState.Fresh || state === EntryState.Stale
  }

  /** Keeps a record read from the store, with the lifetimes the store gave. */
  #keep(k: string, record: StoreRecord): void {
    const freshUntil = this.#clock.now() + Math.max(0, record.freshMs)
    this.#put(k, record.value as V, freshUntil, freshUntil + Math.max(0, record.staleMs), record.tags)
  }

  #store(k: string, value: V, options: SetOptions | undefined): Entry<V> {
    const negative = value === undefined || value === null
    const ttl = options?.ttlMs ?? (negative ? this.#negativeTtlMs : this.#ttlMs)
    const now = this.#clock.now()
    const spread = this.#jitter === 0 ? ttl : Math.round(ttl * (1 + this.#jitter * (2 * Math.random() - 1)))
    const freshUntil = now + spread
    return this.#put(k, value, freshUntil, freshUntil + this.#staleMs, options?.tags)
  }

  /** Stores a value as fresh until `freshUntil`, clearing any remembered failure; keeps the key's tags unless given. */
  #put(k: string, value: V, freshUntil: number, staleUntil: number, tags: readonly string[] | undefined): Entry<V> {
    const kept = tags ?? this.#lru.peek(k)?.tags
    const entry = valueEntry(value, freshUntil, staleUntil, kept)
    this.#lastKey = undefined
    this.#lastEntry = undefined
    this.#lru.set(k, entry)
    if (kept !== undefined) this.#tags.add(k, kept)
    return entry
  }

  #fail(k: string, error: unknown): void {
    const entry = failedEntry(this.#lru.peek(k), error, this.#clock.now(), this.#retryMs, this.#maxRetryMs)
    this.#lastKey = undefined
    this.#lastEntry = undefined
    this.#lru.set(k, entry)
    if (entry.tags !== undefined) this.#tags.add(k, entry.tags)
  }

  /**
   * Stores a fresh value, replacing any value or remembered failure. With a
   * store, the value is written there too and the other instances drop their
   * copy, to read this one on their next lookup.
   */
  set(key: string, value: V, options?: SetOptions): void {
    if (options !== undefined) checkCallOptions(options)
    const k = storedKey(key, this.#maxKeyLength)
    this.#inflight.delete(k)
    const entry = this.#store(k, value, options)
    this.#shared?.write(k, entry, undefined, true)
  }

  /**
   * Forgets `key`; a compute of it already running will not store its result.
   * With a store, forgets it there and on every instance too.
   */
  delete(key: string): boolean {
    const k = storedKey(key, this.#maxKeyLength)
    this.#shared?.broadcast({ keys: [k] })
    return this.#forget(k)
  }

  /** Forgets a stored key, already hashed: hashing it again would miss it when `maxKeyLength` < its length. */
  #forget(k: string): boolean {
    const inflight = this.#inflight.delete(k)
    this.#lastKey = undefined
    this.#lastEntry = undefined
    return this.#lru.delete(k) || inflight
  }

  /**
   * Forgets every entry carrying any of `tags`. Returns how many were dropped
   * here. With a store, forgets them there and on every instance too.
   */
  invalidateTags(tags: Iterable<string>): number {
    const list = [...tags]
    if (list.length > 0) this.#shared?.broadcast({ tags: list })
    return this.#dropTags(list)
  }

  #dropTags(tags: readonly string[]): number {
    let n = 0
    for (const tag of tags) for (const k of this.#tags.keysOf(tag)) if (this.#forget(k)) n++
    return n
  }

  /**
   * Forgets every key matching a glob: `*` any run of characters, `?` one
   * character. Matching takes linear time in the key's length whatever the
   * pattern (no RegExp is built from it). Keys longer than `maxKeyLength` are stored as digests and only
   * match a pattern of their digest. Returns how many were dropped here. With
   * a store, forgets them there and on every instance too.
   *
   * @throws RangeError for a pattern longer than {@link MAX_PATTERN_LENGTH} (1 024) characters
   */
  invalidatePattern(glob: string): number {
    if (typeof glob !== 'string') throw new TypeError(`a pattern must be a string, received ${String(glob)}`)
    const matches = compileGlob(glob)
    this.#shared?.broadcast({ pattern: glob })
    return this.#dropPattern(matches)
  }

  #dropPattern(matches: (key: string) => boolean): number {
    let n = 0
    for (const k of [...this.#lru.keys()]) if (matches(k) && this.#forget(k)) n++
    for (const k of [...this.#inflight.keys()]) if (matches(k) && this.#inflight.delete(k)) n++
    return n
  }

  /**
   * Forgets everything in process. Running computes finish but do not store.
   * The breaker is kept, and so is the store's content: use
   * `invalidatePattern('*')` to empty the fleet's.
   */
  clear(): void {
    this.#inflight.clear()
    this.#lastKey = undefined
    this.#lastEntry = undefined
    this.#lru.clear()
    this.#tags.clear()
  }

  /**
   * Clears the cache, aborts running computes (their signals fire), rejects
   * their waiting callers and every later lookup with {@link ClosedError}. Idempotent.
   */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#shared?.close()
    const flights = [...this.#inflight.values()]
    const queued = [...this.#queue.values()]
    this.#queue.clear()
    this.clear()
    const reason = new ClosedError(this.name)
    for (const f of flights) f.abort(reason)
    for (const q of queued) {
      if (q.timer !== undefined) clearTimeout(q.timer)
      q.reject(reason)
    }
  }

  /** Counters since construction and gauges now. Walks the entries: not for a hot path. */
  stats(): SmartCacheStats {
    const now = this.#clock.now()
    let successEntries = 0
    let errorEntries = 0
    let staleEntries = 0
    for (const e of this.#lru.values()) {
      const state = classify(e, now)
      if (state === EntryState.Fresh || state === EntryState.Stale) successEntries++
      if (state === EntryState.Stale) staleEntries++
      if (isFailing(e, now)) errorEntries++
    }
    const lookups = this.#hits + this.#staleHits + this.#misses + this.#errorHits
    const stats: SmartCacheStats = {
      name: this.name,
      totalEntries: this.#lru.size,
      successEntries,
      errorEntries,
      staleEntries,
      hits: this.#hits,
      staleHits: this.#staleHits,
      misses: this.#misses,
      errorHits: this.#errorHits,
      computes: this.#computes,
      computeErrors: this.#computeErrors,
      timeouts: this.#timeouts,
      dedupes: this.#dedupes,
      inflight: this.#running,
      evictions: this.#evictions,
      breakerRejections: this.#breakerRejections,
      inflightRejections: this.#inflightRejections,
      queued: this.#queue.size,
      hitRate: lookups === 0 ? 0 : (this.#hits + this.#staleHits) / lookups,
      breaker: this.#breaker?.state ?? 'none',
    }
    if (this.#shared !== undefined) stats.store = this.#shared.stats()
    return stats
  }
}

/** The largest `max` given to lru-cache as such (it allocates that many slots at once). */
const PREALLOCATED_MAX = 65_536

/** Per-call options are checked as the cache's own are. */
function checkCallOptions(options: ComputeOptions): void {
  if (options.ttlMs !== undefined) checkInteger('ttlMs', options.ttlMs, 0)
  if (options.timeoutMs !== undefined) checkMs('timeoutMs', options.timeoutMs, 1)
}

export { BREAKER_DEFAULTS }
