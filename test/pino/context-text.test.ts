// A line's request fields go out as text with its time part. What a user
// sees must not change for it: each field once, the call's own value winning,
// each line its own request's values, whatever logs from inside a line.
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { createRequestStore } from '../../src/context/request-store.js'
import { defineContextFields, defineEnricher, type Pipeline } from '../../src/index.js'
import { onAsJson } from '../helpers/as-json.js'
import { duplicateKeys } from '../helpers/duplicate-keys.js'
import { trackPipelines } from '../helpers/pipelines.js'
import { type Sink, sink } from '../helpers/sink.js'

const { pipeline, closePipelines } = trackPipelines()
afterEach(closePipelines)

const MODES = ['snapshot', 'deferred'] as const

function setup(mode: (typeof MODES)[number], options: pino.LoggerOptions = {}) {
  const enrich = pipeline({ enrichers: [defineEnricher({ name: 'svc', compute: () => ({ service: 'checkout' }) })] })
  enrich.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }))
  const out = sink()
  const log = pino(enrich.pinoOptions({ mode, base: { pid: 1, hostname: 'h' }, ...options }), out)
  return { enrich, out, log }
}

/** Every line: no key twice in its raw text, then parsed. */
async function lines(enrich: Pipeline, out: Sink): Promise<Array<Record<string, unknown>>> {
  await enrich.flush()
  for (const chunk of out.chunks)
    for (const l of chunk.split('\n').filter(Boolean)) expect(duplicateKeys(l)).toEqual([])
  return out.lines()
}

describe.each(MODES)('request fields as text (%s)', (mode) => {
  it('writes each field once, after the globals and before the bindings', async () => {
    const { enrich, out, log } = setup(mode)
    await enrich.ready()
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => log.info({ a: 1 }, 'in'))
    await enrich.flush()
    expect(out.chunks[0]).toMatch(
      /^\{"level":30,"time":\d+,"service":"checkout","requestId":"r1","userId":"u1","pid":1,"hostname":"h","a":1,"msg":"in"\}\n$/,
    )
  })

  it("writes the call's own value of a request key once, the call's, and the other fields", async () => {
    const { enrich, out, log } = setup(mode)
    await enrich.ready()
    const inherited = Object.create({ userId: 'from-proto' }) as Record<string, unknown>
    const err = Object.assign(new Error('boom'), { requestId: 'on-error' })
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => {
      log.info({ requestId: 'mine' }, 'own')
      log.info({ userId: undefined }, 'undefined wins')
      log.info(inherited, 'inherited')
      log.error(err)
      log.info('after')
    })
    const got = await lines(enrich, out)
    expect(got.map((l) => [l.msg, l.requestId, l.userId])).toEqual([
      ['own', 'mine', 'u1'],
      // pino's merge gives the call's undefined, which pino does not write.
      ['undefined wins', 'r1', undefined],
      // pino writes own keys only: the context's value, once.
      ['inherited', 'r1', 'u1'],
      ['boom', 'r1', 'u1'],
      ['after', 'r1', 'u1'],
    ])
  })

  it('writes a request field named as the object pino makes of an Error, a request or a response once, theirs', async () => {
    const enrich = pipeline()
    enrich.register(defineContextFields({ name: 'r', keys: { e: 'err', q: 'req', s: 'res', id: 'requestId' } }))
    const out = sink()
    const log = pino(enrich.pinoOptions({ mode, base: null }), out)
    let reads = 0
    // Undefined when first read, set after: the call has the key, so pino's merge decides, as without text.
    const changing = Object.defineProperty({}, 'requestId', {
      enumerable: true,
      get: () => (reads++ === 0 ? undefined : 'call'),
    })
    enrich.context.run({ e: 'ctx-e', q: 'ctx-q', s: 'ctx-s', id: 'r1' }, () => {
      log.error(new Error('boom'))
      log.info({ method: 'GET', url: '/u', headers: {}, socket: {} }, 'request')
      log.info({ setHeader: () => {}, statusCode: 200 }, 'response')
      log.info(changing, 'getter')
    })
    const got = await lines(enrich, out)
    expect(got.map((l) => [l.msg, typeof l.err, typeof l.req, typeof l.res, l.requestId])).toEqual([
      ['boom', 'object', 'string', 'string', 'r1'],
      ['request', 'string', 'object', 'string', 'r1'],
      ['response', 'string', 'string', 'object', 'r1'],
      ['getter', 'string', 'string', 'string', undefined],
    ])
  })

  it("runs the getters of the call's object as often as plain pino does", async () => {
    const reads: string[] = []
    const object = (): object => {
      const o: Record<string, unknown> = { a: 1 }
      for (const k of ['method', 'headers', 'socket', 'setHeader', 'requestId', 'msg']) {
        Object.defineProperty(o, k, { enumerable: k !== 'requestId', get: () => void reads.push(k) })
      }
      return o
    }
    pino({ base: null }, sink()).info(object())
    const plain = reads.splice(0)
    const { enrich, out, log } = setup(mode)
    await enrich.ready()
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => log.info(object()))
    await lines(enrich, out)
    expect(reads).toEqual(plain)
  })

  it('gives each line its own request, requests interleaved and values changed between lines', async () => {
    const { enrich, out, log } = setup(mode)
    await enrich.ready()
    const a: Record<string, unknown> = { requestId: 'a', userId: 'ua' }
    const b: Record<string, unknown> = { requestId: 'b' }
    enrich.context.run(a, () => log.info('a1'))
    enrich.context.run(b, () => log.info('b1'))
    b.userId = 'ub'
    enrich.context.run(b, () => log.info('b2'))
    enrich.context.run(a, () => log.info('a2'))
    a.requestId = 7
    enrich.context.run(a, () => log.info('a3'))
    log.info('none')
    const got = await lines(enrich, out)
    expect(got.map((l) => [l.msg, l.requestId, l.userId])).toEqual([
      ['a1', 'a', 'ua'],
      ['b1', 'b', undefined],
      ['b2', 'b', 'ub'],
      ['a2', 'a', 'ua'],
      ['a3', 7, 'ua'],
      ['none', undefined, undefined],
    ])
  })

  it('keeps each line its fields when another line is logged from a getter pino reads, or from a serializer', async () => {
    const { enrich, out, log } = setup(mode, {
      serializers: {
        thing: (v: unknown) => {
          enrich.context.run({ requestId: 'inner-s', userId: 'us' }, () => log.info('from serializer'))
          return v
        },
      },
    })
    await enrich.ready()
    const call = {
      get msg() {
        // pino reads the message key of an object logged without a message, between its timestamp and its mixin.
        enrich.context.run({ requestId: 'inner-g', userId: 'ug' }, () => log.info('from getter'))
        return undefined
      },
      thing: 1,
    }
    enrich.context.run({ requestId: 'outer', userId: 'uo' }, () => log.info(call))
    const got = await lines(enrich, out)
    const by = Object.fromEntries(got.map((l) => [String(l.msg ?? 'outer'), [l.requestId, l.userId]]))
    expect(by).toEqual({
      'from getter': ['inner-g', 'ug'],
      'from serializer': ['inner-s', 'us'],
      outer: ['outer', 'uo'],
    })
  })

  it('writes every line after lines whose serializer threw, each field once', async () => {
    const { enrich, out, log } = setup(mode, {
      serializers: {
        bad: () => {
          throw new Error('serializer')
        },
      },
    })
    await enrich.ready()
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => {
      for (let i = 0; i < 100; i++) expect(() => log.info({ bad: 1 }, 'refused')).toThrow('serializer')
      for (let i = 0; i < 3; i++) log.info(i === 1 ? { requestId: 'mine' } : {}, `ok${i}`)
    })
    const got = await lines(enrich, out)
    expect(got.map((l) => [l.msg, l.requestId, l.userId])).toEqual([
      ['ok0', 'r1', 'u1'],
      ['ok1', 'mine', 'u1'],
      ['ok2', 'r1', 'u1'],
    ])
  })

  it('writes every line after lines that threw between their timestamp and mixin, one of them inside another line', async () => {
    const { enrich, out, log } = setup(mode)
    await enrich.ready()
    const bad = {
      get msg(): string {
        throw new Error('getter')
      },
    }
    const outer = {
      // Its own requestId: this line's request fields take pino's object, the inner line's were text.
      requestId: 'mine-outer',
      // A line logged from inside this line whose own write throws (in snapshot mode here; a
      // deferred one queues behind this line and is dropped when written).
      get msg(): string {
        enrich.context.run({ requestId: 'inner', userId: 'ui' }, () => {
          try {
            log.info(bad)
          } catch {}
        })
        return 'outer'
      },
    }
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => {
      for (let i = 0; i < 3_000; i++) expect(() => log.info(bad)).toThrow('getter')
      log.info('ok')
      log.info({ requestId: 'mine' }, 'own')
    })
    enrich.context.run({ requestId: 'r2', userId: 'u2' }, () => log.info(outer))
    log.info('outside')
    const got = await lines(enrich, out)
    expect(got.map((l) => [l.msg, l.requestId, l.userId])).toEqual([
      ['ok', 'r1', 'u1'],
      ['own', 'mine', 'u1'],
      ['outer', 'mine-outer', 'u2'],
      ['outside', undefined, undefined],
    ])
  })

  it('writes correct lines for more binding variants than the fragment cache keeps', async () => {
    const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6']
    const enrich = pipeline()
    enrich.register(defineContextFields({ name: 'many', keys: Object.fromEntries(keys.map((k) => [k, k])) }))
    const out = sink()
    const log = pino(enrich.pinoOptions({ mode, base: null }), out)
    const context = Object.fromEntries(keys.map((k) => [k, `ctx-${k}`]))
    enrich.context.run(context, () => {
      for (let m = 0; m < 128; m++) {
        log.child(Object.fromEntries(keys.filter((_, i) => (m >> i) & 1).map((k) => [k, `b-${k}`]))).info({ m })
      }
    })
    const got = await lines(enrich, out)
    expect(got).toHaveLength(128)
    for (const l of got) {
      const m = l.m as number
      for (const [i, k] of keys.entries()) expect(l[k]).toBe((m >> i) & 1 ? `b-${k}` : `ctx-${k}`)
    }
  })

  it('leaves a key a child binds to the binding, and a serializer or redact path on a field applies', async () => {
    const { enrich, out, log } = setup(mode, {
      serializers: { userId: (v: unknown) => `s:${String(v)}` },
      redact: ['requestId'],
    })
    await enrich.ready()
    const plain = setup(mode).log
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => {
      log.info('serialized')
      log.child({ userId: 'bound' }).info('child')
      plain.child({ requestId: 'bound' }).info('plain child')
    })
    const got = await lines(enrich, out)
    expect(got.map((l) => [l.msg, l.requestId, l.userId])).toEqual([
      ['serialized', '[Redacted]', 's:u1'],
      ['child', '[Redacted]', 's:bound'],
    ])
  })

  it('ranks a request field above a keyed, a function and a level-bound global enricher writing its key, once', async () => {
    const enrich = pipeline({
      enrichers: [defineEnricher({ name: 'warnOnly', minLevel: 'warn', compute: () => ({ requestId: 'global' }) })],
    })
    enrich.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }))
    enrich.register(
      defineEnricher({ name: 'keyed', key: () => 'k', compute: () => ({ userId: 'keyed', plan: 'pro' }) }),
    )
    enrich.register(Object.assign(() => ({ requestId: 'fn', fn: true }), { enricherName: 'fn' }))
    const out = sink()
    const log = pino(enrich.pinoOptions({ mode }), out)
    await enrich.ready()
    await enrich.enrich({})
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => {
      log.info('info')
      log.warn('warn')
    })
    // Without a value in the context, the enrichers' values are written.
    enrich.context.run({ other: 1 }, () => log.warn('no request fields'))
    const got = await lines(enrich, out)
    expect(got.map((l) => [l.msg, l.requestId, l.userId, l.plan, l.fn])).toEqual([
      ['info', 'r1', 'u1', 'pro', true],
      ['warn', 'r1', 'u1', 'pro', true],
      ['no request fields', 'fn', 'keyed', 'pro', true],
    ])
  })

  it("lets the user's mixin set a field and formatters.log see them, as before", async () => {
    const mixed = setup(mode, { mixin: () => ({ userId: 'from-mixin' }) })
    const formatted = setup(mode, { formatters: { log: (o) => ({ ...o, seen: o.requestId }) } })
    await Promise.all([mixed.enrich.ready(), formatted.enrich.ready()])
    const store = { requestId: 'r1', userId: 'u1' }
    mixed.enrich.context.run(store, () => mixed.log.info('mixin'))
    formatted.enrich.context.run(store, () => formatted.log.info('log'))
    // The user's mixin is merged over the enriched fields, as pino merges the call's over it.
    expect((await lines(mixed.enrich, mixed.out)).map((l) => [l.requestId, l.userId])).toEqual([['r1', 'from-mixin']])
    expect((await lines(formatted.enrich, formatted.out)).map((l) => [l.seen, l.userId])).toEqual([['r1', 'u1']])
  })
})

/** A deferred logger whose keyed `tenant` lookup waits until `release()`. */
function waiting() {
  let release = (): void => {}
  const gate = new Promise<void>((r) => {
    release = r
  })
  const enrich = pipeline({ deadlineMs: 60_000 })
  enrich.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }))
  enrich.register(
    defineEnricher({
      name: 'tenant',
      key: (ctx) => ctx.context?.userId as string | undefined,
      compute: async (u) => {
        await gate
        return { tenant: `t-${u}` }
      },
    }),
  )
  const out = sink()
  const log = pino(enrich.pinoOptions({ mode: 'deferred', base: null, timestamp: false }), out)
  return { enrich, out, log, release }
}

describe('request fields as text in a deferred line that waits', () => {
  it('shows the values at the call, once, as a line written in its call does', async () => {
    const { enrich, out, log, release } = waiting()
    const store: Record<string, unknown> = { requestId: 'r1', userId: 'u1' }
    enrich.context.run(store, () => {
      log.info('waits')
      log.info({ requestId: 'mine' }, 'own')
    })
    store.requestId = 'changed'
    release()
    await enrich.flush()
    enrich.context.run(store, () => log.info('cached'))
    await enrich.flush()
    expect(out.chunks).toEqual([
      '{"level":30,"requestId":"r1","userId":"u1","tenant":"t-u1","msg":"waits"}\n',
      '{"level":30,"tenant":"t-u1","requestId":"mine","userId":"u1","msg":"own"}\n',
      '{"level":30,"requestId":"changed","userId":"u1","tenant":"t-u1","msg":"cached"}\n',
    ])
  })

  it('writes the next line whole after a line whose write pino refused between its timestamp and its mixin', async () => {
    const { enrich, out, log, release } = waiting()
    const bad = {
      get msg(): string {
        throw new Error('getter')
      },
    }
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => {
      log.info(bad)
      // Its own requestId: its request fields take pino's object.
      log.info({ requestId: 'mine' }, 'second')
    })
    release()
    await enrich.flush()
    expect(out.chunks).toEqual(['{"level":30,"tenant":"t-u1","requestId":"mine","userId":"u1","msg":"second"}\n'])
    expect(enrich.stats().records.dropped).toBe(1)
  })
})

describe('request fields of a deferred line written in its call with its problems known', () => {
  it('writes them once, as text or, with an asJson subscriber, in the object', async () => {
    const enrich = pipeline()
    enrich.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }))
    enrich.register(
      defineEnricher({
        name: 'tenant',
        key: (ctx) => ctx.context?.userId as string | undefined,
        compute: () => Promise.reject(new Error('down')),
        breaker: { failureThreshold: 1, halfOpenAfterMs: 3_600_000 },
      }),
    )
    await enrich.enrich({ context: { userId: 'u1' } })
    expect(enrich.stats().enrichers.find((x) => x.name === 'tenant')?.breaker).toBe('open')
    const out = sink()
    const log = pino(enrich.pinoOptions({ mode: 'deferred', base: null, timestamp: false }), out)
    const store = { requestId: 'r1', userId: 'u1' }
    enrich.context.run(store, () => log.info('text'))
    const seen: unknown[] = []
    const unsubscribe = onAsJson((args) => seen.push(args[0]))
    try {
      enrich.context.run(store, () => log.info('subscribed'))
    } finally {
      unsubscribe()
    }
    enrich.context.run(store, () => log.info({ requestId: 'mine' }, 'own'))
    const got = await lines(enrich, out)
    expect(got.map((l) => [l.msg, l.requestId, l.userId, l.enrich])).toEqual([
      ['text', 'r1', 'u1', { error: ['tenant'] }],
      ['subscribed', 'r1', 'u1', { error: ['tenant'] }],
      ['own', 'mine', 'u1', { error: ['tenant'] }],
    ])
    expect(out.chunks[0]).toBe(
      '{"level":30,"enrich":{"error":["tenant"]},"requestId":"r1","userId":"u1","msg":"text"}\n',
    )
    expect(seen[0]).toMatchObject({ requestId: 'r1', userId: 'u1' })
  })
})

/** A keyed enricher on the context's userId: the plan of that user. */
const profile = () =>
  defineEnricher({
    name: 'profile',
    key: (ctx) => ctx.context?.userId as string | undefined,
    compute: (u) => ({ plan: `p-${u}` }),
  })

/** A logger of `mode` with a keyed `profile` enricher on the request store's userId, which `user(req)` answers. */
function withProfile(mode: (typeof MODES)[number], answer: string | undefined) {
  const enrich = pipeline()
  enrich.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }))
  enrich.register(profile())
  const out = sink()
  const log = pino(enrich.pinoOptions({ mode }), out)
  const asked = { calls: 0 }
  const store = createRequestStore('r1', 'GET', '/x', {}, () => {
    asked.calls++
    return answer
  })
  return { enrich, out, log, store, asked }
}

describe('request fields as text with a keyed enricher reading the request store', () => {
  it.for(MODES)('writes the keyed value read with the answer user(req) gave once (%s)', async (mode) => {
    const { enrich, out, log, store, asked } = withProfile(mode, 'u1')
    enrich.context.run(store, () => log.info('first'))
    await enrich.flush()
    // The first line's lookup settles.
    await new Promise((resolve) => setImmediate(resolve))
    expect(asked.calls).toBe(1)
    enrich.context.run(store, () => {
      for (let i = 0; i < 10; i++) log.info('line')
    })
    const got = await lines(enrich, out)
    expect(asked.calls).toBe(1)
    expect(got.slice(1).map((l) => [l.userId, l.plan])).toEqual(Array(10).fill(['u1', 'p-u1']))
  })

  it.for(MODES)('asks user(req) once per line while it has no answer (%s)', async (mode) => {
    const { enrich, out, log, store, asked } = withProfile(mode, undefined)
    enrich.context.run(store, () => {
      for (let i = 0; i < 10; i++) log.info('line')
    })
    const got = await lines(enrich, out)
    expect(got).toHaveLength(10)
    expect(asked.calls).toBe(10)
  })
})

interface Fresh {
  failing?: boolean
  options?: Parameters<Pipeline['pinoOptions']>[0]
  multistream?: boolean
}

describe("request fields with a keyed enricher reading the application's context", () => {
  // The request fields as text, and the ways a line's fields go in its object instead.
  const VARIANTS = [
    { name: 'as text' },
    { name: "with the user's mixin", options: { mixin: () => ({}) } },
    { name: 'to pino.multistream', multistream: true },
    { name: 'with formatters.log', options: { formatters: { log: (o: Record<string, unknown>) => o } } },
    { name: 'with nestedKey', options: { nestedKey: 'payload' } },
    { name: "with a request key in the call's object", own: true },
  ] as const
  const CASES = MODES.flatMap((mode) => VARIANTS.map((variant) => ({ mode, variant, name: variant.name })))

  it.for(CASES)(
    'reads the context once per line: its fields and its keyed key come from one read ($mode, $name)',
    async ({ mode, variant }) => {
      const { enrich, out, log, counter } = await freshEachRead(mode, {
        options: 'options' in variant ? variant.options : {},
        multistream: 'multistream' in variant,
      })
      for (let i = 0; i < 5; i++) {
        if ('own' in variant) log.info({ requestId: 'own' }, 'line')
        else log.info('line')
      }
      const got = await lines(enrich, out)
      expect(counter.reads).toBe(5)
      // With nestedKey, pino nests the fields with the call's object.
      const fields = got.map((l) => (l.payload ?? l) as Record<string, unknown>)
      expect(fields.map((f) => [f.requestId, f.userId, f.plan])).toEqual(
        [1, 2, 3, 4, 5].map((i) => ['own' in variant ? 'own' : `r${i}`, `u${i}`, `p-u${i}`]),
      )
    },
  )

  /** A pipeline whose context answers each read with another request, every request's value cached. */
  async function freshEachRead(
    mode: (typeof MODES)[number],
    { failing = false, options = {}, multistream = false }: Fresh = {},
  ) {
    const counter = { reads: 0 }
    // Each read answers another request: two reads for one line would mix two requests in it.
    const enrich = pipeline({
      context: () => {
        counter.reads++
        return { requestId: `r${counter.reads}`, userId: `u${counter.reads}` }
      },
    })
    enrich.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }))
    enrich.register(profile())
    // A keyed value that fails: the line's problems are known in its call.
    if (failing)
      enrich.register(
        defineEnricher({
          name: 'down',
          key: () => 'k',
          compute: () => {
            throw new Error('down')
          },
        }),
      )
    // The values of the reads the lines make, cached before they are logged.
    for (let i = 1; i <= 10; i++) await enrich.enrich({ context: { requestId: `r${i}`, userId: `u${i}` } })
    counter.reads = 0
    const out = sink()
    const log = pino(enrich.pinoOptions({ mode, ...options }), multistream ? pino.multistream([{ stream: out }]) : out)
    return { enrich, out, log, counter }
  }
  const oneRequest = (l: Record<string, unknown>): boolean => {
    const n = String(l.requestId).slice(1)
    return l.userId === `u${n}` && l.plan === `p-u${n}`
  }

  it.for(MODES)('reads it once per line whose problems are known in its call (%s)', async (mode) => {
    const { enrich, out, log, counter } = await freshEachRead(mode, { failing: true })
    for (let i = 0; i < 5; i++) log.info('line')
    const got = await lines(enrich, out)
    expect(counter.reads).toBe(5)
    expect(got.filter(oneRequest)).toHaveLength(5)
  })

  it.for(MODES)('keeps the outer line one request when a getter pino reads logs a line (%s)', async (mode) => {
    const { enrich, out, log } = await freshEachRead(mode)
    let logged = false
    const call = {
      get msg() {
        // pino reads the message key between its timestamp and its mixin (and again later).
        if (!logged) {
          logged = true
          log.info('inner')
        }
        return 'outer'
      },
    }
    log.info(call)
    log.info('after')
    const got = await lines(enrich, out)
    expect(got.map((l) => l.msg).sort()).toEqual(['after', 'inner', 'outer'])
    expect(got.filter(oneRequest)).toHaveLength(3)
  })
})
