import { afterEach, describe, expect, it, vi } from 'vitest'
import { SmartCache } from '../../src/index.js'
import { runChild } from '../helpers/child.js'
import { flush } from '../helpers/track.js'

/** Waits, without yielding, for Date.now() to pass `t` (bounded). */
function spinPast(t: number): number {
  let now = Date.now()
  for (let i = 0; i < 10_000_000 && now <= t; i++) now = Date.now()
  return now
}

describe('SmartCache on its default clock', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('never serves a value written with ttlMs 0 as fresh, though the clock kept an older time', async () => {
    const cache = new SmartCache<string>({ jitter: 0 })
    cache.set('warm', 'w')
    // The clock keeps this lookup's time for the rest of the turn.
    await cache.getOrCompute('warm', () => 'w')
    const kept = cache.peek('warm').until as number
    expect(spinPast(kept - 60_000)).toBeGreaterThan(kept - 60_000)
    cache.set('k', 'old', { ttlMs: 0 })
    const compute = vi.fn(() => 'new')
    expect(await cache.getOrCompute('k', compute)).toBe('old')
    await flush()
    expect(compute).toHaveBeenCalledTimes(1)
    expect(cache.stats()).toMatchObject({ hits: 1, staleHits: 1 })
  })

  it('turns a value stale on the fake clock installed right after a real lookup', async () => {
    const cache = new SmartCache<string>({ ttlMs: 60_000, staleMs: 60_000, jitter: 0 })
    cache.set('k', 'v')
    await cache.getOrCompute('k', () => 'v')
    vi.useFakeTimers({ now: Date.now() })
    vi.advanceTimersByTime(60_000)
    expect(cache.peek('k').state).toBe('stale')
    const compute = vi.fn(() => 'v2')
    expect(await cache.getOrCompute('k', compute)).toBe('v')
    await vi.advanceTimersByTimeAsync(0)
    expect(compute).toHaveBeenCalledTimes(1)
    vi.setSystemTime(Date.now() + 120_001)
    expect(cache.peek('k').state).toBe('miss')
  })

  it('keeps one timer for 2 000 caches over 5 rounds, armed at most once a round, which keeps no process alive', async () => {
    const child = await runChild('cache-clock-timers.ts', [], { timeoutMs: 20_000 })
    expect(child).toMatchObject({ code: 0, signal: null, stderr: '' })
    const seen = JSON.parse(child.stdout) as { timers: number; arms: number; keptAlive: boolean; staleReads: number[] }
    expect(seen).toMatchObject({ timers: 1, keptAlive: false, staleReads: [] })
    // Node initialises a refreshed Timeout again only once it has fired and been let go: 4 or 5, never 2 000.
    expect(seen.arms).toBeGreaterThanOrEqual(1)
    expect(seen.arms).toBeLessThanOrEqual(5)
  })
})
