import { describe, expect, it } from 'vitest'
import { SmartCache } from '../../src/index.js'
import { deferred } from '../helpers/deferred.js'
import { flush, track } from '../helpers/track.js'

describe('SmartCache single flight', () => {
  it('runs one compute for 10,000 concurrent callers of a cold key and gives each the same value', async () => {
    const cache = new SmartCache<object>({ breaker: false })
    const gate = deferred<object>()
    let calls = 0
    const compute = (): Promise<object> => {
      calls++
      return gate.promise
    }
    const callers = Array.from({ length: 10_000 }, () => cache.getOrCompute('cold', compute))
    expect(calls).toBe(1)

    const value = { id: 1 }
    gate.resolve(value)
    const results = await Promise.all(callers)

    expect(calls).toBe(1)
    expect(results.every((r) => r === value)).toBe(true)
    expect(cache.stats()).toMatchObject({ computes: 1, dedupes: 9_999, misses: 10_000, inflight: 0 })
  })

  it('never makes one key wait on another key whose compute is still running', async () => {
    const cache = new SmartCache<string>({ breaker: false })
    const a = track(cache.getOrCompute('a', () => deferred<string>().promise))
    const bGate = deferred<string>()
    const b = track(cache.getOrCompute('b', () => bGate.promise))
    const c = track(cache.getOrCompute('c', () => 'C'))

    await flush()
    expect(c).toMatchObject({ status: 'fulfilled', value: 'C' })
    expect(b.status).toBe('pending')

    bGate.resolve('B')
    await flush()
    expect(b).toMatchObject({ status: 'fulfilled', value: 'B' })
    expect(a.status).toBe('pending')
    expect(cache.stats().inflight).toBe(1)
  })

  it('records the order of a joined compute: the compute runs once, then every caller resumes', async () => {
    const cache = new SmartCache<number>({ breaker: false })
    const order: string[] = []
    const gate = deferred<number>()
    const compute = async (): Promise<number> => {
      order.push('compute start')
      const v = await gate.promise
      order.push('compute end')
      return v
    }
    const callers = [1, 2, 3].map((i) =>
      cache.getOrCompute('k', compute).then((v) => {
        order.push(`caller ${i} got ${v}`)
      }),
    )
    order.push('all started')
    gate.resolve(7)
    await Promise.all(callers)
    expect(order).toEqual([
      'compute start',
      'all started',
      'compute end',
      'caller 1 got 7',
      'caller 2 got 7',
      'caller 3 got 7',
    ])
  })
})
