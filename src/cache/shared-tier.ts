// The shared tier's protocol, behind a SmartCache's in-process tier.
//
// A flight that missed in process (or holds a stale value) reads the store
// first. A usable record answers it. Otherwise it takes the fleet-wide lock
// of the key and computes; while another instance holds the lock, it polls
// for that instance's value, and computes without the lock once `waitMs`
// passes. A computed value is written back, then the lock released, so a
// waiter that finds the lock free finds the value too. delete(),
// invalidateTags() and invalidatePattern() are broadcast through the store,
// and what other instances broadcast is received here and handed to the
// cache to forget. Every store call is best effort: a failure is counted and
// the cache goes on as if the store had no answer.
import type { Clock } from '../clock.js'
import type { Disposer } from '../events.js'
import type { Entry } from './entry.js'
import { compileGlob, MAX_PATTERN_LENGTH } from './glob.js'
import type { CacheStore, Invalidation, StoreRecord } from './store.js'

/** What a cache did with its {@link SmartCacheOptions.store}. */
export interface StoreStats {
  /** Lookups answered by the store instead of a compute. */
  hits: number
  /** Lookups the store could not answer. */
  misses: number
  /** Lookups that waited for another instance's compute. */
  waits: number
  /** Values written to the store. */
  writes: number
  /** Store operations that failed or timed out (each was skipped). */
  errors: number
  /** Invalidations received from other instances. */
  invalidations: number
  /** Values read from the store that `fromStore` refused. */
  refused: number
}

/** Checks a value read from the store: see {@link SmartCacheOptions.fromStore}. */
export type FromStore = (value: unknown) => { value: unknown; refused?: boolean }

/** What the store phase of a flight decided: a record to serve, or compute (holding the lock when `token` is set). */
export type Shared =
  | { readonly record: StoreRecord; readonly token?: undefined; readonly refused?: boolean }
  | { readonly record?: undefined; readonly token: string | undefined }

/** Compute here, without the fleet-wide lock. */
export const LOCAL: Shared = { token: undefined }

/** What the shared tier asks of the cache it serves. */
export interface SharedTierHost {
  /** Whether `k` has a value to serve in process, fresh or stale. */
  usable(k: string): boolean
  /** Keeps a record read from the store, with the lifetimes the store gave. */
  keep(k: string, record: StoreRecord): void
  /** Forgets a key as stored (already hashed) in process only. */
  forget(k: string): void
  /** Forgets every key carrying any of `tags`, in process only. */
  dropTags(tags: readonly string[]): void
  /** Forgets every key `matches` accepts, in process only. */
  dropPattern(matches: (key: string) => boolean): void
}

/** A store value its `fromStore` refused, with the stale record to serve in its place. */
class Refused {
  constructor(readonly replacement: StoreRecord) {}
}

/** First and longest pause between two looks at another instance's compute, in ms. */
const POLL_FIRST_MS = 5
const POLL_MAX_MS = 50
/** A lock outlives its compute's deadline by this much: the read between taking it and computing. */
const LOCK_MARGIN_MS = 250

/** A record the store holds that is fresh and was not refused. */
function isFresh(record: StoreRecord | Refused | undefined): record is StoreRecord {
  return record !== undefined && !(record instanceof Refused) && record.freshMs > 0
}

/** One cache's side of its {@link CacheStore}: reads, writes, locks and invalidations, each never rejecting. */
export class SharedTier {
  readonly #store: CacheStore
  readonly #host: SharedTierHost
  readonly #clock: Clock
  /** The cache's stale lifetime, given to a refused value's replacement. */
  readonly #staleMs: number
  readonly #fromStore: FromStore | undefined
  readonly #stats: StoreStats = { hits: 0, misses: 0, waits: 0, writes: 0, errors: 0, invalidations: 0, refused: 0 }
  readonly #unsubscribe: Disposer

  /** Starts listening to the other instances' invalidations at once. */
  constructor(
    store: CacheStore,
    host: SharedTierHost,
    clock: Clock,
    staleMs: number,
    fromStore: FromStore | undefined,
  ) {
    this.#store = store
    this.#host = host
    this.#clock = clock
    this.#staleMs = staleMs
    this.#fromStore = fromStore
    this.#unsubscribe = store.subscribe((inv) => this.#receive(inv))
  }

  /** The store's own lock lifetime, if it sets one. */
  get lockTtlMs(): number | undefined {
    return this.#store.lockTtlMs
  }

  /**
   * The store's part of a flight: the store's value if it has a usable one,
   * else the fleet-wide lock. While another instance holds the lock, polls
   * for its value for at most `waitMs`, taking the lock if it is freed
   * (its holder failed, or died and the lock expired), and computes without
   * it after that. Any store failure means: compute here, without the lock.
   * Never rejects.
   */
  async read(k: string, signal: AbortSignal, background: boolean, waitMs: number): Promise<Shared> {
    const store = this.#store
    const stats = this.#stats
    let record: StoreRecord | Refused | undefined
    try {
      record = await this.#get(k)
    } catch {
      return this.#unreachable()
    }
    if (record instanceof Refused) {
      // The waiting lookups get the replacement, as stale, so a background compute follows.
      if (!background) return { record: record.replacement, refused: true }
      record = undefined
    }
    if (record !== undefined && (record.freshMs > 0 || !background)) {
      stats.hits++
      return { record }
    }
    // A refresh of a stale value: keep the store's stale copy if this instance has nothing to serve.
    if (record !== undefined && !this.#host.usable(k)) this.#host.keep(k, record)
    let waited = 0
    let pause = POLL_FIRST_MS
    for (;;) {
      let token: string | undefined
      try {
        token = await attempt(() => store.lock(k, waitMs + LOCK_MARGIN_MS))
      } catch {
        return this.#unreachable()
      }
      if (token !== undefined) {
        // The holder may have written and unlocked between the last look and the lock.
        record = await this.#get(k).catch(() => {
          stats.errors++
          return undefined
        })
        if (isFresh(record)) {
          this.unlock(k, token)
          stats.hits++
          return { record }
        }
        stats.misses++
        return { token }
      }
      if (waited === 0) stats.waits++
      if (waited >= waitMs || signal.aborted) {
        stats.misses++
        return LOCAL
      }
      await sleep(pause, signal)
      waited += pause
      pause = Math.min(pause * 2, POLL_MAX_MS)
      try {
        record = await this.#get(k)
      } catch {
        return this.#unreachable()
      }
      if (isFresh(record)) {
        stats.hits++
        return { record }
      }
    }
  }

  /** The store failed: counted, and the lookup computes here, without the lock. */
  #unreachable(): Shared {
    this.#stats.errors++
    this.#stats.misses++
    return LOCAL
  }

  /**
   * Reads `k` from the store through `fromStore`. A refused value comes back
   * as a {@link Refused} holding the stale record to serve in its place.
   */
  async #get(k: string): Promise<StoreRecord | Refused | undefined> {
    const record = await attempt(() => this.#store.get(k))
    const check = this.#fromStore
    if (record === undefined || check === undefined) return record
    const checked = check(record.value)
    if (checked.refused === true) {
      this.#stats.refused++
      // Stale at once, on this cache's own lifetimes, not the planted record's: the recompute replaces it.
      return new Refused({ value: checked.value, freshMs: 0, staleMs: this.#staleMs })
    }
    return checked.value === record.value ? record : { ...record, value: checked.value }
  }

  /**
   * Writes an entry's value to the store with its remaining lifetimes, then
   * releases the compute lock `lock`. With `broadcast`, the other instances
   * drop their copy. Never rejects.
   */
  write(k: string, entry: Entry<unknown>, lock: string | undefined, broadcast = false): void {
    const store = this.#store
    const stats = this.#stats
    const record: StoreRecord = {
      value: entry.value,
      freshMs: Math.max(0, entry.freshUntil - this.#clock.now()),
      staleMs: entry.staleUntil - entry.freshUntil,
    }
    if (entry.tags !== undefined) record.tags = entry.tags
    attempt(() => store.set(k, record, broadcast ? { broadcast } : undefined))
      .then(
        () => {
          stats.writes++
        },
        () => {
          stats.errors++
        },
      )
      // Unlock after the write, so a waiter that finds the lock free finds the value too.
      .then(() => {
        if (lock !== undefined) this.unlock(k, lock)
      })
  }

  /** Releases a compute lock taken by {@link read}; never rejects. */
  unlock(k: string, token: string): void {
    attempt(() => this.#store.unlock(k, token)).catch(() => {
      this.#stats.errors++
    })
  }

  /** Tells the store (and so the other instances) to forget; never rejects. */
  broadcast(invalidation: Invalidation): void {
    attempt(() => this.#store.invalidate(invalidation)).catch(() => {
      this.#stats.errors++
    })
  }

  /** Another instance invalidated: forget here, without telling anyone. */
  #receive(inv: Invalidation): void {
    this.#stats.invalidations++
    const host = this.#host
    if ('keys' in inv) {
      for (const k of inv.keys) host.forget(k)
    } else if ('tags' in inv) {
      host.dropTags(inv.tags)
    } else if (inv.pattern.length <= MAX_PATTERN_LENGTH) {
      // A longer one cannot come from invalidatePattern(), which refuses it: ignored.
      host.dropPattern(compileGlob(inv.pattern))
    }
  }

  /** The counters, as a copy. */
  stats(): StoreStats {
    return { ...this.#stats }
  }

  /** Stops listening to the other instances. */
  close(): void {
    this.#unsubscribe()
  }
}

/** Calls a store method; a synchronous throw or a non-promise becomes a promise. */
function attempt<T>(f: () => Promise<T>): Promise<T> {
  try {
    return Promise.resolve(f())
  } catch (e) {
    return Promise.reject(e)
  }
}

/** Resolves after `ms`, or at once when `signal` aborts; holds no handle open. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve()
      return
    }
    const wake = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', wake)
      resolve()
    }
    const timer = setTimeout(wake, ms)
    timer.unref()
    signal.addEventListener('abort', wake, { once: true })
  })
}
