import { describe, expect, it } from 'vitest'
import { figures } from '../helpers/figures.js'
import { HANDLE_CEILING, HANDLE_SLACK, runSoak, slope } from '../helpers/soak.js'

// The soak runs 20 s by its own clock; starting and closing the child on a loaded
// machine takes more than vitest's default 30 s leaves.
describe('soak (real child process, real loopback backend)', { timeout: 180_000 }, () => {
  it('slope() is the least-squares slope', () => {
    expect(slope([0, 1, 2, 3], [1, 3, 5, 7])).toBeCloseTo(2)
    expect(slope([0, 1, 2], [5, 5, 5])).toBe(0)
  })

  // The short soak that runs with every test run. Its backend flaps in 2.5 s
  // phases (so 20 s hold several of each kind of failure) instead of 10 s.
  // The RSS-slope limit (< 1 MB/min) is `npm run soak`'s, over 2 minutes and
  // more: over 20 s the process is still warming up (JIT, heap sizing) and RSS
  // moves by 20-40 MB/min either way (measured), so it is reported here, not
  // judged. What 20 s can judge: the heap after GC does not grow (a leak of
  // 170 bytes a line, at 2,000 lines/s, would add 5 MB), handles stay flat
  // and are all released by close(), no MaxListenersExceededWarning, no
  // unhandled rejection, and the process exits by itself.
  it('a flapping backend for 20 s: heap after GC flat, handles flat and released by close(), no MaxListeners warning, no unhandled rejection, exits by itself', async (ctx) => {
    const r = await runSoak({
      durationMs: 20_000,
      warmupMs: 5_000,
      phaseMs: 2_500,
      rssSlopeLimit: Number.POSITIVE_INFINITY,
      heapGrowthLimitMB: 5,
    })
    figures(ctx, {
      lines: r.lines,
      backendRequests: r.backendRequests,
      failedRequests: r.backendRequests - (r.backendByMode.ok ?? 0),
      heapGrowthMB: r.heapGrowthMB,
      heapSlopeMBPerMin: r.heapSlopeMBPerMin,
      rssSlopeMBPerMin: r.rssSlopeMBPerMin,
      handlesEarlyMedian: r.handlesEarlyMedian,
      handlesLateMedian: r.handlesLateMedian,
      handlesMax: r.handlesMax,
      handlesAfterClose: r.handlesAfterClose,
      maxListenersWarning: r.warnings.includes('MaxListenersExceededWarning'),
      unhandled: r.unhandled,
      exitAfterCloseMs: r.exitAfterCloseMs,
    })
    expect(r.failures).toEqual([])
    // Enough lines for the heap check to see a leak (10,000 lines leaking 500 B each are 5 MB),
    // whatever rate a loaded machine allows: a rate bound (30,000 lines in the 20 s) failed under load.
    expect(r.lines).toBeGreaterThan(10_000)
    expect(r.heapGrowthMB).toBeLessThan(5)
    expect(r.handlesLateMedian).toBeLessThanOrEqual(r.handlesEarlyMedian + HANDLE_SLACK)
    expect(r.handlesMax).toBeLessThanOrEqual(HANDLE_CEILING)
    expect(r.handlesAfterClose).toBeLessThanOrEqual(r.handlesBaseline)
    expect(r.warnings).not.toContain('MaxListenersExceededWarning')
    expect(r.unhandled).toBe(0)
    // Both phases were seen: healthy answers and failures.
    expect(r.backendByMode.ok ?? 0).toBeGreaterThan(0)
    expect(r.backendRequests - (r.backendByMode.ok ?? 0)).toBeGreaterThan(0)
  })
})
