import { describe, expect, it } from 'vitest'
import { type BreakerChange, type BreakerOptions, CircuitBreaker, Permit } from '../../src/index.js'
import { manualClock } from '../helpers/deferred.js'

function setup(options: Omit<BreakerOptions, 'clock'> = {}) {
  const clock = manualClock()
  const breaker = new CircuitBreaker('test', { clock, halfOpenAfterMs: 1_000, ...options })
  const changes: BreakerChange[] = []
  breaker.onStateChange((c) => changes.push(c))
  return { clock, breaker, changes }
}

function fail(breaker: CircuitBreaker, times: number): void {
  for (let i = 0; i < times; i++) breaker.failure()
}

describe('CircuitBreaker consecutive-failures strategy', () => {
  it('starts closed and grants every call', () => {
    const { breaker } = setup()
    expect(breaker.state).toBe('closed')
    expect(breaker.acquire()).toBe(Permit.Call)
  })

  it('opens after failureThreshold consecutive failures, not before', () => {
    const { breaker } = setup({ failureThreshold: 5 })
    fail(breaker, 4)
    expect(breaker.state).toBe('closed')
    breaker.failure()
    expect(breaker.state).toBe('open')
    expect(breaker.opens).toBe(1)
  })

  it('defaults failureThreshold to 5', () => {
    const breaker = new CircuitBreaker('test', { clock: manualClock() })
    fail(breaker, 4)
    expect(breaker.state).toBe('closed')
    breaker.failure()
    expect(breaker.state).toBe('open')
  })

  it('starts counting again after a success', () => {
    const { breaker } = setup({ failureThreshold: 3 })
    fail(breaker, 2)
    breaker.success()
    fail(breaker, 2)
    expect(breaker.state).toBe('closed')
  })

  it('never opens with failureThreshold 0 and no failure rate', () => {
    const { breaker } = setup({ failureThreshold: 0 })
    fail(breaker, 1_000)
    expect(breaker.state).toBe('closed')
  })
})

describe('CircuitBreaker failure-rate strategy', () => {
  const rate = { failureThreshold: 0, failureRate: 0.5, windowMs: 1_000, minimumCalls: 10 }

  it('opens when the failure rate over the window exceeds failureRate', () => {
    const { breaker } = setup(rate)
    for (let i = 0; i < 5; i++) breaker.success()
    fail(breaker, 5)
    expect(breaker.state).toBe('closed') // 5/10 is not above 0.5
    breaker.failure()
    expect(breaker.state).toBe('open') // 6/11 is
  })

  it('waits for minimumCalls before the rate counts', () => {
    const { breaker } = setup(rate)
    fail(breaker, 9)
    expect(breaker.state).toBe('closed')
    breaker.failure()
    expect(breaker.state).toBe('open')
  })

  it('forgets calls older than windowMs', () => {
    const { clock, breaker } = setup(rate)
    fail(breaker, 9)
    clock.advance(1_100)
    breaker.failure()
    expect(breaker.state).toBe('closed')
  })

  it('counts calls spread across the window', () => {
    const { clock, breaker } = setup(rate)
    for (let i = 0; i < 10; i++) {
      breaker.failure()
      clock.advance(80)
    }
    expect(breaker.state).toBe('open')
  })

  it('works beside the consecutive strategy: whichever trips first opens', () => {
    const { breaker } = setup({ ...rate, failureThreshold: 3 })
    fail(breaker, 3)
    expect(breaker.state).toBe('open')
  })
})

describe('CircuitBreaker open and half-open', () => {
  it('denies every call while open', () => {
    const { breaker } = setup({ failureThreshold: 1 })
    breaker.failure()
    expect(breaker.acquire()).toBe(Permit.Denied)
  })

  it('reports retryAt as the opening time plus halfOpenAfterMs', () => {
    const { clock, breaker } = setup({ failureThreshold: 1 })
    const openedAt = clock.now()
    breaker.failure()
    expect(breaker.retryAt).toBe(openedAt + 1_000)
  })

  it('turns half-open after halfOpenAfterMs and grants exactly one probe', () => {
    const { clock, breaker } = setup({ failureThreshold: 1 })
    breaker.failure()
    clock.advance(999)
    expect(breaker.state).toBe('open')
    clock.advance(1)
    expect(breaker.state).toBe('half-open')
    const permits = Array.from({ length: 1_000 }, () => breaker.acquire())
    expect(permits.filter((p) => p === Permit.Probe)).toHaveLength(1)
    expect(permits[0]).toBe(Permit.Probe)
  })

  it('closes when the probe succeeds', () => {
    const { clock, breaker } = setup({ failureThreshold: 1 })
    breaker.failure()
    clock.advance(1_000)
    breaker.acquire()
    breaker.success(true)
    expect(breaker.state).toBe('closed')
    expect(breaker.acquire()).toBe(Permit.Call)
  })

  it('reopens for another halfOpenAfterMs when the probe fails', () => {
    const { clock, breaker } = setup({ failureThreshold: 1 })
    breaker.failure()
    clock.advance(1_000)
    breaker.acquire()
    breaker.failure(true)
    expect(breaker.state).toBe('open')
    expect(breaker.retryAt).toBe(clock.now() + 1_000)
    expect(breaker.opens).toBe(2)
  })

  it('starts a fresh count after closing: one failure does not reopen it', () => {
    const { clock, breaker } = setup({ failureThreshold: 2 })
    fail(breaker, 2)
    clock.advance(1_000)
    breaker.acquire()
    breaker.success(true)
    breaker.failure()
    expect(breaker.state).toBe('closed')
  })

  it('ignores the outcome of calls granted before it opened', () => {
    const { clock, breaker } = setup({ failureThreshold: 1 })
    breaker.failure()
    const openedUntil = breaker.retryAt
    clock.advance(500)
    breaker.failure()
    breaker.success()
    expect(breaker.state).toBe('open')
    expect(breaker.retryAt).toBe(openedUntil)
  })

  it('gives the probe to another caller when the first one gives it back', () => {
    const { clock, breaker } = setup({ failureThreshold: 1 })
    breaker.failure()
    clock.advance(1_000)
    expect(breaker.acquire()).toBe(Permit.Probe)
    breaker.releaseProbe()
    expect(breaker.acquire()).toBe(Permit.Probe)
  })

  it('grants a new probe when the last one never reported back within halfOpenAfterMs', () => {
    const { clock, breaker } = setup({ failureThreshold: 1 })
    breaker.failure()
    clock.advance(1_000)
    expect(breaker.acquire()).toBe(Permit.Probe)
    clock.advance(999)
    expect(breaker.acquire()).toBe(Permit.Denied)
    clock.advance(1)
    expect(breaker.acquire()).toBe(Permit.Probe)
  })

  it('reset() closes it', () => {
    const { breaker } = setup({ failureThreshold: 1 })
    breaker.failure()
    breaker.reset()
    expect(breaker.state).toBe('closed')
  })
})

describe('CircuitBreaker events', () => {
  it('emits every transition with its time', () => {
    const { clock, breaker, changes } = setup({ failureThreshold: 1 })
    const t0 = clock.now()
    breaker.failure()
    clock.advance(1_000)
    breaker.acquire()
    breaker.failure(true)
    clock.advance(1_000)
    breaker.acquire()
    breaker.success(true)
    expect(changes).toEqual([
      { name: 'test', from: 'closed', to: 'open', at: t0 },
      { name: 'test', from: 'open', to: 'half-open', at: t0 + 1_000 },
      { name: 'test', from: 'half-open', to: 'open', at: t0 + 1_000 },
      { name: 'test', from: 'open', to: 'half-open', at: t0 + 2_000 },
      { name: 'test', from: 'half-open', to: 'closed', at: t0 + 2_000 },
    ])
  })

  it('stops delivering to a listener once its disposer ran', () => {
    const { breaker } = setup({ failureThreshold: 1 })
    const seen: string[] = []
    const dispose = breaker.onStateChange((c) => seen.push(c.to))
    breaker.failure()
    dispose()
    dispose()
    breaker.reset()
    expect(seen).toEqual(['open'])
  })

  it('keeps working when a listener throws', () => {
    const { breaker, changes } = setup({ failureThreshold: 1 })
    breaker.onStateChange(() => {
      throw new Error('listener bug')
    })
    expect(() => breaker.failure()).not.toThrow()
    expect(breaker.state).toBe('open')
    expect(changes).toHaveLength(1)
  })
})

describe('CircuitBreaker options', () => {
  it.each([
    [{ failureThreshold: -1 }, 'failureThreshold must be an integer >= 0, received -1'],
    [{ failureThreshold: 1.5 }, 'failureThreshold must be an integer >= 0, received 1.5'],
    [{ failureThreshold: Number.NaN }, 'failureThreshold must be an integer >= 0, received NaN'],
    [{ halfOpenAfterMs: -5 }, 'halfOpenAfterMs must be an integer >= 0, received -5'],
    [{ failureRate: 0 }, 'failureRate must be between 0 and 1 exclusive, received 0'],
    [{ failureRate: 1 }, 'failureRate must be between 0 and 1 exclusive, received 1'],
    [{ failureRate: Number.NaN }, 'failureRate must be between 0 and 1 exclusive, received NaN'],
    [{ failureRate: 0.5, windowMs: 5 }, 'windowMs must be an integer >= 10, received 5'],
    [{ failureRate: 0.5, minimumCalls: 0 }, 'minimumCalls must be an integer >= 1, received 0'],
  ] as const)('rejects %o with a RangeError quoting the value', (options, message) => {
    expect(() => new CircuitBreaker('bad', options)).toThrow(new RangeError(message))
  })

  it('rejects a non-numeric failureThreshold with a RangeError quoting it', () => {
    const options = { failureThreshold: '5' } as unknown as BreakerOptions
    expect(() => new CircuitBreaker('bad', options)).toThrow(
      new RangeError('failureThreshold must be an integer >= 0, received 5'),
    )
  })
})
