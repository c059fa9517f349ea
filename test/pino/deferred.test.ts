import { Writable } from 'node:stream'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createRequestStore } from '../../src/context/request-store.js'
import { defineContextFields, defineEnricher, type Fields, type Pipeline } from '../../src/index.js'
import { advanceBoth, type Deferred, deferred, manualClock, slowStart } from '../helpers/deferred.js'
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

/** A keyed enricher on `ctx.record.user` whose computes the test settles by hand. */
function heldUser() {
  const gates = new Map<string, Deferred<Fields>>()
  const enricher = defineEnricher({
    name: 'user',
    key: (ctx) => ctx.record.user as string | undefined,
    compute: (id: string) => {
      const d = deferred<Fields>()
      gates.set(id, d)
      return d.promise
    },
  })
  return { gates, enricher }
}

describe('a log call made while a deferred line is written', () => {
  // Each way user code runs while pino writes a line. `record` sees every line
  // written; a way returns the options and the destination to log with.
  type Reenter = (
    nested: () => void,
    record: (chunk: string) => void,
  ) => { options: pino.LoggerOptions; stream: pino.DestinationStream }
  const plain = (record: (chunk: string) => void): pino.DestinationStream => ({ write: record })
  const ways: Array<[string, Reenter]> = [
    [
      'a serializer',
      (nested, record) => ({
        options: {
          serializers: {
            a: (v: unknown) => {
              nested()
              return v
            },
          },
        },
        stream: plain(record),
      }),
    ],
    [
      'formatters.log',
      (nested, record) => ({
        options: {
          formatters: {
            log: (o: Record<string, unknown>) => {
              if (o.a !== undefined) nested()
              return o
            },
          },
        },
        stream: plain(record),
      }),
    ],
    [
      'a user mixin',
      (nested, record) => ({
        options: {
          mixin: (o: object) => {
            if ((o as { a?: unknown }).a !== undefined) nested()
            return {}
          },
        },
        stream: plain(record),
      }),
    ],
    [
      "a destination's write()",
      (nested, record) => ({
        options: {},
        stream: {
          write(chunk: string) {
            record(chunk)
            if (chunk.includes('"a":')) nested()
          },
        },
      }),
    ],
    [
      "a multistream's stream",
      (nested, record) => ({
        options: {},
        stream: pino.multistream([
          { stream: plain(record) },
          {
            stream: new Writable({
              write(chunk: Buffer, _e, cb) {
                if (chunk.toString().includes('"a":')) nested()
                cb()
              },
            }),
          },
        ]),
      }),
    ],
  ]

  for (const [name, way] of ways) {
    it(`from ${name}: never throws, keeps call order and writes the nested line after the line being written`, async () => {
      const { gates, enricher } = heldUser()
      const p = pipeline({ deadlineMs: 100, enrichers: [enricher] })
      const written: string[] = []
      let log: pino.Logger | undefined
      let nestedOnce = false
      const { options, stream } = way(
        () => {
          if (nestedOnce) return
          nestedOnce = true
          log?.info('nested')
        },
        (chunk) => {
          written.push((JSON.parse(chunk) as { msg: string }).msg)
        },
      )
      log = pino(p.pinoOptions({ mode: 'deferred', ...options }), stream)
      // 'first' waits for its lookup; 'second' is ready but queued behind it.
      log.info({ a: 1, user: 'u1' }, 'first')
      log.info('second')
      expect(written).toEqual([])
      gates.get('u1')?.resolve({ name: 'one' })
      await vi.advanceTimersByTimeAsync(0)
      expect(written).toEqual(['first', 'second', 'nested'])
      // The queue still works: a waiting line and one behind it, in order.
      log.info({ user: 'u2' }, 'third')
      log.info('fourth')
      gates.get('u2')?.resolve({ name: 'two' })
      await vi.advanceTimersByTimeAsync(0)
      expect(written).toEqual(['first', 'second', 'nested', 'third', 'fourth'])
      expect(p.stats().records.dropped).toBe(0)
    })
  }

  it('from a plain call while a ready line waits behind another: the call itself does not throw', async () => {
    const { gates, enricher } = heldUser()
    const p = pipeline({ deadlineMs: 100, enrichers: [enricher] })
    const out = sink()
    let log: pino.Logger | undefined
    let calls = 0
    log = pino(
      p.pinoOptions({
        mode: 'deferred',
        serializers: {
          a: (v: unknown) => {
            if (calls++ === 0) log?.info('nested')
            return v
          },
        },
      }),
      out,
    )
    log.info({ user: 'u1' }, 'first')
    log.info({ a: 1 }, 'second')
    gates.get('u1')?.resolve({ name: 'one' })
    await vi.advanceTimersByTimeAsync(0)
    expect(() => log?.info('after')).not.toThrow()
    expect(out.lines().map((l) => l.msg)).toEqual(['first', 'second', 'nested', 'after'])
  })
})

describe('the deadline of a line that waits', () => {
  it('counts from the log call: a compute whose synchronous start takes 8 ms leaves the line 2 ms of its 10', async () => {
    const clock = manualClock()
    const enricher = defineEnricher({
      name: 'user',
      key: (ctx) => ctx.record.user as string | undefined,
      compute: slowStart<Fields>(clock, 8),
    })
    const p = pipeline({ clock, deadlineMs: 10, enrichers: [enricher] })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    log.info({ user: 'u1' }, 'first request')
    await advanceBoth(clock, 1)
    expect(out.lines()).toEqual([])
    await advanceBoth(clock, 1)
    expect(out.lines().map((l) => [l.msg, l.enrich])).toEqual([['first request', { timeout: ['user'] }]])
    expect(p.stats().records.maxAddedDelayMs).toBe(10)
  })

  it("a line logged from a getter of a waiting line's record is queued ahead of it and written by that line's deadline", async () => {
    const clock = manualClock()
    const enricher = defineEnricher({
      name: 'user',
      key: (ctx) => ctx.record.user as string | undefined,
      // Only u1's starts slowly: the line logged from the getter is gathered at once.
      compute: (id: string, ctx, opts) => slowStart<Fields>(clock, id === 'u1' ? 8 : 0)(id, ctx, opts),
    })
    const p = pipeline({ clock, deadlineMs: 10, enrichers: [enricher] })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    log.info(
      {
        user: 'u1',
        get extra() {
          log.info({ user: 'u2' }, 'from the getter')
          return 1
        },
      },
      'outer',
    )
    await advanceBoth(clock, 1)
    expect(out.lines()).toEqual([])
    await advanceBoth(clock, 1)
    expect(out.lines().map((l) => l.msg)).toEqual(['from the getter', 'outer'])
    expect(p.stats().records.maxAddedDelayMs).toBe(10)
  })
})

describe('a destination that logs every line it is handed', () => {
  it('stops after 1,000 writes one inside the other: the line is dropped and counted, the call returns', () => {
    const p = pipeline()
    const written: string[] = []
    let log: pino.Logger | undefined
    // Bounded here only so that the test ends whatever the outcome; unbounded, the queue's loop never did.
    const stream = {
      write(s: string) {
        written.push(s)
        if (written.length < 5_000) log?.info('audit')
      },
    }
    log = pino(p.pinoOptions({ mode: 'deferred' }), stream)
    expect(() => log?.info('first')).not.toThrow()
    expect(written).toHaveLength(1_001)
    expect(p.stats().records.dropped).toBe(1)
    // The logger still writes the application's own lines.
    stream.write = (s: string) => {
      written.push(s)
    }
    log.info('after')
    expect(JSON.parse(written.at(-1) as string).msg).toBe('after')
  })
})

describe('an enricher that logs through the logger it enriches', () => {
  const build = (p: Pipeline, mode: 'snapshot' | 'deferred') => {
    const out = sink()
    const holder: { log?: pino.Logger } = {}
    holder.log = pino(p.pinoOptions({ mode }), out)
    return { out, holder }
  }

  for (const mode of ['snapshot', 'deferred'] as const) {
    it(`a function enricher's log call is written once, without re-entering enrichment (${mode})`, () => {
      const p = pipeline()
      let runs = 0
      const { out, holder } = build(p, mode)
      p.register(function audit() {
        runs++
        holder.log?.info('from the enricher')
        return { audited: true }
      })
      holder.log?.info('outer')
      expect(runs).toBe(1)
      const lines = out.lines()
      expect(lines.map((l) => l.msg).sort()).toEqual(['from the enricher', 'outer'])
      expect(lines.find((l) => l.msg === 'outer')).toMatchObject({ audited: true })
      expect(lines.find((l) => l.msg === 'from the enricher')?.audited).toBeUndefined()
    })

    it(`a key() that logs is called once per line, its line written once (${mode})`, async () => {
      const p = pipeline()
      let keys = 0
      const { out, holder } = build(p, mode)
      p.register(
        defineEnricher({
          name: 'tenant',
          key: () => {
            keys++
            holder.log?.info('key asked')
            return 't1'
          },
          compute: (id: string) => ({ tenant: id }),
        }),
      )
      holder.log?.info('outer')
      await vi.advanceTimersByTimeAsync(20)
      expect(keys).toBe(1)
      expect(
        out
          .lines()
          .map((l) => l.msg)
          .sort(),
      ).toEqual(['key asked', 'outer'])
    })

    it(`the line a key() logs keeps its request fields, as README says (${mode})`, async () => {
      const p = pipeline()
      p.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId' } }))
      const { out, holder } = build(p, mode)
      p.register(
        defineEnricher({
          name: 'tenant',
          key: () => {
            holder.log?.info('key asked')
            return 't1'
          },
          compute: (id: string) => ({ tenant: id }),
        }),
      )
      p.context.run({ requestId: 'r1' }, () => holder.log?.info('outer'))
      await vi.advanceTimersByTimeAsync(20)
      const lines = out.lines()
      expect(lines.map((l) => [l.msg, l.requestId]).sort()).toEqual([
        ['key asked', 'r1'],
        ['outer', 'r1'],
      ])
    })
  }
})

describe('a deferred line shows what pino would have written at the call', () => {
  const setup = () => {
    const { gates, enricher } = heldUser()
    const p = pipeline({ deadlineMs: 100, enrichers: [enricher] })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    return { gates, p, out, log }
  }

  it('nested objects, arrays, format arguments and error properties changed after the call', async () => {
    const { gates, out, log } = setup()
    const order = { status: { code: 'NEW' }, items: [{ sku: 'a' }] }
    const arg = { step: 1 }
    const err = Object.assign(new Error('boom'), { code: 'E1', detail: { retry: false } })
    log.info({ user: 'u1', order }, 'waits')
    log.info('queued behind it %o', arg)
    log.error(err)
    log.info({ err }, 'wrapped')
    order.status.code = 'SHIPPED'
    order.items.push({ sku: 'b' })
    arg.step = 2
    err.message = 'changed'
    err.code = 'E2'
    err.detail.retry = true
    gates.get('u1')?.resolve({ name: 'one' })
    await vi.advanceTimersByTimeAsync(0)
    const [first, second, third, fourth] = out.lines()
    expect(first).toMatchObject({ order: { status: { code: 'NEW' }, items: [{ sku: 'a' }] }, name: 'one' })
    expect(second?.msg).toBe('queued behind it {"step":1}')
    expect(third).toMatchObject({ msg: 'boom', err: { message: 'boom', code: 'E1', detail: { retry: false } } })
    expect(third?.err).toMatchObject({ type: 'Error', stack: expect.stringContaining('boom') })
    expect(fourth).toMatchObject({ msg: 'wrapped', err: { message: 'boom', code: 'E1' } })
  })

  it('a request store logged as an object, its route and userId assigned after the call', async () => {
    const { gates, out, log } = setup()
    const store = createRequestStore('r1', 'GET', '/users/7', {}, () => 'u7')
    log.info({ user: 'u1', ctx: store }, 'waits')
    store.route = '/users/:id'
    store.userId = 'someone else'
    gates.get('u1')?.resolve({ name: 'one' })
    await vi.advanceTimersByTimeAsync(0)
    expect(out.lines()[0]?.ctx).toEqual({ requestId: 'r1', method: 'GET', route: '/users/7', userId: 'u7' })
  })

  it("a child's setBindings() after the call does not reach the line", async () => {
    const { gates, out, log } = setup()
    const child = log.child({ phase: 'before' })
    child.info({ user: 'u1' }, 'waits')
    child.setBindings({ phase: 'after' })
    child.info('later')
    gates.get('u1')?.resolve({ name: 'one' })
    await vi.advanceTimersByTimeAsync(0)
    expect(out.lines().map((l) => [l.msg, l.phase])).toEqual([
      ['waits', 'before'],
      ['later', 'after'],
    ])
    // The logger keeps its new bindings.
    child.info('now')
    expect(out.lines()[2]?.phase).toBe('after')
  })

  it('an array of length 2 ** 32 - 1 is not walked element by element at the call', async () => {
    const { gates, out, log } = setup()
    const huge: unknown[] = []
    huge.length = 2 ** 32 - 1
    const small = [1, 2]
    log.info({ user: 'u1', huge, small }, 'waits')
    small.push(3)
    gates.get('u1')?.resolve({ name: 'one' })
    await vi.advanceTimersByTimeAsync(0)
    const [line] = out.lines()
    // pino writes its first 100 elements, as it would have at the call.
    expect(line?.huge).toHaveLength(101)
    expect(line).toMatchObject({ small: [1, 2], name: 'one' })
  })

  it('keeps cycles, class instances and a throwing getter as pino would see them', async () => {
    const { gates, out, log } = setup()
    class Money {
      constructor(readonly cents: number) {}
      toJSON() {
        return `${this.cents / 100} EUR`
      }
    }
    const cyclic: Record<string, unknown> = { name: 'loop' }
    cyclic.self = cyclic
    const hostile = {
      get boom(): never {
        throw new Error('getter')
      },
    }
    log.info({ user: 'u1', cyclic, price: new Money(1250) }, 'waits')
    log.info({ hostile }, 'hostile')
    gates.get('u1')?.resolve({ name: 'one' })
    await vi.advanceTimersByTimeAsync(0)
    const lines = out.chunks.join('').split('\n').filter(Boolean)
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      cyclic: { name: 'loop', self: '[Circular]' },
      price: '12.5 EUR',
    })
    // Kept by reference, it is read when written, as pino would: the line is written all the same.
    expect(JSON.parse(lines[1] as string)).toMatchObject({ msg: 'hostile' })
    log.info('after')
    expect(out.lines().at(-1)?.msg).toBe('after')
  })

  it('a top-level getter that throws on a waiting line: the call does not throw, the line is counted', async () => {
    const { gates, p, out, log } = setup()
    const record = {
      user: 'u1',
      get boom(): never {
        throw new Error('getter')
      },
    }
    expect(() => log.info(record, 'waits')).not.toThrow()
    log.info('next')
    gates.get('u1')?.resolve({ name: 'one' })
    await vi.advanceTimersByTimeAsync(0)
    // pino itself throws reading it, so the line cannot be written: it is counted, and the next one follows.
    expect(out.lines().map((l) => l.msg)).toEqual(['next'])
    expect(p.stats().records.dropped).toBe(1)
    log.info('after')
    expect(out.lines().at(-1)?.msg).toBe('after')
  })

  it('a Proxy whose getPrototypeOf trap throws, behind a waiting line: the call does not throw, the line is counted', async () => {
    const { gates, p, out, log } = setup()
    log.info({ user: 'u1' }, 'waits')
    const hostile = new Proxy(
      { a: 1 },
      {
        getPrototypeOf(): never {
          throw new Error('trap')
        },
      },
    )
    expect(() => log.info(hostile, 'hostile')).not.toThrow()
    log.info('next')
    gates.get('u1')?.resolve({ name: 'one' })
    await vi.advanceTimersByTimeAsync(0)
    // pino itself throws reading it (instanceof Error), so the line cannot be written: it is counted.
    expect(out.lines().map((l) => l.msg)).toEqual(['waits', 'next'])
    expect(p.stats().records.dropped).toBe(1)
  })
})

describe("a child logger's bindings beat every kind of enricher", () => {
  for (const mode of ['snapshot', 'deferred'] as const) {
    it(`global, routed global, keyed and function values yield to a binding (${mode})`, async () => {
      const p = pipeline({
        enrichers: [
          defineEnricher({ name: 'region', compute: () => ({ region: 'enricher' }) }),
          defineEnricher({ name: 'account', compute: () => ({ account: { id: 'enricher' } }) }),
          defineEnricher({
            name: 'tenant',
            key: (ctx) => ctx.record.t as string | undefined,
            compute: () => ({ tenant: 'enricher' }),
          }),
          function team() {
            return { team: 'enricher' }
          },
        ],
      })
      await p.ready()
      await p.enrich({ record: { t: 'x' } })
      const out = sink()
      // `account` goes through pino's object path (redact), the others through the fragment or the mixin.
      const log = pino(p.pinoOptions({ mode, redact: ['account.secret'] }), out)
      const child = log.child({ region: 'bound', account: { id: 'bound' }, tenant: 'bound', team: 'bound' })
      child.info({ t: 'x' }, 'child')
      log.info({ t: 'x' }, 'root')
      child.info({ t: 'x', team: 'call' }, 'call site')
      await vi.advanceTimersByTimeAsync(20)
      const [bound, root, call] = out.lines()
      expect(bound).toMatchObject({ region: 'bound', account: { id: 'bound' }, tenant: 'bound', team: 'bound' })
      expect(root).toMatchObject({
        region: 'enricher',
        account: { id: 'enricher' },
        tenant: 'enricher',
        team: 'enricher',
      })
      expect(call).toMatchObject({ team: 'call', tenant: 'bound' })
      // Only the global fragment can repeat a key in the text; the binding comes after it.
      expect(out.chunks[0]?.match(/"tenant"/g)).toHaveLength(1)
      expect(out.chunks[0]?.match(/"team"/g)).toHaveLength(1)
    })
  }
})

describe('a messageKey set after values are cached', () => {
  for (const mode of ['snapshot', 'deferred'] as const) {
    it(`is never filled by an enricher, global, keyed or function (${mode})`, async () => {
      const p = pipeline({
        enrichers: [
          defineEnricher({ name: 'notice', compute: () => ({ message: 'from global', region: 'eu' }) }),
          defineEnricher({
            name: 'tenant',
            key: (ctx) => ctx.record.t as string | undefined,
            compute: () => ({ message: 'from keyed', tenant: 'x' }),
          }),
          function team() {
            return { message: 'from function', team: 'core' }
          },
        ],
      })
      await p.ready()
      await p.enrich({ record: { t: 'x' } })
      // A first logger with pino's default key: the function's keys are known by now.
      pino(p.pinoOptions({ mode }), sink()).info({ t: 'x' }, 'warm')
      const out = sink()
      const log = pino(p.pinoOptions({ mode, messageKey: 'message' }), out)
      log.info({ t: 'x' })
      log.info({ t: 'x' }, 'own')
      await vi.advanceTimersByTimeAsync(20)
      const [bare, own] = out.lines()
      expect(bare).toMatchObject({ region: 'eu', tenant: 'x', team: 'core' })
      expect(bare?.message).toBeUndefined()
      expect(own?.message).toBe('own')
    })
  }
})
