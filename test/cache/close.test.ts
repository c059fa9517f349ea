import { describe, expect, it } from 'vitest'
import { ClosedError, SmartCache } from '../../src/index.js'
import { runChild } from '../helpers/child.js'
import { deferred } from '../helpers/deferred.js'
import { flush, track } from '../helpers/track.js'

describe('SmartCache close()', () => {
  it('aborts the signal of every running compute with a ClosedError', () => {
    const cache = new SmartCache<string>({ breaker: false })
    const signals: AbortSignal[] = []
    for (const key of ['a', 'b']) {
      cache
        .getOrCompute(key, (_k, { signal }) => {
          signals.push(signal)
          return deferred<string>().promise
        })
        .catch(() => {})
    }
    cache.close()
    expect(signals.map((s) => s.aborted)).toEqual([true, true])
    expect(signals[0]?.reason).toBeInstanceOf(ClosedError)
  })

  it('rejects lookups after close with ClosedError, even of keys that had a value', async () => {
    const cache = new SmartCache<string>({ breaker: false })
    cache.set('k', 'v')
    cache.close()
    await expect(cache.getOrCompute('k', () => 'v')).rejects.toBeInstanceOf(ClosedError)
    await expect(cache.getOrCompute('other', () => 'v')).rejects.toMatchObject({ code: 'ENRICH_CLOSED' })
    expect(cache.stats().totalEntries).toBe(0)
  })

  it('settles the callers of a running compute that ignores its signal with ClosedError', async () => {
    const cache = new SmartCache<string>({ breaker: false })
    const caller = track(cache.getOrCompute('k', () => deferred<string>().promise))
    cache.close()
    await flush()
    expect(caller.status).toBe('rejected')
    expect(caller.error).toBeInstanceOf(ClosedError)
  })

  it('is idempotent', () => {
    const cache = new SmartCache<string>()
    cache.close()
    expect(() => cache.close()).not.toThrow()
  })

  it('lets the process exit by itself after close(), with computes pending under a deadline', async () => {
    const child = await runChild('cache-close-exits.ts', ['close'], { timeoutMs: 5_000 })
    expect(child).toMatchObject({ code: 0, signal: null, stdout: 'close done\n' })
    expect(child.stderr).toBe('')
  })

  it('lets the process exit by itself after clear(), with a compute pending under a deadline', async () => {
    const child = await runChild('cache-close-exits.ts', ['clear'], { timeoutMs: 5_000 })
    expect(child).toMatchObject({ code: 0, signal: null, stdout: 'clear done\n' })
    expect(child.stderr).toBe('')
  })
})
