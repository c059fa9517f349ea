import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { enrichmentOf } from '../../src/core/enrichment.js'
import { defineContextFields, defineEnricher, type Fields } from '../../src/index.js'
import { deferred } from '../helpers/deferred.js'
import { trackPipelines } from '../helpers/pipelines.js'
import { sink } from '../helpers/sink.js'

const { pipeline, closePipelines } = trackPipelines()

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] })
})

afterEach(async () => {
  await closePipelines()
  vi.useRealTimers()
})

const host = () =>
  defineEnricher({ name: 'host', compute: () => ({ host: { name: 'box' }, service: { name: 'api' } }) })
const user = (compute: (id: string) => Fields | Promise<Fields>) =>
  defineEnricher({
    name: 'user',
    key: (ctx) => ctx.context?.userId as string | undefined,
    compute: (id: string) => compute(id),
  })

describe('snapshot mode', () => {
  it('writes global values on every line and keeps pino core fields', async () => {
    const p = pipeline({ enrichers: [host()] })
    await p.ready()
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    log.info({ a: 1 }, 'hello')
    const [line] = out.lines()
    expect(line).toMatchObject({ level: 30, host: { name: 'box' }, service: { name: 'api' }, a: 1, msg: 'hello' })
    expect(line?.pid).toBe(process.pid)
    expect(line?.time).toBe(Date.now())
  })

  it('leaves out a value that is not ready and carries it on a later line', async () => {
    const held = deferred<Fields>()
    const p = pipeline({ enrichers: [user(() => held.promise)] })
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    p.context.run({ userId: 'u1' }, () => log.info('first'))
    held.resolve({ user: { id: 'u1' } })
    await vi.advanceTimersByTimeAsync(0)
    p.context.run({ userId: 'u1' }, () => log.info('second'))
    const [first, second] = out.lines()
    expect(first?.user).toBeUndefined()
    expect(first?.enrich).toEqual({ pending: ['user'] })
    expect(second?.user).toEqual({ id: 'u1' })
    expect(second?.enrich).toBeUndefined()
  })

  it('picks up a changed global value on the next line', async () => {
    let n = 0
    const p = pipeline({
      enrichers: [defineEnricher({ name: 'load', refreshMs: 1000, compute: () => ({ load: ++n }) })],
    })
    await p.ready()
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    log.info('a')
    await vi.advanceTimersByTimeAsync(1000)
    log.info('b')
    expect(out.lines().map((l) => l.load)).toEqual([1, 2])
  })

  it('puts call site over request context over enrichers, and never lets enrichers override core keys', async () => {
    const p = pipeline()
    p.register(
      defineEnricher({ name: 'g', compute: () => ({ who: 'enricher', where: 'enricher', msg: 'evil', pid: 0 }) }),
    )
    p.register(
      Object.assign((ctx: { context?: Record<string, unknown> | undefined }) => ({ who: ctx.context?.who }), {
        enricherName: 'req',
      }),
    )
    await p.ready()
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    p.context.run({ who: 'request' }, () => {
      log.info('plain')
      log.info({ who: 'call' }, 'call site')
    })
    const [plain, call] = out.lines()
    expect(plain).toMatchObject({ who: 'request', where: 'enricher', msg: 'plain', pid: process.pid })
    expect(call).toMatchObject({ who: 'call', msg: 'call site' })
  })

  it('shares what it prepares between loggers made with the same options', async () => {
    const p = pipeline({ enrichers: [host()] })
    await p.ready()
    const before = enrichmentOf(p).globals.viewCount
    // Held, so that no view is collected while counted.
    const loggers: pino.Logger[] = []
    for (let i = 0; i < 1000; i++) loggers.push(pino(p.pinoOptions({ redact: ['user.email'] }), sink()))
    loggers.push(pino(p.pinoOptions({ redact: ['other'] }), sink()))
    expect(enrichmentOf(p).globals.viewCount).toBe(before + 2)
    const out = sink()
    pino(p.pinoOptions({ redact: ['user.email'] }), out).info('x')
    expect(out.lines()[0]).toMatchObject({ host: { name: 'box' } })
  })

  it('ranks enrichers above base, which stays pino bindings, keeping pid and hostname from pino', async () => {
    const p = pipeline({
      enrichers: [defineEnricher({ name: 'env', compute: () => ({ env: 'enriched', hostname: 'x' }) })],
    })
    await p.ready()
    const out = sink()
    const log = pino(p.pinoOptions({ base: { pid: 1, hostname: 'h', env: 'base', team: 'core' } }), out)
    log.info('x')
    const raw = out.chunks[0] as string
    // base is written as pino writes bindings; the enriched value comes after it and wins when parsed.
    expect(raw.indexOf('"env":"base"')).toBeLessThan(raw.indexOf('"env":"enriched"'))
    expect(out.lines()[0]).toMatchObject({ pid: 1, hostname: 'h', env: 'enriched', team: 'core' })
    expect(log.bindings()).toEqual({ env: 'base', team: 'core' })
  })

  it('composes with the user mixin, formatters, child bindings and redact of an enriched field', async () => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'user', compute: () => ({ user: { id: 'u', email: 'a@b.c' }, host: 'h' }) }))
    await p.ready()
    const out = sink()
    const log = pino(
      p.pinoOptions({
        mixin: () => ({ mixed: true }),
        redact: ['user.email'],
        formatters: { level: (label) => ({ severity: label }) },
      }),
      out,
    )
    log.child({ module: 'db' }).warn('x')
    const [line] = out.lines()
    expect(line).toMatchObject({
      severity: 'warn',
      mixed: true,
      module: 'db',
      host: 'h',
      user: { id: 'u', email: '[Redacted]' },
    })
  })

  it('applies serializers and formatters.log to enriched fields', async () => {
    const p = pipeline({ enrichers: [defineEnricher({ name: 'u', compute: () => ({ user: { id: 'u' } }) })] })
    await p.ready()
    const out = sink()
    const log = pino(
      p.pinoOptions({
        serializers: { user: (u: { id: string }) => `user:${u.id}` },
        formatters: { log: (o) => ({ ...o, formatted: true }) },
      }),
      out,
    )
    log.info('x')
    expect(out.lines()[0]).toMatchObject({ user: 'user:u', formatted: true })
  })

  it('writes defineContextFields keys from the request context, renamed, and survives a throwing getter', async () => {
    const p = pipeline({ enrichers: [host()] })
    p.register(defineContextFields({ name: 'req', keys: { requestId: 'reqId', userId: 'userId', tenant: false } }))
    await p.ready()
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    log.info('outside')
    p.context.run({ requestId: 'r1', userId: 'u1', tenant: 't' }, () => log.info({ userId: 'call' }, 'inside'))
    const store = {
      requestId: 'r2',
      get userId(): string {
        throw new Error('getter')
      },
    }
    p.context.run(store, () => expect(() => log.info('throws')).not.toThrow())
    const [outside, inside, throws] = out.lines()
    expect(outside?.reqId).toBeUndefined()
    expect(inside).toMatchObject({ reqId: 'r1', userId: 'call', host: { name: 'box' } })
    expect(inside).not.toHaveProperty('tenant')
    expect(throws).toMatchObject({ reqId: 'r2', msg: 'throws' })
    expect(() => defineContextFields({ name: 'bad', keys: { requestId: 'msg' } })).toThrow(TypeError)
  })

  it('never hands pino a shared cached object: 10,000 lines leave cached values unchanged', async () => {
    const p = pipeline({ enrichers: [user((id) => ({ user: { id, roles: ['a'] } }))] })
    p.register(defineEnricher({ name: 'host', compute: () => ({ host: { name: 'h' } }) }))
    await p.ready()
    await p.context.run({ userId: 'u1' }, () => p.enrich())
    const before = JSON.stringify(p.snapshot({ context: { userId: 'u1' } }))
    const out = sink()
    const log = pino(p.pinoOptions({ mixin: () => ({}) }), out)
    p.context.run({ userId: 'u1' }, () => {
      for (let i = 0; i < 10_000; i++) log.info({ [`k${i % 50}`]: i, ...(i % 2 === 0 ? { user: 'over' } : {}) }, 'm')
    })
    expect(JSON.stringify(p.snapshot({ context: { userId: 'u1' } }))).toBe(before)
    expect(out.lines()).toHaveLength(10_000)
    expect(out.lines()[1]?.user).toEqual({ id: 'u1', roles: ['a'] })
  })

  it('survives misbehaving enrichers: the line is written, valid JSON, the problem recorded', async () => {
    const circular: Record<string, unknown> = { a: 1 }
    circular.self = circular
    const protoJson = JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"ok":1}')
    const p = pipeline({ deadlineMs: 5 })
    p.register(
      defineEnricher({
        name: 'syncThrow',
        key: () => 'k',
        compute: () => {
          throw new Error('sync')
        },
      }),
    )
    p.register(defineEnricher({ name: 'reject', key: () => 'k', compute: () => Promise.reject(new Error('async')) }))
    p.register(
      defineEnricher({ name: 'hang', key: () => 'k', timeoutMs: 20, compute: () => new Promise<Fields>(() => {}) }),
    )
    p.register(defineEnricher({ name: 'circular', key: () => 'k', compute: () => ({ c: circular }) }))
    p.register(
      defineEnricher({ name: 'frozen', key: () => 'k', compute: () => Object.freeze({ f: Object.freeze({ x: 1 }) }) }),
    )
    p.register(defineEnricher({ name: 'proto', key: () => 'k', compute: () => protoJson }))
    p.register(
      defineEnricher<string>({
        name: 'keyThrows',
        key: () => {
          throw new Error('key')
        },
        compute: () => ({}),
      }),
    )
    p.register(Object.assign(() => Promise.resolve({ late: 1 }), { enricherName: 'promiseFn' }))
    p.register(
      Object.assign(
        () => {
          throw new Error('fn')
        },
        { enricherName: 'fnThrow' },
      ),
    )
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    expect(() => log.info('warm')).not.toThrow()
    await vi.advanceTimersByTimeAsync(20)
    expect(() => log.info('after')).not.toThrow()
    expect(out.chunks.every((c) => c.endsWith('\n') && c.indexOf('\n') === c.length - 1)).toBe(true)
    const [, after] = out.lines()
    expect(after).toMatchObject({ c: { a: 1, self: '[Circular]' }, f: { x: 1 }, ok: 1, msg: 'after' })
    expect(after?.enrich).toEqual({
      invalid: ['proto', 'keyThrows'],
      error: ['syncThrow', 'reject', 'fnThrow'],
      timeout: ['hang'],
      pending: ['promiseFn'],
    })
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.prototype).not.toHaveProperty('polluted')
    const stats = Object.fromEntries(p.stats().enrichers.map((e) => [e.name, e]))
    expect(stats.syncThrow?.errors).toBe(1)
    expect(stats.hang?.timeouts).toBe(1)
    expect(stats.proto?.invalid).toBe(1)
    expect(stats.fnThrow?.errors).toBe(2)
  })

  for (const mode of ['snapshot', 'deferred'] as const) {
    it(`refuses a function enricher's flat output over maxFieldBytes whole, writing none of it (${mode})`, async () => {
      const p = pipeline({ maxFieldBytes: 4096 })
      const big = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, 'x'.repeat(1000)]))
      p.register(Object.assign(() => ({ ...big }), { enricherName: 'big' }))
      const out = sink()
      const log = pino(p.pinoOptions({ mode }), out)
      log.info('x')
      const [line] = out.lines()
      expect(line?.k0).toBeUndefined()
      expect(line?.enrich).toEqual({ invalid: ['big'] })
    })
  }

  it('refuses enricher output larger than maxFieldBytes', async () => {
    const p = pipeline({ maxFieldBytes: 1024 })
    p.register(defineEnricher({ name: 'huge', key: () => 'k', compute: () => ({ big: 'x'.repeat(10_000) }) }))
    const r = await p.enrich()
    expect(r).toEqual({ enrich: { invalid: ['huge'] } })
  })
})

describe('deferred mode', () => {
  it('returns at once and writes the line when its enricher resolves, with the call time', async () => {
    const held = deferred<Fields>()
    const p = pipeline({ deadlineMs: 50, enrichers: [user(() => held.promise)] })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    const callTime = Date.now()
    p.context.run({ userId: 'u1' }, () => log.info('waits'))
    expect(out.chunks).toHaveLength(0)
    expect(p.stats().records.pending).toBe(1)
    await vi.advanceTimersByTimeAsync(7)
    held.resolve({ user: { id: 'u1' } })
    await vi.advanceTimersByTimeAsync(0)
    const [line] = out.lines()
    expect(line).toMatchObject({ user: { id: 'u1' }, msg: 'waits', time: callTime })
    expect(p.stats().records.maxAddedDelayMs).toBe(7)
  })

  it('writes the line at deadlineMs with what is ready, recording the timeout', async () => {
    const p = pipeline({ deadlineMs: 10, enrichers: [host(), user(() => new Promise<Fields>(() => {}))] })
    await p.ready()
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    p.context.run({ userId: 'u1' }, () => log.info('slow'))
    await vi.advanceTimersByTimeAsync(9)
    expect(out.chunks).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(1)
    expect(out.lines()[0]).toMatchObject({ host: { name: 'box' }, enrich: { timeout: ['user'] }, msg: 'slow' })
  })

  it('keeps call order even when a later line is enriched first', async () => {
    const gates = new Map<string, ReturnType<typeof deferred<Fields>>>()
    const p = pipeline({
      deadlineMs: 100,
      enrichers: [
        user((id) => {
          const d = deferred<Fields>()
          gates.set(id, d)
          return d.promise
        }),
      ],
    })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    p.context.run({ userId: 'a' }, () => log.info('1'))
    p.context.run({ userId: 'b' }, () => log.info('2'))
    log.info('3')
    gates.get('b')?.resolve({ user: 'b' })
    await vi.advanceTimersByTimeAsync(0)
    expect(out.chunks).toHaveLength(0)
    gates.get('a')?.resolve({ user: 'a' })
    await vi.advanceTimersByTimeAsync(0)
    expect(out.lines().map((l) => [l.msg, l.user])).toEqual([
      ['1', 'a'],
      ['2', 'b'],
      ['3', undefined],
    ])
  })

  it('writes synchronously when every value is already cached', async () => {
    const p = pipeline({ enrichers: [host(), user((id) => ({ user: id }))] })
    await p.ready()
    await p.enrich({ context: { userId: 'u1' } })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    p.context.run({ userId: 'u1' }, () => log.info('now'))
    expect(out.lines()[0]).toMatchObject({ user: 'u1', host: { name: 'box' }, msg: 'now' })
  })

  it('shows the merge object as it was at the call', async () => {
    const held = deferred<Fields>()
    const p = pipeline({ deadlineMs: 50, enrichers: [user(() => held.promise)] })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    const obj = { n: 1 }
    p.context.run({ userId: 'u' }, () => log.info(obj, 'm'))
    obj.n = 2
    held.resolve({})
    await vi.advanceTimersByTimeAsync(0)
    expect(out.lines()[0]?.n).toBe(1)
  })

  it('bounds the queue with maxPending, writing the oldest line early and in order', async () => {
    const p = pipeline({ deadlineMs: 1000, maxPending: 3, enrichers: [user(() => new Promise<Fields>(() => {}))] })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    p.context.run({ userId: 'u' }, () => {
      for (let i = 0; i < 5; i++) log.info(String(i))
    })
    expect(out.lines().map((l) => l.msg)).toEqual(['0', '1'])
    expect(p.stats().records.pending).toBe(3)
    await vi.advanceTimersByTimeAsync(1000)
    expect(out.lines().map((l) => l.msg)).toEqual(['0', '1', '2', '3', '4'])
  })

  it('composes with a user logMethod hook and child loggers', async () => {
    const held = deferred<Fields>()
    const p = pipeline({ deadlineMs: 50, enrichers: [user(() => held.promise)] })
    const out = sink()
    const log = pino(
      p.pinoOptions({
        mode: 'deferred',
        hooks: {
          logMethod(args, method) {
            method.apply(this, [`hooked ${String(args[0])}`])
          },
        },
      }),
      out,
    )
    p.context.run({ userId: 'u' }, () => log.child({ c: 1 }).info('x'))
    held.resolve({ user: 'u' })
    await vi.advanceTimersByTimeAsync(0)
    expect(out.lines()[0]).toMatchObject({ msg: 'hooked x', c: 1, user: 'u' })
  })

  it('flush() resolves once every pending line is written', async () => {
    const held = deferred<Fields>()
    const p = pipeline({ deadlineMs: 50, enrichers: [user(() => held.promise)] })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    p.context.run({ userId: 'u' }, () => log.info('x'))
    let flushed = false
    void p.flush().then(() => {
      flushed = true
    })
    await vi.advanceTimersByTimeAsync(49)
    expect(flushed).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    expect(flushed).toBe(true)
    expect(out.lines()).toHaveLength(1)
  })

  it('logging after close() never throws and is counted', async () => {
    const p = pipeline({ enrichers: [host()] })
    await p.ready()
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    await p.close()
    expect(() => log.info('late')).not.toThrow()
    expect(out.lines()[0]).toMatchObject({ msg: 'late' })
    expect(p.stats().records.afterClose).toBe(1)
  })
})

describe('a cold start past maxInflight', () => {
  it('records lookups refused a compute slot as busy, not error, and counts them apart', async () => {
    const gate = deferred<void>()
    let computes = 0
    const p = pipeline({
      deadlineMs: 50,
      enrichers: [
        defineEnricher({
          name: 'user',
          key: (ctx) => ctx.context?.userId as string | undefined,
          compute: async (id: string) => {
            computes++
            await gate.promise
            return { user: id }
          },
        }),
      ],
    })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    // 150 new users at once under the default maxInflight of 100.
    for (let i = 0; i < 150; i++) p.context.run({ userId: `u${i}` }, () => log.info(`line ${i}`))
    gate.resolve()
    await vi.advanceTimersByTimeAsync(50)
    const lines = out.lines()
    expect(lines).toHaveLength(150)
    expect(computes).toBe(100)
    expect(lines.filter((l) => l.user !== undefined)).toHaveLength(100)
    const busy = lines.filter((l) => l.user === undefined)
    expect(busy).toHaveLength(50)
    for (const l of busy) expect(l.enrich).toEqual({ busy: ['user'] })
    const s = p.stats().enrichers[0]
    expect(s).toMatchObject({ name: 'user', busy: 50, errors: 0 })
    expect(s?.cache).toMatchObject({ computeErrors: 0, inflightRejections: 50 })
    expect(p.metrics()).toContain('pino_enrich_enricher_busy_total{enricher="user"} 50')
    expect(p.metrics()).toContain('pino_enrich_enricher_errors_total{enricher="user"} 0')
  })
})

describe('a system time that steps', () => {
  const hung = () =>
    defineEnricher({
      name: 'user',
      key: (ctx) => ctx.context?.userId as string | undefined,
      compute: () => new Promise<Fields>(() => {}),
    })

  it('writes a deferred line at its deadline when the system time steps 5 s back meanwhile', async () => {
    const p = pipeline({ deadlineMs: 10, enrichers: [hung()] })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    p.context.run({ userId: 'u' }, () => log.info('held'))
    vi.setSystemTime(Date.now() - 5_000)
    await vi.advanceTimersByTimeAsync(10)
    expect(out.lines()).toHaveLength(1)
    expect(out.lines()[0]).toMatchObject({ msg: 'held', enrich: { timeout: ['user'] } })
    expect(p.stats().records.maxAddedDelayMs).toBe(10)
  })

  it('keeps a deferred line waiting its whole deadline when the system time steps 5 s forward', async () => {
    const gate = deferred<Fields>()
    const p = pipeline({
      deadlineMs: 10,
      enrichers: [
        defineEnricher({
          name: 'user',
          key: (ctx) => ctx.context?.userId as string | undefined,
          compute: () => gate.promise,
        }),
      ],
    })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    p.context.run({ userId: 'u' }, () => log.info('first'))
    vi.setSystemTime(Date.now() + 5_000)
    // Another line makes the queue look at the head's deadline.
    p.context.run({ userId: 'v' }, () => log.info('second'))
    await vi.advanceTimersByTimeAsync(5)
    expect(out.lines()).toHaveLength(0)
    gate.resolve({ user: 'U' })
    await vi.advanceTimersByTimeAsync(0)
    expect(out.lines()[0]).toMatchObject({ msg: 'first', user: 'U' })
    expect(out.lines()[0]?.enrich).toBeUndefined()
  })
})

describe("the pipeline's errorKey and the logger's own keys", () => {
  for (const mode of ['snapshot', 'deferred'] as const) {
    it(`${mode}: pinoOptions() refuses an errorKey that is the logger's messageKey, and a line under another has each key once`, async () => {
      expect(() => pipeline({ errorKey: 'message' }).pinoOptions({ mode, messageKey: 'message' })).toThrow(
        /errorKey "message" is this logger's messageKey too/,
      )
      const p = pipeline({ errorKey: 'problems', deadlineMs: 5 })
      p.register(
        defineEnricher({
          name: 'user',
          key: () => 'k',
          compute: () => {
            throw new Error('down')
          },
        }),
      )
      const out = sink()
      const log = pino(p.pinoOptions({ mode, messageKey: 'text' }), out)
      log.error(new Error('boom'), 'failed')
      await vi.advanceTimersByTimeAsync(10)
      await p.flush()
      const [line] = out.chunks
      expect(line?.match(/"problems":/g)).toHaveLength(1)
      expect(line?.match(/"err":/g)).toHaveLength(1)
      expect(line?.match(/"text":/g)).toHaveLength(1)
    })
  }
})
