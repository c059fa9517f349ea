// Millisecond options past what a Node timer holds (2^31 - 1 ms): Node turns
// such a timer into a 1 ms one, so each is refused where it is given.
import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { CircuitBreaker, createPipeline, defineEnricher, SmartCache } from '../../src/index.js'
import { redisStore } from '../../src/redis/index.js'

const TOO_LONG = 3e9
const LONGEST = 2 ** 31 - 1
const atMost = (name: string, v: number): RangeError =>
  new RangeError(`${name} must be at most ${LONGEST}, received ${String(v)}`)

describe('millisecond options past the longest timer', () => {
  it.each(['timeoutMs'])('SmartCache refuses %s: 3e9 with a RangeError quoting it', (name) => {
    expect(() => new SmartCache({ [name]: TOO_LONG })).toThrow(atMost(name, TOO_LONG))
  })

  it.each(['halfOpenAfterMs', 'windowMs'])('the breaker refuses %s: 3e9, alone and inside a cache', (name) => {
    const options = { failureRate: 0.5, [name]: TOO_LONG }
    expect(() => new CircuitBreaker('b', options)).toThrow(atMost(name, TOO_LONG))
    expect(() => new SmartCache({ breaker: options })).toThrow(atMost(name, TOO_LONG))
  })

  it.each(['deadlineMs', 'timeoutMs', 'closeTimeoutMs'])('createPipeline refuses %s: 3e9', (name) => {
    expect(() => createPipeline({ [name]: TOO_LONG })).toThrow(atMost(name, TOO_LONG))
  })

  it.each(['timeoutMs', 'refreshMs'])('defineEnricher refuses %s: 3e9', (name) => {
    expect(() => defineEnricher({ name: 'g', compute: () => ({}), [name]: TOO_LONG })).toThrow(
      new RangeError(`enricher g: ${name} must be a positive integer of at most ${LONGEST}, received 3000000000`),
    )
  })

  it.each(['commandTimeoutMs', 'lockTtlMs'])('redisStore refuses %s: 3e9', (name) => {
    // Never connected: the check comes first.
    const client = new Redis({ lazyConnect: true })
    try {
      expect(() => redisStore({ client, [name]: TOO_LONG })).toThrow(atMost(name, TOO_LONG))
    } finally {
      client.disconnect()
    }
  })

  it('refuses per-call ttlMs and timeoutMs of getOrCompute, load, refresh and set, without computing', async () => {
    const cache = new SmartCache<string>({ breaker: false })
    let called = false
    const compute = (): string => {
      called = true
      return 'v'
    }
    await expect(cache.getOrCompute('k', compute, { timeoutMs: TOO_LONG })).rejects.toThrow(
      atMost('timeoutMs', TOO_LONG),
    )
    expect(() => cache.load('k', compute, { timeoutMs: TOO_LONG })).toThrow(atMost('timeoutMs', TOO_LONG))
    expect(() => cache.refresh('k', compute, { timeoutMs: TOO_LONG })).toThrow(atMost('timeoutMs', TOO_LONG))
    expect(() => cache.set('k', 'v', { ttlMs: -1 })).toThrow('ttlMs must be an integer >= 0, received -1')
    await expect(cache.getOrCompute('k', compute, { ttlMs: Number.POSITIVE_INFINITY })).rejects.toThrow(
      'ttlMs must be an integer >= 0, received Infinity',
    )
    expect(called).toBe(false)
  })

  it('refuses ready({ timeoutMs }) past the longest timer', async () => {
    const p = createPipeline()
    await expect(p.ready({ timeoutMs: TOO_LONG })).rejects.toThrow(atMost('timeoutMs', TOO_LONG))
    await p.close()
  })

  it('takes lifetimes past the longest timer: they are read off the clock, never set as timers', () => {
    expect(
      () => new SmartCache({ ttlMs: 2 ** 40, staleMs: TOO_LONG, retryMs: TOO_LONG, negativeTtlMs: TOO_LONG }),
    ).not.toThrow()
  })

  it('takes the longest timer itself', () => {
    expect(() => new SmartCache({ ttlMs: LONGEST, timeoutMs: LONGEST, retryMs: LONGEST })).not.toThrow()
    expect(() => createPipeline({ deadlineMs: LONGEST })).not.toThrow()
  })
})
