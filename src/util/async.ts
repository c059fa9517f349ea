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
