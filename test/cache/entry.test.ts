import { describe, expect, it } from 'vitest'
import {
  classify,
  type Entry,
  EntryState,
  failedEntry,
  isFailing,
  peekResult,
  valueEntry,
} from '../../src/cache/entry.js'

/** A value fresh until 100 and stale until 200. */
const valued = valueEntry('v', 100, 200, undefined)
/** A key that failed, with no value, remembered until 50. */
const failed = failedEntry<string>(undefined, new Error('down'), 0, 50, 1_000)
/** The value above, failing until 150. */
const valuedFailing: Entry<string> = { ...valued, error: new Error('down'), errorUntil: 150, failures: 1 }

describe('classify', () => {
  it('reads no entry as a miss', () => {
    expect(classify(undefined, 0)).toBe(EntryState.Miss)
  })

  it('reads a value as fresh before freshUntil, stale from freshUntil to before staleUntil, then a miss', () => {
    expect(classify(valued, 0)).toBe(EntryState.Fresh)
    expect(classify(valued, 99)).toBe(EntryState.Fresh)
    expect(classify(valued, 100)).toBe(EntryState.Stale)
    expect(classify(valued, 199)).toBe(EntryState.Stale)
    expect(classify(valued, 200)).toBe(EntryState.Miss)
  })

  it('reads a failure with no value as error before errorUntil, then a miss', () => {
    expect(classify(failed, 49)).toBe(EntryState.Error)
    expect(classify(failed, 50)).toBe(EntryState.Miss)
  })

  it('puts a value before a remembered failure: fresh, then stale, then error once the value is gone', () => {
    expect(classify(valuedFailing, 50)).toBe(EntryState.Fresh)
    expect(classify(valuedFailing, 120)).toBe(EntryState.Stale)
    const longFailure = { ...valuedFailing, errorUntil: 300 }
    expect(classify(longFailure, 250)).toBe(EntryState.Error)
    expect(classify(longFailure, 300)).toBe(EntryState.Miss)
  })

  it('ignores the lifetimes of an entry that holds no value', () => {
    const noValue: Entry<string> = { ...failed, freshUntil: 100, staleUntil: 200, errorUntil: 0 }
    expect(classify(noValue, 10)).toBe(EntryState.Miss)
  })

  it('keeps to its order when the clock goes back: a value read earlier than it was stored is fresh', () => {
    expect(classify(valued, -1_000)).toBe(EntryState.Fresh)
    expect(classify(failed, Number.NEGATIVE_INFINITY)).toBe(EntryState.Error)
    expect(classify(valued, Number.NaN)).toBe(EntryState.Miss)
  })
})

describe('isFailing', () => {
  it('is true before errorUntil, whatever value the entry also holds', () => {
    expect(isFailing(valuedFailing, 50)).toBe(true)
    expect(isFailing(valuedFailing, 150)).toBe(false)
    expect(isFailing(valued, 0)).toBe(false)
  })
})

describe('peekResult', () => {
  it('reports each state with what it holds and when it changes next', () => {
    expect(peekResult(valued, EntryState.Fresh, 0)).toEqual({ state: 'fresh', value: 'v', until: 100 })
    expect(peekResult(valued, EntryState.Stale, 150)).toEqual({ state: 'stale', value: 'v', until: 200 })
    expect(peekResult(failed, EntryState.Error, 0)).toEqual({ state: 'error', error: failed.error, until: 50 })
    expect(peekResult(valued, EntryState.Miss, 300)).toEqual({ state: 'miss' })
  })

  it('adds the remembered failure to a stale value only while it is remembered', () => {
    expect(peekResult(valuedFailing, EntryState.Stale, 120).error).toBe(valuedFailing.error)
    expect(peekResult(valuedFailing, EntryState.Stale, 160)).not.toHaveProperty('error')
  })
})

describe('failedEntry', () => {
  it('doubles the retry per consecutive failure up to maxRetryMs, keeping the value, its lifetimes and tags', () => {
    let e: Entry<string> | undefined = valueEntry('v', 100, 200, ['t'])
    const until: number[] = []
    for (let i = 0; i < 5; i++) {
      e = failedEntry(e, new Error(`#${i}`), 1_000, 10, 100)
      until.push(e.errorUntil)
    }
    expect(until).toEqual([1_010, 1_020, 1_040, 1_080, 1_100])
    expect(e).toMatchObject({ value: 'v', has: true, freshUntil: 100, staleUntil: 200, failures: 5, tags: ['t'] })
  })

  it('stays finite after any number of failures', () => {
    let e: Entry<string> = failedEntry<string>(undefined, 'x', 0, 5_000, Number.MAX_SAFE_INTEGER)
    e = { ...e, failures: 10_000 }
    expect(Number.isFinite(failedEntry(e, 'x', 0, 5_000, Number.MAX_SAFE_INTEGER).errorUntil)).toBe(true)
  })

  it('clears back to a value: valueEntry remembers no failure', () => {
    expect(valueEntry('w', 1, 2, undefined)).toMatchObject({ has: true, error: undefined, errorUntil: 0, failures: 0 })
  })
})
