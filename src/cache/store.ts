import type { Disposer } from '../events.js'

/**
 * A value as the shared tier holds it. Lifetimes are remaining durations, not
 * clock times, so instances whose clocks disagree still agree on expiry: the
 * store keeps time (Redis: the key's PTTL).
 */
export interface StoreRecord {
  /** The value; `undefined` or `null` for a shared negative result. */
  value: unknown
  /** Remaining fresh lifetime in ms; 0 when the value is stale. */
  freshMs: number
  /** Remaining stale lifetime after `freshMs`, in ms. */
  staleMs: number
  /** Tags given with the value, for {@link SmartCache.invalidateTags} on the instances that read it. */
  tags?: readonly string[]
}

/** What one instance tells the others to forget. Keys are cache keys as stored (long keys already hashed). */
export type Invalidation =
  | { readonly keys: readonly string[] }
  | { readonly tags: readonly string[] }
  | { readonly pattern: string }

/**
 * The shared tier behind a {@link SmartCache}'s in-process one, for example
 * `redisStore()` from `pino-enrich/redis`. One store serves one cache.
 *
 * Every method may reject or take long: the cache treats the store as
 * best effort. A failed read is a miss, a failed write or lock is skipped,
 * and nothing the store does ever turns into a cached error. An
 * implementation should still settle quickly (a short command timeout, fail
 * fast while its backend is away), because a lookup that missed in process
 * waits for the store's answer before it computes.
 */
export interface CacheStore {
  /**
   * How long a compute lock is held at most, in ms, and how long other
   * instances wait for its value, when the compute has no `timeoutMs`.
   * Default 5 000 (the cache's).
   */
  readonly lockTtlMs?: number
  /** The record of `key`, or `undefined` when the store has none. */
  get(key: string): Promise<StoreRecord | undefined>
  /**
   * Stores `record` for `freshMs + staleMs`. With `broadcast`, the other
   * instances are told to drop their copy once the write is visible.
   */
  set(key: string, record: StoreRecord, options?: { broadcast?: boolean }): Promise<void>
  /** Forgets what `invalidation` names in the store, then tells every other instance to forget it too. */
  invalidate(invalidation: Invalidation): Promise<void>
  /**
   * Takes the fleet-wide compute lock of `key` for at most `ttlMs`. Resolves
   * with a token to pass to {@link unlock}, or `undefined` when another
   * instance holds it.
   */
  lock(key: string, ttlMs: number): Promise<string | undefined>
  /** Releases a lock taken with `token`; a lock that expired and was taken by another instance is left alone. */
  unlock(key: string, token: string): Promise<void>
  /**
   * Listens to invalidations sent by the other instances (never to this
   * one's own). Returns a disposer; once disposed, the store releases what
   * it holds for listening.
   */
  subscribe(listener: (invalidation: Invalidation) => void): Disposer
}
