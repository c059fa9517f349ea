import { describe, expect, it } from 'vitest'
import { compileGlob, MAX_PATTERN_LENGTH } from '../../src/cache/glob.js'
import { SmartCache } from '../../src/index.js'

/** The textbook dynamic program for `*` and `?`: slow, obviously right. */
function reference(glob: string, key: string): boolean {
  let row = new Array<boolean>(key.length + 1).fill(false)
  row[0] = true
  for (const g of glob) {
    const next = new Array<boolean>(key.length + 1).fill(false)
    if (g === '*') {
      for (let j = 0; j <= key.length; j++) next[j] = (row[j] as boolean) || (j > 0 && (next[j - 1] as boolean))
    } else {
      for (let j = 1; j <= key.length; j++) next[j] = (row[j - 1] as boolean) && (g === '?' || g === key[j - 1])
    }
    row = next
  }
  return row[key.length] as boolean
}

const KEYS = 10_000

function filled(): SmartCache<number> {
  const cache = new SmartCache<number>({ max: KEYS, breaker: false })
  for (let i = 0; i < KEYS; i++) cache.set(`user:${String(i).padStart(16, '0')}`, i)
  return cache
}

function timed(f: () => number): { ms: number; n: number } {
  const t = performance.now()
  const n = f()
  return { ms: performance.now() - t, n }
}

describe('invalidatePattern matching', () => {
  it('agrees with the textbook matcher on random patterns and keys', () => {
    // A small alphabet makes matches and near misses frequent.
    let seed = 7
    const rand = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
      return seed % n
    }
    const pick = (alphabet: string, len: number): string =>
      Array.from({ length: len }, () => alphabet[rand(alphabet.length)]).join('')
    let matched = 0
    for (let i = 0; i < 3_000; i++) {
      const glob = pick('ab*?', rand(8))
      const key = pick('ab', rand(10))
      const expected = reference(glob, key)
      expect(compileGlob(glob)(key), `${JSON.stringify(glob)} on ${JSON.stringify(key)}`).toBe(expected)
      if (expected) matched++
    }
    expect(matched).toBeGreaterThan(300)
  })

  it('takes regular-expression characters and UTF-16 units literally', () => {
    expect(compileGlob('a.b')('axb')).toBe(false)
    expect(compileGlob('(x)|y')('(x)|y')).toBe(true)
    expect(compileGlob('[ab]*')('a')).toBe(false)
    expect(compileGlob('?')('\n')).toBe(true)
    expect(compileGlob('é?')('éz')).toBe(true)
  })

  it(`refuses a pattern longer than ${MAX_PATTERN_LENGTH} characters with a RangeError, before broadcasting it`, () => {
    const cache = filled()
    expect(() => cache.invalidatePattern('*'.repeat(MAX_PATTERN_LENGTH + 1))).toThrow(RangeError)
    expect(() => cache.invalidatePattern('*'.repeat(MAX_PATTERN_LENGTH + 1))).toThrow(/received one of 1025/)
    expect(cache.stats().totalEntries).toBe(KEYS)
    expect(cache.invalidatePattern(`${'?'.repeat(MAX_PATTERN_LENGTH - 1)}*`)).toBe(0)
  })

  it('drops 10 000 keys for a pathological glob in about the time of a plain user:*', () => {
    const pathological = ['*?*?*?*?*?*?*?*!', `${'*?'.repeat(200)}*!`, `${'*0'.repeat(40)}*1`, `*${'?'.repeat(30)}*x`]
    // Each figure is the best of three rounds, so a warm-up or a pause of the machine counts for neither.
    const best = new Map<string, number>()
    const keep = (glob: string, ms: number): void => {
      best.set(glob, Math.min(best.get(glob) ?? Number.POSITIVE_INFINITY, ms))
    }
    for (let round = 0; round < 3; round++) {
      const cache = filled()
      for (const glob of pathological) {
        const r = timed(() => cache.invalidatePattern(glob))
        expect(r.n, glob).toBe(0)
        keep(glob, r.ms)
      }
      const r = timed(() => cache.invalidatePattern('user:*'))
      expect(r.n).toBe(KEYS)
      keep('user:*', r.ms)
    }
    const plain = best.get('user:*') as number
    // Relative, so a loaded machine slows both alike; 2 ms absorbs timer granularity.
    for (const glob of pathological) expect(best.get(glob), glob).toBeLessThan(4 * plain + 2)
  })
})
