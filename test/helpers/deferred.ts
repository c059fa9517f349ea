import { vi } from 'vitest'

/** A promise with its resolve and reject exposed, to hold a compute open in a test. */
export interface Deferred<T> {
  promise: Promise<T>
  resolve: (value: T) => void
  reject: (error: unknown) => void
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** A clock a test moves by hand. */
export function manualClock(start = 1_000_000): { now(): number; advance(ms: number): void; set(t: number): void } {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
    set: (v) => {
      t = v
    },
  }
}

/** A manual clock. */
export type ManualClock = ReturnType<typeof manualClock>

/**
 * A compute that holds the event loop `ms` on `clock` before its first await
 * (a client set up on its first request: an agent, a pool), then never
 * answers; its promise rejects when its signal aborts (close(), a timeout).
 */
export function slowStart<T>(clock: ManualClock, ms: number) {
  return (_key: unknown, _ctx: unknown, { signal }: { signal: AbortSignal }): Promise<T> => {
    clock.advance(ms)
    return new Promise<T>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
  }
}

/** Moves a manual clock and vitest's fake timers together. */
export async function advanceBoth(clock: ManualClock, ms: number): Promise<void> {
  clock.advance(ms)
  await vi.advanceTimersByTimeAsync(ms)
}
