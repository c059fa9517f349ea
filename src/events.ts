/** Removes the listener it was returned for. Calling it twice is harmless. */
export type Disposer = () => void

/** A typed event: `on(listener)` returns a {@link Disposer}. */
export type EventSource<T> = (listener: (event: T) => void) => Disposer

/**
 * A minimal typed event. `hasListeners` lets emitters skip building an event
 * object nobody will read. A throwing listener never reaches the emitter.
 */
export class Emitter<T> {
  #listeners: Array<(event: T) => void> = []

  get hasListeners(): boolean {
    return this.#listeners.length > 0
  }

  readonly on: EventSource<T> = (listener) => {
    this.#listeners = [...this.#listeners, listener]
    let active = true
    return () => {
      if (!active) return
      active = false
      this.#listeners = this.#listeners.filter((l) => l !== listener)
    }
  }

  emit(event: T): void {
    // Copy-on-write above means a listener that disposes itself is safe here.
    for (const listener of this.#listeners) {
      try {
        listener(event)
      } catch {
        // A listener's failure is its own; the cache and the log call go on.
      }
    }
  }

  clear(): void {
    this.#listeners = []
  }
}
