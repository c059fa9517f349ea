// An entry of the in-process tier and the one place its state is worked out.
// Every reader of an entry (the lookups, the queue, refresh, stats) asks
// classify(); none compares an entry's clock times itself.

/** The states {@link SmartCache.peek} reports. */
export const EntryState = {
  Fresh: 'fresh',
  Stale: 'stale',
  Error: 'error',
  Miss: 'miss',
} as const
export type EntryState = (typeof EntryState)[keyof typeof EntryState]

/** What {@link SmartCache.peek} returns. */
export interface PeekResult<V> {
  state: EntryState
  /** The value, when fresh or stale. */
  value?: V
  /** The remembered failure, in the error tier. */
  error?: unknown
  /** Clock time at which the state changes next (fresh to stale, stale to gone, error to retry). */
  until?: number
}

/**
 * What the in-process tier holds for a key: a value with its fresh and stale
 * lifetimes, a remembered failure, or both (a failing key keeps its last
 * value, to serve as stale). Times are clock times in ms.
 */
export interface Entry<V> {
  readonly value: V | undefined
  readonly has: boolean
  readonly freshUntil: number
  readonly staleUntil: number
  readonly error: unknown
  /** 0 when the key is not in the error tier. */
  readonly errorUntil: number
  readonly failures: number
  readonly tags: readonly string[] | undefined
}

/**
 * The state of `entry` at `now`: fresh while its value is, then stale while
 * the value may still be served, then error while a failure is remembered,
 * else miss, as is no entry at all. A value outranks a remembered failure: a
 * fresh or stale entry may be failing too (see {@link isFailing}).
 */
export function classify(entry: Entry<unknown> | undefined, now: number): EntryState {
  if (entry === undefined) return EntryState.Miss
  if (entry.has) {
    if (now < entry.freshUntil) return EntryState.Fresh
    if (now < entry.staleUntil) return EntryState.Stale
  }
  return now < entry.errorUntil ? EntryState.Error : EntryState.Miss
}

/** Whether `entry` is in the error tier at `now`, whatever value it also holds. */
export function isFailing(entry: Entry<unknown>, now: number): boolean {
  return now < entry.errorUntil
}

/** What {@link SmartCache.peek} reports of `entry` in `state`, the state {@link classify} gave at `now`. */
export function peekResult<V>(entry: Entry<V>, state: EntryState, now: number): PeekResult<V> {
  switch (state) {
    case EntryState.Fresh:
      return { state, value: entry.value as V, until: entry.freshUntil }
    case EntryState.Stale: {
      const r: PeekResult<V> = { state, value: entry.value as V, until: entry.staleUntil }
      if (isFailing(entry, now)) r.error = entry.error
      return r
    }
    case EntryState.Error:
      return { state, error: entry.error, until: entry.errorUntil }
    default:
      return { state: EntryState.Miss }
  }
}

/** An entry holding `value`, fresh until `freshUntil` and stale until `staleUntil`, with no failure remembered. */
export function valueEntry<V>(
  value: V,
  freshUntil: number,
  staleUntil: number,
  tags: readonly string[] | undefined,
): Entry<V> {
  return { value, has: true, freshUntil, staleUntil, error: undefined, errorUntil: 0, failures: 0, tags }
}

/**
 * `prev` (or no entry) after one more consecutive failure, remembered for
 * `retryMs` doubled per earlier failure, at most `maxRetryMs`. Its value,
 * lifetimes and tags are kept: a stale value is still served while it fails.
 */
export function failedEntry<V>(
  prev: Entry<V> | undefined,
  error: unknown,
  now: number,
  retryMs: number,
  maxRetryMs: number,
): Entry<V> {
  const failures = (prev?.failures ?? 0) + 1
  const backoff = Math.min(retryMs * 2 ** Math.min(failures - 1, 30), maxRetryMs)
  return {
    value: prev?.value,
    has: prev?.has ?? false,
    freshUntil: prev?.freshUntil ?? 0,
    staleUntil: prev?.staleUntil ?? 0,
    error,
    errorUntil: now + backoff,
    failures,
    tags: prev?.tags,
  }
}
