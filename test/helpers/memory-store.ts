// An in-memory CacheStore for SmartCache's shared-tier semantics, without
// Redis: several stores on one MemoryServer are a fleet. Time is the test's
// clock; faults are switches.
import type { CacheStore, Invalidation, StoreRecord } from '../../src/index.js'

interface Held {
  text: string
  staleMs: number
  expiresAt: number
  tags: readonly string[] | undefined
}

/** What a fleet's stores share: values, locks and the invalidation channel. */
export class MemoryServer {
  readonly values = new Map<string, Held>()
  readonly locks = new Map<string, { token: string; expiresAt: number }>()
  readonly listeners = new Set<{ origin: MemoryStore; listener: (inv: Invalidation) => void }>()
  constructor(readonly clock: { now(): number }) {}
}

/** How a {@link MemoryStore} misbehaves. */
export type Fault = 'none' | 'reject' | 'hang'

let tokens = 0

export class MemoryStore implements CacheStore {
  readonly lockTtlMs?: number
  fault: Fault = 'none'
  readonly calls: string[] = []
  constructor(
    readonly server: MemoryServer,
    options: { lockTtlMs?: number } = {},
  ) {
    if (options.lockTtlMs !== undefined) this.lockTtlMs = options.lockTtlMs
  }

  #op<T>(name: string, f: () => T): Promise<T> {
    this.calls.push(name)
    if (this.fault === 'reject') return Promise.reject(new Error(`store ${name} down`))
    if (this.fault === 'hang') return new Promise<T>(() => {})
    try {
      return Promise.resolve(f())
    } catch (e) {
      return Promise.reject(e)
    }
  }

  get(key: string): Promise<StoreRecord | undefined> {
    return this.#op('get', () => {
      const h = this.server.values.get(key)
      const now = this.server.clock.now()
      if (h === undefined || h.expiresAt <= now) return undefined
      const pttl = h.expiresAt - now
      const freshMs = Math.max(0, pttl - h.staleMs)
      const r: StoreRecord = { value: JSON.parse(h.text).v, freshMs, staleMs: pttl - freshMs }
      if (h.tags !== undefined) r.tags = h.tags
      return r
    })
  }

  set(key: string, record: StoreRecord, options?: { broadcast?: boolean }): Promise<void> {
    return this.#op('set', () => {
      const ttl = record.freshMs + record.staleMs
      this.server.values.set(key, {
        text: JSON.stringify({ v: record.value }),
        staleMs: record.staleMs,
        expiresAt: this.server.clock.now() + ttl,
        tags: record.tags,
      })
      if (options?.broadcast) this.#publish({ keys: [key] })
    })
  }

  invalidate(invalidation: Invalidation): Promise<void> {
    return this.#op('invalidate', () => {
      for (const [k, h] of [...this.server.values]) {
        const drop =
          'keys' in invalidation
            ? invalidation.keys.includes(k)
            : 'tags' in invalidation
              ? (h.tags ?? []).some((t) => invalidation.tags.includes(t))
              : new RegExp(`^${invalidation.pattern.replaceAll('*', '.*')}$`).test(k)
        if (drop) this.server.values.delete(k)
      }
      this.#publish(invalidation)
    })
  }

  lock(key: string, ttlMs: number): Promise<string | undefined> {
    return this.#op('lock', () => {
      const now = this.server.clock.now()
      const held = this.server.locks.get(key)
      if (held !== undefined && held.expiresAt > now) return undefined
      const token = `t${++tokens}`
      this.server.locks.set(key, { token, expiresAt: now + ttlMs })
      return token
    })
  }

  unlock(key: string, token: string): Promise<void> {
    return this.#op('unlock', () => {
      if (this.server.locks.get(key)?.token === token) this.server.locks.delete(key)
    })
  }

  subscribe(listener: (invalidation: Invalidation) => void): () => void {
    const entry = { origin: this, listener }
    this.server.listeners.add(entry)
    return () => {
      this.server.listeners.delete(entry)
    }
  }

  #publish(invalidation: Invalidation): void {
    for (const l of this.server.listeners) if (l.origin !== this) l.listener(invalidation)
  }
}
