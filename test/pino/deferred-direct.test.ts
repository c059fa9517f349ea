import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createRequestStore } from '../../src/context/request-store.js'
import { defineContextFields, defineEnricher, type Fields, type Pipeline } from '../../src/index.js'
import { onAsJson } from '../helpers/as-json.js'
import { type Deferred, deferred } from '../helpers/deferred.js'
import { trackPipelines } from '../helpers/pipelines.js'
import { sink } from '../helpers/sink.js'

// A deferred line that waits for nothing, with nothing queued, is written in
// its call as a snapshot line is. These pin what that line shares with the
// snapshot's and what it keeps of deferred mode.

const { pipeline, closePipelines } = trackPipelines()

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] })
})

afterEach(async () => {
  await closePipelines()
  vi.useRealTimers()
})

const STORE = { requestId: 'r1', userId: 'u1' }

/** Globals, request fields and, with `keyed`, a keyed enricher on the request's user (cache: 1 s fresh, 1 min stale). */
async function setup(opts: { keyed?: boolean; failing?: boolean; errorKey?: string; globalFailing?: boolean } = {}) {
  const computes: string[] = []
  const gates = new Map<string, Deferred<Fields>>()
  const enrichers = [defineEnricher({ name: 'service', compute: () => ({ service: 'checkout' }) })]
  if (opts.globalFailing === true) {
    enrichers.push(defineEnricher({ name: 'cloud', compute: () => Promise.reject(new Error('metadata down')) }))
  }
  const p = pipeline({ deadlineMs: 50, enrichers, ...(opts.errorKey === undefined ? {} : { errorKey: opts.errorKey }) })
  p.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }))
  if (opts.keyed === true) {
    p.register(
      defineEnricher({
        name: 'tenant',
        key: (ctx) => (ctx.record.user as string | undefined) ?? (ctx.context?.userId as string | undefined),
        compute: (id: string) => {
          computes.push(id)
          if (opts.failing === true) return Promise.reject(new Error('down'))
          const d = deferred<Fields>()
          gates.set(id, d)
          return d.promise
        },
        cache: { ttlMs: 1_000, staleMs: 60_000, jitter: 0 },
        breaker: false,
        fallback: { tenant: 'unknown' },
      }),
    )
  }
  await p.ready()
  return { p, computes, gates }
}

/** The same call through a snapshot logger and a deferred logger of one pipeline: their chunks. */
function both(p: Pipeline, options: pino.LoggerOptions, call: (log: pino.Logger) => void) {
  const snap = sink()
  const def = sink()
  const s = pino(p.pinoOptions({ mode: 'snapshot', ...options }), snap)
  const d = pino(p.pinoOptions({ mode: 'deferred', ...options }), def)
  p.context.run(STORE, () => {
    call(s)
    call(d)
  })
  return { snap: snap.chunks, def: def.chunks }
}

describe('a deferred line with every value at hand is the snapshot line, written in its call', () => {
  it('globals and request fields only: the same bytes as snapshot mode, written before the call returns', async () => {
    const { p } = await setup()
    const err = new Error('boom')
    const { snap, def } = both(p, { base: { pid: 1, hostname: 'h' } }, (log) => {
      log.info({ a: 1 }, 'one')
      log.child({ phase: 'x' }).warn('two %s', 'arg')
      log.error(err)
    })
    expect(def).toHaveLength(3)
    expect(def).toEqual(snap)
    expect(JSON.parse(def[0] as string)).toMatchObject({ service: 'checkout', requestId: 'r1', userId: 'u1', a: 1 })
  })

  it('a keyed value cached: the same bytes; then stale (with its problem), then in the error tier (fallback and problem): the same values, the problems after the time part', async () => {
    const { p, gates } = await setup({ keyed: true })
    const d = pino(p.pinoOptions({ mode: 'deferred' }), sink())
    d.info({ user: 'u1' }, 'fills the cache')
    gates.get('u1')?.resolve({ tenant: 't1' })
    await vi.advanceTimersByTimeAsync(0)
    const call = (log: pino.Logger): void => log.info({ user: 'u1', a: 1 }, 'cached')
    const fresh = both(p, {}, call)
    expect(fresh.def).toEqual(fresh.snap)
    expect(JSON.parse(fresh.def[0] as string)).toMatchObject({ tenant: 't1', requestId: 'r1', a: 1 })
    await vi.advanceTimersByTimeAsync(1_500)
    // A deferred line's problems are written after its time and globals, as a queued line's (see README).
    const stale = both(p, {}, call)
    expect(JSON.parse(stale.def[0] as string)).toEqual(JSON.parse(stale.snap[0] as string))
    expect(stale.def[0]).toMatch(/^\{"level":30,"time":\d+,"service":"checkout","enrich":\{"stale":\["tenant"\]\},/)
    expect(JSON.parse(stale.def[0] as string)).toMatchObject({ tenant: 't1', enrich: { stale: ['tenant'] } })
    d.info({ user: 'bad' }, 'its compute fails')
    gates.get('bad')?.reject(new Error('down'))
    await vi.advanceTimersByTimeAsync(0)
    const failed = both(p, {}, (log) => log.info({ user: 'bad' }, 'failed'))
    expect(JSON.parse(failed.def[0] as string)).toEqual(JSON.parse(failed.snap[0] as string))
    expect(count(failed.def[0] as string, '"enrich":')).toBe(1)
    expect(JSON.parse(failed.def[0] as string)).toMatchObject({ tenant: 'unknown', enrich: { error: ['tenant'] } })
  })

  it("with a user mixin, its merge strategy, a serializer and a child's bindings: the same bytes", async () => {
    const { p, gates } = await setup({ keyed: true })
    pino(p.pinoOptions({ mode: 'deferred' }), sink()).info({ user: 'u2' }, 'fill')
    gates.get('u2')?.resolve({ tenant: 't2' })
    await vi.advanceTimersByTimeAsync(0)
    const options: pino.LoggerOptions = {
      mixin: (o) => ({ seen: Object.keys(o).length }),
      mixinMergeStrategy: (o, m) => Object.assign({}, m, o),
      serializers: { a: (v: number) => v * 10 },
    }
    const { snap, def } = both(p, options, (log) => log.child({ tenant: 'bound' }).info({ user: 'u2', a: 2 }, 'm'))
    expect(def).toEqual(snap)
    // The child's binding ranks above the enricher, as in snapshot mode.
    expect(JSON.parse(def[0] as string)).toMatchObject({ tenant: 'bound', seen: 2, a: 20 })
  })

  it("a line logged from the write of one written in its call is written after it, with its arguments' values at its call", async () => {
    const { p } = await setup()
    const out = sink()
    const nestedArg = { step: 1 }
    let log: pino.Logger | undefined
    let nested = 0
    log = pino(
      p.pinoOptions({
        mode: 'deferred',
        serializers: {
          a: (v: unknown) => {
            if (nested++ === 0) {
              log?.info({ arg: nestedArg }, 'nested')
              // Queued behind the line being written: it must show the value at its call.
              nestedArg.step = 2
              expect(out.chunks).toHaveLength(0)
            }
            return v
          },
        },
      }),
      out,
    )
    log.info({ a: 1 }, 'outer')
    expect(out.lines().map((l) => [l.msg, l.arg])).toEqual([
      ['outer', undefined],
      ['nested', { step: 1 }],
    ])
    expect(p.stats().records.dropped).toBe(0)
  })

  it('two loggers of one pipeline on one destination: a line at hand is written at once, behind nothing of its own logger', async () => {
    const { p, gates } = await setup({ keyed: true })
    const out = sink()
    const a = pino(p.pinoOptions({ mode: 'deferred' }), out)
    const b = a.child({ from: 'child' })
    a.info({ user: 'u3' }, 'waits')
    b.info({ user: 'u3' }, 'behind it')
    expect(out.chunks).toHaveLength(0)
    gates.get('u3')?.resolve({ tenant: 't3' })
    await vi.advanceTimersByTimeAsync(0)
    b.info({ user: 'u3' }, 'at hand')
    a.info({ user: 'u3' }, 'at hand too')
    expect(out.lines().map((l) => [l.msg, l.tenant])).toEqual([
      ['waits', 't3'],
      ['behind it', 't3'],
      ['at hand', 't3'],
      ['at hand too', 't3'],
    ])
  })
})

describe('a deferred line written in its call reads its request store once', () => {
  it('two request-fields enrichers reading userId: user(req) is asked once per line while it has no id', async () => {
    const p = pipeline()
    p.register(defineContextFields({ name: 'a', keys: { userId: 'userId' } }))
    p.register(defineContextFields({ name: 'b', keys: { userId: 'uid' } }))
    let calls = 0
    const store = createRequestStore('r1', 'GET', '/x', {}, () => {
      calls++
      return undefined
    })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    p.context.run(store, () => {
      for (let i = 0; i < 10; i++) log.info('line')
    })
    expect(out.lines()).toHaveLength(10)
    expect(calls).toBe(10)
  })
})

describe('a deferred line whose keyed value is missing', () => {
  it('waits for it, its key() read once, and is written with it; a line at hand behind it waits too', async () => {
    const { p, computes, gates } = await setup({ keyed: true })
    let keys = 0
    p.register(
      defineEnricher({
        name: 'counted',
        key: () => {
          keys++
          return 'k'
        },
        compute: () => ({ counted: true }),
      }),
    )
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    log.info({ user: 'u4' }, 'waits')
    expect(keys).toBe(1)
    expect(computes).toEqual(['u4'])
    gates.get('u4')?.resolve({ tenant: 't4' })
    await vi.advanceTimersByTimeAsync(0)
    expect(out.lines()).toMatchObject([{ msg: 'waits', tenant: 't4', counted: true }])
    log.info({ user: 'u4' }, 'at hand')
    expect(keys).toBe(2)
    expect(out.lines()[1]).toMatchObject({ msg: 'at hand', tenant: 't4', counted: true })
  })
})

describe('a deferred line written in its call that pino refuses', () => {
  it('throws to the caller, is counted as dropped, and leaves nothing of its values to the next line', async () => {
    const { p, gates } = await setup({ keyed: true })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    log.info({ user: 'u5' }, 'fill')
    gates.get('u5')?.resolve({ tenant: 't5' })
    await vi.advanceTimersByTimeAsync(0)
    // pino reads `method`, `headers` and `socket` of the object before its write, mixin included.
    const hostile = {
      user: 'u5',
      get method(): never {
        throw new Error('hostile getter')
      },
    }
    expect(() => log.info(hostile, 'refused')).toThrow('hostile getter')
    expect(p.stats().records.dropped).toBe(1)
    // No user of its own, none in the request context: the value read for the refused line must not show.
    log.info('next')
    const lines = out.lines()
    expect(lines.map((l) => l.msg)).toEqual(['fill', 'next'])
    expect(lines[1]?.tenant).toBeUndefined()
  })
})

describe('a deferred line logged from inside enrichment that pino refuses', () => {
  it("does not throw into the key() that logged it: counted as dropped, the outer line keeps its enricher's value", async () => {
    const { p, gates } = await setup({ keyed: true })
    let log: pino.Logger | undefined
    let logging = false
    let thrown: unknown
    p.register(
      defineEnricher({
        name: 'noisy',
        key: () => {
          if (logging) {
            try {
              log?.warn('from key')
            } catch (err) {
              thrown = err
            }
          }
          return 'n'
        },
        compute: () => ({ noisy: true }),
      }),
    )
    const chunks: string[] = []
    const dest = {
      write(s: string) {
        if (s.includes('from key')) throw new Error('refused')
        chunks.push(s)
      },
    }
    log = pino(p.pinoOptions({ mode: 'deferred' }), dest)
    log.info({ user: 'u6' }, 'fill')
    gates.get('u6')?.resolve({ tenant: 't6' })
    await vi.advanceTimersByTimeAsync(0)
    logging = true
    log.info({ user: 'u6' }, 'outer')
    logging = false
    expect(thrown).toBeUndefined()
    const last = JSON.parse(chunks.at(-1) as string) as Record<string, unknown>
    expect(last).toMatchObject({ msg: 'outer', tenant: 't6', noisy: true })
    expect(last.enrich).toBeUndefined()
    expect(p.stats().records.dropped).toBe(1)
  })
})

/** How many times `what` occurs in `s`. */
const count = (s: string, what: string): number => s.split(what).length - 1

/** A keyed value for `user` computed (or failed) and settled, through a deferred logger of its own. */
async function fill(p: Pipeline, user: string, gates: Map<string, Deferred<Fields>>): Promise<void> {
  pino(p.pinoOptions({ mode: 'deferred' }), sink()).info({ user }, 'fill')
  gates.get(user)?.resolve({ tenant: `t-${user}` })
  await vi.advanceTimersByTimeAsync(0)
}

let waiting = 0

/**
 * One call through a deferred logger twice: first queued behind a line that
 * waits for its keyed value, then, with nothing queued, written in its call.
 */
async function queuedThenDirect(
  p: Pipeline,
  gates: Map<string, Deferred<Fields>>,
  options: pino.LoggerOptions,
  call: (log: pino.Logger) => void,
  store: Record<string, unknown> = STORE,
): Promise<{ queued: string; direct: string }> {
  const out = sink()
  const log = pino(p.pinoOptions({ mode: 'deferred', ...options }), out)
  const user = `waits-${waiting++}`
  p.context.run(store, () => {
    log.info({ user }, 'waits')
    call(log)
  })
  expect(out.chunks).toHaveLength(0)
  gates.get(user)?.resolve({ tenant: 'late' })
  await vi.advanceTimersByTimeAsync(0)
  expect(out.chunks).toHaveLength(2)
  p.context.run(store, () => call(log))
  // Written before the call returned.
  expect(out.chunks).toHaveLength(3)
  return { queued: out.chunks[1] as string, direct: out.chunks[2] as string }
}

describe('a deferred line written in its call with problems known before the write', () => {
  it('a failing keyed enricher: its problems once, the bytes of the same line queued, the values of snapshot', async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    await fill(p, 'bad', gates)
    const call = (log: pino.Logger): void => log.info({ user: 'bad', a: 1 }, 'failed')
    const { queued, direct } = await queuedThenDirect(p, gates, { base: { pid: 1, hostname: 'h' } }, call)
    expect(direct).toBe(queued)
    expect(count(direct, '"enrich":')).toBe(1)
    expect(JSON.parse(direct)).toMatchObject({
      tenant: 'unknown',
      enrich: { error: ['tenant'] },
      requestId: 'r1',
      a: 1,
    })
    const { snap, def } = both(p, { base: { pid: 1, hostname: 'h' } }, call)
    expect(JSON.parse(def[0] as string)).toEqual(JSON.parse(snap[0] as string))
  })

  it('a failing keyed enricher and a refused request field: one enrich key with both problems', async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    await fill(p, 'bad', gates)
    const store = { requestId: 'r'.repeat(2_000), userId: 'u1' }
    const call = (log: pino.Logger): void => log.info({ user: 'bad' }, 'both')
    const { queued, direct } = await queuedThenDirect(p, gates, {}, call, store)
    expect(direct).toBe(queued)
    expect(count(direct, '"enrich":')).toBe(1)
    const line = JSON.parse(direct) as Record<string, unknown>
    expect(line.enrich).toEqual({ error: ['tenant'], invalid: ['request'] })
    expect(line.requestId).toBeUndefined()
    expect(line.userId).toBe('u1')
  })

  it('a refused request field alone: written as snapshot writes it, once', async () => {
    const { p } = await setup()
    const store = { requestId: 'r'.repeat(2_000), userId: 'u1' }
    const snap = sink()
    const def = sink()
    const s = pino(p.pinoOptions({ mode: 'snapshot' }), snap)
    const d = pino(p.pinoOptions({ mode: 'deferred' }), def)
    p.context.run(store, () => {
      s.info('x')
      d.info('x')
    })
    expect(def.chunks).toEqual(snap.chunks)
    expect(count(def.chunks[0] as string, '"enrich":')).toBe(1)
    expect(JSON.parse(def.chunks[0] as string)).toMatchObject({ enrich: { invalid: ['request'] }, userId: 'u1' })
  })

  it('a failing global enricher and a keyed value cached: the bytes of the same line queued', async () => {
    const { p, gates } = await setup({ keyed: true, globalFailing: true })
    await fill(p, 'u1', gates)
    const call = (log: pino.Logger): void => log.warn({ user: 'u1' }, 'cloud down')
    const { queued, direct } = await queuedThenDirect(p, gates, {}, call)
    expect(direct).toBe(queued)
    expect(count(direct, '"enrich":')).toBe(1)
    expect(JSON.parse(direct)).toMatchObject({ tenant: 't-u1', enrich: { error: ['cloud'] } })
  })

  it('a failing global enricher and no keyed one: the bytes of the same line queued', async () => {
    const { p } = await setup({ globalFailing: true })
    const out = sink()
    let log: pino.Logger | undefined
    let nested = 0
    const call = (): void => log?.warn({ b: 1 }, 'cloud down')
    log = pino(
      p.pinoOptions({
        mode: 'deferred',
        serializers: {
          a: (v: unknown) => {
            // Logged from the write of a line written in its call: queued behind it.
            if (nested++ === 0) call()
            return v
          },
        },
      }),
      out,
    )
    p.context.run(STORE, () => {
      log?.info({ a: 1 }, 'outer')
      call()
    })
    expect(out.chunks).toHaveLength(3)
    const [, queued, direct] = out.chunks as [string, string, string]
    expect(direct).toBe(queued)
    expect(count(direct, '"enrich":')).toBe(1)
    expect(JSON.parse(direct)).toMatchObject({ b: 1, requestId: 'r1', enrich: { error: ['cloud'] } })
  })

  it('a call that logs the errorKey itself: its own value, once, as snapshot writes it', async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    await fill(p, 'bad', gates)
    const { snap, def } = both(p, {}, (log) => log.info({ user: 'bad', enrich: 'mine' }, 'own'))
    expect(def).toEqual(snap)
    expect(count(def[0] as string, '"enrich":')).toBe(1)
    expect(JSON.parse(def[0] as string)).toMatchObject({ enrich: 'mine', tenant: 'unknown' })
  })

  it('a logger whose bindings carry the errorKey: its line parses as the snapshot line, queued or written in its call', async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    await fill(p, 'bad', gates)
    const call = (log: pino.Logger): void => {
      log.child({ enrich: 'bound' }).info({ user: 'bad' }, 'child')
      log.child({ enrich: 'bound' }).child({ c: 1 }).info({ user: 'bad' }, 'grandchild')
    }
    const { snap, def } = both(p, {}, call)
    expect(def.map((l) => JSON.parse(l))).toEqual(snap.map((l) => JSON.parse(l)))
    expect(JSON.parse(def[0] as string)).toMatchObject({ enrich: { error: ['tenant'] }, tenant: 'unknown' })
    const root = (log: pino.Logger): void => log.info({ user: 'bad' }, 'base')
    const withBase = both(p, { base: { enrich: 'base' } }, root)
    expect(withBase.def.map((l) => JSON.parse(l))).toEqual(withBase.snap.map((l) => JSON.parse(l)))
    const { queued, direct } = await queuedThenDirect(p, gates, {}, (log) =>
      log.child({ enrich: 'bound' }).info({ user: 'bad' }, 'child'),
    )
    expect(queued).toBe(direct)
    expect(JSON.parse(queued)).toMatchObject({ enrich: { error: ['tenant'] }, tenant: 'unknown' })
  })

  it("pino's own errorKey the same as the pipeline's: an Error logged is under it once, as snapshot writes it", async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    // The request's user, as the key of an Error's line (an Error is no record).
    await fill(p, STORE.userId, gates)
    const err = new Error('boom')
    err.stack = 'stack'
    const call = (log: pino.Logger): void => log.error(err)
    const { snap, def } = both(p, { errorKey: 'enrich' }, call)
    expect(count(def[0] as string, '"enrich":')).toBe(1)
    expect(def.map((l) => JSON.parse(l))).toEqual(snap.map((l) => JSON.parse(l)))
    expect(JSON.parse(def[0] as string)).toMatchObject({ enrich: { message: 'boom' }, tenant: 'unknown' })
    const { queued, direct } = await queuedThenDirect(p, gates, { errorKey: 'enrich' }, call)
    expect(queued).toBe(direct)
  })

  it("pino's nestedKey: the problems are nested with the call's fields, as snapshot writes them", async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    await fill(p, 'bad', gates)
    const call = (log: pino.Logger): void => log.info({ user: 'bad' }, 'nested')
    const { snap, def } = both(p, { nestedKey: 'payload' }, call)
    expect(def.map((l) => JSON.parse(l))).toEqual(snap.map((l) => JSON.parse(l)))
    expect(JSON.parse(def[0] as string).payload).toMatchObject({ enrich: { error: ['tenant'] }, user: 'bad' })
    const { queued, direct } = await queuedThenDirect(p, gates, { nestedKey: 'payload' }, call)
    expect(queued).toBe(direct)
  })

  it('a queued line that logs the errorKey itself: its own value, once, as when written in its call', async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    await fill(p, 'bad', gates)
    const call = (log: pino.Logger): void => log.info({ user: 'bad', enrich: 'mine' }, 'own')
    const { queued, direct } = await queuedThenDirect(p, gates, {}, call)
    expect(count(queued, '"enrich":')).toBe(1)
    expect(queued).toBe(direct)
    expect(JSON.parse(queued)).toMatchObject({ enrich: 'mine', tenant: 'unknown' })
  })

  it('a pino_asJson subscriber sees the globals and the problems on the object; the line carries them once', async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    await fill(p, 'bad', gates)
    const seen: Array<{ obj: Record<string, unknown>; time: string }> = []
    const stop = onAsJson((a) => seen.push({ obj: { ...(a[0] as Record<string, unknown>) }, time: a[3] as string }))
    try {
      const call = (log: pino.Logger): void => log.info({ user: 'bad' }, 'traced')
      const { queued, direct } = await queuedThenDirect(p, gates, {}, call)
      expect(direct).toBe(queued)
      expect(count(direct, '"enrich":')).toBe(1)
      const last = seen.at(-1)
      expect(last?.obj).toMatchObject({ service: 'checkout', tenant: 'unknown', enrich: { error: ['tenant'] } })
      expect(last?.time).toMatch(/^,"time":\d+$/)
    } finally {
      stop()
    }
  })

  it('a custom timestamp function: the problems after its time part, once', async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    await fill(p, 'bad', gates)
    const timestamp = (): string => ',"time":"tx"'
    const call = (log: pino.Logger): void => log.info({ user: 'bad' }, 'custom time')
    const { queued, direct } = await queuedThenDirect(p, gates, { timestamp }, call)
    expect(direct).toBe(queued)
    expect(direct).toMatch(/^\{"level":30,"time":"tx","service":"checkout","enrich":\{"error":\["tenant"\]\}/)
    expect(count(direct, '"enrich":')).toBe(1)
  })

  it('errorKey: the problems under it, once', async () => {
    const { p, gates } = await setup({ keyed: true, failing: true, errorKey: 'problems' })
    await fill(p, 'bad', gates)
    const call = (log: pino.Logger): void => log.info({ user: 'bad' }, 'own key')
    const { queued, direct } = await queuedThenDirect(p, gates, {}, call)
    expect(direct).toBe(queued)
    expect(count(direct, '"problems":')).toBe(1)
    expect(direct).not.toContain('"enrich"')
    expect(JSON.parse(direct)).toMatchObject({ problems: { error: ['tenant'] } })
  })

  it('a line pino refuses after its request fields were read in its call leaves nothing of them to the next line', async () => {
    const { p, gates } = await setup({ keyed: true, failing: true })
    await fill(p, 'bad', gates)
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    const hostile = {
      user: 'bad',
      get method(): never {
        throw new Error('hostile getter')
      },
    }
    p.context.run(STORE, () => {
      expect(() => log.info(hostile, 'refused')).toThrow('hostile getter')
    })
    // Outside the request, with no user: neither the request's fields nor the problem may show.
    log.info('next')
    log.child({ c: 1 }).info('child')
    const lines = out.lines()
    expect(lines.map((l) => l.msg)).toEqual(['next', 'child'])
    for (const l of lines) {
      expect(l.requestId).toBeUndefined()
      expect(l.enrich).toBeUndefined()
    }
  })
})
