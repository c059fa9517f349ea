/**
 * Whether `v` is a promise-like value: an object or function with a callable
 * `then`. A `then` getter that throws (a hostile Proxy, a broken class) makes
 * it not thenable, without the throw reaching the caller: whatever reads the
 * value next meets the same getter and handles it there.
 */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  if (v === null || (typeof v !== 'object' && typeof v !== 'function')) return false
  try {
    return typeof (v as { then?: unknown }).then === 'function'
  } catch {
    return false
  }
}

/**
 * As {@link isThenable}, except that a `then` getter that throws throws here: for a
 * compute's result, where that is a failed compute, not a value to keep and serve.
 */
export function isThenableOrThrow(v: unknown): v is PromiseLike<unknown> {
  return (
    v !== null &&
    (typeof v === 'object' || typeof v === 'function') &&
    typeof (v as { then?: unknown }).then === 'function'
  )
}

/** Waits for `promise` (ignoring its outcome) at most `ms`, on a timer that is unref'd unless `ref`. */
export function within(promise: Promise<unknown>, ms: number, ref = false): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    if (!ref) timer.unref()
    promise.then(
      () => {
        clearTimeout(timer)
        resolve()
      },
      () => {
        clearTimeout(timer)
        resolve()
      },
    )
  })
}
