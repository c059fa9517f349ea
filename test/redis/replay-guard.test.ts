import { describe, expect, it } from 'vitest'
import { ReplayGuard, Verdict } from '../../src/redis/replay-guard.js'

const AGE = 30_000
const NOW = 1_700_000_000_000

describe('ReplayGuard', () => {
  it('takes a recent message once, and refuses it again within the age bound', () => {
    const guard = new ReplayGuard(AGE)
    expect(guard.check(NOW, 'sig-a', NOW)).toBe(Verdict.New)
    expect(guard.check(NOW, 'sig-a', NOW + 10)).toBe(Verdict.Replayed)
    expect(guard.check(NOW, 'sig-b', NOW + 10)).toBe(Verdict.New)
  })

  it('refuses a timestamp further than the age bound either way, or one that is not a number', () => {
    const guard = new ReplayGuard(AGE)
    expect(guard.check(NOW - AGE, 'edge-past', NOW)).toBe(Verdict.New)
    expect(guard.check(NOW + AGE, 'edge-future', NOW)).toBe(Verdict.New)
    expect(guard.check(NOW - AGE - 1, 'old', NOW)).toBe(Verdict.Stale)
    expect(guard.check(NOW + AGE + 1, 'ahead', NOW)).toBe(Verdict.Stale)
    for (const ts of [undefined, '1700000000000', Number.NaN, null])
      expect(guard.check(ts, 'odd', NOW)).toBe(Verdict.Stale)
  })

  it('refuses a replay after the message went stale, by its age', () => {
    const guard = new ReplayGuard(AGE)
    expect(guard.check(NOW, 'sig', NOW)).toBe(Verdict.New)
    expect(guard.check(NOW, 'sig', NOW + AGE + 1)).toBe(Verdict.Stale)
  })

  it('past 10 000 messages in the window, forgets the earliest and refuses anything no later than it as stale', () => {
    const guard = new ReplayGuard(AGE)
    for (let i = 0; i <= 10_000; i++) expect(guard.check(NOW + i, `sig-${i}`, NOW + i)).toBe(Verdict.New)
    // sig-0 was forgotten to make room: sent again, it is caught by its timestamp.
    expect(guard.check(NOW, 'sig-0', NOW + 10_000)).toBe(Verdict.Stale)
    expect(guard.check(NOW, 'never-seen', NOW + 10_000)).toBe(Verdict.Stale)
    expect(guard.check(NOW + 5_000, 'sig-5000', NOW + 10_000)).toBe(Verdict.Replayed)
    expect(guard.check(NOW + 10_001, 'sig-new', NOW + 10_001)).toBe(Verdict.New)
  })
})
