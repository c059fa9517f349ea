// The decoding of what a store reads back, without Redis: values and messages
// as anyone able to write the store's keys or channel could plant them.
import { describe, expect, it } from 'vitest'
import { decodeValue, FORGED, invalidationOf, NOT_JSON, parseMessage } from '../../src/redis/decode.js'
import { Signer } from '../../src/redis/signing.js'

const MAX = 1_048_576
const NAME = 'p:1:v:user'
const plain = (payload: unknown, pttl = 300): unknown =>
  decodeValue(NAME, JSON.stringify(payload), pttl, MAX, undefined)

describe('decodeValue', () => {
  it('splits the remaining PTTL into fresh and stale lifetimes, and keeps the tags', () => {
    expect(plain({ s: 100, v: { a: 1 }, t: ['org'] })).toEqual({
      value: { a: 1 },
      freshMs: 200,
      staleMs: 100,
      tags: ['org'],
    })
    expect(plain({ s: 500, v: 'x' })).toEqual({ value: 'x', freshMs: 0, staleMs: 300 })
  })

  it('keeps undefined and null apart', () => {
    expect(plain({ s: 0, u: 1 })).toEqual({ value: undefined, freshMs: 300, staleMs: 0 })
    expect(plain({ s: 0, v: null })).toEqual({ value: null, freshMs: 300, staleMs: 0 })
  })

  it('reads what is not a payload as nothing', () => {
    for (const text of ['', 'not json', '[]', '1', 'null', '{"v":1}', '{"s":-1,"v":1}', '{"s":"1","v":1}']) {
      expect(decodeValue(NAME, text, 300, MAX, undefined), text).toBeUndefined()
    }
    expect(plain({ s: 0, v: 1, t: ['ok', 2] })).toBeUndefined()
    expect(plain({ s: 0, v: 1, t: 'org' })).toBeUndefined()
  })

  it('removes keys that could reach a prototype, at any depth, and pollutes nothing', () => {
    const text =
      '{"s":0,"v":{"a":{"__proto__":{"polluted":1},"constructor":{"prototype":1},"ok":2},"list":[{"prototype":1}]}}'
    const record = decodeValue(NAME, text, 300, MAX, undefined) as { value: unknown }
    expect(record.value).toEqual({ a: { ok: 2 }, list: [{}] })
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('refuses a value nested deeper than 64 levels, or larger than maxValueBytes', () => {
    const deep = `{"s":0,"v":${'['.repeat(70)}${']'.repeat(70)}}`
    expect(decodeValue(NAME, deep, 300, MAX, undefined)).toBeUndefined()
    const shallow = `{"s":0,"v":${'['.repeat(60)}${']'.repeat(60)}}`
    expect(decodeValue(NAME, shallow, 300, MAX, undefined)).toBeDefined()
    const big = JSON.stringify({ s: 0, v: 'x'.repeat(200) })
    expect(decodeValue(NAME, big, 300, 100, undefined)).toBeUndefined()
    expect(decodeValue(NAME, big, 300, big.length, undefined)).toBeDefined()
  })

  describe('signed', () => {
    const signer = new Signer('fleet secret')
    const sign = (payload: unknown, name = NAME): string => signer.sign(name, JSON.stringify(payload))

    it('reads a value signed for its key, living no longer than it was written for', () => {
      const record = decodeValue(NAME, sign({ s: 0, v: 1, e: Date.now() + 100 }), 10_000, MAX, signer)
      expect(record).toMatchObject({ value: 1, staleMs: 0 })
      expect((record as { freshMs: number }).freshMs).toBeLessThanOrEqual(100)
    })

    it('reads an unsigned value, or one signed for another key or with another secret, as forged', () => {
      const e = Date.now() + 1_000
      expect(decodeValue(NAME, JSON.stringify({ s: 0, v: 1, e }), 300, MAX, signer)).toBe(FORGED)
      expect(decodeValue(NAME, sign({ s: 0, v: 1, e }, 'p:1:v:other'), 300, MAX, signer)).toBe(FORGED)
      const other = new Signer('another secret').sign(NAME, JSON.stringify({ s: 0, v: 1, e }))
      expect(decodeValue(NAME, other, 300, MAX, signer)).toBe(FORGED)
    })

    it('reads a signed value without its end, or past it, as nothing', () => {
      expect(decodeValue(NAME, sign({ s: 0, v: 1 }), 300, MAX, signer)).toBeUndefined()
      expect(decodeValue(NAME, sign({ s: 0, v: 1, e: Date.now() - 1 }), 300, MAX, signer)).toBeUndefined()
    })
  })
})

describe('parseMessage and invalidationOf', () => {
  it('tells a body that is not JSON from one that is JSON but not an object', () => {
    expect(parseMessage('{')).toBe(NOT_JSON)
    expect(parseMessage('1')).toBeUndefined()
    expect(parseMessage('null')).toBeUndefined()
    expect(parseMessage('{"o":"a","k":["x"],"ts":5}')).toEqual({ o: 'a', k: ['x'], t: undefined, p: undefined, ts: 5 })
  })

  it('reads keys first, then tags, then a pattern, and nothing from fields of the wrong type', () => {
    expect(invalidationOf({ k: ['a'], t: ['b'], p: '*' })).toEqual({ keys: ['a'] })
    expect(invalidationOf({ k: ['a', 1], t: ['b'] })).toEqual({ tags: ['b'] })
    expect(invalidationOf({ k: 'a', t: null, p: 'user:*' })).toEqual({ pattern: 'user:*' })
    expect(invalidationOf({ p: 1 })).toBeUndefined()
    expect(invalidationOf({})).toBeUndefined()
  })

  it('refuses a list of more than 10 000 names', () => {
    expect(invalidationOf({ k: Array.from({ length: 10_001 }, (_, i) => `k${i}`) })).toBeUndefined()
    const most = Array.from({ length: 10_000 }, (_, i) => `k${i}`)
    expect(invalidationOf({ k: most })).toEqual({ keys: most })
  })
})
