import { describe, expect, it } from 'vitest'
import { SmartCache } from '../../src/index.js'

describe('SmartCache smoke', () => {
  it('computes once and then hits', async () => {
    const cache = new SmartCache<number>({ jitter: 0 })
    let calls = 0
    const compute = () => ++calls
    expect(await cache.getOrCompute('a', compute)).toBe(1)
    expect(await cache.getOrCompute('a', compute)).toBe(1)
    expect(calls).toBe(1)
    expect(cache.stats().hits).toBe(1)
  })
})
