import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  createPipeline,
  defaultPipeline,
  defineEnricher,
  type Fields,
  type PipelineEvent,
  registerEnricher,
} from '../../src/index.js'
import { PIPELINE_DEFAULTS } from '../../src/pipeline.js'
import { advanceBoth, deferred, manualClock, slowStart } from '../helpers/deferred.js'
import { trackPipelines } from '../helpers/pipelines.js'

const { pipeline, closePipelines } = trackPipelines()

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] })
})

afterEach(async () => {
  await closePipelines()
  vi.useRealTimers()
})

describe('registration', () => {
  it('returns an unregister function that removes the enricher', async () => {
    const p = pipeline()
    const off = p.register(defineEnricher({ name: 'a', compute: () => ({ a: 1 }) }))
    await p.ready()
    expect(p.snapshot()).toEqual({ a: 1 })
    off()
    expect(p.snapshot()).toEqual({})
    expect(p.stats().enrichers).toEqual([])
  })

  it('throws TypeError on a duplicate name', () => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'dup', compute: () => ({}) }))
    expect(() => p.register(defineEnricher({ name: 'dup', compute: () => ({}) }))).toThrow(TypeError)
    const fn = () => ({ x: 1 })
    p.register(fn)
    expect(() => p.register(fn)).toThrow(/already registered/)
  })

  it('rejects bad options quoting the value', () => {
    expect(() => createPipeline({ deadlineMs: -1 })).toThrow(/deadlineMs .* received -1/)
    expect(() => createPipeline({ errorKey: '' })).toThrow(TypeError)
    expect(() => defineEnricher({ name: '', compute: () => ({}) })).toThrow(TypeError)
    expect(() => defineEnricher({ name: 'x', compute: () => ({}), minLevel: 'loud' as 'info' })).toThrow(
      /received loud/,
    )
    expect(() => defineEnricher({ name: 'x', key: () => 'k', refreshMs: 10, compute: () => ({}) })).toThrow(TypeError)
  })

  it('takes an option given as undefined as not given, as SmartCache does (a config value left unset)', () => {
    for (const k of Object.keys(PIPELINE_DEFAULTS)) {
      const p = pipeline({ [k]: undefined })
      expect(p.deadlineMs, k).toBe(10)
      expect(p.errorKey, k).toBe('enrich')
      expect(p.closeTimeoutMs, k).toBe(2_000)
      expect(p.maxPending, k).toBe(10_000)
    }
    // null is a value, and not a number.
    expect(() => createPipeline({ maxPending: null as unknown as number })).toThrow(/maxPending .* received null/)
    for (const bad of [null, 5, 'x', []]) {
      expect(() => createPipeline(bad as never), String(bad)).toThrow(TypeError)
      expect(() => createPipeline(bad as never), String(bad)).toThrow(/createPipeline expects an options object/)
    }
  })

  it("rejects an errorKey pino writes itself or that is an object's own, which would corrupt the line", () => {
    for (const errorKey of ['level', 'time', 'msg', 'pid', 'hostname', '__proto__', 'constructor', 'prototype']) {
      expect(() => createPipeline({ errorKey }), errorKey).toThrow(
        new RegExp(`errorKey must not be one of pino's own keys .* received "${errorKey}"`),
      )
    }
    // A key of the application's own is fine.
    expect(() => createPipeline({ errorKey: 'problems' }).close()).not.toThrow()
  })

  it('registerEnricher registers into the shared defaultPipeline', async () => {
    const off = registerEnricher(defineEnricher({ name: 'shared-test', compute: () => ({ shared: true }) }))
    try {
      await defaultPipeline.ready()
      expect(defaultPipeline.snapshot().shared).toBe(true)
    } finally {
      off()
    }
  })
})

describe('keyed enrichers', () => {
  it('skips the enricher when key returns undefined', () => {
    const compute = vi.fn(() => ({ user: 'x' }))
    const p = pipeline()
    p.register(defineEnricher({ name: 'user', key: (ctx) => ctx.context?.userId, compute }))
    expect(p.snapshot()).toEqual({})
    expect(compute).not.toHaveBeenCalled()
  })

  it('runs enrichers concurrently, not one after another', async () => {
    const order: string[] = []
    const a = deferred<Fields>()
    const b = deferred<Fields>()
    const p = pipeline({ deadlineMs: 1000 })
    p.register(
      defineEnricher({
        name: 'a',
        key: () => 'k',
        compute: () => {
          order.push('a start')
          return a.promise
        },
      }),
    )
    p.register(
      defineEnricher({
        name: 'b',
        key: () => 'k',
        compute: () => {
          order.push('b start')
          return b.promise
        },
      }),
    )
    const result = p.enrich({})
    expect(order).toEqual(['a start', 'b start'])
    b.resolve({ b: 2 })
    a.resolve({ a: 1 })
    expect(await result).toEqual({ a: 1, b: 2 })
  })

  it('passes the raw key and the record context to compute', async () => {
    const compute = vi.fn((id: number) => ({ user: { id } }))
    const p = pipeline()
    p.register(defineEnricher({ name: 'user', key: (ctx) => ctx.record.uid as number, compute }))
    expect(await p.enrich({ record: { uid: 42 } })).toEqual({ user: { id: 42 } })
    expect(compute.mock.calls[0]?.[0]).toBe(42)
  })

  it('snapshot never waits: a missing value is absent, refreshed for the next record', async () => {
    const held = deferred<Fields>()
    const p = pipeline()
    p.register(defineEnricher({ name: 'user', key: () => 'u1', compute: () => held.promise }))
    expect(p.snapshot()).toEqual({ enrich: { pending: ['user'] } })
    held.resolve({ user: 'u1' })
    await vi.advanceTimersByTimeAsync(0)
    expect(p.snapshot()).toEqual({ user: 'u1' })
  })

  it('starts a refresh after the snapshot has returned, never inside it', async () => {
    const order: string[] = []
    const p = pipeline()
    p.register(
      defineEnricher({
        name: 'user',
        key: () => 'u',
        compute: () => {
          order.push('compute')
          return { user: 'u' }
        },
      }),
    )
    p.snapshot()
    order.push('snapshot returned')
    await Promise.resolve()
    expect(order).toEqual(['snapshot returned', 'compute'])
  })

  it('enrich() resolves by deadlineMs with what is ready, recording the timeout', async () => {
    const p = pipeline({ deadlineMs: 10 })
    p.register(defineEnricher({ name: 'fast', key: () => 'k', compute: async () => ({ fast: 1 }) }))
    p.register(defineEnricher({ name: 'slow', key: () => 'k', compute: () => new Promise<Fields>(() => {}) }))
    let result: Fields | undefined
    void p.enrich({}).then((r) => {
      result = r
    })
    await vi.advanceTimersByTimeAsync(9)
    expect(result).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(result).toEqual({ fast: 1, enrich: { timeout: ['slow'] } })
    const s = p.stats()
    expect(s.records.timedOut).toBe(1)
    expect(s.enrichers.find((e) => e.name === 'slow')?.lineTimeouts).toBe(1)
  })

  it('enrich() counts its deadline from the call: a compute whose synchronous start takes 8 ms leaves it 2 ms of its 10', async () => {
    const clock = manualClock()
    const p = pipeline({ clock, deadlineMs: 10 })
    p.register(
      defineEnricher({
        name: 'slow',
        key: () => 'k',
        compute: slowStart<Fields>(clock, 8),
      }),
    )
    let result: Fields | undefined
    void p.enrich({}).then((r) => {
      result = r
    })
    await advanceBoth(clock, 1)
    expect(result).toBeUndefined()
    await advanceBoth(clock, 1)
    expect(result).toEqual({ enrich: { timeout: ['slow'] } })
  })

  it('enrich() resolves by deadlineMs when the clock steps back an hour during its gather', async () => {
    const clock = manualClock()
    const p = pipeline({ clock, deadlineMs: 10 })
    p.register(
      defineEnricher({
        name: 'slow',
        key: () => 'k',
        compute: slowStart<Fields>(clock, -3_600_000),
      }),
    )
    let result: Fields | undefined
    void p.enrich({}).then((r) => {
      result = r
    })
    await vi.advanceTimersByTimeAsync(10)
    expect(result).toEqual({ enrich: { timeout: ['slow'] } })
  })

  it('records a failing enricher as an error and serves its fallback', async () => {
    const p = pipeline()
    p.register(
      defineEnricher({
        name: 'tenant',
        key: () => 't',
        compute: () => Promise.reject(new Error('db down')),
        fallback: { tenant: 'unknown' },
      }),
    )
    expect(await p.enrich({})).toEqual({ tenant: 'unknown', enrich: { error: ['tenant'] } })
    // Later records hit the error tier without calling compute.
    expect(p.snapshot()).toEqual({ tenant: 'unknown', enrich: { error: ['tenant'] } })
    expect(p.stats().enrichers[0]?.errors).toBe(1)
  })

  it('records a stale value as stale while it refreshes', async () => {
    let n = 0
    const p = pipeline()
    p.register(
      defineEnricher({
        name: 'user',
        key: () => 'u',
        compute: async () => ({ v: ++n }),
        cache: { ttlMs: 1000, staleMs: 10_000, jitter: 0 },
      }),
    )
    expect(await p.enrich({})).toEqual({ v: 1 })
    await vi.advanceTimersByTimeAsync(1500)
    expect(p.snapshot()).toEqual({ v: 1, enrich: { stale: ['user'] } })
    await vi.advanceTimersByTimeAsync(0)
    expect(p.snapshot()).toEqual({ v: 2 })
  })

  it('honours minLevel with a label or a number', async () => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'debugOnly', key: () => 'k', minLevel: 'warn', compute: () => ({ heavy: 1 }) }))
    expect(await p.enrich({ level: 30 })).toEqual({})
    expect(await p.enrich({ level: 50 })).toEqual({ heavy: 1 })
  })

  it('keeps only the fields allowlist', async () => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'u', key: () => 'k', fields: ['user'], compute: () => ({ user: 1, secret: 2 }) }))
    expect(await p.enrich({})).toEqual({ user: 1 })
  })
})

describe('global enrichers', () => {
  it('computes once at registration and serves every record', async () => {
    const compute = vi.fn(() => ({ host: { name: 'h' } }))
    const p = pipeline({ enrichers: [defineEnricher({ name: 'host', compute })] })
    await vi.advanceTimersByTimeAsync(0)
    for (let i = 0; i < 100; i++) expect(p.snapshot()).toEqual({ host: { name: 'h' } })
    expect(compute).toHaveBeenCalledTimes(1)
  })

  it('refreshMs keeps the value warm in the background', async () => {
    let n = 0
    const p = pipeline()
    p.register(defineEnricher({ name: 'load', refreshMs: 1000, compute: () => ({ load: ++n }) }))
    await vi.advanceTimersByTimeAsync(0)
    expect(p.snapshot()).toEqual({ load: 1 })
    await vi.advanceTimersByTimeAsync(1000)
    expect(p.snapshot()).toEqual({ load: 2 })
    await vi.advanceTimersByTimeAsync(3000)
    expect(p.snapshot()).toEqual({ load: 5 })
  })

  it('ready() warms global enrichers and reports which are ready, failed or pending', async () => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'ok', compute: () => ({ ok: 1 }) }))
    p.register(defineEnricher({ name: 'bad', compute: () => Promise.reject(new Error('x')) }))
    p.register(defineEnricher({ name: 'hang', compute: () => new Promise<Fields>(() => {}), timeoutMs: 60_000 }))
    const ready = p.ready({ timeoutMs: 100 })
    await vi.advanceTimersByTimeAsync(100)
    expect(await ready).toEqual({ ready: ['ok'], failed: ['bad'], pending: ['hang'] })
  })
})

describe('global values', () => {
  it('merges objects from several global enrichers key by key', async () => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'host', compute: () => ({ host: { arch: 'amd64', os: { type: 'linux' } } }) }))
    p.register(
      defineEnricher({
        name: 'cloud',
        compute: () => ({ host: { id: 'i-1', os: { version: '6' } }, cloud: { region: 'r' } }),
      }),
    )
    await p.ready()
    expect(p.snapshot()).toEqual({
      host: { arch: 'amd64', id: 'i-1', os: { type: 'linux', version: '6' } },
      cloud: { region: 'r' },
    })
  })

  it('with refreshMs, a value stays fresh between refreshes by default', async () => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'load', refreshMs: 1000, compute: () => ({ load: 1 }) }))
    await p.ready()
    await vi.advanceTimersByTimeAsync(1500)
    expect(p.snapshot()).toEqual({ load: 1 })
  })

  it('calls an enricher dispose once, on unregister or close', async () => {
    const p = pipeline()
    const a = vi.fn()
    const b = vi.fn()
    const off = p.register(defineEnricher({ name: 'a', compute: () => ({}), dispose: a }))
    p.register(defineEnricher({ name: 'b', compute: () => ({}), dispose: b }))
    off()
    off()
    expect(a).toHaveBeenCalledTimes(1)
    expect(b).not.toHaveBeenCalled()
    await p.close()
    expect(b).toHaveBeenCalledTimes(1)
  })
})

describe('keyed values in stats and the negative tier', () => {
  it('counts what lines read from a keyed cache as hits and misses', async () => {
    const p = pipeline()
    p.register(
      defineEnricher({ name: 'user', key: (ctx) => ctx.record.id as string, compute: (id: string) => ({ user: id }) }),
    )
    await p.enrich({ record: { id: 'a' } })
    p.snapshot({ record: { id: 'a' } })
    await p.enrich({ record: { id: 'a' } })
    const cache = p.stats().enrichers[0]?.cache
    expect(cache).toMatchObject({ misses: 1, hits: 2, computes: 1 })
    expect(cache?.hitRate).toBeCloseTo(2 / 3)
  })

  it('caches a lookup that found nothing for negativeTtlMs, not ttlMs', async () => {
    const compute = vi.fn(() => undefined)
    const p = pipeline()
    p.register(
      defineEnricher({
        name: 'user',
        key: () => 'ghost',
        compute,
        cache: { ttlMs: 60_000, negativeTtlMs: 1000, jitter: 0, staleMs: 0 },
      }),
    )
    await p.enrich()
    await vi.advanceTimersByTimeAsync(999)
    await p.enrich()
    expect(compute).toHaveBeenCalledTimes(1)
    await vi.advanceTimersByTimeAsync(1)
    await p.enrich()
    expect(compute).toHaveBeenCalledTimes(2)
  })
})

describe('precedence and safety of output', () => {
  it('never lets enricher output override pino core keys or the errorKey', async () => {
    const p = pipeline()
    p.register(
      defineEnricher({
        name: 'evil',
        key: () => 'k',
        compute: () => ({ level: 99, time: 0, msg: 'x', pid: 1, hostname: 'y', enrich: 'z', ok: 1 }),
      }),
    )
    expect(await p.enrich({})).toEqual({ ok: 1 })
  })

  it('later enrichers win over earlier ones and function enrichers over cached ones', async () => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'a', compute: () => ({ k: 'global' }) }))
    p.register(defineEnricher({ name: 'b', key: () => 'x', compute: () => ({ k: 'keyed' }) }))
    p.register(Object.assign(() => ({ k: 'request' }), { enricherName: 'req' }))
    await p.ready()
    expect(await p.enrich({})).toEqual({ k: 'request' })
  })
})

describe('request context', () => {
  // setImmediate: vitest's fake timers run callbacks outside the caller's async context.
  it('run() makes the store visible to get() and to enrichers across awaits and timer callbacks', async () => {
    const p = pipeline()
    p.register(
      Object.assign((ctx: { context?: { requestId?: string } | undefined }) => ({ rid: ctx.context?.requestId }), {
        enricherName: 'rid',
      }),
    )
    const seen: unknown[] = []
    const done = p.context.run({ requestId: 'r-1' }, async () => {
      await Promise.resolve()
      await new Promise<void>((resolve) =>
        setImmediate(() => {
          seen.push(p.context.get()?.requestId, p.snapshot().rid)
          resolve()
        }),
      )
    })
    await done
    expect(seen).toEqual(['r-1', 'r-1'])
    expect(p.context.get()).toBeUndefined()
    expect(p.snapshot()).toEqual({})
  })
})

describe('events and stats', () => {
  it('reports a breaker opening once per open period, not once per record', async () => {
    const p = pipeline()
    p.register(
      defineEnricher({
        name: 'flaky',
        key: (ctx) => ctx.record.k as string,
        compute: () => Promise.reject(new Error('down')),
        breaker: { failureThreshold: 3, halfOpenAfterMs: 1000 },
      }),
    )
    const events: PipelineEvent[] = []
    const off = p.onBreakerChange((e) => events.push(e))
    for (let i = 0; i < 50; i++) await p.enrich({ record: { k: `k${i}` } })
    expect(events.map((e) => e.type === 'breaker' && e.to)).toEqual(['open'])
    expect(p.snapshot({ record: { k: 'new' } })).toEqual({ enrich: { open: ['flaky'] } })
    off()
    await vi.advanceTimersByTimeAsync(1000)
    await p.enrich({ record: { k: 'probe' } })
    expect(events).toHaveLength(1)
    expect(p.stats().enrichers[0]?.breaker).toBe('open')
  })

  it('emits enricher errors and compute timeouts; disposers stop delivery', async () => {
    const p = pipeline({ deadlineMs: 100 })
    p.register(defineEnricher({ name: 'boom', key: () => 'k', compute: () => Promise.reject(new TypeError('no')) }))
    p.register(
      defineEnricher({ name: 'slow', key: () => 'k', timeoutMs: 50, compute: () => new Promise<Fields>(() => {}) }),
    )
    const errors: PipelineEvent[] = []
    const timeouts: PipelineEvent[] = []
    const offE = p.onEnricherError((e) => errors.push(e))
    const offT = p.onTimeout((e) => timeouts.push(e))
    const r = p.enrich({})
    await vi.advanceTimersByTimeAsync(100)
    expect(await r).toEqual({ enrich: { error: ['boom'], timeout: ['slow'] } })
    expect(errors).toMatchObject([{ type: 'error', enricher: 'boom', code: 'TypeError' }])
    expect(timeouts).toMatchObject([{ type: 'timeout', enricher: 'slow', timeoutMs: 50 }])
    offE()
    offT()
    p.register(defineEnricher({ name: 'boom2', key: () => 'k', compute: () => Promise.reject(new Error('no')) }))
    await p.enrich({})
    expect(errors).toHaveLength(1)
  })

  it('stats() has per-enricher cache figures, latency and record counters', async () => {
    const p = pipeline()
    p.register(
      defineEnricher({
        name: 'user',
        key: (ctx) => ctx.record.id as string,
        compute: async () => {
          await new Promise((r) => setTimeout(r, 20))
          return { u: 1 }
        },
      }),
    )
    const first = p.enrich({ record: { id: 'a' } })
    await vi.advanceTimersByTimeAsync(20)
    await first
    await p.enrich({ record: { id: 'a' } })
    const s = p.stats().enrichers[0]
    expect(s?.cache).toMatchObject({ hits: 1, misses: 1, computes: 1, totalEntries: 1 })
    expect(s?.kind).toBe('keyed')
    expect(s?.latencyMs.p50).toBeGreaterThanOrEqual(20)
  })

  it('metrics() is Prometheus text with HELP and TYPE for every family', async () => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'host', compute: () => ({ h: 1 }) }))
    await p.ready()
    const text = p.metrics()
    expect(text.endsWith('\n')).toBe(true)
    const families = text.split('\n').filter((l) => l.startsWith('# TYPE '))
    expect(families.length).toBeGreaterThan(10)
    for (const line of text.split('\n').filter((l) => l.length > 0 && !l.startsWith('#'))) {
      expect(line).toMatch(/^pino_enrich_[a-z_0-9]+(\{enricher="[^"]*"\})? -?[0-9.e+-]+$/)
    }
    expect(text).toContain('pino_enrich_cache_computes_total{enricher="host"} 1')
  })
})

describe('close', () => {
  it('does not wait for a hung enricher and aborts its compute', async () => {
    const p = pipeline({ closeTimeoutMs: 200, deadlineMs: 1000 })
    const signals: AbortSignal[] = []
    p.register(
      defineEnricher({
        name: 'hang',
        key: () => 'k',
        timeoutMs: 60_000,
        compute: (_k, _c, { signal }) => {
          signals.push(signal)
          return new Promise<Fields>(() => {})
        },
      }),
    )
    const pending = p.enrich({})
    let closed = false
    void p.close().then(() => {
      closed = true
    })
    await vi.advanceTimersByTimeAsync(0)
    expect(closed).toBe(true)
    expect(signals[0]?.aborted).toBe(true)
    // The record that was waiting resolves at once: its compute was aborted.
    expect(await pending).toEqual({ enrich: { error: ['hang'] } })
  })

  it('stops refresh timers', async () => {
    const compute = vi.fn(() => ({ n: 1 }))
    const p = pipeline()
    p.register(defineEnricher({ name: 'r', refreshMs: 100, compute }))
    await vi.advanceTimersByTimeAsync(0)
    await p.close()
    const calls = compute.mock.calls.length
    await vi.advanceTimersByTimeAsync(1000)
    expect(compute.mock.calls.length).toBe(calls)
    expect(vi.getTimerCount()).toBe(0)
  })
})
