import { describe, expect, it } from 'vitest'
import { isThenable } from '../../src/util/async.js'

/** `target` with an own `then`, defined rather than written so it reads as deliberate. */
function withThen<T extends object>(target: T, descriptor: PropertyDescriptor): T {
  return Object.defineProperty(target, 'then', { enumerable: true, configurable: true, ...descriptor })
}

const throwing = (): never => {
  throw new Error('then getter')
}

describe('isThenable', () => {
  it('is true for a promise, and for an object or function with a callable then', () => {
    expect(isThenable(Promise.resolve(1))).toBe(true)
    expect(isThenable(withThen({}, { value: () => {} }))).toBe(true)
    expect(isThenable(withThen(() => {}, { value: () => {} }))).toBe(true)
  })

  it('is false for primitives, null, and a then that is not a function', () => {
    for (const v of [undefined, null, 0, 'then', true, 1n, Symbol('then')]) expect(isThenable(v)).toBe(false)
    expect(isThenable(withThen({}, { value: 1 }))).toBe(false)
    expect(isThenable({})).toBe(false)
  })

  it('is false, and does not throw, for a then getter that throws: own, inherited or a Proxy trap', () => {
    const own = withThen({}, { get: throwing })
    const inherited = Object.create(withThen({}, { get: throwing })) as object
    const trap = new Proxy({}, { get: throwing })
    for (const v of [own, inherited, trap, withThen(() => {}, { get: throwing })]) {
      expect(() => isThenable(v)).not.toThrow()
      expect(isThenable(v)).toBe(false)
    }
  })
})
