import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  COARSE_MAX_READS,
  COARSE_RESOLUTION_MS,
  type CoarseClockHost,
  coarseClock,
  createCoarseClock,
} from '../../src/util/coarse-clock.js'

/** A host whose time moves by hand and whose one timer fires by hand. */
function manualHost() {
  const state = {
    time: 1_000,
    reads: 0,
    cacheable: true,
    armed: 0,
    refreshed: 0,
    unrefs: 0,
    delays: [] as number[],
    pending: false,
    callback: undefined as (() => void) | undefined,
  }
  const host: CoarseClockHost = {
    now: () => {
      state.reads++
      return state.time
    },
    setTimeout: (callback, ms) => {
      state.armed++
      state.delays.push(ms)
      state.callback = callback
      state.pending = true
      return {
        refresh: () => {
          state.refreshed++
          state.pending = true
        },
        unref: () => {
          state.unrefs++
        },
      }
    },
    cacheable: () => state.cacheable,
  }
  /** Runs the timer, as the event loop would once it is due. */
  const fire = (): void => {
    if (!state.pending) throw new Error('no timer pending')
    state.pending = false
    state.callback?.()
  }
  return { state, host, fire }
}

describe('createCoarseClock', () => {
  it('reads the host once and reuses that time until its timer fires', () => {
    const { state, host, fire } = manualHost()
    const clock = createCoarseClock(host)
    expect(clock.now()).toBe(1_000)
    state.time = 1_004
    expect([clock.now(), clock.now(), clock.now()]).toEqual([1_000, 1_000, 1_000])
    expect(state.reads).toBe(1)
    fire()
    expect(clock.now()).toBe(1_004)
    expect(state.reads).toBe(2)
  })

  it('keeps one timer, unref’d, armed at the first read after it fired and never twice at once', () => {
    const { state, host, fire } = manualHost()
    const clock = createCoarseClock(host)
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 100; i++) clock.now()
      fire()
    }
    expect(state.armed).toBe(1)
    expect(state.delays).toEqual([COARSE_RESOLUTION_MS])
    expect(state.unrefs).toBe(1)
    // Re-armed at the first read of each later round, not at every read.
    expect(state.refreshed).toBe(4)
    // Idle: nothing read, nothing armed.
    expect(state.pending).toBe(false)
  })

  it('reads the host anew every COARSE_MAX_READS reads of one turn, when the timer cannot run', () => {
    const { state, host } = manualHost()
    const clock = createCoarseClock(host)
    const seen: number[] = []
    for (let i = 0; i < 3 * COARSE_MAX_READS; i++) {
      state.time = 1_000 + i
      seen.push(clock.now())
    }
    expect(state.reads).toBe(3)
    expect(new Set(seen)).toEqual(new Set([1_000, 1_000 + COARSE_MAX_READS, 1_000 + 2 * COARSE_MAX_READS]))
    // The renewals reuse the timer already pending.
    expect(state.armed).toBe(1)
    expect(state.refreshed).toBe(0)
  })

  it('never runs ahead of the host, and lags it by no more than the reads since it last read', () => {
    const { state, host, fire } = manualHost()
    const clock = createCoarseClock(host)
    let lastRead = state.time
    const wrong: string[] = []
    for (let i = 0; i < 20_000; i++) {
      state.time += i % 7 === 0 ? 1 : 0
      if (i % 700 === 0 && state.pending) fire()
      const readsBefore = state.reads
      const t = clock.now()
      if (state.reads > readsBefore) lastRead = state.time
      if (t > state.time || t !== lastRead) wrong.push(`read ${i}: ${t} at host time ${state.time}`)
    }
    expect(wrong).toEqual([])
    // The timer, every 700 reads, renews it before the 1 024-read bound does.
    expect(state.reads).toBe(Math.ceil(20_000 / 700))
  })

  it('reads the host every time and keeps nothing while it may not cache', () => {
    const { state, host, fire } = manualHost()
    const clock = createCoarseClock(host)
    expect(clock.now()).toBe(1_000)
    state.cacheable = false
    state.time = 5_000
    expect(clock.now()).toBe(5_000)
    state.time = 5_001
    expect(clock.now()).toBe(5_001)
    expect(state.armed).toBe(1)
    fire()
    state.time = 9_000
    expect(clock.now()).toBe(9_000)
    // Nothing read while uncacheable was kept, and no timer was armed for it.
    state.cacheable = true
    state.time = 9_500
    expect(clock.now()).toBe(9_500)
    expect(state.armed).toBe(1)
    expect(state.refreshed).toBe(1)
  })

  it('never goes back to a time it held before an exact read, when it may cache again in the same turn', () => {
    const { state, host } = manualHost()
    const clock = createCoarseClock(host)
    expect(clock.now()).toBe(1_000)
    // Fake timers installed and removed within one turn: the timer has not fired.
    state.cacheable = false
    state.time = 1_100
    expect(clock.now()).toBe(1_100)
    state.cacheable = true
    state.time = 1_101
    const after = clock.now()
    expect(after).toBeGreaterThanOrEqual(1_100)
    expect(after).toBe(1_101)
  })

  it('unrefs a real timer: it never keeps the process alive', () => {
    let made: NodeJS.Timeout | undefined
    const clock = createCoarseClock({
      now: () => 1,
      setTimeout: (callback, ms) => {
        made = setTimeout(callback, ms)
        return made
      },
      cacheable: () => true,
    })
    clock.now()
    expect(made?.hasRef()).toBe(false)
    clearTimeout(made)
  })
})

describe('coarseClock, the process-wide one', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('follows fake timers at the next read, even right after a real read in the same turn', () => {
    const real = coarseClock.now()
    vi.useFakeTimers({ now: real + 3_600_000 })
    expect(coarseClock.now()).toBe(real + 3_600_000)
    vi.advanceTimersByTime(5)
    expect(coarseClock.now()).toBe(real + 3_600_005)
    vi.setSystemTime(42)
    expect(coarseClock.now()).toBe(42)
    vi.useRealTimers()
    const back = coarseClock.now()
    expect(back).toBeGreaterThanOrEqual(real)
    expect(back).toBeLessThanOrEqual(Date.now())
  })

  it('follows a fake Date alone, with the real timers left in place', () => {
    const real = coarseClock.now()
    vi.useFakeTimers({ toFake: ['Date'], now: real + 60_000 })
    expect(coarseClock.now()).toBe(real + 60_000)
    vi.setSystemTime(real + 120_000)
    expect(coarseClock.now()).toBe(real + 120_000)
  })

  it('reads Date.now() each time while it is spied on', () => {
    coarseClock.now()
    const spy = vi.spyOn(Date, 'now').mockReturnValue(7)
    try {
      expect(coarseClock.now()).toBe(7)
      spy.mockReturnValue(8)
      expect(coarseClock.now()).toBe(8)
    } finally {
      spy.mockRestore()
    }
  })

  it('reads Date.now() each time while only setTimeout is faked', () => {
    const kept = coarseClock.now()
    vi.useFakeTimers({ toFake: ['setTimeout'] })
    // Date is the real one: wait, without yielding, for its next millisecond (bounded).
    let now = Date.now()
    for (let i = 0; i < 10_000_000 && now <= kept; i++) now = Date.now()
    expect(now).toBeGreaterThan(kept)
    expect(coarseClock.now()).toBeGreaterThanOrEqual(now)
  })

  it('reads exactly for good when it was first imported under fake timers', async () => {
    vi.useFakeTimers({ now: 1_000_000 })
    vi.resetModules()
    const { coarseClock: underFake } = await import('../../src/util/coarse-clock.js')
    expect(underFake.now()).toBe(1_000_000)
    vi.setSystemTime(2_000_000)
    expect(underFake.now()).toBe(2_000_000)
    vi.useRealTimers()
    const kept = underFake.now()
    let now = Date.now()
    for (let i = 0; i < 10_000_000 && now <= kept; i++) now = Date.now()
    expect(underFake.now()).toBeGreaterThanOrEqual(now)
  })

  it('reads the new time once its real timer has fired, though fake timers came and went meanwhile', async () => {
    const before = coarseClock.now()
    vi.useFakeTimers()
    coarseClock.now()
    vi.useRealTimers()
    // The one real wait of this file: a single timer, just past the clock's own.
    await new Promise((resolve) => setTimeout(resolve, COARSE_RESOLUTION_MS + 1))
    const now = Date.now()
    expect(now).toBeGreaterThan(before)
    expect(coarseClock.now()).toBeGreaterThanOrEqual(now)
  })
})
