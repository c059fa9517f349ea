import { afterEach, describe, expect, it } from 'vitest'
import type { SmartCache } from '../../src/cache/smart-cache.js'
import { enrichmentOf } from '../../src/core/enrichment.js'
import { Line } from '../../src/core/line.js'
import { defineEnricher } from '../../src/index.js'
import { trackPipelines } from '../helpers/pipelines.js'

const { pipeline, closePipelines } = trackPipelines()
afterEach(closePipelines)

describe('Collector.timeOut', () => {
  it('takes a value cached while the line waited on another compute, instead of recording a timeout', async () => {
    let calls = 0
    const p = pipeline({
      enrichers: [
        defineEnricher({
          name: 'user',
          key: (c) => c.record.user as string,
          // The first lookup hangs; the one after an invalidation answers.
          compute: (id: string) => (calls++ === 0 ? new Promise<never>(() => {}) : { user: { id } }),
          timeoutMs: 60_000,
        }),
      ],
    })
    await p.ready()
    const e = enrichmentOf(p)
    const ctx = { level: 30, time: 0, record: { user: 'u1' }, context: undefined }
    const first = new Line(ctx, 0, 10)
    e.collect.gather(first)
    expect(first.waiting).toHaveLength(1)
    // Another instance invalidated the key (a pub/sub message): the hung compute is forgotten.
    ;(e.registry.keyed[0]?.cache as SmartCache<unknown> | undefined)?.delete('u1')
    const second = new Line(ctx, 0, 10)
    e.collect.gather(second)
    await new Promise((r) => setImmediate(r))
    expect(second.waiting).toBeUndefined()
    expect(second.parts[0]).toEqual({ user: { id: 'u1' } })
    e.collect.timeOut(first)
    expect(first.parts[0]).toEqual({ user: { id: 'u1' } })
    expect(first.problems).toBeUndefined()
    expect(e.counters.timedOut).toBe(0)
    expect(p.stats().enrichers[0]?.lineTimeouts).toBe(0)
  })

  it('records the timeout when the cache holds nothing for the key', async () => {
    const p = pipeline({
      enrichers: [
        defineEnricher({
          name: 'user',
          key: (c) => c.record.user as string,
          compute: () => new Promise<never>(() => {}),
          timeoutMs: 60_000,
        }),
      ],
    })
    await p.ready()
    const e = enrichmentOf(p)
    const line = new Line({ level: 30, time: 0, record: { user: 'u1' }, context: undefined }, 0, 10)
    e.collect.gather(line)
    e.collect.timeOut(line)
    expect(line.problems).toMatchObject({ timeout: ['user'] })
    expect(e.counters.timedOut).toBe(1)
  })
})

describe('a cached value read after core keys were added (loggers with other messageKeys)', () => {
  it('never carries a key made core after it was first filtered', async () => {
    const p = pipeline({
      enrichers: [
        defineEnricher({
          name: 'user',
          key: (c) => c.record.user as string,
          compute: (id: string) => ({ user: id, message: 'from the enricher', text: 'from the enricher' }),
        }),
      ],
    })
    await p.ready()
    const e = enrichmentOf(p)
    const ctx = { level: 30, time: 0, record: { user: 'u1' }, context: undefined }
    const read = (): unknown => {
      const line = new Line(ctx, 0, 10)
      e.collect.gather(line)
      return line.parts[0]
    }
    read()
    await new Promise((r) => setImmediate(r))
    expect(read()).toEqual({ user: 'u1', message: 'from the enricher', text: 'from the enricher' })
    // One logger's messageKey, then another's: the cached value was sanitized before either.
    e.registry.addCoreKey('message')
    expect(read()).toEqual({ user: 'u1', text: 'from the enricher' })
    e.registry.addCoreKey('text')
    expect(read()).toEqual({ user: 'u1' })
    const out: Record<string, unknown> = {}
    e.collect.collectNow(ctx, out, undefined, 0)
    expect(out).toEqual({ user: 'u1' })
  })
})
