/** The settlement of a promise, readable synchronously. */
export interface Tracked<T> {
  status: 'pending' | 'fulfilled' | 'rejected'
  value?: T
  error?: unknown
}

/** Records how `promise` settles, so a test can assert that it has (or has not) yet. */
export function track<T>(promise: Promise<T>): Tracked<T> {
  const t: Tracked<T> = { status: 'pending' }
  promise.then(
    (value) => {
      t.status = 'fulfilled'
      t.value = value
    },
    (error: unknown) => {
      t.status = 'rejected'
      t.error = error
    },
  )
  return t
}

// Captured at import, before any test installs fake timers.
const realSetImmediate = globalThis.setImmediate

/** Lets every pending promise callback run: one macrotask turn, not a sleep. */
export function flush(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(resolve))
}
